"""FeaturePreprocessor(timestamp_components=True): a TIMESTAMP's calendar components."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import TIMESTAMP_PARTS, FeaturePreprocessor

UTC = dt.UTC
STAMPS = [
    dt.datetime(2024, 1, 7, 5, 6, tzinfo=UTC),  # a Sunday, the first of 2024: week 1
    None,
    dt.datetime(2023, 12, 31, 23, 59, 30, tzinfo=UTC),  # a Sunday: week 53 of 2023
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=UTC),  # a Thursday, leap day: week 8
]


def _table(stamps: list[Any] = STAMPS, tz: str | None = "UTC") -> pa.Table:
    return pa.table(
        {
            "x": [1.0, 2.0, 3.0, 4.0][: len(stamps)],
            "ts": pa.array(stamps, type=pa.timestamp("us", tz=tz)),
        }
    )


def _fit(table: pa.Table, encoding: str = "one_hot") -> FeaturePreprocessor:
    return FeaturePreprocessor.fit(
        table,
        ["x", "ts"],
        standardize=True,
        categorical_encoding=encoding,
        timestamp_components=True,
    )


def test_components_follow_the_unix_seconds_as_one_hot_columns() -> None:
    p = _fit(_table())
    names = p.feature_names_out
    assert names[:2] == ["x", "ts"]
    assert names[2:5] == ["_TS_DOM_ts=7", "_TS_DOM_ts=29", "_TS_DOM_ts=31"]
    assert "_TS_DOW_ts=1" in names and "_TS_DOW_ts=5" in names  # Sunday 1, Thursday 5
    assert [n for n in names if n.startswith("_TS_WOY_")] == [
        "_TS_WOY_ts=1",
        "_TS_WOY_ts=8",
        "_TS_WOY_ts=53",
        "_TS_WOY_ts=<NULL>",
    ]
    assert [n for n in names if n.startswith("_TS_YEAR_")] == [
        "_TS_YEAR_ts=2023",
        "_TS_YEAR_ts=2024",
        "_TS_YEAR_ts=<NULL>",
    ]
    # one row per input column, as before
    assert p.features == ["x", "ts"]
    assert [r["input"] for r in p.feature_info()] == ["x", "ts"]
    assert p.input_schema == [
        {"name": "x", "type": "double"},
        {"name": "ts", "type": "timestamp[us, tz=UTC]"},
    ]
    assert p.input_offsets == [0, 1]
    m = p.transform(_table(), dtype=np.float64)
    assert m.shape == (4, len(names))
    # the NULL timestamp: Unix seconds imputed with the mean (0 once standardized), every
    # component in its NULL category
    row = dict(zip(names, m[1], strict=True))
    assert row["ts"] == 0.0
    assert all(row[p + "ts=<NULL>"] == 1.0 for p, _ in TIMESTAMP_PARTS)
    assert sum(m[1, 2:]) == len(TIMESTAMP_PARTS)
    # every present row has exactly one 1 per component
    for r in (0, 2, 3):
        assert m[r, 2:].sum() == len(TIMESTAMP_PARTS)
    third = dict(zip(names, m[2], strict=True))
    assert third["_TS_HOD_ts=23"] == third["_TS_MOH_ts=59"] == third["_TS_MOY_ts=12"] == 1.0


def test_components_equal_python_calendar_on_many_instants() -> None:
    rng = np.random.default_rng(3)
    seconds = rng.integers(-2_000_000_000, 4_000_000_000, 3000)
    stamps = [dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=int(s)) for s in seconds]
    t = pa.table({"ts": pa.array(stamps, type=pa.timestamp("s", tz="UTC"))})
    p = FeaturePreprocessor.fit(t, ["ts"], standardize=False, timestamp_components=True)
    m = p.transform(t, dtype=np.float64)
    names = np.array(p.feature_names_out)
    for row, stamp in zip(m[:50], stamps[:50], strict=True):
        got = {n.split("=")[0]: int(n.split("=")[1]) for n in names[1:][row[1:] == 1.0]}
        assert got == {
            "_TS_DOM_ts": stamp.day,
            "_TS_DOW_ts": stamp.isoweekday() % 7 + 1,  # BigQuery: Sunday 1 … Saturday 7
            "_TS_MOY_ts": stamp.month,
            "_TS_HOD_ts": stamp.hour,
            "_TS_MOH_ts": stamp.minute,
            "_TS_WOY_ts": int(stamp.strftime("%U")),
            "_TS_YEAR_ts": stamp.year,
        }


def test_components_are_utc_whatever_the_zone() -> None:
    utc = _table()
    new_york = utc.set_column(1, "ts", utc["ts"].cast(pa.timestamp("us", tz="America/New_York")))
    p = _fit(utc)
    np.testing.assert_array_equal(p.transform(utc), p.transform(new_york))
    naive = utc.set_column(1, "ts", utc["ts"].cast(pa.int64()).cast(pa.timestamp("us")))
    q = FeaturePreprocessor.fit(naive, ["x", "ts"], standardize=True, timestamp_components=True)
    assert q.feature_names_out == p.feature_names_out  # wall clock read as UTC


def test_unseen_values_encode_to_zeros_and_dummy_drops_the_most_frequent() -> None:
    p = _fit(_table())
    later = _table([dt.datetime(2031, 3, 15, 12, 1, tzinfo=UTC)])  # a Saturday
    m = p.transform(later, dtype=np.float64)
    names = p.feature_names_out
    row = dict(zip(names, m[0], strict=True))
    unseen = ("_TS_YEAR_", "_TS_DOM_", "_TS_DOW_", "_TS_MOY_", "_TS_MOH_", "_TS_WOY_")
    assert all(v == 0.0 for n, v in row.items() if n.startswith(unseen))
    assert row["_TS_HOD_ts=12"] == 1.0
    d = _fit(_table(), "dummy")
    dummy = d.feature_names_out
    # day of week: Sunday twice, Thursday once → Sunday dropped
    assert [n for n in dummy if n.startswith("_TS_DOW_")] == ["_TS_DOW_ts=5", "_TS_DOW_ts=<NULL>"]
    label = _fit(_table(), "label")
    assert label.feature_names_out == ["x", "ts", *(p + "ts" for p, _ in TIMESTAMP_PARTS)]


def test_round_trip_and_old_dicts_load_as_before() -> None:
    p = _fit(_table())
    again = FeaturePreprocessor.from_dict(p.to_dict())
    np.testing.assert_array_equal(again.transform(_table()), p.transform(_table()))
    assert again.feature_names_out == p.feature_names_out
    # What Shipyard wrote before timestamp components existed: the Unix seconds only.
    old = {
        "format_version": 1,
        "standardize": True,
        "categorical_encoding": "one_hot",
        "columns": [
            {
                "name": "ts",
                "arrow_type": "timestamp[us, tz=UTC]",
                "kind": "timestamp",
                "impute": 1.7e9,
                "center": 1.7e9,
                "scale": 1e7,
                "stats": {"min": 1.6e9, "max": 1.8e9, "mean": 1.7e9, "null_count": 1},
            }
        ],
    }
    legacy = FeaturePreprocessor.from_dict(old)
    assert legacy.feature_names_out == ["ts"] and legacy.input_offsets == [0]
    m = legacy.transform(_table(), dtype=np.float64)
    seconds = np.array([s.timestamp() if s else 1.7e9 for s in STAMPS])
    np.testing.assert_array_equal(m[:, 0], (seconds - 1.7e9) * (1.0 / 1e7))
    assert legacy.to_dict() == old


def test_other_model_types_keep_the_seconds_only() -> None:
    p = FeaturePreprocessor.fit(_table(), ["x", "ts"], standardize=True)
    assert p.feature_names_out == ["x", "ts"]


def test_all_null_timestamp_at_prediction_is_imputed() -> None:
    p = _fit(_table())
    t = pa.table({"x": [1.0], "ts": pa.nulls(1)})
    row = dict(zip(p.feature_names_out, p.transform(t, dtype=np.float64)[0], strict=True))
    assert row["ts"] == 0.0 and row["_TS_YEAR_ts=<NULL>"] == 1.0


def test_a_column_named_like_a_component_is_refused() -> None:
    t = _table().append_column("_TS_DOW_ts", pa.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(InvalidArgument, match="_TS_DOW_ts"):
        FeaturePreprocessor.fit(
            t, ["x", "ts", "_TS_DOW_ts"], standardize=True, timestamp_components=True
        )


@pytest.mark.parametrize(
    "change",
    [
        {"part": "_TS_NOPE_"},
        {"source": "missing"},
        {"kind": "string"},
    ],
)
def test_malformed_component_dicts_are_refused(change: dict[str, Any]) -> None:
    data = _fit(_table()).to_dict()
    data["columns"][2] = {**data["columns"][2], **change}
    with pytest.raises(InvalidArgument):
        FeaturePreprocessor.from_dict(data)
