"""ARIMA_PLUS and ARIMA_PLUS_XREG: time series models trained with statsforecast's ARIMA.

``CREATE MODEL … OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col=…,
time_series_data_col=… [, time_series_id_col=…])`` fits one ARIMA per time series, all series
of the statement in one training job. The pipeline, step by step:

1. Rows with a NULL timestamp or value are dropped; duplicated timestamps are averaged.
2. ``data_frequency`` (AUTO_FREQUENCY: the median spacing of the timestamps, snapped to the
   nearest of PER_MINUTE, HOURLY, DAILY, WEEKLY, MONTHLY, QUARTERLY, YEARLY); each series is put
   on that regular grid and missing points are filled by linear interpolation.
3. ``time_series_length_fraction`` / ``min_time_series_length`` / ``max_time_series_length``
   keep the most recent points.
4. ``clean_spikes_and_dips`` (default TRUE): a point further than 6 robust standard deviations
   (1.4826 x MAD) from the centred rolling median is a spike or dip and is replaced by that
   median. BigQuery ML does not publish its rule; this is Shipyard's. Holidays (below) are
   not spikes: their days are left as they are.
4b. ``adjust_step_changes`` (default TRUE): level shifts are detected and the history before
   each is moved to the latest level (the rule: :mod:`shipyard.sql.arima_adjust`).
5. ``holiday_region`` (one country code of the ``holidays`` package, e.g. 'US'; daily or finer
   data): a 0/1 holiday indicator is an external regressor of the ARIMA, so the holiday effect
   is its coefficient. Custom holidays (``AS (training_data AS (…), custom_holiday AS (…))``,
   :mod:`shipyard.sql.arima_holidays`) add one regressor each and override built-in holidays
   of the same name.
6. Seasonality: ``seasonalities`` AUTO takes the season of the frequency (DAILY data: WEEKLY,
   HOURLY: DAILY, WEEKLY: YEARLY, MONTHLY: YEARLY, QUARTERLY: YEARLY); one named season is also
   accepted; NO_SEASONALITY fits none. Unlike BigQuery ML (STL + ETS), the season is modelled by
   the seasonal part of the ARIMA, whose seasonal orders auto.ARIMA chooses.
7. ``auto_arima`` TRUE: statsforecast's ``auto_arima_f`` (Hyndman-Khandakar stepwise search,
   AICc, drift allowed), with ``auto_arima_max_order`` as both the largest p, q and the largest
   p+q+P+Q; FALSE: ``Arima`` with ``non_seasonal_order`` (p, d, q) and ``include_drift``.
   The forecasts of ``auto_arima`` equal those of ``statsforecast.models.AutoARIMA(
   season_length=…)`` on the same cleaned series. Many series are fitted in worker processes
   when that pays (:mod:`shipyard.sql.arima_parallel`), with the same results.
8. ``forecast_limit_lower_bound`` / ``upper_bound`` clip forecasts and their intervals.
9. ``decompose_time_series`` (default TRUE): statsforecast's MSTL splits the adjusted history
   into trend and seasonal components for ML.EXPLAIN_FORECAST (:mod:`shipyard.sql.arima_adjust`).

ARIMA_PLUS_XREG: every other column of the training query is a numeric external regressor; its
ML.FORECAST, ML.EVALUATE and ML.DETECT_ANOMALIES need those features' future values as a table.

Not supported (refused with Unsupported, see ``ARIMA_UNSUPPORTED_OPTIONS``):
``auto_arima_min_order`` above 0, several seasonalities or holiday regions, region groups
(GLOBAL, NA, EMEA, JAPAC, LAC), ``trend_smoothing_window_size``,
``hierarchical_time_series_cols``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr, model_validator

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.forecasting import (
    CUSTOM_HOLIDAY_PREFIX,
    FREQUENCIES,
    HOLIDAY_REGRESSOR,
    ForecastModel,
    custom_holiday_indicator,
    holiday_indicator,
    require_statsforecast,
)
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql import arima_adjust
from shipyard.sql.arima_holidays import CustomHoliday, builtin_holiday_names, parse_custom_holidays
from shipyard.sql.arima_parallel import fit_series
from shipyard.sql.options import BaseOptions
from shipyard.sql.training import Progress, UnsupervisedFit

__all__ = [
    "ARIMA_MODEL_TYPES",
    "ARIMA_UNSUPPORTED_OPTIONS",
    "ArimaPlusOptions",
    "ArimaPlusXregOptions",
    "series_keys",
    "timestamps_us",
    "train_arima",
    "with_custom_holidays",
]

ARIMA_MODEL_TYPES: tuple[str, ...] = ("ARIMA_PLUS", "ARIMA_PLUS_XREG")
_US = 1_000_000
_DAY = 86400 * _US
#: Season lengths: fixed (µs) or in months.
_SEASONS: dict[str, tuple[int, int]] = {
    "DAILY": (_DAY, 0),
    "WEEKLY": (7 * _DAY, 0),
    "MONTHLY": (0, 1),
    "QUARTERLY": (0, 3),
    "YEARLY": (0, 12),
}
#: AUTO: the season each data frequency gets.
_AUTO_SEASON = {
    "PER_MINUTE": "DAILY",  # 1440 points: refused below as too long; see _season_period
    "HOURLY": "DAILY",
    "DAILY": "WEEKLY",
    "WEEKLY": "YEARLY",
    "MONTHLY": "YEARLY",
    "QUARTERLY": "YEARLY",
    "YEARLY": None,
}
_MAX_PERIOD = 400
_REGION_GROUPS = ("GLOBAL", "NA", "EMEA", "JAPAC", "LAC")
_SPIKE_SIGMAS = 6.0

#: BigQuery ML options of ARIMA_PLUS(_XREG) that Shipyard refuses: name → what.
ARIMA_UNSUPPORTED_OPTIONS: dict[str, str] = {
    "trend_smoothing_window_size": "trend smoothing of the STL decomposition",
    "hierarchical_time_series_cols": "hierarchical reconciliation",
    "kms_key_name": "customer-managed encryption keys",
    "model_registry": "Vertex AI model registration",
    "vertex_ai_model_id": "Vertex AI model registration",
    "vertex_ai_model_version_aliases": "Vertex AI model registration",
}


# --------------------------------------------------------------------------------------------
# options


class ArimaPlusOptions(BaseOptions):
    """ARIMA_PLUS: BigQuery ML's names and defaults."""

    model_type: Literal["ARIMA_PLUS", "ARIMA_PLUS_XREG"] = "ARIMA_PLUS"
    time_series_timestamp_col: str
    time_series_data_col: str
    time_series_id_col: str | list[str] | None = None
    horizon: int = Field(1000, ge=1, le=10000)
    auto_arima: bool = True
    auto_arima_max_order: int = Field(5, ge=1, le=5)
    auto_arima_min_order: int = Field(0, ge=0, le=5)
    non_seasonal_order: list[int] | None = None
    data_frequency: Literal[
        "AUTO_FREQUENCY",
        "PER_MINUTE",
        "HOURLY",
        "DAILY",
        "WEEKLY",
        "MONTHLY",
        "QUARTERLY",
        "YEARLY",
    ] = "AUTO_FREQUENCY"
    include_drift: bool = False
    holiday_region: str | list[str] | None = None
    clean_spikes_and_dips: bool = True
    adjust_step_changes: bool = True
    decompose_time_series: bool = True
    forecast_limit_lower_bound: float | int | None = None
    forecast_limit_upper_bound: float | int | None = None
    seasonalities: list[str] | None = None
    time_series_length_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    min_time_series_length: int = Field(20, ge=4)
    max_time_series_length: int | None = Field(None, ge=4)
    # the custom_holiday query's holidays (not an option: set by with_custom_holidays)
    _custom_holidays: list[CustomHoliday] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ArimaPlusOptions:
        if self.non_seasonal_order is not None:
            order = self.non_seasonal_order
            if self.auto_arima:
                raise ValueError("option 'non_seasonal_order' needs auto_arima=FALSE")
            if len(order) != 3 or not (0 <= order[0] <= 5 and 0 <= order[1] <= 2):
                raise ValueError(
                    f"option 'non_seasonal_order' must be (p, d, q) with p in 0..5, d in 0..2 "
                    f"and q in 0..5, got {tuple(order)}"
                )
            if not 0 <= order[2] <= 5:
                raise ValueError(f"non_seasonal_order q must be in 0..5, got {order[2]}")
        elif not self.auto_arima:
            raise ValueError("auto_arima=FALSE needs option 'non_seasonal_order' = (p, d, q)")
        if self.include_drift and self.auto_arima:
            raise ValueError(
                "option 'include_drift' needs auto_arima=FALSE (auto.ARIMA decides the drift)"
            )
        low, high = self.forecast_limit_lower_bound, self.forecast_limit_upper_bound
        if low is not None and high is not None and not low < high:
            raise ValueError(
                f"forecast_limit_lower_bound ({low}) must be below forecast_limit_upper_bound "
                f"({high})"
            )
        if self.max_time_series_length is not None and self.time_series_length_fraction:
            raise ValueError(
                "options 'max_time_series_length' and 'time_series_length_fraction' exclude "
                "each other"
            )
        return self

    @property
    def id_cols(self) -> list[str]:
        value = self.time_series_id_col
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)


