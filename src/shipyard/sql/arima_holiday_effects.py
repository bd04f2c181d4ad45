"""The holidays of an ARIMA_PLUS / ARIMA_PLUS_XREG model, one by one.

* ML.HOLIDAY_INFO(MODEL m): the holidays the model uses, one row per occurrence, with BigQuery
  ML's columns ``region``, ``holiday_name``, ``primary_date``, ``preholiday_days`` and
  ``postholiday_days``. Built-in holidays (``holiday_region``, the ``holidays`` package's names)
  are listed on each of their days from the first day of the training data to the last day of
  the model's ``horizon``, with a window of 0 days; custom holidays with each occurrence and
  window the ``custom_holiday`` query gave. A holiday no series kept (it fell on no day of the
  history) is not listed; a model without holidays gives no rows, as BigQuery ML's does.
* :func:`effects_by_holiday`: ML.EXPLAIN_FORECAST's ``holiday_effect_<holiday_name>`` columns
  (:func:`holiday_columns`: the name with each run of characters other than letters, digits and
  ``_`` as one ``_``, so that the column is a plain identifier even for "New Year's Day" or
  "Martin Luther King Jr. Day"). A custom holiday is its own regressor, so its effect is its
  coefficient on its window's days.
  The region's built-in holidays share one regressor (see :mod:`shipyard.sql.arima`): its
  effect on a day is shared equally by the built-in holidays of that day (usually one), so the
  per-holiday effects add up to ``holiday_effect`` exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shipyard.errors import InvalidArgument
from shipyard.registry.forecasting import (
    CUSTOM_HOLIDAY_PREFIX,
    HOLIDAY_REGRESSOR,
    ForecastModel,
    custom_holiday_indicator,
    future_timestamps,
)
from shipyard.sql.arima import ARIMA_MODEL_TYPES

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "HOLIDAY_EFFECT_PREFIX",
    "HOLIDAY_INFO_COLUMNS",
    "effects_by_holiday",
    "holiday_columns",
    "holiday_info_rows",
    "holiday_names",
    "ml_holiday_info",
    "models_holiday",
    "series_holiday_coefs",
]

#: ML.HOLIDAY_INFO's columns, in BigQuery ML's order.
HOLIDAY_INFO_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("region", pa.string()),
    ("holiday_name", pa.string()),
    ("primary_date", pa.date32()),
    ("preholiday_days", pa.int64()),
    ("postholiday_days", pa.int64()),
)
#: ML.EXPLAIN_FORECAST's per-holiday columns: this prefix and the holiday's name.
HOLIDAY_EFFECT_PREFIX = "holiday_effect_"
_DAY_US = 86400 * 1_000_000
_NOT_IDENTIFIER = re.compile(r"[^0-9A-Za-z_]+")


def holiday_columns(names: Sequence[str]) -> dict[str, str]:
    """Holiday name → its ML.EXPLAIN_FORECAST column: ``holiday_effect_`` and the name with each
    run of other characters than letters, digits and ``_`` replaced by one ``_``. Names that
    give the same column (case-insensitively, as SQL compares names) share the first one's."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        column = HOLIDAY_EFFECT_PREFIX + _NOT_IDENTIFIER.sub("_", name).strip("_")
        out[name] = seen.setdefault(column.casefold(), column)
    return out


def series_holiday_coefs(series: dict[str, Any]) -> dict[str, float]:
    """Holiday regressor name → coefficient (a model from before custom holidays: the one
    built-in regressor's)."""
    coefs = series.get("holiday_coefs")
    if coefs is None:
        coef = series.get("holiday_coef")
        return {} if coef is None else {HOLIDAY_REGRESSOR: float(coef)}
    return {str(k): float(v) for k, v in coefs.items()}


def builtin_holidays_by_day(
    region: str, days: np.ndarray, exclude: Sequence[str]
) -> list[list[str]]:
    """For each day (days since 1970-01-01), the names of ``region``'s built-in holidays on it,
    less those in ``exclude`` (case-insensitive): the days :func:`holiday_indicator` marks."""
    import holidays

    if len(days) == 0:
        return []
    dates = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    years = range(int(str(dates.min())[:4]), int(str(dates.max())[:4]) + 1)
    calendar = holidays.country_holidays(region, years=years)
    skip = {name.casefold() for name in exclude}
    named = {
        np.datetime64(d, "D"): [n for n in calendar.get_list(d) if n.casefold() not in skip]
        for d in calendar
    }
    return [named.get(d, []) for d in dates]


