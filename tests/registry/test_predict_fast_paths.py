"""The prediction path's fast paths give exactly what the general code gives.

Online serving sends small all-FLOAT64 batches: FeaturePreprocessor.transform then builds the
matrix with one Arrow call (``_DensePlan``) instead of the blocked per-column writer; KMEANS
ranks a few centroids by comparisons instead of a per-row argsort; classifiers reuse their
probability column layout. Each must match the general path bit for bit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import shipyard.registry.preprocessing as preprocessing
from shipyard.errors import InvalidArgument
from shipyard.registry.predictor import _nearest, _probs_column, _ProbsLayout
from shipyard.registry.preprocessing import FeaturePreprocessor, LabelInfo

FEATURES = ["a", "b", "c"]


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) * 5
    return pa.table({name: pa.array(x[:, i]) for i, name in enumerate(FEATURES)})


def _dirty(n: int) -> pa.Table:
    """NaN, ±inf, -0.0 and NULLs in the FLOAT64 columns."""
    t = _table(n, seed=1)
    a = t["a"].to_numpy().copy()
    a[0], a[1], a[2] = np.nan, np.inf, -0.0
    b = t["b"].to_numpy()
    mask = np.zeros(n, dtype=bool)
    mask[::3] = True
    c = t["c"].to_numpy().copy()
    c[-1] = -np.inf
    return pa.table({"a": a, "b": pa.array(b, mask=mask), "c": c})


def _general(pre: FeaturePreprocessor, table: pa.Table, dtype: type, monkeypatch) -> np.ndarray:
    """The blocked per-column writer's matrix (the fast path turned off)."""
    with monkeypatch.context() as m:
        m.setattr(preprocessing, "_DENSE_ROWS", 0)
        pre._checked = None
        out = pre.transform(table, dtype=dtype)
    pre._checked = None
    return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.flags.c_contiguous
        and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    )


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 7, 500])
def test_dense_transform_matches_the_blocked_writer(standardize, dtype, rows, monkeypatch):
    pre = FeaturePreprocessor.fit(_table(400), FEATURES, standardize=standardize)
    for table in (_table(rows, seed=5), _dirty(rows) if rows >= 3 else _table(rows, seed=6)):
        fast = pre.transform(table, dtype=dtype)
        assert pre._checked is not None and pre._checked[1] is not None  # the fast path ran
        assert _same_bits(fast, _general(pre, table, dtype, monkeypatch))


def test_dense_transform_handles_order_chunks_and_extra_columns(monkeypatch):
    pre = FeaturePreprocessor.fit(_table(400), FEATURES, standardize=True)
    base = _dirty(50)
    shuffled = pa.concat_tables([base.slice(0, 20), base.slice(20)]).select(["c", "a", "b"])
    shuffled = shuffled.append_column("extra", pa.array(np.arange(50)))
    assert shuffled["a"].num_chunks == 2
    fast = pre.transform(shuffled, dtype=np.float64)
    assert _same_bits(fast, _general(pre, base, np.float64, monkeypatch))


def test_pass_through_columns_keep_nan_and_infinity():
    pre = FeaturePreprocessor.passthrough([(n, "double") for n in FEATURES])
    out = pre.transform(_dirty(6), dtype=np.float64)
    assert np.isnan(out[0, 0]) and out[1, 0] == np.inf and out[5, 2] == -np.inf
    assert np.isnan(out[0, 1])  # NULL reaches the model as missing


def test_other_column_types_take_the_general_path(monkeypatch):
    pre = FeaturePreprocessor.fit(_table(400), FEATURES, standardize=True)
    t = _table(5)
    ints = t.set_column(1, "b", pa.array(np.arange(5, dtype=np.int64)))
    out = pre.transform(ints, dtype=np.float32)
    assert pre._checked is not None and pre._checked[1] is None  # not all FLOAT64
    assert _same_bits(out, _general(pre, ints, np.float32, monkeypatch))


