"""KMEANS training's shared passes give the separate passes' results: each iteration's loss from
its cluster sums (the direct pass when those are ill-conditioned), relocation detected without
counting the labels, Davies-Bouldin from the last Lloyd step's means, the row norms shared by
k-means++, the distances and Davies-Bouldin, the blocked scaled minimum."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.cluster import kmeans_plusplus
from sklearn.cluster._k_means_common import _inertia_dense
from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
from sklearn.metrics import davies_bouldin_score

from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql import clustering
from shipyard.sql.clustering import (
    _BLOCK_ROWS,
    _cluster_sums,
    _davies_bouldin,
    _lloyd_steps,
    _scaled_minimum,
    train_kmeans,
)


def _options(**changes: Any) -> SimpleNamespace:
    return SimpleNamespace(
        **{"max_iterations": 6, "early_stop": False, "min_rel_progress": 0.01, **changes}
    )


def _quiet(fraction: float, message: str) -> None:
    pass


def _groups(n: int, spread: float, seed: int) -> np.ndarray:
    """Rows around 4 centres ``spread`` apart (in units of the rows' own noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 5)) * spread
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, 5))


def _direct_losses(x: np.ndarray, init: np.ndarray, iterations: int) -> list[float]:
    """Each iteration's loss from an exact pass over the rows (math.fsum of their squared
    distances to the centroids they are assigned to)."""
    mean = x.mean(axis=0)
    xc = np.ascontiguousarray(x - mean)
    centers, new = np.ascontiguousarray(init - mean), np.zeros_like(init)
    counts, shift = np.zeros(len(init)), np.zeros(len(init))
    labels, weights = np.full(len(x), -1, dtype=np.int32), np.ones(len(x))
    lloyd_iter_chunked_dense(xc, weights, centers, new, counts, labels, shift, 1)
    losses = []
    for _ in range(iterations):
        centers, new = new, centers
        lloyd_iter_chunked_dense(xc, weights, centers, new, counts, labels, shift, 1)
        offset = xc - centers[labels]
        losses.append(math.fsum(np.einsum("ij,ij->i", offset, offset).tolist()) / len(x))
    return losses


@pytest.mark.parametrize("spread", [0.0, 1.0, 2.0])
def test_loss_from_the_cluster_sums_is_exact_to_float_rounding(spread: float) -> None:
    x = _groups(4000, spread, seed=1)
    init, _ = kmeans_plusplus(x, 4, random_state=3)
    _, rows, _ = _lloyd_steps(x, init, _options(), _quiet)
    exact = _direct_losses(x, init, len(rows))
    for row, want in zip(rows, exact, strict=True):
        assert row["loss"] == pytest.approx(want, rel=5e-14)


def test_ill_conditioned_sums_give_way_to_the_direct_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # groups 50 noise units apart: the rows' squared norms are far above the loss
    x = _groups(3000, 50.0, seed=2)
    init, _ = kmeans_plusplus(x, 4, random_state=1)
    calls: list[int] = []

    def counted(*args: Any) -> float:
        calls.append(1)
        return float(_inertia_dense(*args))

    import sklearn.cluster._k_means_common as common

    monkeypatch.setattr(common, "_inertia_dense", counted)
    _, rows, _ = _lloyd_steps(x, init, _options(max_iterations=3), _quiet)
    assert len(calls) == len(rows) + 1  # every iteration, and the model's inertia_
    exact = _direct_losses(x, init, len(rows))
    for row, want in zip(rows, exact, strict=True):
        assert row["loss"] == pytest.approx(want, rel=1e-14)
    calls.clear()
    _lloyd_steps(_groups(3000, 1.0, seed=2), init, _options(max_iterations=3), _quiet)
    assert len(calls) == 1  # well conditioned: only the model's inertia_


