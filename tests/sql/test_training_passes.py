"""The faster training passes give scikit-learn's results: the KMEANS Lloyd loop, its cluster
sums, Davies-Bouldin, ROC AUC, regression metrics, PCA reconstruction errors, the linear
trainers' single scoring pass and FeaturePreprocessor.fit on threads."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.decomposition import PCA

import shipyard.registry.preprocessing as preprocessing
from shipyard.errors import InvalidArgument
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql.clustering import _cluster_sums, _davies_bouldin, _lloyd
from shipyard.sql.decomposition import _reconstruction_errors
from shipyard.sql.evaluation import _binary_auc, _regression, evaluate
from shipyard.sql.modeltypes import MODEL_TYPES
from shipyard.sql.training import split_rows


def _blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[: n // 3] += 3.0
    x[n // 3 : n // 2] -= 2.0
    return x


def _options(**changes: Any) -> SimpleNamespace:
    return SimpleNamespace(
        **{"max_iterations": 20, "early_stop": False, "min_rel_progress": 0.01, **changes}
    )


def _quiet(fraction: float, message: str) -> None:
    pass


def test_lloyd_loop_is_scikit_learns_clustering_and_per_iteration_losses() -> None:
    x = _blobs(3000)
    init, _ = kmeans_plusplus(x, 5, random_state=7)
    model, rows = _lloyd(x, init, _options(max_iterations=8), _quiet)
    direct = KMeans(5, init=init, n_init=1, max_iter=len(rows), tol=0.0).fit(x)
    np.testing.assert_allclose(model.cluster_centers_, direct.cluster_centers_, rtol=1e-12)
    assert np.array_equal(model.labels_, direct.labels_)
    assert np.array_equal(model.predict(x), direct.predict(x))
    # each iteration's loss: the mean squared distance to that iteration's centroids, as one
    # KMeans(max_iter=1) fit per iteration reports it
    centers = init
    for row in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step = KMeans(5, init=centers, n_init=1, max_iter=1, tol=0.0).fit(x)
        assert row["loss"] == pytest.approx(step.inertia_ / len(x), rel=1e-12)
        centers = step.cluster_centers_


def test_lloyd_stops_when_the_centroids_stop_moving_and_on_early_stop() -> None:
    x = _blobs(600, seed=1)
    init, _ = kmeans_plusplus(x, 3, random_state=1)
    _, converged = _lloyd(x, init, _options(max_iterations=100), _quiet)
    assert len(converged) < 100
    assert converged[-1]["loss"] == converged[-2]["loss"]  # the last step moved nothing
    _, stopped = _lloyd(x, init, _options(early_stop=True, min_rel_progress=0.5), _quiet)
    assert len(stopped) == 2  # the second iteration improves by less than 50 %


def test_cluster_sums_equal_row_by_row_sums_also_after_a_relocation() -> None:
    x = _blobs(2000, seed=2)
    # a centroid far from every row: the Lloyd step relocates a row into its empty cluster
    init = np.vstack([x[:3], np.full((1, x.shape[1]), 1e3)])
    model, rows = _lloyd(x, init, _options(max_iterations=4), _quiet)
    for row in rows:
        info = row["cluster_info"]
        total = sum(c["cluster_size"] * (c["cluster_radius"] or 0.0) ** 2 for c in info)
        assert total / len(x) == pytest.approx(row["loss"], rel=1e-9)
    centers = model.cluster_centers_
    labels = model.labels_
    exact = np.bincount(labels, weights=((x - centers[labels]) ** 2).sum(axis=1), minlength=4)
    sizes, sums = _cluster_sums(
        x, np.einsum("ij,ij->i", x, x), labels, centers, centers, np.zeros(4)
    )  # counts that do not match the labels: the row-by-row path
    assert sizes.tolist() == np.bincount(labels, minlength=4).tolist()
    np.testing.assert_allclose(sums, exact, rtol=1e-12)


def test_davies_bouldin_equals_scikit_learns() -> None:
    rng = np.random.default_rng(3)
    for k in (2, 3, 7):
        x = rng.normal(size=(500, 4)) * 5
        labels = rng.integers(0, k, 500)
        labels[labels == 1] = 0  # a cluster without rows is left out, as scikit-learn does
        if len(np.unique(labels)) < 2:
            continue
        assert _davies_bouldin(x, labels, k) == pytest.approx(
            skm.davies_bouldin_score(x, labels), rel=1e-12
        )


def test_roc_auc_equals_scikit_learns_with_ties() -> None:
    rng = np.random.default_rng(4)
    for trial in range(20):
        y = rng.integers(0, 2, 400)
        scores = rng.random(400)
        if trial % 2:
            scores = np.round(scores, 1)  # many ties
        assert _binary_auc(y == 1, scores) == pytest.approx(skm.roc_auc_score(y, scores), rel=1e-13)
    probs = rng.dirichlet([1, 1, 1], 300)
    y3 = rng.integers(0, 3, 300)
    got = evaluate("multiclass_classification", y3, None, probs, ["a", "b", "c"])["roc_auc"]
    want = np.mean([skm.roc_auc_score(y3 == k, probs[:, k]) for k in range(3)])
    assert got == pytest.approx(want, rel=1e-13)


def test_regression_metrics_equal_scikit_learns_constant_label_included() -> None:
    rng = np.random.default_rng(5)
    y = rng.random(1000) * 10
    pred = y + rng.normal(size=1000)
    got = _regression(y, np.abs(pred))
    assert got["mean_squared_log_error"] == pytest.approx(
        skm.mean_squared_log_error(y, np.abs(pred)), rel=1e-12
    )
    got = _regression(y, pred)
    assert got["mean_squared_log_error"] is None  # a negative prediction
    assert got["r2_score"] == pytest.approx(skm.r2_score(y, pred), rel=1e-12)
    assert got["explained_variance"] == pytest.approx(
        skm.explained_variance_score(y, pred), rel=1e-12
    )
    assert got["median_absolute_error"] == skm.median_absolute_error(y, pred)
    constant = np.full(5, 2.0)
    for p in (constant, constant + 1.0):  # scikit-learn's force_finite values: 1.0, then 0.0
        m = _regression(constant, p)
        assert m["r2_score"] == skm.r2_score(constant, p)
        assert m["explained_variance"] == skm.explained_variance_score(constant, p)


def test_pca_reconstruction_errors_are_scikit_learns_bit_for_bit() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(800, 7)) @ rng.normal(size=(7, 7))
    model = PCA(3).fit(x)
    want = np.mean((x - model.inverse_transform(model.transform(x))) ** 2, axis=1)
    assert np.array_equal(_reconstruction_errors(model, x), want)


@pytest.mark.parametrize(
    ("model_type", "label", "task"),
    [("LINEAR_REG", "y", "regression"), ("LOGISTIC_REG", "c", "binary_classification")],
)
@pytest.mark.parametrize("split", ["NO_SPLIT", "RANDOM"])
def test_linear_trainers_metrics_are_ml_predicts_scores(
    model_type: str, label: str, task: str, split: str
) -> None:
    """One scoring pass gives the loss and the metrics: the metrics are those of ML.PREDICT's
    scores on the metric rows (the evaluation split, else the training rows)."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(1200, 3))
    y = x @ [1.0, -2.0, 0.5] + rng.normal(size=1200)
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "d": x[:, 2], label: y})
    if label == "c":
        table = table.set_column(3, "c", pa.array(np.where(y > 0, "yes", "no")))
    options = {
        "model_type": model_type,
        "input_label_cols": [label],
        "data_split_method": split,
        **({"data_split_eval_fraction": 0.25} if split == "RANDOM" else {}),
    }
    trained = MODEL_TYPES[model_type].train(table, options)
    predictor = trained.predictor()
    assert isinstance(predictor, Predictor)
    _, eval_idx, _ = split_rows(table, MODEL_TYPES[model_type].parse_options(options))
    rows = table if eval_idx is None else table.take(pa.array(eval_idx))
    matrix = predictor.preprocessor.transform(rows, dtype=np.float64)
    codes, probabilities = predictor.predict_raw(matrix)
    truth = rows.column(label).to_numpy(zero_copy_only=False)
    if trained.label_info is not None:
        truth = trained.label_info.encode(rows.column(label))
    classes = trained.label_info.values() if trained.label_info else None
    assert trained.eval_metrics == evaluate(task, truth, codes, probabilities, classes)


def test_preprocessor_fit_on_threads_equals_the_sequential_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(9)
    table = pa.table(
        {
            "a": rng.normal(size=3000),
            "b": pa.array(np.where(rng.random(3000) < 0.1, None, rng.normal(size=3000))),
            "c": pa.array(rng.choice(["x", "y", "z"], 3000)),
            "n": rng.integers(0, 9, 3000),
        }
    )
    sequential = FeaturePreprocessor.fit(table, table.column_names, standardize=True)
    monkeypatch.setattr(preprocessing, "_PARALLEL_FIT_VALUES", 1)
    monkeypatch.setattr(preprocessing.os, "cpu_count", lambda: 4)
    threaded = FeaturePreprocessor.fit(table, table.column_names, standardize=True)
    assert threaded.to_dict() == sequential.to_dict()
    assert np.array_equal(threaded.transform(table), sequential.transform(table))
    # the first bad column (in column order) is the error reported
    bad = table.append_column("empty1", pa.nulls(3000, pa.float64())).append_column(
        "empty2", pa.nulls(3000, pa.float64())
    )
    with pytest.raises(InvalidArgument, match="'empty1' is NULL in every training row"):
        FeaturePreprocessor.fit(bad, bad.column_names, standardize=True)
