"""The external regressors of ARIMA_PLUS_XREG models: their weights and attributions.

An ARIMA_PLUS_XREG series is a regression with ARIMA errors (statsforecast's ``xreg``):
``y_t = intercept + sum_f weight_f * x_f,t + eta_t`` with ``eta`` an ARIMA process. The weights
are the fitted ``ex_<j>`` coefficients, in the order of the series' regressors (the feature
columns, then the holiday indicators of :mod:`shipyard.sql.arima`) — the very numbers
``statsforecast.arima.forecast_arima`` multiplies the future feature values by.

* ML.ARIMA_COEFFICIENTS: ``processed_input`` (the feature column), ``weight`` and
  ``category_weights`` (ARRAY<STRUCT<category STRING, weight FLOAT64>>, NULL: the features are
  numeric) — :func:`coefficient_rows`.
* ML.EXPLAIN_FORECAST: ``attribution_<feature>`` = weight x the feature's value, on history rows
  (the training values on the model's time grid) and forecast rows (the future values given) —
  :func:`history_attributions`, :func:`future_attributions`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.registry.forecasting import HOLIDAY_REGRESSOR, ForecastModel

__all__ = [
    "ATTRIBUTION_PREFIX",
    "CATEGORY_WEIGHTS_TYPE",
    "coefficient_rows",
    "future_attributions",
    "history_attributions",
    "regressor_weights",
]

#: ML.EXPLAIN_FORECAST's per-feature columns: this prefix and the feature column's name.
ATTRIBUTION_PREFIX = "attribution_"
#: ML.ARIMA_COEFFICIENTS' ``category_weights`` (as ML.WEIGHTS').
CATEGORY_WEIGHTS_TYPE = pa.list_(
    pa.struct([pa.field("category", pa.string()), pa.field("weight", pa.float64())])
)


def regressor_weights(model: ForecastModel, series: dict[str, Any]) -> dict[str, float | None]:
    """Feature column → its fitted weight in ``series`` (None where the fit has no coefficient
    for it: statsforecast left a regressor out)."""
    coef = series["arima"]["coef"]
    regressors = [k for k in coef if str(k).startswith("ex_")]
    names = list(series.get("xreg_names") or [])
    if len(regressors) != len(names):
        return dict.fromkeys(model.feature_cols)
    by_name = {
        name: float(coef[key])
        for name, key in zip(names, regressors, strict=True)
        if not name.startswith(HOLIDAY_REGRESSOR)
    }
    return {name: by_name.get(name) for name in model.feature_cols}


def history_attributions(model: ForecastModel, series: dict[str, Any]) -> dict[str, np.ndarray]:
    """Feature → weight x its training value at each history point (what the fit used)."""
    n = len(series["timestamps"])
    names = list(series.get("xreg_names") or [])
    stored = series["arima"].get("xreg")
    matrix = None if stored is None else np.asarray(stored, dtype=np.float64)
    if matrix is not None and matrix.ndim == 2 and matrix.shape[1] >= len(names):
        # statsforecast keeps the regressors it was given, a drift column first when it adds one
        matrix = matrix[:, matrix.shape[1] - len(names) :]
    else:  # pragma: no cover - every fitted XREG series keeps its regressors
        matrix = None
    out: dict[str, np.ndarray] = {}
    for feature, weight in regressor_weights(model, series).items():
        if weight is None or matrix is None or feature not in names or len(matrix) != n:
            out[feature] = np.full(n, np.nan)
        else:
            out[feature] = weight * matrix[:, names.index(feature)]
    return out


def future_attributions(
    model: ForecastModel, series: dict[str, Any], future: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Feature → weight x its future value (``future``: the rows ML.EXPLAIN_FORECAST read)."""
    out: dict[str, np.ndarray] = {}
    for feature, weight in regressor_weights(model, series).items():
        values = np.asarray(future[feature], dtype=np.float64)
        out[feature] = np.full(len(values), np.nan) if weight is None else weight * values
    return out


def coefficient_rows(model: ForecastModel) -> list[tuple[dict[str, Any], str, float | None]]:
    """(series, processed_input, weight) for each series and feature, in the model's order."""
    return [
        (series, feature, weight)
        for series in model.series
        for feature, weight in regressor_weights(model, series).items()
    ]