class ArimaPlusXregOptions(ArimaPlusOptions):
    """ARIMA_PLUS_XREG: ARIMA_PLUS's options; every other column is a regressor."""

    model_type: Literal["ARIMA_PLUS", "ARIMA_PLUS_XREG"] = "ARIMA_PLUS_XREG"


def with_custom_holidays(options: ArimaPlusOptions, holidays: pa.Table) -> ArimaPlusOptions:
    """``options`` with the custom_holiday query's rows (checked; see
    :mod:`shipyard.sql.arima_holidays`)."""
    out = options.model_copy()
    out._custom_holidays = parse_custom_holidays(holidays)
    return out


def _seasonality(options: ArimaPlusOptions, frequency: str) -> str | None:
    values = [str(v).upper() for v in (options.seasonalities or ["AUTO"])]
    valid = ("AUTO", "NO_SEASONALITY", *_SEASONS)
    bad = [v for v in values if v not in valid]
    if bad:
        raise InvalidArgument(
            f"seasonalities {bad} are not valid; valid values: {', '.join(valid)}",
            option="seasonalities",
        )
    if len(values) > 1:
        raise Unsupported(
            f"seasonalities {values}: Shipyard's ARIMA models one seasonal period; give one of "
            f"{', '.join(valid)}",
            option="seasonalities",
        )
    if values[0] == "NO_SEASONALITY":
        return None
    if values[0] == "AUTO":
        return _AUTO_SEASON[frequency]
    return values[0]


