"""The passes after the fit give np.quantile's and the per-class sorts' exact values, faster.

sorted_quantiles / training_quantiles (KMEANS' and PCA's 1,001 anomaly quantiles) and
merged_quantiles (the stored ROC curve's 101 thresholds) must equal ``np.quantile`` bit for
bit; roc_auc's float32 sort of float32-valued scores must give the float64 sort's arrays.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from shipyard.sql.clustering import training_quantiles
from shipyard.sql.evaluation import (
    ScoreOrder,
    _sorted_by_class,
    evaluate,
    merged_quantiles,
    sorted_quantiles,
)
from shipyard.sql.inspection import default_thresholds


def _reference(values: np.ndarray, count: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.quantile(values, np.linspace(0.0, 1.0, count))


def _ours(values: np.ndarray, count: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return training_quantiles(values, count)


EDGE_CASES = {
    "one row": [3.5],
    "two rows": [2.0, 1.0],
    "all tied": [7.0] * 13,
    "ties": [0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 5.0],
    "NaN": [1.0, np.nan, 0.5],
    "zeros of both signs": [0.0, -0.0, 1.0, -0.0],
    "negative zeros only": [-0.0, 2.0, -0.0],
    "infinities": [-np.inf, 1.0, np.inf, np.inf],
    "subnormal": [5e-324, 0.0, 1e-300],
    "huge": [1e308, -1e308, 1.7e308],
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
@pytest.mark.parametrize("count", [1001, 101, 2])
def test_training_quantiles_equal_np_quantile_on_edge_cases(name: str, count: int) -> None:
    values = np.array(EDGE_CASES[name], dtype=np.float64)
    before = values.copy()
    assert _ours(values, count).tobytes() == _reference(values, count).tobytes()
    assert values.tobytes() == before.tobytes()  # the caller's array is not reordered


def test_training_quantiles_equal_np_quantile_on_random_data() -> None:
    rng = np.random.default_rng(7)
    for trial in range(600):
        n = int(rng.integers(1, 2500)) if trial % 3 else int(rng.integers(1, 12))
        kind = trial % 5
        if kind == 0:
            values = rng.normal(size=n)
        elif kind == 1:
            values = rng.integers(0, 4, size=n).astype(np.float64)  # heavy ties
        elif kind == 2:
            values = np.exp(rng.normal(size=n) * 30)  # wide range
        elif kind == 3:
            values = rng.normal(size=n)
            values[rng.random(n) < 0.1] = np.inf
        else:
            values = np.abs(rng.normal(size=n))
            values[rng.random(n) < 0.3] = 0.0
        for count in (1001, 101):
            assert _ours(values, count).tobytes() == _reference(values, count).tobytes(), trial


def test_sorted_quantiles_declines_what_a_sort_cannot_promise() -> None:
    assert sorted_quantiles(np.array([]), 11) is None
    assert sorted_quantiles(np.array([1.0, np.nan]), 11) is None
    assert sorted_quantiles(np.array([-0.0, 0.0, 1.0]), 11) is None
    assert sorted_quantiles(np.array([0.0, 0.0, 1.0]), 11) is not None


def _old_sorted(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = scores[positive], scores[~positive]
    pos.sort()
    neg.sort()
    return pos, neg


@pytest.mark.parametrize("float32_valued", [True, False])
def test_per_class_sorts_equal_the_float64_sorts(float32_valued: bool) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    scores = rng.random(n)
    scores[::7] = scores[0]  # ties across classes
    scores[1] = 0.0
    scores[2] = 1.0
    if float32_valued:
        scores = scores.astype(np.float32).astype(np.float64)
    positive = rng.random(n) < 0.4
    pairs = zip(_sorted_by_class(positive, scores), _old_sorted(positive, scores), strict=True)
    for ours, old in pairs:
        assert ours.dtype == np.float64
        assert ours.tobytes() == old.tobytes()


@pytest.mark.parametrize(
    "scores,truth",
    [
        ([0.25], [1]),  # one row: one class only
        ([0.5, 0.5, 0.5], [0, 1, 0]),  # all tied
        ([0.1, 0.9, 0.4, 0.4], [0, 1, 1, 0]),  # a tie across the classes
        ([0.3, 0.6, 0.6], [1, 1, 1]),  # two classes, only one present
        ([0.0, 1.0, 0.75], [0, 1, 0]),
    ],
)
def test_binary_metrics_and_curve_thresholds_unchanged_for_float32_scores(
    scores: list[float], truth: list[int]
) -> None:
    """The float32 sort path against the float64 one (a score a hair off float32 forces it)."""
    exact = np.asarray(scores, dtype=np.float32).astype(np.float64)
    proba = np.column_stack([1.0 - exact, exact])
    labels = np.asarray(truth)
    order = ScoreOrder()
    metrics = evaluate("binary_classification", labels, None, proba, [0, 1], order=order)
    thresholds = default_thresholds(exact, order)
    assert thresholds.tobytes() == np.unique(_reference(exact, 101)).tobytes()
    if metrics["roc_auc"] is None:
        assert len(set(truth)) == 1
        return
    from sklearn.metrics import roc_auc_score

    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, exact), abs=1e-15)
    assert order.positives is not None and order.negatives is not None
    old = _old_sorted(labels == 1, exact)
    assert order.positives.tobytes() == old[0].tobytes()
    assert order.negatives.tobytes() == old[1].tobytes()


def test_nan_scores_still_give_scikit_learns_error() -> None:
    proba = np.array([[0.5, 0.5], [np.nan, np.nan], [0.2, 0.8]])
    with pytest.raises(ValueError):
        evaluate("binary_classification", [0, 1, 1], None, proba, [0, 1])


def _order(scores: np.ndarray, positive: np.ndarray, *, with_below: bool) -> ScoreOrder:
    pos, neg = _old_sorted(positive, scores)
    below = np.searchsorted(neg, pos, side="left") if with_below else None
    return ScoreOrder(pos, neg, below)


@pytest.mark.parametrize("with_below", [True, False])
def test_merged_quantiles_equal_np_quantile_of_the_rows(with_below: bool) -> None:
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(2, 1500)) if trial % 2 else int(rng.integers(2, 8))
        # ties within and across the classes, or (nearly) distinct scores
        ties = trial % 3 == 0
        scores = rng.integers(1, 5, size=n) / 4.0 if ties else rng.random(n) + 1e-9
        positive = rng.random(n) < rng.random()
        positive[0], positive[1] = True, False  # both classes present
        for count in (101, 1001, 2):
            found = merged_quantiles(_order(scores, positive, with_below=with_below), count)
            assert found is not None
            assert found.tobytes() == _reference(scores, count).tobytes(), trial


@pytest.mark.parametrize(
    "scores,positive",
    [
        ([0.0, 0.5], [True, False]),  # a zero in range: the rows decide
        ([-0.25, 0.5], [False, True]),
        ([np.nan, 0.5], [True, False]),
        ([0.2, 0.5], [True, True]),  # one class only
    ],
)
def test_merged_quantiles_declines(scores: list[float], positive: list[bool]) -> None:
    values, mask = np.array(scores), np.array(positive)
    assert merged_quantiles(_order(values, mask, with_below=True), 101) is None
    assert default_thresholds(values, _order(values, mask, with_below=True)).tobytes() == (
        np.unique(_reference(values, 101)).tobytes()
    )
