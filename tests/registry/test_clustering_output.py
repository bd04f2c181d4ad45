"""KMEANS' blocked distances and ML.PREDICT columns (shipyard.registry.clustering_output) give
the whole-matrix arithmetic's bits: the distances of ``x @ centers.T`` on the whole matrix, a
stable argsort's nearest centroids, ``np.argmin``'s assignment; and ML.PREDICT built from the
table's columns a block at a time equals the one from the model matrix. Edge cases: one row,
a one-row last block or input chunk, one cluster, ties, NaN, COSINE with all-zero rows and
centroids, a column-major matrix, NULL features, a categorical feature (no fused path)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shipyard.registry import clustering_output as co
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql.clustering import train_kmeans

_ONE_MORE = co.BLOCK_ROWS + 1  # the last block has one row


def _whole_matrix_distances(x: np.ndarray, centers: np.ndarray, cosine: bool) -> np.ndarray:
    """The distances as computed on the whole matrix before the blocks (the reference)."""
    if cosine:
        xn = np.linalg.norm(x, axis=1, keepdims=True)
        cn = np.linalg.norm(centers, axis=1, keepdims=True)
        sim = (x / np.where(xn == 0, 1, xn)) @ (centers / np.where(cn == 0, 1, cn)).T
        return np.sqrt(np.maximum(1.0 - sim, 0.0))  # type: ignore[no-any-return]
    sq = x @ centers.T
    sq *= 2.0
    np.subtract(np.einsum("ij,ij->i", x, x)[:, None], sq, out=sq)
    sq += np.einsum("ij,ij->i", centers, centers)[None, :]
    np.maximum(sq, 0.0, out=sq)
    return np.sqrt(sq, out=sq)  # type: ignore[no-any-return]


def _stable_nearest(distances: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(distances, axis=1, kind="stable")[:, :m]
    return order + 1, np.take_along_axis(distances, order, axis=1)


def _data(rows: int, k: int, seed: int, width: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width))
    centers = rng.standard_normal((k, width))
    if k > 2:
        centers[2] = centers[0]  # a duplicate centroid: every row has a tie
    if k > 3:
        centers[3] = 0.0  # COSINE: an all-zero centroid is at distance 1 from every row
    if rows > 4:
        x[1] = 0.0  # COSINE: an all-zero row too
        x[3] = centers[-1]  # a row on a centroid: distance 0
        x[4] = np.round(x[4])
    return x, centers


_SHAPES = [
    *itertools.product([0, 1, 2, 3, 7, 2000], [1, 2, 3, 5, 8, 16, 17]),
    *itertools.product([_ONE_MORE], [3, 8, 17]),  # the one-row last block: a few are enough
]


@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize(("rows", "k"), _SHAPES)
def test_blocked_distances_and_nearest_are_the_whole_matrix_bits(
    rows: int, k: int, cosine: bool
) -> None:
    x, centers = _data(rows, k, seed=rows * 31 + k)
    m = min(k, 5)
    want = _whole_matrix_distances(x, centers, cosine)
    want_ids, want_nearest = _stable_nearest(want, m)
    for matrix in (x, np.asfortranarray(x)):
        got = co.distances(matrix, centers, cosine)
        assert got.shape == (rows, k) and np.array_equal(got, want)
        ids, nearest = co.nearest_from_matrix(matrix, centers, cosine, m)
        assert ids.dtype == np.int64 and np.array_equal(ids, want_ids)
        assert np.array_equal(nearest, want_nearest)
        full, labels, low = co.distances_with_nearest(matrix, centers, cosine)
        assert np.array_equal(full, want)
        assert labels.dtype == np.intp and np.array_equal(labels, np.argmin(want, axis=1))
        assert np.array_equal(low, want[np.arange(rows), np.argmin(want, axis=1)])


def test_wide_rows_take_smaller_blocks_with_the_same_bits() -> None:
    width = 3000
    assert co.block_rows(width, 8) == 1024 and co.block_rows(20, 8) == co.BLOCK_ROWS
    x, centers = _data(2049, 6, seed=6, width=width)  # blocks of 1024, 1024 and 1 rows
    want = _whole_matrix_distances(x, centers, False)
    assert np.array_equal(co.distances(x, centers, False), want)
    ids, nearest = co.nearest_from_matrix(np.asfortranarray(x), centers, False, 5)
    want_ids, want_nearest = _stable_nearest(want, 5)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_nearest)


def test_given_row_norms_give_the_same_bits() -> None:
    x, centers = _data(_ONE_MORE, 8, seed=3)
    norms = np.einsum("ij,ij->i", x, x)
    assert np.array_equal(co.distances(x, centers, False, norms), co.distances(x, centers, False))
    with_norms = co.distances_with_nearest(x, centers, False, norms)
    for a, b in zip(with_norms, co.distances_with_nearest(x, centers, False), strict=True):
        assert np.array_equal(a, b)


def test_a_one_row_block_is_multiplied_as_the_whole_matrix_was() -> None:
    # BLAS' one-row product (gemv) rounds differently from the matrix product (gemm): the
    # one-row last block must not change its row's distances.
    x, centers = _data(_ONE_MORE, 8, seed=11, width=20)
    want = _whole_matrix_distances(x, centers, False)
    assert np.array_equal(co.distances(x, centers, False)[-1], want[-1])
    # a one-row input is the one-row product, as before
    one = x[-1:]
    assert np.array_equal(
        co.distances(one, centers, False), _whole_matrix_distances(one, centers, False)
    )


def test_nan_distances_rank_as_a_stable_argsort() -> None:
    rng = np.random.default_rng(5)
    d = np.round(rng.random((_ONE_MORE, 6)) * 4) / 4  # many ties
    d[::7, 2] = np.nan
    d[::11, 0] = np.inf
    ids, nearest = co.nearest_from_distances(d, 5)
    want_ids, want_nearest = _stable_nearest(d, 5)
    assert np.array_equal(ids, want_ids)
    assert np.array_equal(nearest, want_nearest, equal_nan=True)
    x, centers = _data(50, 4, seed=2)
    x[7, 1] = np.nan  # a NaN row: every distance NaN; argmin picks the first
    full, labels, low = co.distances_with_nearest(x, centers, False)
    want = _whole_matrix_distances(x, centers, False)
    assert np.array_equal(full, want, equal_nan=True)
    assert np.array_equal(labels, np.argmin(want, axis=1))
    assert np.array_equal(low, want[np.arange(50), labels], equal_nan=True)


@pytest.mark.parametrize("k", range(1, 17))
def test_the_sorting_network_sorts_the_first_m_values(k: int) -> None:
    for m in sorted({1, min(k, 5), k}):
        network = co.sorting_network(k, m)
        # 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input
        inputs = (np.arange(2**k)[:, None] >> np.arange(k)) & 1  # every 0/1 input, a row each
        values = list(inputs.T.copy())
        for i, j in network:
            values[i], values[j] = (
                np.minimum(values[i], values[j]),
                np.maximum(values[i], values[j]),
            )
        assert np.array_equal(np.array(values[:m]).T, np.sort(inputs, axis=1)[:, :m])


# -- ML.PREDICT from the table's columns --------------------------------------------------------


def _fit(table: pa.Table, distance: str, k: int = 4) -> Predictor:
    options = SimpleNamespace(
        max_iterations=4,
        early_stop=False,
        min_rel_progress=0.01,
        distance_type=distance,
        kmeans_init_col=None,
        standardize_features=True,
        num_clusters=k,
        kmeans_init_method="KMEANS++",
    )
    fit = train_kmeans(table, options, lambda fraction, message: None)
    return Predictor(
        "clustering", fit.model, "sklearn", fit.preprocessor, None, "", fit.predictor_config
    )


def _chunked(columns: dict[str, np.ndarray], cuts: list[int]) -> pa.Table:
    """A table whose batches end at ``cuts`` (a one-row batch among them)."""
    names = list(columns)
    batches = [
        pa.record_batch([pa.array(columns[n][a:b]) for n in names], names=names)
        for a, b in itertools.pairwise(cuts)
    ]
    return pa.Table.from_batches(batches)


@pytest.mark.parametrize("distance", ["EUCLIDEAN", "COSINE"])
def test_predict_from_the_columns_equals_the_matrix_path(distance: str) -> None:
    rows = 9000
    rng = np.random.default_rng(8)
    columns: dict[str, Any] = {f"f{i}": rng.standard_normal(rows) * (i + 1) for i in range(4)}
    columns["n"] = rng.integers(-5, 5, rows)  # an INT64 feature
    table = _chunked(columns, [0, 1, 2, 4097, rows - 1, rows])  # one-row blocks among them
    with_nulls = table.set_column(
        0, "f0", pa.array(np.where(np.arange(rows) % 9 == 0, None, columns["f0"]).tolist())
    )
    predictor = _fit(table.slice(0, 5000), distance)
    for data in (table, with_nulls):
        out = predictor.predict(data)  # from the columns (all numeric, many rows)
        matrix = predictor.preprocessor.transform(data, dtype=np.float64)
        assert predictor.preprocessor.numeric_blocks(data, rows=co.BLOCK_ROWS) is not None
        want = _whole_matrix_distances(
            matrix, predictor.model.cluster_centers_, distance == "COSINE"
        )
        want_ids, want_nearest = _stable_nearest(want, 4)
        assert out.column_names[:2] == ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE"]
        assert out.num_rows == rows
        assert np.array_equal(out["CENTROID_ID"].to_numpy(), want_ids[:, 0])
        nearest = out["NEAREST_CENTROIDS_DISTANCE"].combine_chunks()
        assert np.array_equal(nearest.offsets.to_numpy(), np.arange(0, 4 * rows + 1, 4))
        entries = nearest.flatten()
        assert np.array_equal(entries.field("CENTROID_ID").to_numpy(), want_ids.reshape(-1))
        assert np.array_equal(entries.field("DISTANCE").to_numpy(), want_nearest.reshape(-1))
        # the matrix path (what a small batch or a categorical feature takes) agrees
        from_matrix = predictor._clustering_columns(matrix=matrix)
        assert from_matrix[0].equals(out["CENTROID_ID"].combine_chunks())
        assert from_matrix[1].equals(nearest)
    # one row, and a few: the matrix path, the same values as those rows in the big batch
    big = predictor.predict(table)
    for n in (1, 3):
        small = predictor.predict(table.slice(4000, n))
        if n == 1:  # one row is BLAS' one-row product: equal to ~1 ulp, the same centroids
            assert small["CENTROID_ID"].equals(big["CENTROID_ID"].slice(4000, 1))
            continue
        assert small.slice(0, n).column(1).to_pylist() == big.slice(4000, n).column(1).to_pylist()


@pytest.mark.parametrize("distance", ["EUCLIDEAN", "COSINE"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_features_are_imputed_as_the_matrix_has_them(
    distance: str, bad: float
) -> None:
    rows = 6000
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal(rows), rng.standard_normal(rows)
    table = pa.table({"a": a, "b": b})
    predictor = _fit(table, distance, k=3)
    a = a.copy()
    a[5500] = bad  # in the second block of rows
    dirty = _chunked({"a": a, "b": b}, [0, 3000, rows])
    out = predictor.predict(dirty)
    matrix = predictor.preprocessor.transform(dirty, dtype=np.float64)
    assert np.isfinite(matrix).all()  # imputed with the training mean
    want = _whole_matrix_distances(matrix, predictor.model.cluster_centers_, distance == "COSINE")
    want_ids, want_nearest = _stable_nearest(want, 3)
    assert np.array_equal(out["CENTROID_ID"].to_numpy(), want_ids[:, 0])
    entries = out["NEAREST_CENTROIDS_DISTANCE"].combine_chunks().flatten()
    assert np.array_equal(entries.field("DISTANCE").to_numpy(), want_nearest.reshape(-1))


def test_a_categorical_feature_takes_the_matrix_path() -> None:
    rows = 5000
    rng = np.random.default_rng(9)
    table = pa.table(
        {
            "a": rng.standard_normal(rows),
            "b": rng.standard_normal(rows),
            "c": pa.array(rng.choice(["x", "y", "z"], rows)),
        }
    )
    predictor = _fit(table, "EUCLIDEAN", k=3)
    assert predictor.preprocessor.numeric_blocks(table, rows=co.BLOCK_ROWS) is None
    out = predictor.predict(table)
    matrix = predictor.preprocessor.transform(table, dtype=np.float64)
    want = _whole_matrix_distances(matrix, predictor.model.cluster_centers_, False)
    want_ids, want_nearest = _stable_nearest(want, 3)
    assert np.array_equal(out["CENTROID_ID"].to_numpy(), want_ids[:, 0])
    entries = out["NEAREST_CENTROIDS_DISTANCE"].combine_chunks().flatten()
    assert np.array_equal(entries.field("DISTANCE").to_numpy(), want_nearest.reshape(-1))


def test_zero_rows_predict_empty_columns() -> None:
    table = pa.table({"a": np.arange(50.0), "b": np.arange(50.0) % 7})
    predictor = _fit(table, "EUCLIDEAN", k=2)
    out = predictor.predict(table.slice(0, 0))
    assert out.num_rows == 0
    assert out.schema.field("NEAREST_CENTROIDS_DISTANCE").type == pa.list_(
        pa.struct([("CENTROID_ID", pa.int64()), ("DISTANCE", pa.float64())])
    )


def test_training_assignments_are_argmins() -> None:
    # train_kmeans takes each row's nearest centroid from the blocked distances: the metrics
    # and anomaly statistics are those of np.argmin on the distance matrix
    from shipyard.sql.clustering import anomaly_statistics

    rng = np.random.default_rng(12)
    x = np.concatenate([rng.standard_normal((3000, 3)) + s for s in (0.0, 4.0, 8.0)])
    table = pa.table({f"f{i}": x[:, i] for i in range(3)})
    predictor = _fit(table, "EUCLIDEAN", k=3)
    matrix = predictor.preprocessor.transform(table, dtype=np.float64)
    d = _whole_matrix_distances(matrix, predictor.model.cluster_centers_, False)
    labels = np.argmin(d, axis=1)
    stats = anomaly_statistics(d, (labels, d[np.arange(len(d)), labels]))
    assert predictor.config["distance_scales"] == stats["distance_scales"]
    assert predictor.config["anomaly_quantiles"] == stats["anomaly_quantiles"]


def test_preprocessor_blocks_match_the_transform() -> None:
    # nearest_from_table writes each block as FeaturePreprocessor.transform writes the matrix
    rng = np.random.default_rng(4)
    rows = 9000
    table = _chunked({"a": rng.standard_normal(rows), "b": rng.random(rows)}, [0, 1, 5000, rows])
    pre = FeaturePreprocessor.fit(table, ["a", "b"], standardize=True)
    centers = rng.standard_normal((5, 2))
    ids, nearest = co.nearest_from_table(pre, table, centers, False, 5)  # type: ignore[misc]
    want = _stable_nearest(
        _whole_matrix_distances(pre.transform(table, dtype=np.float64), centers, False), 5
    )
    assert np.array_equal(ids, want[0]) and np.array_equal(nearest, want[1])