#: AUTO: the seasons the decomposition looks for besides the ARIMA's, per data frequency.
_AUTO_DECOMPOSE = {"HOURLY": ("DAILY", "WEEKLY"), "DAILY": ("WEEKLY", "YEARLY")}


def _decomposition_seasons(options: ArimaPlusOptions, frequency: str) -> dict[str, Any]:
    """``periods`` (candidate season → length in points) and ``declared`` seasons, for MSTL."""
    declared = [str(v).upper() for v in (options.seasonalities or ["AUTO"])]
    if declared == ["NO_SEASONALITY"]:
        return {"periods": {}, "declared": []}
    if declared == ["AUTO"]:
        auto = _AUTO_SEASON[frequency]
        names: tuple[str, ...] = _AUTO_DECOMPOSE.get(frequency) or ((auto,) if auto else ())
        declared = []
    else:
        names = tuple(declared)
    periods = {name: _season_period(name, frequency, explicit=False) for name in names}
    return {"periods": {n: p for n, p in periods.items() if p > 1}, "declared": declared}


def _season_period(season: str | None, frequency: str, explicit: bool) -> int:
    if season is None:
        return 1
    step, months, _ = FREQUENCIES[frequency]
    s_step, s_months = _SEASONS[season]
    if step and s_step:
        period = round(s_step / step)
    elif months and s_months:
        period = round(s_months / months)
    elif step and s_months:
        period = round(s_months * 30.436875 * _DAY / step)
    else:
        period = 0
    if period < 2 or period > _MAX_PERIOD:
        if not explicit:
            return 1
        raise InvalidArgument(
            f"seasonality {season} does not fit {frequency} data (a period of {period} points; "
            f"it must be 2..{_MAX_PERIOD})",
            option="seasonalities",
        )
    return period


# --------------------------------------------------------------------------------------------
# training


