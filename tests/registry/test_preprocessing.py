"""BigQuery ML automatic preprocessing: what a model sees for each kind of input column."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_iris

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import FeaturePreprocessor, LabelInfo


def _fit(table: pa.Table, **kwargs: object) -> FeaturePreprocessor:
    params: dict[str, object] = {"standardize": True, "categorical_encoding": "one_hot"}
    params.update(kwargs)
    return FeaturePreprocessor.fit(table, table.column_names, **params)  # type: ignore[arg-type]


def _roundtrip(p: FeaturePreprocessor) -> FeaturePreprocessor:
    return FeaturePreprocessor.from_dict(json.loads(json.dumps(p.to_dict())))


@pytest.fixture(scope="module")
def iris() -> pa.Table:
    data = load_iris()
    return pa.table({name: data.data[:, i] for i, name in enumerate(data.feature_names)})


# -- numbers ----------------------------------------------------------------------------------


def test_numeric_columns_are_standardized_with_training_mean_and_stddev(iris: pa.Table) -> None:
    p = _fit(iris)
    x = p.transform(iris, dtype=np.float64)
    raw = np.column_stack([c.to_numpy() for c in iris.columns])
    expected = (raw - raw.mean(axis=0)) / raw.std(axis=0, ddof=1)
    np.testing.assert_allclose(x, expected, rtol=1e-10, atol=1e-12)
    assert p.feature_names_out == iris.column_names


def test_null_nan_and_inf_are_imputed_with_the_training_mean() -> None:
    t = pa.table({"x": pa.array([1.0, None, 5.0, float("nan"), float("-inf")])})
    p = _fit(t, standardize=False)
    np.testing.assert_array_equal(p.transform(t)[:, 0], [1.0, 3.0, 5.0, 3.0, 3.0])
    assert p.feature_info()[0]["null_count"] == 3
    # ...and at prediction time, with the training mean, not the new data's.
    new = pa.table({"x": pa.array([None, 10.0], type=pa.float64())})
    np.testing.assert_array_equal(p.transform(new)[:, 0], [3.0, 10.0])
    standardized = _fit(t).transform(new, dtype=np.float64)
    assert standardized[0, 0] == 0.0  # the mean standardizes to 0


def test_constant_column_is_only_centred() -> None:
    t = pa.table({"c": [7, 7, 7], "x": [1.0, 2.0, 3.0]})
    x = _fit(t).transform(t)
    np.testing.assert_array_equal(x[:, 0], [0.0, 0.0, 0.0])
    assert np.isfinite(x).all()


def test_integer_and_decimal_columns_are_numbers() -> None:
    import decimal

    t = pa.table(
        {
            "i": pa.array([1, 2, None], type=pa.int32()),
            "d": pa.array([decimal.Decimal("1.5"), None, decimal.Decimal("2.5")]),
        }
    )
    x = _fit(t, standardize=False).transform(t)
    np.testing.assert_array_equal(x, [[1.0, 1.5], [2.0, 2.0], [1.5, 2.5]])


def test_prediction_accepts_another_numeric_type_and_null_columns() -> None:
    t = pa.table({"x": pa.array([1.0, 2.0, 3.0])})
    p = _fit(t, standardize=False)
    as_int = pa.table({"x": pa.array([4, 5], type=pa.int64())})
    np.testing.assert_array_equal(p.transform(as_int)[:, 0], [4.0, 5.0])
    all_null = pa.table({"x": pa.nulls(2)})
    np.testing.assert_array_equal(p.transform(all_null)[:, 0], [2.0, 2.0])


def test_output_is_c_contiguous_float32_by_default(iris: pa.Table) -> None:
    p = _fit(iris)
    x = p.transform(iris)
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    assert x.shape == (150, 4)
    assert p.transform(iris, dtype=np.float64).dtype == np.float64


def test_chunked_input_gives_the_same_matrix(iris: pa.Table) -> None:
    p = _fit(iris)
    chunked = pa.Table.from_batches(iris.to_batches(max_chunksize=17))
    assert chunked.column(0).num_chunks > 1
    np.testing.assert_array_equal(p.transform(chunked), p.transform(iris))


# -- categories -------------------------------------------------------------------------------


def test_one_hot_adds_a_null_category_and_zeros_unseen_values() -> None:
    t = pa.table({"c": ["b", "a", None, "b"]})
    p = _fit(t)
    assert p.feature_names_out == ["c=a", "c=b", "c=<NULL>"]
    np.testing.assert_array_equal(p.transform(t), [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    new = pa.table({"c": ["zzz", None, "a"]})
    np.testing.assert_array_equal(p.transform(new), [[0, 0, 0], [0, 0, 1], [1, 0, 0]])


def test_one_hot_without_training_nulls_maps_null_to_all_zeros() -> None:
    p = _fit(pa.table({"c": ["a", "b"]}))
    assert p.feature_names_out == ["c=a", "c=b"]
    new = pa.table({"c": pa.array([None, "b"], type=pa.string())})
    np.testing.assert_array_equal(p.transform(new), [[0, 0], [0, 1]])


def test_dummy_encoding_drops_the_first_category() -> None:
    t = pa.table({"c": ["a", "b", "c"]})
    p = _fit(t, categorical_encoding="dummy")
    assert p.feature_names_out == ["c=b", "c=c"]
    np.testing.assert_array_equal(p.transform(t), [[0, 0], [1, 0], [0, 1]])


def test_dummy_encoding_drops_the_most_frequent_category() -> None:
    t = pa.table({"c": ["a", "b", "b", "c", None]})
    p = _fit(t, categorical_encoding="dummy")
    assert p.feature_names_out == ["c=a", "c=c", "c=<NULL>"]
    np.testing.assert_array_equal(
        p.transform(t), [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]]
    )
    # The choice is part of the stored form: a reloaded preprocessor drops the same one.
    np.testing.assert_array_equal(_roundtrip(p).transform(t), p.transform(t))


def test_label_encoding_uses_ranks_and_nan_for_null_or_unseen() -> None:
    t = pa.table({"c": ["b", "a", None]})
    p = _fit(t, standardize=False, categorical_encoding="label")
    assert p.feature_names_out == ["c"]
    x = p.transform(pa.table({"c": ["a", "b", None, "new"]}))[:, 0]
    assert x[:2].tolist() == [1.0, 2.0]
    assert np.isnan(x[2:]).all()


def test_dictionary_strings_match_plain_strings() -> None:
    plain = pa.table({"c": ["x", "y", None, "x"]})
    encoded = pa.table({"c": plain.column("c").dictionary_encode()})
    p = _fit(plain)
    np.testing.assert_array_equal(p.transform(encoded), p.transform(plain))
    assert np.array_equal(_fit(encoded).transform(plain), p.transform(plain))


def test_bool_and_date_and_time_are_one_hot_encoded() -> None:
    t = pa.table(
        {
            "b": [True, False, True],
            "d": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 1)],
            "t": [dt.time(9, 0), dt.time(10, 30), dt.time(9, 0)],
        }
    )
    p = _fit(t)
    assert p.feature_names_out == [
        "b=false",
        "b=true",
        "d=2024-01-01",
        "d=2024-01-02",
        "t=09:00:00",
        "t=10:30:00",
    ]
    np.testing.assert_array_equal(p.transform(t)[1], [1, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(_roundtrip(p).transform(t), p.transform(t))


def test_timestamp_becomes_standardized_unix_seconds() -> None:
    stamps = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None, dt.datetime(2024, 1, 3, tzinfo=dt.UTC)]
    t = pa.table({"ts": pa.array(stamps, type=pa.timestamp("us", tz="UTC"))})
    p = _fit(t)
    x = p.transform(t, dtype=np.float64)[:, 0]
    assert x[1] == 0.0  # NULL → the mean
    assert x[0] == pytest.approx(-x[2])
    raw = _fit(t, standardize=False).transform(t, dtype=np.float64)[:, 0]
    assert raw[0] == stamps[0].timestamp()  # type: ignore[union-attr]
    # A different unit at prediction time means the same instant.
    in_seconds = pa.table({"ts": pa.array([stamps[0]], type=pa.timestamp("s", tz="UTC"))})
    assert p.transform(in_seconds, dtype=np.float64)[0, 0] == pytest.approx(x[0])


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "type_text"),
    [
        (pa.array([[1, 2], [3]]), "list"),
        # a STRUCT is expanded into its fields (test_struct_features.py); a nested one is not
        (pa.array([{"a": {"b": 1}}, {"a": {"b": 2}}]), "nested STRUCT"),
        # BYTES is one-hot encoded, ARRAY<STRING> multi-hot (test_bytes_and_array_features.py)
        (pa.array([[b"x"], [b"y"]]), "list<item: binary>"),
    ],
)
def test_unsupported_types_are_refused_naming_column_and_type(
    column: pa.Array, type_text: str
) -> None:
    t = pa.table({"ok": [1.0, 2.0], "bad": column})
    with pytest.raises(InvalidArgument, match=rf"'bad'.*{type_text}"):
        _fit(t)


def test_all_null_feature_is_refused() -> None:
    t = pa.table({"x": pa.array([None, None], type=pa.float64()), "y": [1.0, 2.0]})
    with pytest.raises(InvalidArgument, match="'x' is NULL in every training row"):
        _fit(t)
    with pytest.raises(InvalidArgument, match="'s' is NULL"):
        _fit(pa.table({"s": pa.array([None, None], type=pa.string())}))


def test_missing_columns_are_listed_with_the_expected_ones(iris: pa.Table) -> None:
    p = _fit(iris)
    partial = iris.drop_columns(["petal width (cm)", "sepal length (cm)"])
    with pytest.raises(InvalidArgument) as err:
        p.transform(partial)
    assert "petal width (cm)" in str(err.value) and "sepal length (cm)" in str(err.value)
    assert err.value.details["expected"] == iris.column_names


def test_extra_columns_are_ignored(iris: pa.Table) -> None:
    p = _fit(iris)
    wider = iris.append_column("other", pa.array(["x"] * 150))
    np.testing.assert_array_equal(p.transform(wider), p.transform(iris))


def test_incompatible_type_at_prediction_names_the_column() -> None:
    p = _fit(pa.table({"x": [1.0, 2.0], "c": ["a", "b"]}))
    with pytest.raises(InvalidArgument, match=r"'x' has type string.*double"):
        p.transform(pa.table({"x": ["1", "2"], "c": ["a", "b"]}))
    with pytest.raises(InvalidArgument, match=r"'c' has type int64"):
        p.transform(pa.table({"x": [1.0], "c": [1]}))


def test_invalid_encoding_name_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="one_hot, dummy, label, target"):
        FeaturePreprocessor.fit(
            pa.table({"x": [1]}), ["x"], standardize=True, categorical_encoding="frequency"
        )


def test_feature_not_in_table_and_no_features_are_refused() -> None:
    t = pa.table({"x": [1.0]})
    with pytest.raises(InvalidArgument, match=r"\['nope'\].*\['x'\]"):
        FeaturePreprocessor.fit(t, ["nope"], standardize=True)
    with pytest.raises(InvalidArgument, match="no feature columns"):
        FeaturePreprocessor.fit(t, [], standardize=True)


# -- serialisation and statistics -------------------------------------------------------------


def test_to_dict_round_trip_gives_the_same_transform() -> None:
    t = pa.table(
        {
            "x": [1.0, None, 3.0, 4.0],
            "c": ["a", "b", None, "a"],
            "b": [True, None, False, True],
            "ts": pa.array([1, 2, 3, None], type=pa.timestamp("ms")),
        }
    )
    for encoding in ("one_hot", "dummy", "label"):
        p = _fit(t, categorical_encoding=encoding)
        q = _roundtrip(p)
        np.testing.assert_array_equal(q.transform(t), p.transform(t))
        assert q.feature_names_out == p.feature_names_out
        assert q.input_schema == p.input_schema
        assert q.feature_info() == p.feature_info()
    assert _fit(t).input_schema[3] == {"name": "ts", "type": "timestamp[ms]"}


def test_from_dict_refuses_malformed_descriptions() -> None:
    with pytest.raises(InvalidArgument, match="format_version"):
        FeaturePreprocessor.from_dict({"columns": []})
    with pytest.raises(InvalidArgument, match="malformed"):
        FeaturePreprocessor.from_dict({"format_version": 1, "columns": [{"kind": "numeric"}]})


def test_feature_info_holds_training_statistics(iris: pa.Table) -> None:
    t = iris.append_column("species", pa.array(["a", "b", None] * 50))
    info = {row["input"]: row for row in _fit(t).feature_info()}
    x = iris.column("sepal length (cm)").to_numpy()
    row = info["sepal length (cm)"]
    assert row["min"] == x.min() and row["max"] == x.max()
    assert row["mean"] == pytest.approx(x.mean())
    assert row["stddev"] == pytest.approx(x.std(ddof=1))
    assert row["median"] == pytest.approx(np.median(x))
    assert row["null_count"] == 0 and row["category_count"] is None
    species = info["species"]
    assert species["category_count"] == 2 and species["null_count"] == 50
    assert species["mean"] is None
    json.dumps(list(info.values()))  # pure JSON


# -- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "classes"),
    [
        (pa.array(["no", "yes", None, "maybe"]), ["maybe", "no", "yes"]),
        (pa.array([3, 1, 2, 1], type=pa.int64()), [1, 2, 3]),
        (pa.array([True, False, None]), [False, True]),
    ],
)
def test_label_classes_are_sorted_and_keep_their_type(values: pa.Array, classes: list) -> None:
    info = LabelInfo.fit(values, label="y")
    assert info.values() == classes
    assert info.arrow_type == values.type
    codes = info.encode(pa.array(classes, type=values.type))
    assert codes.tolist() == list(range(len(classes)))
    assert info.decode(codes).to_pylist() == classes
    assert info.decode(codes).type == values.type
    again = LabelInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again.values() == classes and again.arrow_type == values.type


def test_binary_positive_class_is_the_greater_one() -> None:
    assert LabelInfo.fit(pa.array([1, 0, 1]), label="y").positive_class == 1
    assert LabelInfo.fit(pa.array(["yes", "no"]), label="y").positive_class == "yes"
    assert LabelInfo.fit(pa.array(["a", "b", "c"]), label="y").positive_class is None


def test_label_needs_two_classes_and_at_most_fifty() -> None:
    with pytest.raises(InvalidArgument, match="at least 2 classes"):
        LabelInfo.fit(pa.array(["a", "a", None]), label="y")
    many = pa.array([f"c{i}" for i in range(51)])
    with pytest.raises(InvalidArgument, match="51 distinct values; at most 50"):
        LabelInfo.fit(many, label="y")
    assert LabelInfo.fit(many, label="y", max_classes=None).n_classes == 51


def test_label_encode_reports_unknown_values() -> None:
    info = LabelInfo.fit(pa.array(["a", "b"]), label="y")
    with pytest.raises(InvalidArgument, match=r"\['z'\] are not classes"):
        info.encode(pa.array(["a", "z"]))
    assert info.encode(pa.array(["z", None, "b"]), strict=False).tolist() == [-1, -1, 1]


def test_label_of_unsupported_type_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'y' has type date32"):
        LabelInfo.fit(pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)]), label="y")


# -- chunked input: the same bits whatever the chunking ---------------------------------------


def _mixed_table(n: int = 3_000) -> pa.Table:
    """Every column kind, with NULL, NaN and ±inf where they can be."""
    import decimal

    rng = np.random.default_rng(11)

    def masked(values: object, type_: pa.DataType, frac: float = 0.05) -> pa.Array:
        return pa.array(values, type=type_, mask=rng.random(n) < frac)

    floats = rng.standard_normal(n) * 100
    floats[rng.random(n) < 0.02] = np.nan
    floats[rng.random(n) < 0.01] = np.inf
    floats[rng.random(n) < 0.01] = -np.inf
    late_nan = rng.standard_normal(n)
    late_nan[n - 5] = np.nan  # NaN in one late chunk of a column without NULLs
    mostly_null = np.zeros(n, dtype=bool)
    mostly_null[: 2 * n // 3] = True
    mostly_null[2 * n // 3 + 10 :] = True  # values only in rows 2n/3 .. 2n/3+9
    words = np.array(["a", "bb", "c", "dd", "e"], dtype=object)
    return pa.table(
        {
            "f64": masked(floats, pa.float64()),
            "f64_late_nan": pa.array(late_nan),
            "f32": masked(floats.astype(np.float32), pa.float32()),
            "i64": pa.array(rng.integers(-1000, 1000, n)),
            "i32_nulls": masked(rng.integers(-1000, 1000, n).astype(np.int32), pa.int32()),
            "mostly_null": pa.array(rng.standard_normal(n), mask=mostly_null),
            "dec": pa.array(
                [decimal.Decimal(int(v)) / 100 for v in rng.integers(-(10**6), 10**6, n)],
                type=pa.decimal128(12, 2),
            ),
            "dict_int": masked(rng.integers(0, 50, n), pa.int64()).dictionary_encode(),
            "ts": masked(rng.integers(0, 2 * 10**15, n), pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "s": masked(words[rng.integers(0, 5, n)], pa.string()),
            "s_dict": masked(words[rng.integers(0, 5, n)], pa.string()).dictionary_encode(),
            "b": masked(rng.random(n) < 0.3, pa.bool_()),
            "d": pa.array(rng.integers(19000, 19010, n).astype(np.int32)).cast(pa.date32()),
            "t": masked(rng.integers(0, 5, n) * 3_600_000_000, pa.int64()).cast(pa.time64("us")),
        }
    )


def _ragged(table: pa.Table) -> pa.Table:
    """Each column chunked differently, with zero-length chunks among them."""
    layouts = [[701, 13, 1_000], [1, 333], [2_999], [0, 1_500, 0]]
    columns = {}
    for j, name in enumerate(table.column_names):
        col = table.column(name).combine_chunks()
        pieces, pos, k = [col.slice(0, 0)], 0, 0
        sizes = layouts[j % len(layouts)]
        while pos < len(col):
            size = sizes[k % len(sizes)] or 1
            pieces += [col.slice(pos, size), col.slice(pos, 0)]
            pos, k = pos + size, k + 1
        columns[name] = pa.chunked_array(pieces, type=col.type)
    return pa.table(columns)


@pytest.mark.parametrize("encoding", ["one_hot", "dummy", "label"])
@pytest.mark.parametrize("standardize", [True, False])
def test_chunking_changes_no_bit_of_the_statistics_or_the_matrix(
    encoding: str, standardize: bool
) -> None:
    combined = _mixed_table().combine_chunks()
    batches = pa.Table.from_batches(combined.to_batches(max_chunksize=211))
    ragged = _ragged(combined)
    assert batches.column("f64").num_chunks > 10
    assert ragged.column("f64").num_chunks != ragged.column("f32").num_chunks
    reference = _fit(combined, standardize=standardize, categorical_encoding=encoding)
    expected = {
        dtype: reference.transform(combined, dtype=dtype) for dtype in (np.float32, np.float64)
    }
    assert np.isfinite(expected[np.float64][:, 0]).all()  # NULL, NaN and ±inf were imputed
    for table in (batches, ragged):
        p = _fit(table, standardize=standardize, categorical_encoding=encoding)
        # json.dumps tells 0.0 from -0.0, which == does not.
        assert json.dumps(p.to_dict()) == json.dumps(reference.to_dict())
        assert json.dumps(p.feature_info()) == json.dumps(reference.feature_info())
        for dtype, matrix in expected.items():
            for model in (p, reference):
                assert model.transform(table, dtype=dtype).tobytes() == matrix.tobytes()


def test_integers_round_alike_in_chunks_with_and_without_nulls() -> None:
    # 2**60 + 2**36 + 1 rounds to 2**60 through float64 (as a column with NULLs is converted)
    # but to 2**60 + 2**37 straight to float32: every chunk must take the float64 road.
    value = 2**60 + 2**36 + 1
    col = pa.chunked_array([pa.array([1, None], type=pa.int64()), pa.array([value, 3])])
    chunked = pa.table({"x": col})
    p = _fit(chunked, standardize=False)
    x = p.transform(chunked)[:, 0]
    assert x[2] == np.float32(np.float64(value)) == np.float32(2.0**60)
    assert x.tobytes() == p.transform(chunked.combine_chunks()).tobytes()


def test_nan_inf_in_chunks_without_nulls_are_imputed_and_huge_numbers_kept() -> None:
    t = pa.table({"x": pa.array([1.0, 3.0])})
    p = _fit(t, standardize=False)
    col = pa.chunked_array([[5.0, 6.0], [float("nan"), 7.0], [float("-inf"), float("inf")]])
    np.testing.assert_array_equal(
        p.transform(pa.table({"x": col}), dtype=np.float64)[:, 0], [5, 6, 2, 7, 2, 2]
    )
    # Finite values whose sum overflows are not mistaken for missing ones.
    huge = pa.table({"x": pa.chunked_array([[1e308, 1e308], [-1e308, 2.0]])})
    for q in (p, _fit(t)):
        x = q.transform(huge, dtype=np.float64)[:, 0]
        assert np.isfinite(x).all() and x[0] == x[1] != q.transform(t, dtype=np.float64)[0, 0]


def test_a_column_null_in_every_chunk_but_one() -> None:
    nulls = [pa.nulls(k, pa.float64()) for k in (5, 0, 4)]
    col = pa.chunked_array([nulls[0], nulls[1], [1.0, 2.0, float("nan")], nulls[2]])
    chunked = pa.table({"x": col})
    p = _fit(chunked, standardize=False)
    info = p.feature_info()[0]
    assert (info["null_count"], info["mean"], info["min"], info["max"]) == (10, 1.5, 1.0, 2.0)
    x = p.transform(chunked)[:, 0]
    np.testing.assert_array_equal(x, [1.5] * 5 + [1.0, 2.0] + [1.5] * 5)
    assert json.dumps(p.to_dict()) == json.dumps(
        _fit(chunked.combine_chunks(), standardize=False).to_dict()
    )


def test_empty_input() -> None:
    t = _mixed_table(50)
    p = _fit(t)
    no_chunks = pa.Table.from_batches([], schema=t.schema)
    assert no_chunks.column(0).num_chunks == 0
    for empty in (t.slice(0, 0), no_chunks):
        x = p.transform(empty)
        assert x.shape == (0, len(p.feature_names_out)) and x.dtype == np.float32
        with pytest.raises(InvalidArgument, match="NULL in every training row"):
            _fit(empty)