def test_a_bad_schema_is_refused_after_a_good_one():
    pre = FeaturePreprocessor.fit(_table(400), FEATURES, standardize=True)
    pre.transform(_table(2))
    wrong = _table(2).set_column(0, "a", pa.array(["x", "y"]))
    with pytest.raises(InvalidArgument, match="input column 'a' has type string"):
        pre.transform(wrong)
    with pytest.raises(InvalidArgument, match="missing feature columns"):
        pre.transform(_table(2).drop_columns(["c"]))
    assert pre.transform(_table(2)).shape == (2, 3)  # and the good schema still works


@pytest.mark.parametrize(
    "classes",
    [
        pa.array([False, True]),
        pa.array([3, 7, 9], type=pa.int32()),
        pa.array([0.5, 1.5]),
        pa.array(["no", "yes", "zz"]),
        pa.array(["a", "b"], type=pa.large_string()),
    ],
)
@pytest.mark.parametrize("rows", [0, 1, 64, 65, 1000])
def test_decode_gives_the_classes_as_take_does(classes, rows):
    info = LabelInfo(classes)
    codes = np.random.default_rng(rows).integers(0, len(classes), rows)
    got = info.decode(codes)
    want = classes.take(pa.array(codes, type=pa.int64()))
    assert got.type == classes.type and got.equals(want)


@pytest.mark.parametrize("classes", [pa.array([0, 1]), pa.array(["a", "bb", "ccc"])])
def test_a_kept_probs_layout_gives_the_same_column_every_time(classes):
    layout = _ProbsLayout(classes)
    rng = np.random.default_rng(0)
    for rows in (1, 1, 3, 0, 1, 300, 3):
        probs = rng.random((rows, len(classes)))
        got = layout.column(probs)
        fresh = _probs_column(classes, probs)
        assert got.type == pa.list_(pa.struct([("label", classes.type), ("prob", pa.float64())]))
        assert got.equals(fresh)
        assert got.to_pylist() == [
            [
                {"label": c, "prob": p}
                for c, p in zip(classes.to_pylist()[::-1], row[::-1], strict=True)
            ]
            for row in probs.tolist()
        ]


@pytest.mark.parametrize("k", [1, 2, 3, 8, 16, 17])
@pytest.mark.parametrize("rows", [0, 1, 40_000])
def test_nearest_centroids_match_a_stable_argsort(k, rows):
    rng = np.random.default_rng(k)
    d = np.round(rng.random((rows, k)) * 4) / 4  # many ties: the lower id must come first
    if rows > 13:
        d[::13, 0] = np.inf
    m = min(k, 5)
    for distances in (d, np.where(np.arange(k) == k - 1, np.nan, d) if rows else d):
        order = np.argsort(distances, axis=1, kind="stable")[:, :m]
        ids, nearest = _nearest(distances, m)
        assert ids.dtype == np.int64 and np.array_equal(ids, order + 1)
        want = np.take_along_axis(distances, order, axis=1)
        assert np.array_equal(nearest, want, equal_nan=True)


@pytest.mark.parametrize("columns", [["a"], FEATURES])
def test_the_fast_path_never_changes_its_input(columns):
    table = _dirty(9).select(columns).slice(2)  # a slice: its buffers start at an offset
    before = [c.to_numpy(zero_copy_only=False).copy() for c in table.columns]
    pre = FeaturePreprocessor.fit(_table(400).select(columns), columns, standardize=True)
    out = pre.transform(table, dtype=np.float64)
    assert out.shape == (7, len(columns)) and np.isfinite(out).all()
    after = [c.to_numpy(zero_copy_only=False) for c in table.columns]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after, strict=True))


# -- column-major matrices (tree boosters) ----------------------------------------------------


def _same_values(column_major: np.ndarray, row_major: np.ndarray) -> bool:
    """The same bits in the same logical places (tobytes("C") reads either layout)."""
    return (
        column_major.dtype == row_major.dtype
        and column_major.shape == row_major.shape
        and column_major.tobytes(order="C") == row_major.tobytes(order="C")
    )


