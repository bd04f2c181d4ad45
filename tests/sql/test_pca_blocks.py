"""PCA a block of rows at a time: the training rows' reconstruction errors and ML.PREDICT's
projection multiply blocks of ``projection.block_rows`` rows, those of exactly that many rows
transposed (``components @ rows.T``). Every block path gives the whole-matrix arithmetic's bits
(scikit-learn's), at block boundaries, on ragged last blocks, with one component and with NaN."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA

import shipyard as sy
from shipyard.registry import projection
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql import decomposition
from shipyard.sql.decomposition import _reconstruction_errors
from shipyard.sql.training import one_blas_thread


def _rows(n: int, width: int, seed: int) -> np.ndarray:
    """Correlated, column-major rows with features of different scales and offsets."""
    rng = np.random.default_rng(seed)
    mixed = rng.normal(size=(n, width)) @ rng.normal(size=(width, width))
    return np.asfortranarray(mixed * rng.exponential(3.0, size=width) + rng.normal(size=width))


def _whole_matrix_errors(model: PCA, x: np.ndarray) -> np.ndarray:
    """scikit-learn's reconstruction on the whole matrix (one BLAS thread, as the fast path)."""
    with one_blas_thread():
        restored = model.inverse_transform(model.transform(x))
    return np.mean((x - restored) ** 2, axis=1)  # type: ignore[no-any-return]


# -- the transposed product of a full block -------------------------------------------------


@pytest.mark.parametrize(
    ("width", "components"),
    [(2, 2), (3, 2), (8, 3), (9, 4), (17, 5), (20, 5), (33, 7), (64, 20), (65, 2), (128, 64)],
)
def test_a_full_block_projected_transposed_has_the_whole_matrix_bits(
    width: int, components: int
) -> None:
    size = projection.block_rows(width, components)
    x = _rows(3 * size + 37, width, seed=width)
    rng = np.random.default_rng(components)
    basis = np.linalg.qr(rng.normal(size=(width, width)))[0][:components].copy()
    shift = (rng.normal(size=(1, width)) @ basis.T).reshape(-1, 1)
    with one_blas_thread():
        whole = x @ basis.T - shift.T  # scikit-learn's transform
        restored = whole @ basis  # and its inverse_transform's product
        bounds = projection.block_bounds(len(x), width, components)
        assert bounds is not None and bounds[1] == size and len(bounds) == 4
        scratch = np.empty((2 * size, components))
        buffer = np.empty((2 * size, width), order="F")  # ML.PREDICT's block buffer
        for lo, hi in itertools.pairwise(bounds):
            full = hi - lo == size
            out = np.empty((components, hi - lo))
            for rows in (x[lo:hi], np.copyto(buffer[: hi - lo], x[lo:hi]) or buffer[: hi - lo]):
                projection.centred_projection(rows, basis, shift, out, scratch, full=full)
                assert np.array_equal(out.T, whole[lo:hi]), (lo, hi)
            if full:
                assert np.array_equal((basis.T @ out).T, restored[lo:hi]), (lo, hi)
            else:  # the ragged last block: the row-major products, from the transposed view
                assert np.array_equal(out.T @ basis, restored[lo:hi])


def test_block_bounds() -> None:
    size = projection.block_rows(20, 5)
    assert size == 10048
    assert projection.block_bounds(2 * size - 1, 20, 5) is None  # fewer rows than two blocks
    assert projection.block_bounds(2 * size, 20, 5) == [0, size, 2 * size]
    assert projection.block_bounds(4 * size - 1, 20, 5) == [0, size, 2 * size, 4 * size - 1]
    assert projection.block_bounds(10**6, 20, projection.MAX_COMPONENTS + 1) is None
    assert projection.block_bounds(10**6, projection.MAX_FEATURES + 1, 5) is None


# -- the training rows' reconstruction errors ------------------------------------------------