def effects_by_holiday(
    model: ForecastModel, series: dict[str, Any], stamps: np.ndarray
) -> dict[str, np.ndarray]:
    """Holiday name → its effect at ``stamps`` for one series, for every holiday the series
    models (zeros where it does not fall); the values add up to
    :meth:`ForecastModel.holiday_effect` at every timestamp."""
    out: dict[str, np.ndarray] = {}
    stamps = np.asarray(stamps, dtype=np.int64)
    for regressor, coef in series_holiday_coefs(series).items():
        if regressor.startswith(CUSTOM_HOLIDAY_PREFIX):
            name = regressor[len(CUSTOM_HOLIDAY_PREFIX) :]
            occurrences = model.config["custom_holidays"][name]["occurrences"]
            _add(out, name, coef * custom_holiday_indicator(stamps, occurrences))
            continue
        overridden = model.config.get("overridden_holidays") or ()
        by_day = builtin_holidays_by_day(
            model.config["holiday_region"], stamps // _DAY_US, overridden
        )
        for i, names in enumerate(by_day):
            for name in names:
                out.setdefault(name, np.zeros(len(stamps)))[i] += coef / len(names)
    return out


def models_holiday(model: ForecastModel, series: dict[str, Any], name: str) -> bool:
    """Whether ``series`` models holiday ``name`` (a custom one, or one of the built-in ones)."""
    kept = series_holiday_coefs(series)
    if name in (model.config.get("custom_holidays") or {}):
        return CUSTOM_HOLIDAY_PREFIX + name in kept
    return HOLIDAY_REGRESSOR in kept


def _add(out: dict[str, np.ndarray], name: str, values: np.ndarray) -> None:
    if name in out:
        out[name] = out[name] + values
    else:
        out[name] = values


# -- ML.HOLIDAY_INFO --------------------------------------------------------------------------


def _kept(model: ForecastModel) -> set[str]:
    """The holiday regressors at least one series kept."""
    return {name for s in model.series for name in series_holiday_coefs(s)}


def _builtin_span(model: ForecastModel, series: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(first day, last day) — days since 1970-01-01 — from the first training day of
    ``series`` to the last day of the model's horizon."""
    first = min(int(s["timestamps"][0]) for s in series)
    horizon = int(model.config.get("horizon") or 1)
    last = max(
        int(future_timestamps(int(s["timestamps"][-1]), horizon, model.config["frequency"])[-1])
        for s in series
    )
    return first // _DAY_US, last // _DAY_US


def _builtin_rows(model: ForecastModel, series: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """(holiday name, day) of every built-in holiday day over the span of ``series``."""
    first, last = _builtin_span(model, series)
    days = np.arange(first, last + 1, dtype=np.int64)
    overridden = model.config.get("overridden_holidays") or ()
    by_day = builtin_holidays_by_day(model.config["holiday_region"], days, overridden)
    return [(name, int(day)) for day, names in zip(days, by_day, strict=True) for name in names]


def holiday_info_rows(model: ForecastModel) -> list[tuple[str, str, int, int, int]]:
    """(region, holiday_name, primary day, preholiday_days, postholiday_days), by name then
    date."""
    kept = _kept(model)
    rows: list[tuple[str, str, int, int, int]] = []
    region = model.config.get("holiday_region")
    if HOLIDAY_REGRESSOR in kept and region:
        with_builtin = [s for s in model.series if HOLIDAY_REGRESSOR in series_holiday_coefs(s)]
        rows += [(region, name, day, 0, 0) for name, day in _builtin_rows(model, with_builtin)]
    for name, custom in (model.config.get("custom_holidays") or {}).items():
        if CUSTOM_HOLIDAY_PREFIX + name not in kept:
            continue
        for primary, before, after in custom["occurrences"]:
            rows.append((custom["region"], name, int(primary), int(before), int(after)))
    rows = sorted(set(rows), key=lambda r: (r[1].casefold(), r[1], r[2], r[3], r[4]))
    return rows


def holiday_names(model: ForecastModel) -> list[str]:
    """The names ML.HOLIDAY_INFO lists, in its order (each once)."""
    return list(dict.fromkeys(row[1] for row in holiday_info_rows(model)))


def ml_holiday_info(service: SqlService, call: MLCall) -> pa.Table:
    """ML.HOLIDAY_INFO(MODEL m): the holidays an ARIMA_PLUS / ARIMA_PLUS_XREG model uses."""
    from shipyard.sql.clustering import require_model_type

    call.check_params({})
    if call.input is not None:
        raise InvalidArgument(
            f"ML.{call.function} takes no input rows: ML.{call.function}(MODEL {call.model})"
        )
    require_model_type(service, call, ARIMA_MODEL_TYPES)
    model = service.models.load(call.model).model
    assert isinstance(model, ForecastModel)
    rows = holiday_info_rows(model)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in HOLIDAY_INFO_COLUMNS]
    out: dict[str, pa.Array] = {}
    for (name, dtype), values in zip(HOLIDAY_INFO_COLUMNS, columns, strict=True):
        if pa.types.is_date(dtype):  # days since 1970-01-01
            out[name] = pa.array(list(values), type=pa.int32()).cast(dtype)
        else:
            out[name] = pa.array(list(values), type=dtype)
    return pa.table(out)