def test_a_relocation_is_found_without_counting_the_labels() -> None:
    rng = np.random.default_rng(5)
    x = np.ascontiguousarray(rng.normal(size=(500, 3)))
    centers = np.vstack([x[:2], np.full((1, 3), 1e3)])  # no row is nearest the third
    new, counts, shift = np.zeros_like(centers), np.zeros(3), np.zeros(3)
    labels = np.full(500, -1, dtype=np.int32)
    lloyd_iter_chunked_dense(x, np.ones(500), centers, new, counts, labels, shift, 1)
    assert np.bincount(labels, minlength=3)[2] == 0 and counts[2] == 1.0  # relocated
    sizes, sums = _cluster_sums(x, np.einsum("ij,ij->i", x, x), labels, centers, new, counts)
    assert sizes.tolist() == np.bincount(labels, minlength=3).tolist()
    offset = x - centers[labels]
    want = np.bincount(labels, weights=np.einsum("ij,ij->i", offset, offset), minlength=3)
    np.testing.assert_allclose(sums, want, rtol=1e-12)


def test_a_cluster_of_zero_norm_rows_takes_the_row_by_row_sums() -> None:
    x = np.vstack([np.zeros((4, 2)), np.ones((4, 2)) * 3.0])
    labels = np.repeat(np.array([0, 1], dtype=np.int32), 4)
    centers = np.array([[0.5, 0.0], [3.0, 3.0]])
    means, counts = np.array([[0.0, 0.0], [3.0, 3.0]]), np.array([4.0, 4.0])
    sizes, sums = _cluster_sums(x, np.einsum("ij,ij->i", x, x), labels, centers, means, counts)
    assert sizes.tolist() == [4, 4] and sums.tolist() == [1.0, 0.0]


def test_the_last_steps_means_give_scikit_learns_davies_bouldin() -> None:
    x = _groups(3000, 3.0, seed=7)
    init, _ = kmeans_plusplus(x, 4, random_state=2)
    model, _, update = _lloyd_steps(x, init, _options(), _quiet)
    assert update is not None
    means, counts = update
    labels = model.labels_
    assert counts.tolist() == np.bincount(labels, minlength=4).tolist()
    for c in range(4):
        np.testing.assert_allclose(means[c], x[labels == c].mean(axis=0), rtol=1e-12, atol=1e-13)
    norms = np.einsum("ij,ij->i", x, x)
    shared = _davies_bouldin(x, labels, 4, cluster_means=means, norms=norms)
    alone = _davies_bouldin(x, labels, 4)
    assert shared == pytest.approx(alone, rel=1e-13)
    assert shared == pytest.approx(davies_bouldin_score(x, labels), rel=1e-12)


def test_an_empty_cluster_left_empty_keeps_its_size_zero() -> None:
    # two distinct rows, three centroids: one centroid ties and loses; every row sits on its
    # centroid, so scikit-learn does not relocate (nothing is far) and the cluster stays empty
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 150, axis=0)
    init = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    _, rows, update = _lloyd_steps(x, init, _options(max_iterations=2), _quiet)
    assert update is not None and update[1].tolist() == [150.0, 0.0, 150.0]
    for row in rows:
        assert [c["cluster_size"] for c in row["cluster_info"]] == [150, 0, 150]
        assert [c["cluster_radius"] for c in row["cluster_info"]] == [0.0, None, 0.0]
        assert row["loss"] == 0.0


def _kmeans_fit(table: pa.Table, **changes: Any) -> Any:
    options = SimpleNamespace(
        **{
            "kmeans_init_col": None,
            "standardize_features": True,
            "distance_type": "EUCLIDEAN",
            "num_clusters": 4,
            "kmeans_init_method": "KMEANS++",
            "max_iterations": 8,
            "early_stop": False,
            "min_rel_progress": 0.01,
            **changes,
        }
    )
    return train_kmeans(table, options, _quiet)


