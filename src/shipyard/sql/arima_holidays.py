"""ARIMA_PLUS custom holidays: ``CREATE MODEL … AS (training_data AS (…), custom_holiday AS (…))``.

BigQuery ML's form: the training query and a holiday query, each named. The holiday query
returns one row per holiday occurrence::

    region STRING, holiday_name STRING, primary_date DATE,
    preholiday_days INT64, postholiday_days INT64

A holiday's window is ``primary_date - preholiday_days`` .. ``primary_date + postholiday_days``.
How Shipyard models them (see :mod:`shipyard.sql.arima`):

* with ``holiday_region``, every custom holiday's region must be that region; a custom holiday
  whose name is one of the region's built-in holidays (the ``holidays`` package's names,
  case-insensitive) replaces that built-in holiday; other names add holidays;
* without ``holiday_region``, the custom holidays alone are modelled (their regions must still be
  country codes of the ``holidays`` package);
* each custom holiday is its own 0/1 external regressor of the ARIMA (the region's built-in
  holidays share one), so each gets its own effect.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from shipyard.errors import InvalidArgument
from shipyard.sql.dialect import TrainingQueries

__all__ = [
    "CUSTOM_HOLIDAY_COLUMNS",
    "CustomHoliday",
    "builtin_holiday_names",
    "named_training_queries",
    "parse_custom_holidays",
]

#: The custom_holiday query's columns, in BigQuery ML's order.
CUSTOM_HOLIDAY_COLUMNS = (
    "region",
    "holiday_name",
    "primary_date",
    "preholiday_days",
    "postholiday_days",
)
_MAX_WINDOW_DAYS = 366
_EPOCH = dt.date(1970, 1, 1)
_ARIMA_TYPES = ("ARIMA_PLUS", "ARIMA_PLUS_XREG")

#: One custom holiday: region, name and its occurrences ``[primary day (days since epoch),
#: preholiday_days, postholiday_days]``.
CustomHoliday = dict[str, Any]


def named_training_queries(
    model_type: str, queries: TrainingQueries
) -> tuple[exp.Expression, exp.Expression | None]:
    """(training query, custom_holiday query or None) of ``AS (training_data AS (…), …)``."""
    if model_type not in _ARIMA_TYPES:
        raise InvalidArgument(
            f"CREATE MODEL … AS (training_data AS (…), custom_holiday AS (…)) applies to "
            f"ARIMA_PLUS and ARIMA_PLUS_XREG models, not {model_type}; give the training query "
            "alone: AS SELECT …",
            model_type=model_type,
        )
    training = queries.query("training_data")
    assert training is not None  # the parser requires it
    return training, queries.query("custom_holiday")


def parse_custom_holidays(table: pa.Table) -> list[CustomHoliday]:
    """The custom_holiday query's rows, checked, grouped by holiday name (first seen first)."""
    by_lower = {name.lower(): name for name in table.column_names}
    missing = [c for c in CUSTOM_HOLIDAY_COLUMNS if c not in by_lower]
    if missing:
        raise InvalidArgument(
            f"the custom_holiday query lacks column(s) {missing}; it must return "
            f"{', '.join(CUSTOM_HOLIDAY_COLUMNS)} (STRING, STRING, DATE, INT64, INT64); it "
            f"returns: {', '.join(table.column_names) or 'no columns'}",
            missing=missing,
        )
    extra = [c for c in table.column_names if c.lower() not in CUSTOM_HOLIDAY_COLUMNS]
    if extra:
        raise InvalidArgument(
            f"the custom_holiday query returns unknown column(s) {extra}; its columns are "
            f"{', '.join(CUSTOM_HOLIDAY_COLUMNS)}",
            unknown=extra,
        )
    if table.num_rows == 0:
        raise InvalidArgument(
            "the custom_holiday query returned no rows; give at least one holiday, or leave "
            "custom_holiday out"
        )
    column = {c: table[by_lower[c]] for c in CUSTOM_HOLIDAY_COLUMNS}
    for name in ("region", "holiday_name"):
        t = column[name].type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
            raise InvalidArgument(
                f"custom_holiday column {name!r} has type {t}; it must be STRING", column=name
            )
    for name in ("preholiday_days", "postholiday_days"):
        t = column[name].type
        if not (pa.types.is_integer(t) or pa.types.is_null(t)):
            raise InvalidArgument(
                f"custom_holiday column {name!r} has type {t}; it must be INT64", column=name
            )
    days = _primary_days(column["primary_date"])
    regions = column["region"].to_pylist()
    names = column["holiday_name"].to_pylist()
    before = column["preholiday_days"].to_pylist()
    after = column["postholiday_days"].to_pylist()
    supported = _country_codes()
    out: dict[str, CustomHoliday] = {}
    for i, (region, name) in enumerate(zip(regions, names, strict=True)):
        if not name or not str(name).strip():
            raise InvalidArgument(
                f"custom_holiday row {i + 1} has no holiday_name", column="holiday_name"
            )
        label = f"custom holiday {name!r}"
        if region is None or str(region).upper() not in supported:
            raise InvalidArgument(
                f"{label} has region {region!r}, not a country code the holidays package "
                f"knows; e.g. {', '.join(sorted(supported)[:12])}, …",
                column="region",
                holiday=name,
            )
        if days[i] is None:
            raise InvalidArgument(
                f"{label} has no primary_date (row {i + 1})", column="primary_date", holiday=name
            )
        for option, value in (("preholiday_days", before[i]), ("postholiday_days", after[i])):
            if value is None or not 0 <= value <= _MAX_WINDOW_DAYS:
                raise InvalidArgument(
                    f"{label} has {option} {value!r}; it must be an integer in "
                    f"0..{_MAX_WINDOW_DAYS}",
                    column=option,
                    holiday=name,
                )
        entry = out.setdefault(
            str(name), {"region": str(region).upper(), "holiday_name": str(name), "occurrences": []}
        )
        if entry["region"] != str(region).upper():
            raise InvalidArgument(
                f"{label} is given for regions {entry['region']!r} and {str(region).upper()!r}; "
                "Shipyard models one region per model: give each holiday one region",
                holiday=name,
            )
        entry["occurrences"].append([days[i], int(before[i]), int(after[i])])
    return list(out.values())


