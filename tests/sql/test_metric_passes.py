"""The shared passes of CREATE MODEL's metrics give the values of the separate ones, bit for
bit: the stored ROC curve reuses roc_auc's sorts, KMEANS' metrics and anomaly statistics share
one assignment, the scaled minimum is the row minimum, the regression metrics work in scratch
vectors without touching their inputs, and the single-class check is np.unique's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound
from shipyard.sql.clustering import (
    _assignments,
    _scaled_minimum,
    anomaly_statistics,
    kmeans_metrics,
)
from shipyard.sql.evaluation import ScoreOrder, evaluate
from shipyard.sql.inspection import default_thresholds, evaluation_curves, roc_curve
from shipyard.sql.training import single_class


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: every float to its last bit (repr), NaN/None kept apart."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _binary(n: int, seed: int, *, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    score = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + truth)))
    if ties:
        score = np.round(score, 2)
    return truth, np.column_stack([1.0 - score, score])


@pytest.mark.parametrize(("n", "ties"), [(1, False), (7, True), (2000, False), (5001, True)])
def test_stored_roc_curve_reusing_roc_auc_sorts_is_the_curve_computed_alone(
    n: int, ties: bool
) -> None:
    truth, proba = _binary(n, seed=n, ties=ties)
    codes = (proba[:, 1] > 0.5).astype(np.int64)
    order = ScoreOrder()
    shared = evaluate("binary_classification", truth, codes, proba, [0, 1], order=order)
    alone = evaluate("binary_classification", truth, codes, proba, [0, 1])
    assert _same(shared, alone)
    if truth.min() != truth.max():  # roc_auc sorted the scores: the order holds them
        assert order.positives is not None and order.negatives is not None
        assert np.array_equal(order.positives, np.sort(proba[truth == 1, 1]))
        assert np.array_equal(order.negatives, np.sort(proba[truth == 0, 1]))
    curves = evaluation_curves("binary_classification", truth, codes, proba, order)
    assert _same(curves, evaluation_curves("binary_classification", truth, codes, proba))


def test_thresholds_from_the_sorted_classes_are_the_percentiles_of_the_rows() -> None:
    truth, proba = _binary(3001, seed=3)
    positive = proba[:, 1]
    order = ScoreOrder(np.sort(positive[truth == 1]), np.sort(positive[truth == 0]))
    assert np.array_equal(default_thresholds(positive, order), default_thresholds(positive))
    curve = roc_curve(truth, positive, default_thresholds(positive), order)
    assert _same(curve, roc_curve(truth, positive, default_thresholds(positive)))
    # zeros of both signs sort as equals: the percentiles then come from the rows themselves
    signed = np.array([0.0, -0.0, 0.5, 0.25, -0.0, 1.0])
    labels = np.array([1, 0, 1, 0, 1, 0])
    zeros = ScoreOrder(np.sort(signed[labels == 1]), np.sort(signed[labels == 0]))
    got = default_thresholds(signed, zeros)
    want = default_thresholds(signed)
    assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))


def test_multiclass_log_loss_and_metrics_unchanged_by_an_order() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4000, 4)) * 3
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba[:10] = np.eye(4)[rng.integers(0, 4, 10)]  # certain rows: clipped at 1e-15
    truth = rng.integers(0, 4, 4000)
    codes = np.argmax(proba, axis=1)
    order = ScoreOrder()
    got = evaluate("multiclass_classification", truth, codes, proba, [0, 1, 2, 3], order=order)
    assert order.positives is None  # only binary models keep sorted scores
    assert got["log_loss"] is not None and got["log_loss"] > 0
    p = np.clip(proba, 1e-15, 1.0)
    p = np.clip(p / p.sum(axis=1, keepdims=True), 1e-15, 1.0 - 1e-15)
    own = truth[:, None] == np.arange(4)
    expected = float(np.mean(-np.mean(np.where(own, np.log(p), np.log1p(-p)), axis=0)))
    assert got["log_loss"] == expected


def test_regression_metrics_leave_their_inputs_untouched() -> None:
    rng = np.random.default_rng(11)
    truth = np.abs(rng.normal(size=1001)) * 3
    predicted = truth + rng.normal(size=1001) * 0.1
    predicted = np.abs(predicted)
    before = (truth.copy(), predicted.copy())
    got = evaluate("regression", truth, predicted, None, None)
    assert np.array_equal(truth, before[0]) and np.array_equal(predicted, before[1])
    diff = before[0] - before[1]
    assert got["median_absolute_error"] == float(np.median(np.abs(diff)))
    assert got["mean_absolute_error"] == float(np.mean(np.abs(diff)))
    logs = np.log1p(before[0]) - np.log1p(before[1])
    assert got["mean_squared_log_error"] == float(np.mean(logs * logs))
    centred = before[0] - np.mean(before[0])
    residual = diff - np.mean(diff)
    total = float(np.sum(centred * centred))
    assert got["r2_score"] == 1.0 - float(np.sum(diff * diff)) / total
    assert got["explained_variance"] == 1.0 - float(np.sum(residual * residual)) / total


def test_scaled_minimum_is_the_row_minimum_of_the_scaled_matrix() -> None:
    rng = np.random.default_rng(2)
    distances = np.abs(rng.normal(size=(5000, 7))) + 1e-3
    scales = list(rng.uniform(0.5, 2.0, 7))
    want = np.min(distances / np.asarray(scales)[None, :], axis=1)
    assert np.array_equal(_scaled_minimum(distances, scales), want)
    # a zero (of either sign) or NaN in a row: the row minimum decides, as before
    distances[3, 2], distances[10, 0], distances[11, 5] = 0.0, -0.0, np.nan
    got = _scaled_minimum(distances, scales)
    want = np.min(distances / np.asarray(scales)[None, :], axis=1)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_kmeans_metrics_and_anomaly_statistics_share_one_assignment() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 5))
    x[:1000] += 4.0
    centers = np.stack([x[:1000].mean(axis=0), x[1000:].mean(axis=0), x[:10].mean(axis=0)])
    distances = np.sqrt(((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
    assigned = _assignments(distances)
    assert np.array_equal(assigned[0], np.argmin(distances, axis=1))
    assert _same(kmeans_metrics(x, distances, assigned), kmeans_metrics(x, distances))
    assert _same(anomaly_statistics(distances, assigned), anomaly_statistics(distances))


@pytest.mark.parametrize(
    ("codes", "single"),
    [([], True), ([1], True), ([0, 0, 0], True), ([0, 1], False), ([2, 2, 0, 2], False)],
)
def test_single_class_is_fewer_than_two_distinct_codes(codes: list[int], single: bool) -> None:
    y = np.asarray(codes, dtype=np.int64)
    assert single_class(y) is single
    assert single == (len(np.unique(y)) < 2)


def test_a_single_class_training_split_is_refused(tmp_path: Path) -> None:
    ws = sy.connect(tmp_path / "ws")
    try:
        ws.load_table(
            "m.one",
            [{"t": i, "x": float(i % 7), "label": 1 if i < 600 else 0} for i in range(602)],
        )
        with pytest.raises(InvalidArgument, match="single class"):
            ws.sql(
                "CREATE MODEL m.one_class OPTIONS(model_type='logistic_reg', "
                "data_split_method='seq', data_split_col='t', data_split_eval_fraction=0.01) "
                "AS SELECT t, x, label FROM m.one"
            )
        with pytest.raises(NotFound):
            ws.models.get("m.one_class")
    finally:
        ws.close()
