"""The binary fast paths of ML.EVALUATE's metrics and of the linear scoring give the values of
the general formulas bit for bit: log loss on two contiguous columns, roc_auc without the second
binary search when no score ties across the classes, binary probabilities in one buffer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from shipyard.registry.predictor import _linear_scores
from shipyard.sql.evaluation import ScoreOrder, _binary_auc, _macro_log_loss, evaluate


def _general_log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """The (rows, K) formula of _macro_log_loss, as it is for three classes and more."""
    k = probabilities.shape[1]
    p = np.clip(probabilities, 1e-15, 1.0)
    p /= (p[:, 0] + p[:, 1])[:, None]
    np.clip(p, 1e-15, 1.0 - 1e-15, out=p)
    terms = np.log1p(np.negative(p, out=np.empty_like(p)))
    np.copyto(terms, np.log(p), where=y_true[:, None] == np.arange(k))
    value = float(np.mean(-np.mean(terms, axis=0)))
    return value if math.isfinite(value) else None


def _two_searches_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    wins = 2 * int(np.sum(below, dtype=np.int64)) + int(np.sum(ties, dtype=np.int64))
    return wins / (2.0 * len(pos) * len(neg))


def _binary_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    cases = []
    for n in (1, 2, 7, 1001, 40_000):
        p = rng.random(n)
        p[::5] = np.round(p[::5], 2)  # ties
        p[::7], p[::11], p[::13] = 1.0, 0.0, 1e-17  # the clipping bounds
        y = rng.integers(0, 2, n)
        rows = np.empty((n, 2))
        rows[:, 0], rows[:, 1] = 1.0 - p, p
        cases.append((f"{n} rows", y, rows))
        # as interpret_scores hands them over: a reversed view of a descending buffer
        cases.append((f"{n} rows, reversed view", y, np.ascontiguousarray(rows[:, ::-1])[:, ::-1]))
    unnormalised = rng.random((500, 2))  # rows not summing to 1 are normalised first
    cases.append(("unnormalised", rng.integers(0, 2, 500), unnormalised))
    cases.append(("one class", np.ones(300, dtype=np.int64), rng.random((300, 2))))
    return cases


@pytest.mark.parametrize(("name", "y", "probabilities"), _binary_cases())
def test_binary_log_loss_is_the_general_formula_bit_for_bit(
    name: str, y: np.ndarray, probabilities: np.ndarray
) -> None:
    before = probabilities.copy()
    assert _macro_log_loss(y, probabilities) == _general_log_loss(y, probabilities)
    assert np.array_equal(probabilities, before)  # the input is left alone


def test_binary_log_loss_is_scikit_learns() -> None:
    rng = np.random.default_rng(12)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(np.int64)
    rows = np.column_stack([1.0 - p, p])
    assert _macro_log_loss(y, rows) == pytest.approx(log_loss(y, rows), rel=1e-12)


@pytest.mark.parametrize(
    ("name", "y", "probabilities"),
    [case for case in _binary_cases() if 0 < case[1].sum() < len(case[1])],  # both classes
)
def test_binary_auc_is_the_two_search_count_bit_for_bit(
    name: str, y: np.ndarray, probabilities: np.ndarray
) -> None:
    positive, scores = y == 1, probabilities[:, 1]
    order = ScoreOrder()
    got = _binary_auc(positive, scores, order)
    assert got == _two_searches_auc(positive, scores)
    assert got == pytest.approx(roc_auc_score(y, scores), rel=1e-12)
    assert order.positives is not None and order.negatives is not None
    assert np.array_equal(order.positives, np.sort(scores[positive]))


@pytest.mark.parametrize(
    ("scores", "positive", "expected"),
    [
        ([0.5, 0.5, 0.5, 0.5], [True, False, True, False], 0.5),  # every score tied
        ([0.1, 0.2, 0.8, 0.9], [False, False, True, True], 1.0),  # no ties, separated
        ([0.3, 0.3, 0.2, 0.9], [True, False, False, True], 0.875),  # one tie across classes
        ([0.9, 0.1], [False, True], 0.0),
    ],
)
def test_binary_auc_counts_ties_as_half(
    scores: list[float], positive: list[bool], expected: float
) -> None:
    assert _binary_auc(np.array(positive), np.array(scores)) == expected


def test_evaluate_keeps_its_inputs_and_accepts_narrow_integer_codes() -> None:
    rng = np.random.default_rng(13)
    p = rng.random(400)
    truth = (rng.random(400) < p).astype(np.int32)
    codes = (p > 0.5).astype(np.int32)
    rows = np.column_stack([1.0 - p, p])
    kept = truth.copy(), codes.copy(), rows.copy()
    metrics = evaluate("binary_classification", truth, codes, rows, [0, 1])
    wide = evaluate("binary_classification", truth.astype(np.int64), None, rows, [0, 1])
    assert metrics == wide
    assert all(np.array_equal(a, b) for a, b in zip(kept, (truth, codes, rows), strict=True))
    regression = evaluate("regression", p, p[::-1].copy(), None, None)
    assert regression["mean_absolute_error"] == pytest.approx(np.mean(np.abs(p - p[::-1])))


def test_binary_linear_scores_are_predict_probas_values_in_one_buffer() -> None:
    rng = np.random.default_rng(14)
    x = rng.normal(size=(2001, 5))
    y = (x @ [1.0, -1.0, 0.5, 0.0, 2.0] + rng.normal(size=2001) > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    got = _linear_scores(model, x, classifier=True)
    assert got is not None
    # the products summed from the first feature to the last, then the intercept
    coef = model.coef_[0]
    decision = x[:, 0] * coef[0]
    for j in range(1, x.shape[1]):
        decision = decision + x[:, j] * coef[j]
    positive = expit(decision + model.intercept_[0])
    assert np.array_equal(got, np.column_stack([1.0 - positive, positive]))
    np.testing.assert_allclose(got, model.predict_proba(x), rtol=1e-12)
    # row by row: a row alone scores as it does in any batch
    for i in (0, 1, 999, 2000):
        assert np.array_equal(_linear_scores(model, x[i : i + 1], classifier=True)[0], got[i])