@pytest.mark.parametrize("distance", ["EUCLIDEAN", "COSINE"])
def test_training_metrics_equal_the_metrics_of_the_stored_model(
    distance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _groups(5000, 3.0, seed=11)
    table = pa.table({f"f{i}": x[:, i] for i in range(x.shape[1])})
    shared: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> float:
        shared.append(kwargs.get("cluster_means") is not None)
        return _davies_bouldin(*args, **kwargs)

    monkeypatch.setattr(clustering, "_davies_bouldin", spy)
    fit = _kmeans_fit(table, distance_type=distance)
    # EUCLIDEAN: Lloyd's assignment is the distances' one here, so its means are shared;
    # COSINE clusters the normalised rows: the assignments differ, the means are not used
    assert shared[0] is (distance == "EUCLIDEAN")
    predictor = Predictor(
        "clustering", fit.model, "sklearn", fit.preprocessor, None, "", fit.predictor_config
    )
    again = clustering.evaluate_kmeans_rows(predictor, table)  # the separate passes
    assert again["mean_squared_distance"] == fit.metrics["mean_squared_distance"]
    assert again["davies_bouldin_index"] == pytest.approx(
        fit.metrics["davies_bouldin_index"], rel=1e-13
    )


def test_kmeans_plusplus_with_shared_row_norms_picks_the_same_centroids() -> None:
    x = _groups(2000, 2.0, seed=4)
    table = pa.table({f"f{i}": x[:, i] for i in range(x.shape[1])})
    pre = FeaturePreprocessor.fit(table, table.column_names, standardize=True)
    matrix = pre.transform(table, dtype=np.float64)
    alone, _ = kmeans_plusplus(matrix, 4, random_state=clustering._SEED)
    fit = _kmeans_fit(table, max_iterations=1)
    model = fit.model
    assert np.array_equal(model.init, alone)  # the initial centroids KMeans records


def test_centroid_distances_with_given_norms_are_the_same_bits() -> None:
    x = _groups(1000, 2.0, seed=8)
    table = pa.table({f"f{i}": x[:, i] for i in range(x.shape[1])})
    fit = _kmeans_fit(table)
    predictor = Predictor(
        "clustering", fit.model, "sklearn", fit.preprocessor, None, "", fit.predictor_config
    )
    matrix = fit.preprocessor.transform(table, dtype=np.float64)
    given = predictor.centroid_distances(matrix, np.einsum("ij,ij->i", matrix, matrix))
    assert np.array_equal(given, predictor.centroid_distances(matrix))


@pytest.mark.parametrize("rows", [1, 7, _BLOCK_ROWS, 2 * _BLOCK_ROWS + 5])
def test_blocked_scaled_minimum_is_the_row_minimum(rows: int) -> None:
    rng = np.random.default_rng(rows)
    distances = rng.random((rows, 6)) * 3 + 0.01
    distances[::5, 2] = distances[::5, 4]  # ties
    scales = [0.5, 1.0, 1.5, 2.0, 0.25, 3.0]
    want = np.min(distances / np.asarray(scales)[None, :], axis=1)
    got = _scaled_minimum(distances, scales)
    assert np.array_equal(got, want)
    distances[0, 3] = 0.0  # a zero: the row minimum of the scaled matrix decides
    assert np.array_equal(
        _scaled_minimum(distances, scales), np.min(distances / np.asarray(scales), axis=1)
    )


def test_many_rows_get_the_distances_of_the_default_blas_threads() -> None:
    from shipyard.registry.predictor import _FEW_ROWS

    x = _groups(_FEW_ROWS * 3, 2.0, seed=9)
    table = pa.table({f"f{i}": x[:, i] for i in range(x.shape[1])})
    fit = _kmeans_fit(table)
    predictor = Predictor(
        "clustering", fit.model, "sklearn", fit.preprocessor, None, "", fit.predictor_config
    )
    matrix = fit.preprocessor.transform(table, dtype=np.float64)
    one_thread = predictor.centroid_distances(matrix)  # one BLAS thread from _FEW_ROWS rows
    assert np.array_equal(one_thread, predictor._centroid_distances(matrix, None))
