"""FeaturePreprocessor: a STRUCT feature becomes one feature per field, <struct>_<field>."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import FeaturePreprocessor

S = pa.array(
    [
        {"a": 1.0, "b": "x", "t": dt.datetime(2024, 1, 1)},
        None,
        {"a": None, "b": "y", "t": None},
        {"a": 4.0, "b": "x", "t": dt.datetime(2024, 5, 1)},
    ]
)


def _table() -> pa.Table:
    return pa.table({"x": [1.0, 2.0, 3.0, 4.0], "s": S})


def test_fields_become_features_preprocessed_by_their_type() -> None:
    p = FeaturePreprocessor.fit(_table(), ["s", "x"], standardize=True)
    assert p.features == ["s_a", "s_b", "s_t", "x"]
    assert p.feature_names_out == ["s_a", "s_b=x", "s_b=y", "s_b=<NULL>", "s_t", "x"]
    assert p.input_schema == [
        {"name": "s", "type": "struct<a: double, b: string, t: timestamp[us]>"},
        {"name": "x", "type": "double"},
    ]
    assert [r["input"] for r in p.feature_info()] == ["s_a", "s_b", "s_t", "x"]
    info = {r["input"]: r for r in p.feature_info()}
    assert info["s_a"]["mean"] == 2.5 and info["s_a"]["null_count"] == 2  # NULL struct too
    m = p.transform(_table(), dtype=np.float64)
    # the NULL struct: every field NULL → mean-imputed numbers, the NULL category
    np.testing.assert_array_equal(m[1, :4], [0.0, 0.0, 0.0, 1.0])
    # the same values as the fields given as plain columns
    flat = pa.table(
        {
            "s_a": pa.array([1.0, None, None, 4.0]),
            "s_b": pa.array(["x", None, "y", "x"]),
            "s_t": pa.array([dt.datetime(2024, 1, 1), None, None, dt.datetime(2024, 5, 1)]),
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    plain = FeaturePreprocessor.fit(flat, ["s_a", "s_b", "s_t", "x"], standardize=True)
    np.testing.assert_array_equal(plain.transform(flat, dtype=np.float64), m)


def test_round_trip_and_prediction_input_checks() -> None:
    p = FeaturePreprocessor.fit(_table(), ["x", "s"], standardize=True)
    data = p.to_dict()
    assert data["structs"][0]["name"] == "s"
    q = FeaturePreprocessor.from_dict(data)
    np.testing.assert_array_equal(q.transform(_table()), p.transform(_table()))
    # a plain model's description has no "structs" key (older readers see nothing new)
    assert "structs" not in FeaturePreprocessor.fit(_table(), ["x"], standardize=True).to_dict()
    with pytest.raises(InvalidArgument, match=r"missing feature columns \['s'\]"):
        p.transform(pa.table({"x": [1.0]}))
    with pytest.raises(InvalidArgument, match="lacks the fields"):
        p.transform(pa.table({"x": [1.0], "s": pa.array([{"a": 1.0}])}))
    with pytest.raises(InvalidArgument, match="must be a STRUCT"):
        p.transform(pa.table({"x": [1.0], "s": [1.0]}))
    # extra fields are ignored; an all-NULL column is all NULL fields
    wider = pa.array([{"a": 1.0, "b": "x", "t": dt.datetime(2024, 1, 1), "z": 9}])
    assert p.transform(pa.table({"x": [1.0], "s": wider})).shape == (
        1,
        p.transform(_table()).shape[1],
    )
    assert p.transform(pa.table({"x": [1.0], "s": pa.nulls(1)})).shape[0] == 1


def test_nested_unnamed_and_clashing_structs_are_refused() -> None:
    nested = pa.array([{"a": {"b": 1.0}}])
    with pytest.raises(InvalidArgument, match="nested STRUCT"):
        FeaturePreprocessor.fit(pa.table({"s": nested}), ["s"], standardize=True)
    unnamed = pa.StructArray.from_arrays([pa.array([1.0])], names=[""])
    with pytest.raises(InvalidArgument, match="unnamed field"):
        FeaturePreprocessor.fit(pa.table({"s": unnamed}), ["s"], standardize=True)
    clash = _table().append_column("s_a", pa.array([0.0, 0.0, 0.0, 0.0]))
    with pytest.raises(InvalidArgument, match="s_a"):
        FeaturePreprocessor.fit(clash, ["s", "s_a"], standardize=True)
    with pytest.raises(InvalidArgument, match="s_a"):  # even when not a feature
        FeaturePreprocessor.fit(clash, ["s"], standardize=True)