@pytest.mark.parametrize(
    ("width", "components", "blocks", "extra"),
    [
        (20, 5, 2, 0),  # two full blocks, no ragged one
        (20, 5, 2, 1),  # a last block of one row more
        (20, 5, 3, -1),  # the last block nearly two blocks long
        (20, 5, 4, 4001),
        (9, 2, 2, 13),
        (20, 20, 2, 5),  # every component: the errors are rounding noise
        (64, 20, 3, 39),
        (128, 64, 2, 63),
    ],
)
def test_blocked_errors_are_scikit_learns(
    width: int, components: int, blocks: int, extra: int
) -> None:
    n = blocks * projection.block_rows(width, components) + extra
    x = _rows(n, width, seed=n)
    model = PCA(components).fit(x[:5000])
    with one_blas_thread():
        assert decomposition._blocked_errors(model, x) is not None  # the block path applies
    got = _reconstruction_errors(model, x)
    assert np.array_equal(got, _whole_matrix_errors(model, x))


@pytest.mark.parametrize("solver", ["full", "randomized", "arpack", "covariance_eigh"])
def test_every_solvers_components_give_the_same_bits(solver: str) -> None:
    """The solvers leave ``components_`` in different layouts (column-major, a strided slice,
    negative strides): the block paths' products keep the whole matrix's bits with each."""
    n = 2 * projection.block_rows(20, 5) + 333
    x = _rows(n, 20, seed=8)
    model = PCA(5, svd_solver=solver, random_state=0).fit(x[:5000])
    assert np.array_equal(_reconstruction_errors(model, x), _whole_matrix_errors(model, x))
    predictor = _fitted(20, 5)
    predictor.model = model
    table = pa.table({f"x{j}": x[:, j] for j in range(20)})
    want = predictor.principal_components(predictor.matrix(table))
    with one_blas_thread():
        got = projection.project_table(model, predictor.preprocessor, table)
    assert got is not None and np.array_equal(got, want)


def test_blocked_errors_decline_one_component_and_few_rows() -> None:
    x = _rows(2 * projection.block_rows(20, 5), 20, seed=1)
    one = PCA(1).fit(x[:3000])
    five = PCA(5).fit(x[:3000])
    assert decomposition._blocked_errors(one, x) is None
    assert decomposition._blocked_errors(five, x[:-1]) is None
    for model, rows in ((one, x), (five, np.asfortranarray(x[:-1]))):
        want = _whole_matrix_errors(model, rows)
        assert np.array_equal(_reconstruction_errors(model, rows), want)


def test_blocked_errors_keep_a_nan_row_to_itself() -> None:
    size = projection.block_rows(20, 5)
    x = _rows(2 * size + 100, 20, seed=4)
    model = PCA(5).fit(x[:3000])
    bad = [0, size - 1, size, 2 * size + 99]  # block edges, the ragged block's last row
    for i, j in zip(bad, (0, 7, 19, 3), strict=True):
        x[i, j] = np.nan
    got = _reconstruction_errors(model, x)
    assert np.isnan(got[bad]).all()
    assert not np.isnan(np.delete(got, bad)).any()
    x[bad, :] = 0.0  # scikit-learn refuses NaN: every other row's error is the same
    assert np.array_equal(np.delete(got, bad), np.delete(_whole_matrix_errors(model, x), bad))


# -- ML.PREDICT's projection from the columns ------------------------------------------------


def _fitted(width: int, components: int) -> Predictor:
    train = pa.table({f"x{j}": _rows(500, width, seed=9)[:, j] for j in range(width)})
    preprocessor = FeaturePreprocessor.fit(train, train.column_names, standardize=True)
    model = PCA(components).fit(preprocessor.transform(train, dtype=np.float64))
    return Predictor(
        model=model,
        flavor="sklearn",
        task="dimensionality_reduction",
        preprocessor=preprocessor,
        label_info=None,
        label="",
        config={"model_type": "PCA", "num_components": components, "matrix_dtype": "float64"},
    )