@pytest.mark.parametrize("rows", [1, 7, 5000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("standardize", [True, False])
def test_column_major_transform_holds_the_row_major_bits(standardize, dtype, rows, monkeypatch):
    train = _dirty(300)
    pre = FeaturePreprocessor.fit(train, FEATURES, standardize=standardize)
    table = _dirty(rows) if rows > 3 else _table(rows)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=1234))
    for source in (table, chunked):
        f = pre.transform(source, dtype=dtype, order="F")
        assert f.flags.f_contiguous
        assert _same_values(f, pre.transform(source, dtype=dtype))
        # the blocked writer too, not only the small-batch path
        assert _same_values(f, _general(pre, source, dtype, monkeypatch))
        with monkeypatch.context() as m:
            m.setattr(preprocessing, "_DENSE_ROWS", 0)
            pre._checked = None
            general_f = pre.transform(source, dtype=dtype, order="F")
        pre._checked = None
        assert general_f.flags.f_contiguous and _same_values(general_f, f)


def test_column_major_transform_of_categories_and_timestamps() -> None:
    table = pa.table(
        {
            "n": pa.array([1.5, None, -2.0, 4.0] * 1500),
            "s": pa.array(["a", "b", None, "c"] * 1500),
            "t": pa.array([0, 10**9, None, 3 * 10**9] * 1500, type=pa.timestamp("ms")),
        }
    )
    for encoding in ("one_hot", "dummy", "label"):
        pre = FeaturePreprocessor.fit(
            table, ["n", "s", "t"], standardize=True, categorical_encoding=encoding
        )
        f = pre.transform(table, order="F")
        assert f.flags.f_contiguous and _same_values(f, pre.transform(table))


def test_a_bad_order_is_refused() -> None:
    pre = FeaturePreprocessor.fit(_table(10), FEATURES, standardize=True)
    with pytest.raises(InvalidArgument, match="order must be 'C' or 'F'"):
        pre.transform(_table(10), order="A")  # type: ignore[arg-type]


def test_tree_predictors_take_column_major_batches_with_the_same_predictions() -> None:
    import xgboost as xgb

    from shipyard.registry.predictor import _COLUMN_MAJOR_ROWS, Predictor

    table = _dirty(_COLUMN_MAJOR_ROWS + 100)
    pre = FeaturePreprocessor.fit(table, FEATURES, standardize=False)
    x = pre.transform(table)
    booster = xgb.train(
        {"max_depth": 4, "nthread": 1}, xgb.DMatrix(x, label=x[:, 0] * 2), num_boost_round=5
    )
    predictor = Predictor("regression", booster, "xgboost", pre, None, "y")
    assert predictor.matrix(table).flags.f_contiguous
    small = table.slice(0, 50)
    assert predictor.matrix(small).flags.c_contiguous  # online batches stay row-major
    whole = predictor.predict(table, keep_original_columns=False).column(0).to_numpy()
    pieces = np.concatenate(
        [
            predictor.predict(table.slice(i, 50), keep_original_columns=False).column(0).to_numpy()
            for i in range(0, table.num_rows, 50)
        ]
    )
    assert whole.tobytes() == pieces.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_major_transform_through_small_blocks_holds_the_column_major_bits(
    dtype, monkeypatch
) -> None:
    """A row-major matrix is written a block at a time through a column-major scratch block,
    then copied run by run of adjacent numeric columns (here split by a categorical column)."""
    rng = np.random.default_rng(11)
    n = 5000
    values = rng.normal(3, 2, n)
    values[::17] = np.nan
    table = pa.table(
        {
            "a": values,
            "s": pa.array(rng.choice(["x", "y", "z"], n)),
            "b": pa.array(rng.integers(0, 50, n), mask=np.arange(n) % 13 == 0),
            "c": rng.normal(0, 1, n),
        }
    )
    pre = FeaturePreprocessor.fit(table, ["a", "s", "b", "c"], standardize=True)
    expected = pre.transform(table, dtype=dtype, order="F")
    monkeypatch.setattr(preprocessing, "_BLOCK_BYTES", 1)  # 1,024-row blocks
    monkeypatch.setattr(preprocessing, "_DENSE_ROWS", 0)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=777))
    for source in (table, chunked):
        pre._checked = None
        c = pre.transform(source, dtype=dtype)
        assert c.flags.c_contiguous and _same_values(c, expected)
