"""PCA on the column-major model matrix: training and ML.DETECT_ANOMALIES build it column-major,
the reconstruction errors of such a matrix sum each row with numpy's own pairwise order as
vector operations down a transposed block, and ML.PREDICT's projection comes out column-major.
Every fast path gives scikit-learn's bits on the same matrix."""

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
from shipyard.sql.decomposition import _pairwise_column_sums, _reconstruction_errors
from shipyard.sql.training import one_blas_thread

_BLOCK = decomposition._BLOCK_ROWS


def _correlated(n: int, width: int = 9, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, width)) @ rng.normal(size=(width, width)) + 2.0


def _sklearn_errors(model: PCA, x: np.ndarray) -> np.ndarray:
    with one_blas_thread():  # the thread count the fast path uses (wide products may differ)
        restored = model.inverse_transform(model.transform(x))
    return np.mean((x - restored) ** 2, axis=1)  # type: ignore[no-any-return]


@pytest.mark.parametrize("width", [*range(1, 20), 23, 64, 127, 128, 129, 136, 200, 257, 1030])
def test_pairwise_column_sums_are_numpys_row_sums(width: int) -> None:
    rng = np.random.default_rng(width)
    rows = rng.normal(size=(37, width)) * np.exp(rng.normal(scale=6.0, size=(37, width)))
    rows[0, :] = -0.0  # signed zeros: numpy starts short rows from +0.0
    rows[1, width // 2] = np.inf
    rows[2, -1] = np.nan
    rows[3, 0] = -np.inf
    rows[3, -1] = np.inf
    with np.errstate(invalid="ignore"):  # inf + -inf
        want = np.add.reduce(rows, axis=1)
        got = np.empty(37)
        _pairwise_column_sums(np.ascontiguousarray(rows.T), got)
    assert np.array_equal(got.view(np.int64), want.view(np.int64)) or np.array_equal(
        got, want, equal_nan=True
    )
    assert np.signbit(got[0]) == np.signbit(want[0])


@pytest.mark.parametrize("rows", [1, 2, 7, _BLOCK, 2 * _BLOCK + 13])
@pytest.mark.parametrize("components", [1, 4, 9])
def test_column_major_errors_are_scikit_learns(rows: int, components: int) -> None:
    model = PCA(components).fit(_correlated(500, seed=1))
    x = np.asfortranarray(_correlated(rows))
    got = _reconstruction_errors(model, x)
    assert np.array_equal(got, _sklearn_errors(model, x))
    # the row-major matrix of the same values: BLAS may round a product differently for the
    # other layout (a one-component projection is a matrix-vector product), in the last bits
    row_major = _reconstruction_errors(model, np.ascontiguousarray(x))
    assert np.allclose(got, row_major, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(("width", "components"), [(150, 3), (150, 70), (300, 300)])
def test_column_major_errors_of_wide_matrices(width: int, components: int) -> None:
    x = np.asfortranarray(_correlated(max(400, components + 10), width=width, seed=5))
    model = PCA(components).fit(x)
    assert np.array_equal(_reconstruction_errors(model, x), _sklearn_errors(model, x))


def test_column_major_errors_keep_a_nan_row_to_itself() -> None:
    model = PCA(3).fit(_correlated(300))
    x = np.asfortranarray(_correlated(50))
    x[11, 4] = np.nan
    got = _reconstruction_errors(model, x)
    assert np.isnan(got[11]) and not np.isnan(np.delete(got, 11)).any()
    x[11, 4] = 0.0  # scikit-learn refuses NaN: the other rows' errors are the same
    assert np.array_equal(np.delete(got, 11), np.delete(_sklearn_errors(model, x), 11))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("pca_column_major"))
    rng = np.random.default_rng(7)
    n = 6000  # more rows than the small-batch transform: the general column-major path
    base = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 6))
    columns: dict[str, Any] = {f"x{i}": pa.array(base[:, i]) for i in range(5)}
    with_nulls = base[:, 5].tolist()
    for i in range(0, n, 97):
        with_nulls[i] = None  # imputed with the training mean
    columns["x5"] = pa.array(with_nulls, type=pa.float64())
    columns["city"] = pa.array(rng.choice(["a", "b", "c"], size=n))  # one-hot features
    workspace.load_table("demo.rows", pa.table(columns))
    workspace.sql(
        "CREATE MODEL demo.pca OPTIONS(model_type='pca', num_principal_components=3) "
        "AS SELECT * FROM demo.rows"
    )
    yield workspace
    workspace.close()