@pytest.mark.parametrize(
    ("width", "components", "blocks", "extra"),
    [(20, 5, 2, 0), (20, 5, 3, 1), (20, 1, 2, 77), (5, 2, 2, 5), (64, 20, 3, 39)],
)
def test_projection_from_the_columns_is_the_matrix_projection(
    width: int, components: int, blocks: int, extra: int
) -> None:
    predictor = _fitted(width, components)
    n = blocks * projection.block_rows(width, components) + extra
    x = _rows(n, width, seed=n)
    cuts = [0, 3, 1000, n // 2 + 1, n]  # chunks across the blocks' edges
    table = pa.table(
        {
            f"x{j}": pa.chunked_array([x[a:b, j] for a, b in itertools.pairwise(cuts)])
            for j in range(width)
        }
    )
    want = predictor.principal_components(predictor.matrix(table))
    with one_blas_thread():
        got = projection.project_table(predictor.model, predictor.preprocessor, table)
    assert got is not None and np.array_equal(got, want)
    out = predictor.predict(table, keep_original_columns=False)
    for i in range(components):
        assert np.array_equal(out.column(i).to_numpy(), want[:, i])


def test_matrix_blocks_in_column_major_order_hold_the_same_rows() -> None:
    predictor = _fitted(6, 2)
    x = _rows(5000, 6, seed=2)
    table = pa.table({f"x{j}": pa.chunked_array([x[:7, j], x[7:, j]]) for j in range(6)})
    bounds = [0, 1000, 3001, 5000]
    row_major = predictor.preprocessor.matrix_blocks(table, bounds)
    column_major = predictor.preprocessor.matrix_blocks(table, bounds, order="F")
    assert row_major is not None and column_major is not None
    whole = predictor.preprocessor.transform(table, dtype=np.float64)
    for (lo, hi, a), (lo2, hi2, b) in zip(row_major, column_major, strict=True):
        assert (lo, hi) == (lo2, hi2)
        assert b.strides[0] == 8  # each feature's values contiguous
        assert np.array_equal(a, b) and np.array_equal(b, whole[lo:hi])


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("pca_blocks"))
    n = 3 * projection.block_rows(20, 5) + 555  # three blocks and a ragged last one
    x = _rows(n, 20, seed=5)
    columns: dict[str, Any] = {f"x{j}": pa.array(x[:, j]) for j in range(19)}
    last = x[:, 19].tolist()
    for i in range(0, n, 101):
        last[i] = None  # imputed with the training mean
    columns["x19"] = pa.array(last, type=pa.float64())
    workspace.load_table("demo.rows", pa.table(columns))
    workspace.sql(
        "CREATE MODEL demo.pca OPTIONS(model_type='pca', num_principal_components=5) "
        "AS SELECT * FROM demo.rows"
    )
    yield workspace
    workspace.close()


def test_training_errors_and_detect_anomalies_are_scikit_learns(ws: Any) -> None:
    predictor = ws.models.load("demo.pca")
    table = ws.sql("SELECT * FROM demo.rows").to_arrow()
    x = predictor.preprocessor.transform(table, dtype=np.float64, order="F")
    want = _whole_matrix_errors(predictor.model, x)
    info = ws.sql("SELECT loss FROM ML.TRAINING_INFO(MODEL demo.pca)").to_arrow()
    assert info["loss"][0].as_py() == float(np.mean(want))
    out = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.pca, STRUCT(0.02 AS contamination), "
        "TABLE demo.rows)"
    ).to_arrow()
    assert np.array_equal(out["mean_squared_error"].to_numpy(), want)
    flagged = int(np.sum(out["is_anomaly"].to_numpy(zero_copy_only=False)))
    assert abs(flagged - round(0.02 * len(x))) <= 1


def test_ml_predict_is_scikit_learns_transform(ws: Any) -> None:
    predictor = ws.models.load("demo.pca")
    table = ws.sql("SELECT * FROM demo.rows").to_arrow()
    want = predictor.model.transform(predictor.preprocessor.transform(table, dtype=np.float64))
    out = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.pca, TABLE demo.rows)").to_arrow()
    assert out.column_names == [f"principal_component_{i}" for i in range(1, 6)]
    for i in range(5):
        assert np.array_equal(out.column(i).to_numpy(), want[:, i])