def timestamps_us(column: pa.ChunkedArray, name: str) -> np.ndarray:
    t = column.type
    if pa.types.is_date(t):
        days = pc.cast(column, pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False)
        return days.astype(np.int64) * _DAY  # type: ignore[no-any-return]
    if pa.types.is_timestamp(t):
        us = pc.cast(column, pa.timestamp("us", tz=t.tz))
        return us.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)  # type: ignore[no-any-return]
    raise InvalidArgument(
        f"time_series_timestamp_col {name!r} has type {t}; it must be TIMESTAMP, DATETIME or DATE",
        column=name,
    )


def _infer_frequency(diffs: np.ndarray) -> str:
    if len(diffs) == 0:
        raise InvalidArgument(
            "cannot infer data_frequency from a single timestamp; give more points or set "
            "option 'data_frequency'"
        )
    median = float(np.median(diffs))
    candidates = {
        "PER_MINUTE": 60 * _US,
        "HOURLY": 3600 * _US,
        "DAILY": _DAY,
        "WEEKLY": 7 * _DAY,
        "MONTHLY": 30.436875 * _DAY,
        "QUARTERLY": 91.310625 * _DAY,
        "YEARLY": 365.2425 * _DAY,
    }
    return min(candidates, key=lambda k: abs(math.log(max(median, 1.0) / candidates[k])))


def _grid_positions(stamps: np.ndarray, frequency: str) -> tuple[np.ndarray, int]:
    """Each timestamp's position on the frequency's grid from the first one, and that start."""
    step, months, _ = FREQUENCIES[frequency]
    start = int(stamps[0])
    if step:
        return np.rint((stamps - start) / step).astype(np.int64), start
    month_index = stamps.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    return (month_index - month_index[0]) // months, start


def _regularise(
    stamps: np.ndarray, values: np.ndarray, frequency: str
) -> tuple[np.ndarray, np.ndarray]:
    """(grid timestamps, values on the grid): duplicates averaged, gaps linearly interpolated."""
    from shipyard.registry.forecasting import future_timestamps

    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], values[order]
    positions, start = _grid_positions(stamps, frequency)
    size = int(positions[-1]) + 1
    sums = np.bincount(positions, weights=values, minlength=size)
    counts = np.bincount(positions, minlength=size)
    seen = counts > 0
    grid_values = np.empty(size)
    grid_values[seen] = sums[seen] / counts[seen]
    idx = np.arange(size)
    grid_values[~seen] = np.interp(idx[~seen], idx[seen], grid_values[seen])
    grid = np.concatenate([[start], future_timestamps(start, size - 1, frequency)])
    return grid.astype(np.int64), grid_values