def test_detect_anomalies_on_the_training_rows_gives_the_training_errors(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.pca, STRUCT(0.1 AS contamination), "
        "TABLE demo.rows)"
    ).to_arrow()
    errors = out["mean_squared_error"].to_numpy()
    info = ws.sql("SELECT loss FROM ML.TRAINING_INFO(MODEL demo.pca)").to_arrow()
    assert float(np.mean(errors)) == info["loss"][0].as_py()  # the same bits
    flagged = int(np.sum(out["is_anomaly"].to_numpy(zero_copy_only=False)))
    assert abs(flagged - 600) <= 1  # above the training errors' 0.9 quantile: 10 % of them
    # scikit-learn on the same (column-major) matrix
    predictor = ws.models.load("demo.pca")
    table = ws.sql("SELECT * FROM demo.rows").to_arrow()
    x = predictor.preprocessor.transform(table, dtype=np.float64, order="F")
    assert np.array_equal(errors, _sklearn_errors(predictor.model, x))


def test_the_model_is_fitted_on_the_column_major_matrix(ws: Any) -> None:
    predictor = ws.models.load("demo.pca")
    table = ws.sql("SELECT * FROM demo.rows").to_arrow()
    x = predictor.preprocessor.transform(table, dtype=np.float64, order="F")
    direct = PCA(3, svd_solver="auto", random_state=decomposition._SEED).fit(x)
    assert np.array_equal(predictor.model.mean_, direct.mean_)
    assert np.array_equal(predictor.model.components_, direct.components_)


def _predictor(model: PCA, width: int) -> Predictor:
    table = pa.table({f"x{i}": pa.array(np.arange(3.0) + i) for i in range(width)})
    preprocessor = FeaturePreprocessor.fit(table, table.column_names, standardize=False)
    return Predictor(
        model=model,
        flavor="sklearn",
        task="dimensionality_reduction",
        preprocessor=preprocessor,
        label_info=None,
        label="",
        config={"model_type": "PCA", "num_components": int(model.n_components_)},
    )


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("rows", [1, 2, 3000])
def test_projection_is_column_major_and_scikit_learns(order: str, rows: int) -> None:
    model = PCA(4).fit(_correlated(600, seed=2))
    predictor = _predictor(model, 9)
    x = np.asarray(_correlated(rows), order=order)  # type: ignore[call-overload]
    got = predictor.principal_components(x)
    assert np.array_equal(got, model.transform(x))
    assert got.flags.f_contiguous  # each component's values contiguous
    seen: list[np.ndarray] = []
    projection = predictor.principal_components

    def watched(matrix: np.ndarray) -> np.ndarray:
        seen.append(projection(matrix))
        return seen[-1]

    predictor.principal_components = watched  # type: ignore[method-assign]
    columns = predictor._unsupervised_columns(x)
    for i, column in enumerate(columns):
        assert np.array_equal(column.to_numpy(), got[:, i])
        # Arrow took the component's values without a copy
        assert column.buffers()[1].address == seen[0][:, i].ctypes.data


# -- ML.PREDICT's projection from the table, a block of rows at a time ------------------------


def _chunked(x: np.ndarray, cuts: list[int]) -> pa.Table:
    """``x``'s columns as a table whose chunks end at ``cuts`` (tiny chunks included)."""
    bounds = [0, *cuts, len(x)]
    columns = {}
    for j in range(x.shape[1]):
        chunks = [pa.array(x[a:b, j]) for a, b in itertools.pairwise(bounds) if b > a]
        columns[f"x{j}"] = pa.chunked_array(chunks, type=pa.float64())
    return pa.table(columns)


def _fitted(width: int, components: int, *, scale: bool = True) -> Predictor:
    rng = np.random.default_rng(width * 100 + components)
    train = _chunked(rng.normal(size=(400, width)) @ rng.normal(size=(width, width)) + 3.0, [])
    preprocessor = FeaturePreprocessor.fit(train, train.column_names, standardize=scale)
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


def _blocks(width: int, components: int, times: int = 2, extra: int = 0) -> int:
    return times * projection.block_rows(width, components) + extra


@pytest.mark.parametrize(
    ("width", "components", "rows", "cuts"),
    [
        # chunks of one row, a block boundary inside a chunk
        (20, 5, _blocks(20, 5, extra=17), [1, 2, 700, 701, 10050]),
        (9, 1, _blocks(9, 1, extra=3), [5, 646]),  # one component: BLAS' product of a vector
        (64, 20, _blocks(64, 20, extra=39), [10, 49, 4100]),  # few-row products differ in BLAS
        (20, 5, _blocks(20, 5), []),  # two blocks exactly
        (20, 5, _blocks(20, 5, times=3, extra=-1), [20000]),  # the last block takes the rest
    ],
)
def test_block_projection_is_the_matrix_projection(
    width: int, components: int, rows: int, cuts: list[int]
) -> None:
    predictor = _fitted(width, components)
    rng = np.random.default_rng(rows)
    table = _chunked(rng.normal(size=(rows, width)) * 4.0, cuts)
    want = predictor.principal_components(predictor.matrix(table))
    with one_blas_thread():
        got = projection.project_table(predictor.model, predictor.preprocessor, table)
    assert got is not None and got.flags.f_contiguous
    assert np.array_equal(got, want)


