"""ML.EXPLAIN_FORECAST of ARIMA_PLUS / ARIMA_PLUS_XREG models: the history and the forecast,
decomposed.

Columns, in BigQuery ML's order: the id columns, ``time_series_timestamp``,
``time_series_type`` (``history`` then ``forecast``), ``time_series_data``,
``time_series_adjusted_data``, ``standard_error``, ``confidence_level``,
``prediction_interval_lower_bound`` / ``upper_bound``, ``trend``, the five
``seasonal_period_*`` columns, ``holiday_effect``, ``spikes_and_dips``, ``step_changes``,
``residual``; then one ``holiday_effect_<holiday_name>`` column per holiday of the model (in
ML.HOLIDAY_INFO's order; :mod:`shipyard.sql.arima_holiday_effects`) and, for ARIMA_PLUS_XREG,
one ``attribution_<feature>`` column per feature (:mod:`shipyard.sql.arima_regressors`).

BigQuery ML's identities hold with NULL read as 0. History rows: ``time_series_data`` =
``time_series_adjusted_data`` + ``spikes_and_dips`` + ``step_changes`` + ``residual``, and
``time_series_adjusted_data`` = ``trend`` + the seasonal columns + ``holiday_effect`` + the
attributions (the ARIMA's one-step fit on the data's cleaned, step-adjusted level);
``standard_error`` is the residuals' (sqrt of the ARIMA's variance), the same on every history
row; ``confidence_level`` and the interval bounds are NULL. Forecast rows:
``time_series_adjusted_data`` = ``time_series_data`` (the forecast) = ``trend`` + the seasonal
columns + ``holiday_effect`` + the attributions; ``spikes_and_dips``, ``step_changes`` and
``residual`` are NULL. ``holiday_effect`` is NULL in every row of a series that models no holiday,
``spikes_and_dips`` in the history of a series without spikes or dips, ``step_changes`` in that
of a series without step changes ("no effect found"); otherwise a row without one has 0. On every
row ``holiday_effect`` is the sum of the ``holiday_effect_<holiday_name>`` columns (NULL where the
series does not model that holiday: it fell on no day of its history).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shipyard.errors import FailedPrecondition
from shipyard.sql.arima_adjust import SEASON_NAMES, season_extension
from shipyard.sql.arima_holiday_effects import (
    effects_by_holiday,
    holiday_columns,
    holiday_names,
    models_holiday,
    series_holiday_coefs,
)
from shipyard.sql.arima_regressors import (
    ATTRIBUTION_PREFIX,
    future_attributions,
    history_attributions,
)
from shipyard.sql.forecasting import (
    _arima_model,
    _forecast_params,
    _futures,
    _history_fit,
    _season_lengths,
    _spikes,
    _steps,
    seasonal_components,
)

if TYPE_CHECKING:
    from shipyard.registry.forecasting import ForecastModel
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = ["EXPLAIN_FORECAST_COLUMNS", "ml_explain_forecast"]

_TS = "time_series_timestamp"
#: The fixed columns after the id columns (then the per-holiday and attribution columns).
EXPLAIN_FORECAST_COLUMNS: tuple[str, ...] = (
    _TS,
    "time_series_type",
    "time_series_data",
    "time_series_adjusted_data",
    "standard_error",
    "confidence_level",
    "prediction_interval_lower_bound",
    "prediction_interval_upper_bound",
    "trend",
    *(f"seasonal_period_{name.lower()}" for name in SEASON_NAMES),
    "holiday_effect",
    "spikes_and_dips",
    "step_changes",
    "residual",
)


def _holiday_parts(
    model: ForecastModel, series: dict[str, Any], stamps: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """``holiday_effect_<name>`` values of one part: the effect, or NULL for a holiday the
    series does not model. ``names`` grows with a holiday first seen here (a future table's
    timestamps may reach past the model's horizon)."""
    effects = effects_by_holiday(model, series, stamps)
    for name in effects:
        if name not in names:
            names.append(name)
    out: dict[str, Any] = {}
    for name, column in holiday_columns(names).items():
        if name in effects:
            out[column] = out[column] + effects[name] if column in out else effects[name]
        elif models_holiday(model, series, name):
            out.setdefault(column, np.zeros(len(stamps)))
    return out


def _models_holidays(series: dict[str, Any]) -> bool:
    """Whether the series has a holiday effect (a holiday regressor the ARIMA kept)."""
    return bool(series_holiday_coefs(series))


def _residual_sd(series: dict[str, Any]) -> float:
    """The standard error of the ARIMA's residuals: the square root of its variance."""
    return math.sqrt(max(float(series["arima"]["sigma2"]), 0.0))


def ml_explain_forecast(service: SqlService, call: MLCall) -> pa.Table:
    """ML.EXPLAIN_FORECAST(MODEL m [, STRUCT(h AS horizon, c AS confidence_level)]
    [, TABLE future]): the history (decomposed) followed by the forecast, per series."""
    model = _arima_model(service, call)
    # BigQuery ML: ARIMA_PLUS models need decompose_time_series=TRUE; ARIMA_PLUS_XREG models
    # are explained either way (without it, with no seasonal components)
    decomposed = bool(model.config.get("decompose_time_series", True))
    if not decomposed and not model.feature_cols:
        raise FailedPrecondition(
            f"ML.EXPLAIN_FORECAST needs an ARIMA_PLUS model trained with "
            f"decompose_time_series=TRUE; model {call.model} was trained with FALSE "
            "(ML.FORECAST still applies)"
        )
    horizon, level = _forecast_params(call, model)
    futures = _futures(call, model, horizon)
    holidays = holiday_names(model)
    features = model.feature_cols
    parts: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for series in model.series:
        future = None
        if futures is not None:
            future = futures.get(tuple(series["id"]))
            if future is None:
                continue
        stamps = np.asarray(series["timestamps"])
        y, adjusted = np.asarray(series["y"]), np.asarray(series["adjusted"])
        fitted = _history_fit(series)
        holiday = model.holiday_effect(series, stamps)
        seasons = seasonal_components(model, series) if decomposed else {}
        lengths = _season_lengths(model, series)
        seasonal = sum(seasons.values(), np.zeros(len(stamps)))
        attributions = history_attributions(model, series) if features else {}
        attributed = np.nan_to_num(sum(attributions.values(), np.zeros(len(stamps))))
        n = len(stamps)
        spikes = _spikes(series)
        has_holidays = _models_holidays(series)
        history = {
            _TS: stamps,
            "time_series_type": ["history"] * n,
            "time_series_data": y,
            "time_series_adjusted_data": fitted,
            "standard_error": np.full(n, _residual_sd(series)),
            "trend": fitted - holiday - seasonal - attributed,
            **{f"seasonal_period_{k.lower()}": v for k, v in seasons.items()},
            "holiday_effect": holiday if has_holidays else None,
            "spikes_and_dips": spikes if np.any(spikes != 0.0) else None,
            "step_changes": _steps(series) if series.get("steps") else None,
            "residual": adjusted - fitted,
            **_holiday_parts(model, series, stamps, holidays),
            **{ATTRIBUTION_PREFIX + k: v for k, v in attributions.items()},
        }
        parts.append((series, history))
        fc = model.forecast_series(series, horizon, level, future)
        holiday = model.holiday_effect(series, fc["timestamps"])
        m = len(fc["mean"])
        ahead = {k: season_extension(v, lengths[k], m) for k, v in seasons.items()}
        seasonal = sum(ahead.values(), np.zeros(m))
        attributions = future_attributions(model, series, future) if future is not None else {}
        attributed = np.nan_to_num(sum(attributions.values(), np.zeros(m)))
        forecast = {
            _TS: fc["timestamps"],
            "time_series_type": ["forecast"] * m,
            "time_series_data": fc["mean"],
            "time_series_adjusted_data": fc["mean"],
            "standard_error": fc["se"],
            "confidence_level": [level] * m,
            "prediction_interval_lower_bound": fc["lower"],
            "prediction_interval_upper_bound": fc["upper"],
            "trend": fc["mean"] - holiday - seasonal - attributed,
            **{f"seasonal_period_{k.lower()}": v for k, v in ahead.items()},
            "holiday_effect": holiday if has_holidays else None,
            **_holiday_parts(model, series, fc["timestamps"], holidays),
            **{ATTRIBUTION_PREFIX + k: v for k, v in attributions.items()},
        }
        parts.append((series, forecast))
    names = [
        *EXPLAIN_FORECAST_COLUMNS,
        *dict.fromkeys(holiday_columns(holidays).values()),
        *(ATTRIBUTION_PREFIX + f for f in features),
    ]
    return _table(model, parts, names)


def _table(
    model: ForecastModel, parts: list[tuple[dict[str, Any], dict[str, Any]]], names: list[str]
) -> pa.Table:
    """The rows of ``parts`` as one table; a column a part lacks is NULL there."""
    columns: dict[str, list[Any]] = {c: [] for c in [*model.id_cols, *names]}
    for series, part in parts:
        count = len(part[_TS])
        for i, col in enumerate(model.id_cols):
            columns[col].extend([series["id"][i]] * count)
        for name in names:
            values = part.get(name)
            if values is None:
                columns[name].extend([None] * count)
            elif isinstance(values, np.ndarray):
                columns[name].extend(values.tolist())
            else:
                columns[name].extend(values)
    out: dict[str, pa.Array] = {}
    for i, col in enumerate(model.id_cols):
        out[col] = pa.array(columns[col], type=pa.type_for_alias(model.config["id_types"][i]))
    out[_TS] = pa.array(columns[_TS], type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    out["time_series_type"] = pa.array(columns["time_series_type"], type=pa.string())
    for name in names[2:]:  # an attribution's NaN (a weight the fit left out) is NULL
        nan_is_null = name.startswith(ATTRIBUTION_PREFIX)
        out[name] = pa.array(columns[name], type=pa.float64(), from_pandas=nan_is_null)
    return pa.table(out)