def builtin_holiday_names(region: str, years: range) -> set[str]:
    """The ``holidays`` package's holiday names of ``region`` in ``years``, case-folded."""
    import holidays

    calendar = holidays.country_holidays(region, years=years)
    return {name.casefold() for day in calendar for name in calendar.get_list(day)}


def _primary_days(column: pa.ChunkedArray) -> list[int | None]:
    """primary_date as days since 1970-01-01 (DATE, TIMESTAMP or 'YYYY-MM-DD' text)."""
    t = column.type
    if pa.types.is_null(t):  # NULL AS primary_date: reported row by row
        return [None] * len(column)
    if pa.types.is_date(t):
        values = pc.cast(column, pa.date32()).cast(pa.int32()).to_pylist()
        return [None if v is None else int(v) for v in values]
    if pa.types.is_timestamp(t):
        dates = pc.cast(column, pa.timestamp("us", tz=t.tz)).cast(pa.date32())
        return [None if v is None else int(v) for v in dates.cast(pa.int32()).to_pylist()]
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out: list[int | None] = []
        for text in column.to_pylist():
            if text is None:
                out.append(None)
                continue
            try:
                out.append((dt.date.fromisoformat(text.strip()) - _EPOCH).days)
            except ValueError:
                raise InvalidArgument(
                    f"custom_holiday primary_date {text!r} is not a date (YYYY-MM-DD)",
                    column="primary_date",
                    value=text,
                ) from None
        return out
    raise InvalidArgument(
        f"custom_holiday column 'primary_date' has type {t}; it must be DATE",
        column="primary_date",
    )


def _country_codes() -> set[str]:
    import holidays

    return set(holidays.list_supported_countries())