def test_block_projection_imputes_nulls_and_nan_as_the_matrix() -> None:
    predictor = _fitted(6, 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(_blocks(6, 3, extra=5), 6))
    x[5, 2] = np.nan
    x[700, 0] = np.inf
    table = _chunked(x, [1000])
    column = x[:, 1].copy()
    nulls = pa.array(column, mask=np.arange(len(column)) % 50 == 0)
    with_nulls = table.set_column(1, "x1", nulls)
    for t in (table, with_nulls):
        want = predictor.principal_components(predictor.matrix(t))
        with one_blas_thread():
            got = projection.project_table(predictor.model, predictor.preprocessor, t)
        assert got is not None and np.array_equal(got, want)


def test_ml_predict_takes_the_block_path_for_large_numeric_tables() -> None:
    predictor = _fitted(20, 5)
    rng = np.random.default_rng(1)
    table = _chunked(rng.normal(size=(_blocks(20, 5, extra=77), 20)), [3, 5000])
    want = predictor.principal_components(predictor.matrix(table))
    out = predictor.predict(table, keep_original_columns=False)
    assert out.column_names == [f"principal_component_{i}" for i in range(1, 6)]
    for i in range(5):
        assert np.array_equal(out.column(i).to_numpy(), want[:, i])
    calls: list[Any] = []
    original = projection.project_table

    def watched(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    try:
        projection.project_table = watched  # type: ignore[assignment]
        predictor.predict(table)
        predictor.predict(table.slice(0, 8191))  # small: the matrix path
    finally:
        projection.project_table = original  # type: ignore[assignment]
    assert len(calls) == 1


def test_block_projection_declines_what_it_does_not_cover() -> None:
    rows = _blocks(4, 2)
    table = _chunked(np.random.default_rng(2).normal(size=(rows, 4)), [])
    whitened = PCA(2, whiten=True).fit(np.random.default_rng(3).normal(size=(50, 4)))
    predictor = _fitted(4, 2)
    assert projection.project_table(whitened, predictor.preprocessor, table) is None
    assert projection.project_table(predictor.model, predictor.preprocessor, table[:-1]) is None
    with_text = table.append_column("city", pa.array(["a", "b"] * (rows // 2)))
    preprocessor = FeaturePreprocessor.fit(with_text, with_text.column_names, standardize=True)
    model = PCA(2).fit(preprocessor.transform(with_text, dtype=np.float64))
    assert projection.project_table(model, preprocessor, with_text) is None
    big = _chunked(np.full((rows, 4), 1e308), [])
    overflowing = _fitted(4, 2, scale=False)  # (1e308 - mean) @ components overflows
    with np.errstate(over="ignore", invalid="ignore"):
        assert projection.project_table(overflowing.model, overflowing.preprocessor, big) is None


def test_a_transform_model_takes_the_matrix_path(tmp_path: Any) -> None:
    """The block path reads the input columns as they come: behind a TRANSFORM it would skip
    the TRANSFORM, so a large table there gives what small batches give."""
    workspace = sy.connect(tmp_path)
    try:
        width = 16
        rows = _blocks(width, 4, extra=100)
        rng = np.random.default_rng(11)
        x = rng.normal(size=(rows, width)) @ rng.normal(size=(width, width))
        workspace.load_table("demo.t", pa.table({f"x{j}": x[:, j] for j in range(width)}))
        rest = ", ".join(f"x{j}" for j in range(1, width))
        workspace.sql(
            "CREATE MODEL demo.pca OPTIONS(model_type='pca', num_principal_components=4) "
            f"TRANSFORM(x0 * 10 AS x0, {rest}) AS SELECT * FROM demo.t"
        )
        predictor = workspace.models.load("demo.pca")
        table = workspace.sql("SELECT * FROM demo.t").to_arrow()
        whole = predictor.predict(table, keep_original_columns=False)
        head = predictor.predict(table.slice(0, 100), keep_original_columns=False)
        for i in range(4):
            assert np.allclose(whole.column(i).to_numpy()[:100], head.column(i).to_numpy())
    finally:
        workspace.close()