def _clean_spikes(y: np.ndarray, period: int, keep: np.ndarray | None = None) -> np.ndarray:
    """``y`` with spikes and dips replaced by the centred rolling median (see the module doc);
    points where ``keep`` is true (holidays) stay."""
    n = len(y)
    half = max(3, period // 2)
    if n < 2 * half + 1:
        return y.copy()
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(y, half, mode="edge")
    median = np.median(sliding_window_view(padded, 2 * half + 1), axis=1)
    deviation = y - median
    mad = float(np.median(np.abs(deviation - np.median(deviation))))
    if mad <= 0:
        return y.copy()
    spikes = np.abs(deviation) > _SPIKE_SIGMAS * 1.4826 * mad
    if keep is not None:
        spikes &= ~keep
    return np.where(spikes, median, y)  # type: ignore[no-any-return]


def _holiday_region(options: ArimaPlusOptions, frequency: str) -> str | None:
    region = options.holiday_region
    if region is None:
        return None
    regions = [region] if isinstance(region, str) else list(region)
    if len(regions) != 1:
        raise Unsupported(
            f"holiday_region {regions}: Shipyard models one holiday region per model",
            option="holiday_region",
        )
    code = str(regions[0]).upper()
    if code in _REGION_GROUPS:
        raise Unsupported(
            f"holiday_region {code!r} (a group of countries) is not supported; give one country "
            "code such as 'US', 'GB' or 'DE'",
            option="holiday_region",
        )
    import holidays

    supported = holidays.list_supported_countries()
    if code not in supported:
        raise InvalidArgument(
            f"holiday_region {code!r} is not a country code the holidays package knows; e.g. "
            f"{', '.join(sorted(supported)[:12])}, …",
            option="holiday_region",
        )
    if frequency not in ("DAILY", "HOURLY", "PER_MINUTE"):
        raise InvalidArgument(
            f"holiday_region needs daily or finer data; this data is {frequency}",
            option="holiday_region",
        )
    return code


def _custom_holiday_plan(
    options: ArimaPlusOptions, region: str | None, frequency: str, stamps: np.ndarray
) -> tuple[list[CustomHoliday], list[str]]:
    """(custom holidays, the built-in holiday names they override) after checking them."""
    customs = list(options._custom_holidays)
    if not customs:
        return [], []
    if frequency not in ("DAILY", "HOURLY", "PER_MINUTE"):
        raise InvalidArgument(
            f"custom holidays need daily or finer data; this data is {frequency}",
            option="custom_holiday",
        )
    if region is None:
        return customs, []
    other = [h for h in customs if h["region"] != region]
    if other:
        raise InvalidArgument(
            f"custom holiday {other[0]['holiday_name']!r} has region {other[0]['region']!r}, "
            f"but the model's holiday_region is {region!r}; custom holidays must be of that "
            "region",
            holiday=other[0]["holiday_name"],
        )
    days = [int(o[0]) for h in customs for o in h["occurrences"]]
    days += [int(stamps.min() // _DAY), int(stamps.max() // _DAY)]
    first, last = np.datetime64(min(days), "D"), np.datetime64(max(days), "D")
    years = range(int(str(first)[:4]), int(str(last)[:4]) + 2)  # the forecast's year too
    builtin = builtin_holiday_names(region, years)
    return customs, [h["holiday_name"] for h in customs if h["holiday_name"].casefold() in builtin]


def series_keys(table: pa.Table, id_cols: list[str]) -> dict[tuple[Any, ...], np.ndarray]:
    if not id_cols:
        return {(): np.arange(table.num_rows)}
    columns = [table[c].to_pylist() for c in id_cols]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(zip(*columns, strict=True)):
        groups.setdefault(key, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def _check_columns(table: pa.Table, options: ArimaPlusOptions) -> list[str]:
    names = table.column_names
    needed = [options.time_series_timestamp_col, options.time_series_data_col, *options.id_cols]
    for option, col in [
        ("time_series_timestamp_col", options.time_series_timestamp_col),
        ("time_series_data_col", options.time_series_data_col),
        *(("time_series_id_col", c) for c in options.id_cols),
    ]:
        if col not in names:
            raise InvalidArgument(
                f"{option} {col!r} is not a column of the training data; its columns are: "
                f"{', '.join(names)}",
                option=option,
                column=col,
            )
    data_type = table[options.time_series_data_col].type
    if not (pa.types.is_integer(data_type) or pa.types.is_floating(data_type)) and not (
        pa.types.is_decimal(data_type)
    ):
        raise InvalidArgument(
            f"time_series_data_col {options.time_series_data_col!r} has type {data_type}; it "
            "must be numeric (INT64, NUMERIC, FLOAT64)",
            column=options.time_series_data_col,
        )
    for col in options.id_cols:
        t = table[col].type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
            raise InvalidArgument(
                f"time_series_id_col {col!r} has type {t}; it must be STRING or INT64",
                column=col,
            )
    features = [c for c in names if c not in needed]
    if options.model_type == "ARIMA_PLUS":
        if features:
            raise InvalidArgument(
                f"ARIMA_PLUS trains on the timestamp, data and id columns only; the training "
                f"query also returns {features} (drop them, or use ARIMA_PLUS_XREG to use them "
                "as regressors)",
                columns=features,
            )
        return []
    if not features:
        raise InvalidArgument(
            "ARIMA_PLUS_XREG needs at least one feature column besides the timestamp, data and "
            "id columns"
        )
    for col in features:
        t = table[col].type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            raise InvalidArgument(
                f"ARIMA_PLUS_XREG feature {col!r} has type {t}; features must be numeric",
                column=col,
            )
    return features


def _keep_recent(n: int, options: ArimaPlusOptions) -> int:
    if options.max_time_series_length is not None:
        return min(n, options.max_time_series_length)
    if options.time_series_length_fraction is not None:
        wanted = math.ceil(options.time_series_length_fraction * n)
        return min(n, max(options.min_time_series_length, wanted))
    return n


def fit_settings(options: ArimaPlusOptions) -> dict[str, Any]:
    """What fitting one series needs of the options (plain values: sent to worker processes)."""
    return {
        "auto_arima": options.auto_arima,
        "max_order": options.auto_arima_max_order,
        "order": list(options.non_seasonal_order or (0, 0, 0)),
        "include_drift": options.include_drift,
    }


def train_arima(
    table: pa.Table, options: Any, report: Progress, warm_start: Predictor | None = None
) -> UnsupervisedFit:
    """CREATE MODEL for ARIMA_PLUS / ARIMA_PLUS_XREG: one ARIMA per series."""
    started = time.perf_counter()  # ML.TRAINING_INFO's duration_ms: the whole fit, as BigQuery ML
    if options.auto_arima_min_order > 0:
        raise Unsupported(
            f"auto_arima_min_order={options.auto_arima_min_order} is not supported: "
            "statsforecast's auto.ARIMA searches from order 0 (leave it out)",
            option="auto_arima_min_order",
        )
    if warm_start is not None:  # pragma: no cover - the options have no warm_start
        raise Unsupported("warm_start is not supported for ARIMA_PLUS")
    features = _check_columns(table, options)
    ts_col, data_col, id_cols = (
        options.time_series_timestamp_col,
        options.time_series_data_col,
        options.id_cols,
    )
    valid = pc.and_(pc.is_valid(table[ts_col]), pc.is_valid(table[data_col]))
    for col in features:
        valid = pc.and_(valid, pc.is_valid(table[col]))
    table = table.filter(valid)
    if table.num_rows == 0:
        raise InvalidArgument("the training data has no rows with a timestamp and a value")
    stamps = timestamps_us(table[ts_col], ts_col)
    values = pc.cast(table[data_col], pa.float64()).to_numpy(zero_copy_only=False)
    x_all = (
        np.column_stack(
            [pc.cast(table[c], pa.float64()).to_numpy(zero_copy_only=False) for c in features]
        )
        if features
        else None
    )
    groups = series_keys(table, id_cols)
    frequency = options.data_frequency
    if frequency == "AUTO_FREQUENCY":
        diffs = [np.diff(np.unique(stamps[idx])) for idx in groups.values()]
        frequency = _infer_frequency(np.concatenate(diffs) if diffs else np.zeros(0))
    season = _seasonality(options, frequency)
    period = _season_period(season, frequency, explicit=bool(options.seasonalities))
    if period == 1:
        season = None
    region = _holiday_region(options, frequency)
    customs, overridden = _custom_holiday_plan(options, region, frequency, stamps)

    def prepare(key: tuple[Any, ...], idx: np.ndarray) -> dict[str, Any]:
        grid, y = _regularise(stamps[idx], values[idx], frequency)
        x_cols: list[np.ndarray] = []
        names: list[str] = []
        for j, name in enumerate(features):
            assert x_all is not None
            _, xj = _regularise(stamps[idx], x_all[idx, j], frequency)
            x_cols.append(xj)
            names.append(name)
        keep = _keep_recent(len(y), options)
        grid, y = grid[-keep:], y[-keep:]
        x_cols = [c[-keep:] for c in x_cols]
        if len(y) < 3:
            raise InvalidArgument(
                f"time series {_key_text(id_cols, key)} has {len(y)} point(s); ARIMA_PLUS needs "
                "at least 3",
                series=list(key),
            )
        holiday_cols: list[np.ndarray] = []

        def add_holiday(name: str, indicator: np.ndarray) -> None:
            # a holiday seen on no day (or every day) of the history, or on the very days of
            # one already in, cannot be told apart: it is left out
            seen = any(np.array_equal(indicator, c) for c in holiday_cols)
            if indicator.any() and not indicator.all() and not seen:
                holiday_cols.append(indicator)
                x_cols.append(indicator)
                names.append(name)

        if region is not None:
            add_holiday(HOLIDAY_REGRESSOR, holiday_indicator(grid, region, exclude=overridden))
        for holiday in customs:
            add_holiday(
                CUSTOM_HOLIDAY_PREFIX + holiday["holiday_name"],
                custom_holiday_indicator(grid, holiday["occurrences"]),
            )
        # a holiday's own days are its effect, not spikes or dips to clean
        on_holiday = np.any(holiday_cols, axis=0) if holiday_cols else None
        cleaned = (
            _clean_spikes(y, period, on_holiday) if options.clean_spikes_and_dips else y.copy()
        )
        steps = (
            arima_adjust.detect_step_changes(cleaned, period) if options.adjust_step_changes else []
        )
        adjusted = arima_adjust.remove_steps(cleaned, steps) if steps else cleaned
        return {
            "id": list(key),
            "timestamps": grid,
            "y": y,
            "adjusted": adjusted,
            "steps": [[int(at), float(size)] for at, size in steps],
            "xreg_names": names,
            "xreg_train": np.column_stack(x_cols) if x_cols else None,
            "period": period,
        }

    prepared = [prepare(k, idx) for k, idx in groups.items()]
    require_statsforecast()  # a clear error when the extra is missing, before any fitting
    report(0.1, f"fitting {len(prepared)} time series")

    settings = fit_settings(options)
    tasks = [(s["adjusted"], s.pop("xreg_train"), period, settings) for s in prepared]
    fitted = []
    for series, result in zip(prepared, fit_series(tasks, report), strict=True):
        if isinstance(result, str):
            raise InvalidArgument(
                f"ARIMA could not be fitted to time series {_key_text(id_cols, series['id'])}: "
                f"{result}",
                series=series["id"],
            )
        series["arima"] = result
        coef = result["coef"]
        regressors = [k for k in coef if k.startswith("ex_")]
        names = series["xreg_names"]
        coefs = (
            {
                name: float(coef[regressors[j]])
                for j, name in enumerate(names)
                if name.startswith(HOLIDAY_REGRESSOR)
            }
            if len(regressors) == len(names)
            else {}
        )
        series["holiday_coefs"] = coefs
        series["holiday_coef"] = coefs.get(HOLIDAY_REGRESSOR)
        fitted.append(series)
    report(0.95, "fitted")
    id_types = [str(table[c].type) for c in id_cols]
    id_types = ["string" if t == "large_string" else t for t in id_types]
    config = {
        "model_type": options.model_type,
        "timestamp_col": ts_col,
        "data_col": data_col,
        "id_cols": id_cols,
        "id_types": id_types,
        "feature_cols": features,
        "frequency": frequency,
        "season": season,
        "period": period,
        "horizon": options.horizon,
        "holiday_region": region,
        "custom_holidays": {
            h["holiday_name"]: {"region": h["region"], "occurrences": h["occurrences"]}
            for h in customs
        },
        "overridden_holidays": overridden,
        "adjust_step_changes": options.adjust_step_changes,
        "forecast_limit_lower_bound": options.forecast_limit_lower_bound,
        "forecast_limit_upper_bound": options.forecast_limit_upper_bound,
        "decompose_time_series": options.decompose_time_series,
        # ML.EXPLAIN_FORECAST decomposes the stored history by MSTL when asked (the forecasts do
        # not depend on it, so training does not pay for it): the seasons it looks for
        "decomposition": _decomposition_seasons(options, frequency),
    }
    model = ForecastModel(config=config, series=fitted)
    described = [ts_col, *id_cols, *features]
    preprocessor = FeaturePreprocessor.fit(
        table, described, standardize=False, categorical_encoding="one_hot"
    )
    rows = [
        {
            "training_run": 0,
            "iteration": 0,
            "loss": None,
            "eval_loss": None,
            "learning_rate": None,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        }
    ]
    aics = [float(s["arima"]["aic"]) for s in fitted if s["arima"].get("aic") is not None]
    metrics: dict[str, float | None] = {
        "time_series_count": float(len(fitted)),
        "mean_aic": float(np.mean(aics)) if aics else None,
        "mean_variance": float(np.mean([float(s["arima"]["sigma2"]) for s in fitted])),
    }
    predictor_config = {
        "model_type": options.model_type,
        "matrix_dtype": "float64",
        "id_cols": id_cols,
        "id_types": id_types,
    }
    return UnsupervisedFit(
        task="forecasting",
        model=model,
        preprocessor=preprocessor,
        features=described,
        training_info=rows,
        metrics=metrics,
        predictor_config=predictor_config,
    )


def _key_text(id_cols: list[str], key: Any) -> str:
    if not id_cols:
        return "(the only series)"
    return ", ".join(f"{c}={v!r}" for c, v in zip(id_cols, key, strict=True))
