"""The ML functions of ARIMA_PLUS / ARIMA_PLUS_XREG models (trained by :mod:`shipyard.sql.arima`).

* ML.FORECAST(MODEL m [, STRUCT(h AS horizon, c AS confidence_level)] [, TABLE future]):
  BigQuery ML's columns (the id columns, ``forecast_timestamp``, ``forecast_value``,
  ``standard_error``, ``confidence_level``, ``prediction_interval_lower_bound`` / ``upper_bound``
  and their deprecated ``confidence_interval_*`` twins). Defaults: horizon 3, confidence 0.95;
  the horizon may not exceed the model's ``horizon`` option. ARIMA_PLUS_XREG reads the future
  feature values (and timestamps) from the table.
* ML.EXPLAIN_FORECAST: the history and the forecast, decomposed as far as the model allows
  (:mod:`shipyard.sql.arima_explain`).
* ML.EVALUATE: with rows after the training data, MAE, MSE, RMSE, MAPE, sMAPE and MASE per
  series, or with ``perform_aggregation=FALSE`` the forecast, its interval and the errors per
  input row; without rows, ML.ARIMA_EVALUATE's table.
* ML.ARIMA_EVALUATE, ML.ARIMA_COEFFICIENTS (with the ARIMA_PLUS_XREG regressors' weights,
  :mod:`shipyard.sql.arima_regressors`), ML.DETECT_ANOMALIES (``anomaly_prob_threshold``),
  ML.HOLIDAY_INFO (:mod:`shipyard.sql.arima_holiday_effects`).
* ML.PREDICT on an ARIMA model is refused with a pointer to ML.FORECAST.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import FailedPrecondition, InvalidArgument, Unsupported
from shipyard.registry.forecasting import FREQUENCIES, ForecastModel, check_forecast_params
from shipyard.sql.arima import ARIMA_MODEL_TYPES, series_keys, timestamps_us
from shipyard.sql.arima_adjust import SEASON_NAMES, decompose, step_component
from shipyard.sql.arima_holiday_effects import ml_holiday_info
from shipyard.sql.arima_regressors import (
    CATEGORY_WEIGHTS_TYPE,
    coefficient_rows,
    history_attributions,
)

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "FORECAST_METRICS",
    "detect_anomalies",
    "forecast_metrics",
    "handlers",
    "ml_arima_coefficients",
    "ml_arima_evaluate",
    "ml_evaluate_forecasting",
    "ml_forecast",
]

_DAY = 86400 * 1_000_000


# --------------------------------------------------------------------------------------------
# ML functions


def _arima_model(service: SqlService, call: MLCall) -> ForecastModel:
    from shipyard.sql.clustering import require_model_type

    require_model_type(service, call, ARIMA_MODEL_TYPES)
    model = service.models.load(call.model).model
    assert isinstance(model, ForecastModel)
    return model


def _forecast_params(call: MLCall, model: ForecastModel) -> tuple[int, float]:
    call.check_params({"horizon": int, "confidence_level": (int, float)})
    horizon = call.params.get("horizon")
    level = call.params.get("confidence_level")
    horizon = 3 if horizon is None else horizon
    level = 0.95 if level is None else level
    try:
        check_forecast_params(horizon, level, int(model.config["horizon"]))
    except InvalidArgument as exc:
        raise InvalidArgument(f"ML.{call.function}: {exc}") from None
    return int(horizon), float(level)


def _futures(
    call: MLCall, model: ForecastModel, horizon: int | None
) -> dict[tuple[Any, ...], dict[str, Any]] | None:
    """ARIMA_PLUS_XREG: each series' future rows (timestamps after its history, features)."""
    if not model.feature_cols:
        if call.input is not None and call.function == "FORECAST":
            raise InvalidArgument(
                f"ML.FORECAST on ARIMA_PLUS model {call.model} takes no input rows; only "
                "ARIMA_PLUS_XREG models forecast from future feature values"
            )
        return None
    rows = call.input
    if rows is None:
        raise InvalidArgument(
            f"ML.{call.function} on ARIMA_PLUS_XREG model {call.model} needs the features' "
            f"future values: ML.{call.function}(MODEL {call.model}, STRUCT(…), TABLE future) "
            f"with columns {[model.config['timestamp_col'], *model.id_cols, *model.feature_cols]}"
        )
    return split_rows(rows, model, horizon, call.function, require_features=True)


def split_rows(
    rows: pa.Table,
    model: ForecastModel,
    horizon: int | None,
    function: str,
    *,
    require_features: bool,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Input rows per series, sorted by time, after each series' last training timestamp."""
    ts_col = model.config["timestamp_col"]
    needed = [ts_col, *model.id_cols, *(model.feature_cols if require_features else [])]
    missing = [c for c in needed if c not in rows.column_names]
    if missing:
        raise InvalidArgument(
            f"ML.{function} input lacks columns {missing}; it needs {needed}", missing=missing
        )
    for col in model.feature_cols if require_features else []:
        if rows[col].null_count:
            raise InvalidArgument(
                f"ML.{function} input feature {col!r} has NULL values; every future row needs "
                "all feature values",
                column=col,
            )
    stamps = timestamps_us(rows[ts_col], ts_col)
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, idx in series_keys(rows, model.id_cols).items():
        series = model.find(key)
        if series is None:
            continue
        order = idx[np.argsort(stamps[idx], kind="stable")]
        after = order[stamps[order] > int(series["timestamps"][-1])]
        if horizon is not None:
            after = after[:horizon]
        if len(after) == 0:
            continue
        part: dict[str, Any] = {"timestamps": stamps[after], "rows": after}
        for col in model.feature_cols if require_features else []:
            part[col] = pc.cast(rows[col], pa.float64()).to_numpy(zero_copy_only=False)[after]
        out[key] = part
    return out


def ml_forecast(service: SqlService, call: MLCall) -> pa.Table:
    """ML.FORECAST(MODEL m [, STRUCT(h AS horizon, c AS confidence_level)] [, TABLE future])."""
    model = _arima_model(service, call)
    horizon, level = _forecast_params(call, model)
    return model.forecast_table(horizon, level, _futures(call, model, horizon))


# -- ML.EXPLAIN_FORECAST --------------------------------------------------------------------


def _history_fit(series: dict[str, Any]) -> np.ndarray:
    """One-step-ahead fitted values of the series ARIMA saw (spike-cleaned, steps removed)."""
    return np.asarray(series["adjusted"]) - np.asarray(series["arima"]["residuals"])


def _steps(series: dict[str, Any]) -> np.ndarray:
    """ML.EXPLAIN_FORECAST's ``step_changes`` of the history (zeros without step changes)."""
    steps = [(int(at), float(size)) for at, size in series.get("steps") or []]
    return step_component(len(series["timestamps"]), steps)


def _spikes(series: dict[str, Any]) -> np.ndarray:
    """``spikes_and_dips`` of the history: the data less the cleaned data (steps put back)."""
    y = np.asarray(series["y"], dtype=np.float64)
    cleaned = np.asarray(series["adjusted"]) + _steps(series)
    return np.where(np.isclose(y, cleaned, rtol=1e-12, atol=0.0), 0.0, y - cleaned)


def seasonal_components(model: ForecastModel, series: dict[str, Any]) -> dict[str, np.ndarray]:
    """Season → its component of the history: MSTL of the adjusted history less holidays (and,
    for ARIMA_PLUS_XREG, less the regressors' attributions).

    The seasons looked for were fixed at training (``config["decomposition"]``); the ARIMA's
    own season counts as found when auto.ARIMA chose seasonal terms for it. See
    :mod:`shipyard.sql.arima_adjust`.
    """
    plan = model.config.get("decomposition")
    if not plan:  # a model trained before the decomposition: none
        return {}
    periods = {str(k): int(v) for k, v in plan["periods"].items()}
    always = set(plan["declared"])
    season = model.config.get("season")
    _, _, sp, sq, _, _, sd = _orders(series)
    if season is not None and sp + sq + sd > 0:
        always.add(season)
        periods.setdefault(season, int(series["period"]))
    stamps = np.asarray(series["timestamps"])
    base = np.asarray(series["adjusted"]) - model.holiday_effect(series, stamps)
    if model.feature_cols:  # what the regressors explain is theirs, not a season's
        base = base - np.nan_to_num(sum(history_attributions(model, series).values(), 0.0))
    return {k: np.asarray(v) for k, v in decompose(base, periods, always).items()}


def _season_lengths(model: ForecastModel, series: dict[str, Any]) -> dict[str, int]:
    plan = model.config.get("decomposition") or {}
    lengths = {str(k): int(v) for k, v in (plan.get("periods") or {}).items()}
    season = model.config.get("season")
    if season is not None:
        lengths.setdefault(season, int(series["period"]))
    return lengths


# -- ML.ARIMA_EVALUATE / ML.ARIMA_COEFFICIENTS / ML.EVALUATE ----------------------------------


def _orders(series: dict[str, Any]) -> tuple[int, int, int, int, int, int, int]:
    p, q, sp, sq, period, d, sd = (int(v) for v in series["arima"]["arma"])
    return p, q, sp, sq, period, d, sd


def ml_arima_evaluate(service: SqlService, call: MLCall) -> pa.Table:
    """ML.ARIMA_EVALUATE: one row per series with its chosen model and fit statistics."""
    call.check_params({"show_all_candidate_models": bool})
    if call.params.get("show_all_candidate_models"):
        raise Unsupported(
            "ML.ARIMA_EVALUATE show_all_candidate_models=TRUE is not supported: statsforecast's "
            "auto.ARIMA keeps only the chosen model"
        )
    if call.input is not None:
        raise InvalidArgument(
            f"ML.{call.function} takes no input rows: ML.{call.function}(MODEL {call.model})"
        )
    model = _arima_model(service, call)
    return arima_evaluate_table(model)


def arima_evaluate_table(model: ForecastModel) -> pa.Table:
    rows: dict[str, list[Any]] = {
        c: []
        for c in (
            "non_seasonal_p",
            "non_seasonal_d",
            "non_seasonal_q",
            "has_drift",
            "log_likelihood",
            "AIC",
            "variance",
            "seasonal_periods",
            "has_holiday_effect",
            "has_spikes_and_dips",
            "has_step_changes",
            "error_message",
        )
    }
    season = model.config.get("season")
    decomposed = bool(model.config.get("decompose_time_series", True))
    ordered = sorted_series(model)
    for series in ordered:
        p, q, sp, sq, _period, d, sd = _orders(series)
        found = seasonal_components(model, series)
        fit = series["arima"]
        rows["non_seasonal_p"].append(p)
        rows["non_seasonal_d"].append(d)
        rows["non_seasonal_q"].append(q)
        rows["has_drift"].append("drift" in fit["coef"])
        rows["log_likelihood"].append(_float(fit.get("loglik")))
        rows["AIC"].append(_float(fit.get("aic")))
        rows["variance"].append(_float(fit.get("sigma2")))
        if model.config.get("decomposition"):
            names = [name for name in reversed(SEASON_NAMES) if name in found]
        else:  # a model trained before the decomposition: the ARIMA's season
            names = [season] if season is not None and (sp + sq + sd) > 0 else []
        rows["seasonal_periods"].append(names or ["NO_SEASONALITY"])
        # BigQuery ML fills these three for models with decompose_time_series only
        rows["has_holiday_effect"].append(
            (bool(series.get("holiday_coefs")) or series.get("holiday_coef") is not None)
            if decomposed
            else None
        )
        rows["has_spikes_and_dips"].append(
            bool(np.any(_spikes(series) != 0.0)) if decomposed else None
        )
        rows["has_step_changes"].append(bool(series.get("steps")) if decomposed else None)
        rows["error_message"].append("")
    out = _id_columns(model, ordered)
    types = {
        "non_seasonal_p": pa.int64(),
        "non_seasonal_d": pa.int64(),
        "non_seasonal_q": pa.int64(),
        "has_drift": pa.bool_(),
        "log_likelihood": pa.float64(),
        "AIC": pa.float64(),
        "variance": pa.float64(),
        "seasonal_periods": pa.list_(pa.string()),
        "has_holiday_effect": pa.bool_(),
        "has_spikes_and_dips": pa.bool_(),
        "has_step_changes": pa.bool_(),
        "error_message": pa.string(),
    }
    for name, values in rows.items():
        out[name] = pa.array(values, type=types[name])
    return pa.table(out)


def sorted_series(model: ForecastModel) -> list[dict[str, Any]]:
    """The model's series in ascending order of their ids (NULL ids first), as BigQuery ML
    lists them in ML.ARIMA_EVALUATE and ML.ARIMA_COEFFICIENTS."""
    return sorted(model.series, key=lambda s: [(v is not None, v) for v in s["id"]])


def _float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _id_columns(model: ForecastModel, series: list[dict[str, Any]]) -> dict[str, pa.Array]:
    return {
        col: pa.array(
            [s["id"][i] for s in series], type=pa.type_for_alias(model.config["id_types"][i])
        )
        for i, col in enumerate(model.id_cols)
    }


def ml_arima_coefficients(service: SqlService, call: MLCall) -> pa.Table:
    """ML.ARIMA_COEFFICIENTS: non-seasonal AR and MA coefficients, and the intercept or drift;
    for ARIMA_PLUS_XREG one row per series and feature, with ``processed_input``, ``weight``
    and ``category_weights`` (NULL: the features are numeric).

    The seasonal coefficients (sar*, sma*) and the holiday regressors' coefficients are not in
    BigQuery ML's output (ML.EXPLAIN_FORECAST shows the holiday effects) and are left out.
    """
    call.check_params({})
    if call.input is not None:
        raise InvalidArgument(
            f"ML.{call.function} takes no input rows: ML.{call.function}(MODEL {call.model})"
        )
    model = _arima_model(service, call)
    ar, ma, constant = [], [], []
    ordered = sorted_series(model)
    for series in ordered:
        p, q, *_ = _orders(series)
        coef = series["arima"]["coef"]
        ar.append([float(coef[f"ar{i}"]) for i in range(1, p + 1)])
        ma.append([float(coef[f"ma{i}"]) for i in range(1, q + 1)])
        constant.append(float(coef.get("drift", coef.get("intercept", 0.0))))
    out = _id_columns(model, ordered)
    out["ar_coefficients"] = pa.array(ar, type=pa.list_(pa.float64()))
    out["ma_coefficients"] = pa.array(ma, type=pa.list_(pa.float64()))
    out["intercept_or_drift"] = pa.array(constant, type=pa.float64())
    if not model.feature_cols:
        return pa.table(out)
    # ARIMA_PLUS_XREG: each series' row repeated for each of its features
    position = {id(s): i for i, s in enumerate(ordered)}
    rows = sorted(coefficient_rows(model), key=lambda row: position[id(row[0])])
    take = pa.array([position[id(series)] for series, _, _ in rows], type=pa.int64())
    table = pa.table(out).take(take)
    table = table.append_column(
        "processed_input", pa.array([feature for _, feature, _ in rows], type=pa.string())
    )
    table = table.append_column(
        "weight", pa.array([weight for _, _, weight in rows], type=pa.float64())
    )
    return table.append_column("category_weights", pa.nulls(len(rows), CATEGORY_WEIGHTS_TYPE))


FORECAST_METRICS: tuple[str, ...] = (
    "mean_absolute_error",
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_absolute_percentage_error",
    "symmetric_mean_absolute_percentage_error",
    "mean_absolute_scaled_error",
)


def ml_evaluate_forecasting(service: SqlService, call: MLCall) -> pa.Table:
    """ML.EVALUATE on ARIMA_PLUS: forecast accuracy on rows after the training data, per series
    (the first ``horizon`` of them when given); without input rows, ML.ARIMA_EVALUATE's table."""
    call.check_params(
        {"perform_aggregation": bool, "horizon": int, "confidence_level": (int, float)}
    )
    model = _arima_model(service, call)
    if call.input is None:
        return arima_evaluate_table(model)
    per_row = call.params.get("perform_aggregation") is False
    level = call.params.get("confidence_level")
    if level is not None and not per_row:
        raise InvalidArgument(
            "ML.EVALUATE confidence_level shapes the lower_bound and upper_bound of "
            "perform_aggregation=FALSE only: add STRUCT(FALSE AS perform_aggregation, …) or "
            "leave confidence_level out"
        )
    horizon = call.params.get("horizon")
    try:
        check_forecast_params(
            1 if horizon is None else horizon,
            0.95 if level is None else level,
            int(model.config["horizon"]),
        )
    except InvalidArgument as exc:
        raise InvalidArgument(f"ML.EVALUATE: {exc}") from None
    rows = call.input
    data_col = model.config["data_col"]
    if data_col not in rows.column_names:
        raise InvalidArgument(
            f"ML.EVALUATE needs the data column {data_col!r} in its input; the input has: "
            f"{', '.join(rows.column_names)}"
        )
    if per_row:
        return _evaluate_per_row(model, rows, horizon, 0.95 if level is None else float(level))
    rows = rows.filter(pc.is_valid(rows[data_col]))
    actual_all = pc.cast(rows[data_col], pa.float64()).to_numpy(zero_copy_only=False)
    parts = split_rows(rows, model, horizon, "EVALUATE", require_features=bool(model.feature_cols))
    evaluated, metrics = [], []
    for series in model.series:
        part = parts.get(tuple(series["id"]))
        if part is None:
            continue
        predicted = _predict_at(model, series, part)
        actual = actual_all[part["rows"]]
        ok = ~np.isnan(predicted)
        if not ok.any():
            continue
        evaluated.append(series)
        history = np.asarray(series["y"], dtype=np.float64)
        metrics.append(forecast_metrics(actual[ok], predicted[ok], history))
    out = _id_columns(model, evaluated)
    for name in FORECAST_METRICS:
        out[name] = pa.array([m[name] for m in metrics], type=pa.float64())
    return pa.table(out)


def _predict_at(model: ForecastModel, series: dict[str, Any], part: dict[str, Any]) -> np.ndarray:
    """Forecasts at the part's timestamps (NaN where a timestamp is off the model's grid)."""
    return forecast_at(model, series, part, 0.95)["mean"]


def forecast_at(
    model: ForecastModel, series: dict[str, Any], part: dict[str, Any], level: float
) -> dict[str, np.ndarray]:
    """The forecast's ``mean``, ``se``, ``lower`` and ``upper`` at the part's timestamps (NaN
    where a timestamp is off the model's time grid or beyond its horizon); ARIMA_PLUS_XREG
    forecasts the part's rows in turn, from their feature values."""
    if model.feature_cols:
        fc = model.forecast_series(series, len(part["timestamps"]), level, part)
        return {k: np.asarray(fc[k], dtype=np.float64) for k in ("mean", "se", "lower", "upper")}
    steps = _steps_ahead(model, series, part["timestamps"])
    valid = steps > 0
    out = {k: np.full(len(steps), np.nan) for k in ("mean", "se", "lower", "upper")}
    if valid.any():
        fc = model.forecast_series(series, int(steps[valid].max()), level, None)
        for k in out:
            out[k][valid] = np.asarray(fc[k], dtype=np.float64)[steps[valid] - 1]
    return out


def _evaluate_per_row(
    model: ForecastModel, rows: pa.Table, horizon: int | None, level: float
) -> pa.Table:
    """ML.EVALUATE(…, STRUCT(FALSE AS perform_aggregation)): one row per input row of a known
    series, in time order — the id columns, the timestamp and data columns (named as in
    training), ``forecasted_<data column>``, ``lower_bound`` / ``upper_bound`` (the prediction
    interval at ``level``), ``absolute_error`` and ``absolute_percentage_error`` (|error| /
    |actual|, a ratio). Rows that are not forecast steps (the history, off the time grid, past
    the horizon) have NULL in the last five."""
    cfg = model.config
    ts_col, data_col = cfg["timestamp_col"], cfg["data_col"]
    needed = [ts_col, *model.id_cols, *model.feature_cols]
    missing = [c for c in needed if c not in rows.column_names]
    if missing:
        raise InvalidArgument(
            f"ML.EVALUATE input lacks columns {missing}; it needs {[*needed, data_col]}",
            missing=missing,
        )
    stamps = timestamps_us(rows[ts_col], ts_col)
    parts = split_rows(rows, model, horizon, "EVALUATE", require_features=bool(model.feature_cols))
    groups = series_keys(rows, model.id_cols)
    take: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    lower: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    for series in sorted_series(model):
        idx = groups.get(tuple(series["id"]))
        if idx is None:
            continue
        order = idx[np.argsort(stamps[idx], kind="stable")]
        values = {k: np.full(len(order), np.nan) for k in ("mean", "lower", "upper")}
        part = parts.get(tuple(series["id"]))
        if part is not None:
            fc = forecast_at(model, series, part, level)
            where = {int(r): i for i, r in enumerate(order)}
            positions = np.asarray([where[int(r)] for r in part["rows"]], dtype=np.int64)
            for k in values:
                values[k][positions] = fc[k]
        take.append(order)
        predicted.append(values["mean"])
        lower.append(values["lower"])
        upper.append(values["upper"])
    indices = pa.array(np.concatenate(take) if take else np.zeros(0, np.int64), type=pa.int64())
    chosen = rows.take(indices)
    actual = pc.cast(chosen[data_col], pa.float64()).to_numpy(zero_copy_only=False)
    actual = np.where(pc.is_valid(chosen[data_col]).to_numpy(zero_copy_only=False), actual, np.nan)
    forecast = np.concatenate(predicted) if predicted else np.zeros(0)
    error = np.abs(actual - forecast)
    with np.errstate(divide="ignore", invalid="ignore"):
        percentage = np.where(actual != 0, error / np.abs(actual), np.nan)
    out: dict[str, pa.Array | pa.ChunkedArray] = {c: chosen[c] for c in model.id_cols}
    out[ts_col] = chosen[ts_col]
    out[data_col] = pa.array(actual, type=pa.float64(), from_pandas=True)
    for name, value in (
        (f"forecasted_{data_col}", forecast),
        ("lower_bound", np.concatenate(lower) if lower else np.zeros(0)),
        ("upper_bound", np.concatenate(upper) if upper else np.zeros(0)),
        ("absolute_error", error),
        ("absolute_percentage_error", percentage),
    ):
        out[name] = pa.array(value, type=pa.float64(), from_pandas=True)
    return pa.table(out)


def _steps_ahead(model: ForecastModel, series: dict[str, Any], stamps: np.ndarray) -> np.ndarray:
    """How many steps after the series' last training point each timestamp is (0: off grid)."""
    from shipyard.registry.forecasting import future_timestamps

    last = int(series["timestamps"][-1])
    furthest = int(stamps.max()) if len(stamps) else last
    step, months, _ = FREQUENCIES[model.config["frequency"]]
    if step:
        count = max(1, (furthest - last) // step + 1)
    else:
        count = max(1, (furthest - last) // (28 * _DAY * months) + 1)
    count = min(count, int(model.config["horizon"]))
    grid = future_timestamps(last, count, model.config["frequency"])
    position = {int(t): i + 1 for i, t in enumerate(grid)}
    return np.asarray([position.get(int(t), 0) for t in stamps], dtype=np.int64)


def forecast_metrics(
    actual: np.ndarray, predicted: np.ndarray, history: np.ndarray | None = None
) -> dict[str, float | None]:
    """MAE, MSE, RMSE, MAPE and sMAPE (both in percent, as BigQuery ML), and MASE: the MAE over
    that of the one-step naive forecast in the training ``history`` (the mean absolute
    difference of consecutive training points; None without history or when it is 0)."""
    error = actual - predicted
    mse = float(np.mean(error**2))
    nonzero = actual != 0
    mape = float(np.mean(np.abs(error[nonzero] / actual[nonzero])) * 100) if nonzero.any() else None
    denominator = np.abs(actual) + np.abs(predicted)
    both = denominator != 0
    smape = (
        float(np.mean(2 * np.abs(error[both]) / denominator[both]) * 100) if both.any() else None
    )
    mae = float(np.mean(np.abs(error)))
    scale = float(np.mean(np.abs(np.diff(history)))) if history is not None else 0.0
    return {
        "mean_absolute_error": mae,
        "mean_squared_error": mse,
        "root_mean_squared_error": math.sqrt(mse),
        "mean_absolute_percentage_error": mape,
        "symmetric_mean_absolute_percentage_error": smape,
        "mean_absolute_scaled_error": mae / scale if scale > 0 and math.isfinite(scale) else None,
    }


# -- ML.DETECT_ANOMALIES --------------------------------------------------------------------


def _threshold(call: MLCall) -> float:
    call.check_params({"anomaly_prob_threshold": (int, float)})
    value = call.params.get("anomaly_prob_threshold")
    value = 0.95 if value is None else float(value)
    if not 0.0 <= value < 1.0:
        raise InvalidArgument(
            f"ML.DETECT_ANOMALIES parameter 'anomaly_prob_threshold' must be in [0, 1), got "
            f"{value!r}"
        )
    return value


def detect_anomalies(service: SqlService, call: MLCall) -> pa.Table:
    """ML.DETECT_ANOMALIES for ARIMA_PLUS(_XREG): the training history, or new rows.

    A point's anomaly probability is ``2 Phi(|actual - expected| / sigma) - 1`` where
    ``expected`` is the one-step-ahead fit (history) or the forecast (new rows after the training
    data) and sigma the residual standard deviation or the forecast's standard error; the bounds
    are ``expected -/+ Phi^-1((1 + threshold) / 2) sigma``. Every new row is returned (with the
    input's other columns after the anomaly columns); those that are not forecast steps of a
    known series get NULLs (:func:`_anomalies_of_rows`).
    """
    from scipy.stats import norm

    threshold = _threshold(call)
    model = _arima_model(service, call)
    z = float(norm.ppf(0.5 + threshold / 2.0))
    if call.input is not None:
        return _anomalies_of_rows(model, call.input, threshold, z)
    if not model.config.get("decompose_time_series", True):
        raise FailedPrecondition(
            f"ML.DETECT_ANOMALIES of the training history needs a model trained with "
            f"decompose_time_series=TRUE; model {call.model} was trained with FALSE (new rows "
            f"still apply: ML.DETECT_ANOMALIES(MODEL {call.model}, STRUCT(…), TABLE new_rows))"
        )
    cfg = model.config
    ids: list[list[Any]] = [[] for _ in model.id_cols]
    stamps_out: list[np.ndarray] = []
    actual_out: list[np.ndarray] = []
    expected_out: list[np.ndarray] = []
    sigma_out: list[np.ndarray] = []
    for series in model.series:
        n = len(series["timestamps"])
        resid_sd = math.sqrt(max(float(series["arima"]["sigma2"]), 0.0))
        for i in range(len(model.id_cols)):
            ids[i].extend([series["id"][i]] * n)
        stamps_out.append(np.asarray(series["timestamps"]))
        actual_out.append(np.asarray(series["y"], dtype=np.float64))
        expected_out.append(_history_fit(series) + _steps(series))  # on the data's levels
        sigma_out.append(np.full(n, resid_sd))
    actual, expected, sigma = _cat(actual_out), _cat(expected_out), _cat(sigma_out)
    out: dict[str, Any] = _id_columns_from_lists(model, ids)
    out[cfg["timestamp_col"]] = _timestamps(_cat(stamps_out))
    out[cfg["data_col"]] = pa.array(actual, type=pa.float64(), from_pandas=True)
    out.update(_anomaly_columns(actual, expected, sigma, threshold, z))
    return pa.table(out)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _timestamps(stamps_us: np.ndarray) -> pa.Array:
    return pa.array(stamps_us.astype(np.int64), type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _anomaly_columns(
    actual: np.ndarray, expected: np.ndarray, sigma: np.ndarray, threshold: float, z: float
) -> dict[str, pa.Array]:
    """``is_anomaly``, ``lower_bound``, ``upper_bound``, ``anomaly_probability`` (NULL where
    the expected value, sigma or the actual value is unknown)."""
    from scipy.stats import norm

    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.abs(actual - expected) / np.where(sigma > 0, sigma, np.nan)
    probability = 2.0 * norm.cdf(scaled) - 1.0
    known = ~np.isnan(probability)
    return {
        "is_anomaly": pa.array(probability > threshold, type=pa.bool_(), mask=~known),
        "lower_bound": pa.array(expected - z * sigma, type=pa.float64(), from_pandas=True),
        "upper_bound": pa.array(expected + z * sigma, type=pa.float64(), from_pandas=True),
        "anomaly_probability": pa.array(probability, type=pa.float64(), from_pandas=True),
    }


def _anomalies_of_rows(
    model: ForecastModel, rows: pa.Table, threshold: float, z: float
) -> pa.Table:
    """ML.DETECT_ANOMALIES with input rows: every row, each series' rows in time order (rows of
    a series the model does not know last, in input order), then the input's other columns.
    Rows that are not forecast steps of a known series — at or before its last training
    timestamp, off its time grid, past the model's horizon, or with a NULL value — get NULL in
    ``is_anomaly``, the bounds and ``anomaly_probability``."""
    cfg = model.config
    ts_col, data_col = cfg["timestamp_col"], cfg["data_col"]
    if data_col not in rows.column_names:
        raise InvalidArgument(
            f"ML.DETECT_ANOMALIES needs the data column {data_col!r} in its input; "
            f"the input has: {', '.join(rows.column_names)}"
        )
    values = pc.cast(rows[data_col], pa.float64()).to_numpy(zero_copy_only=False)
    values = np.where(pc.is_valid(rows[data_col]).to_numpy(zero_copy_only=False), values, np.nan)
    horizon = int(cfg["horizon"]) if model.feature_cols else None
    parts = split_rows(
        rows, model, horizon, "DETECT_ANOMALIES", require_features=bool(model.feature_cols)
    )
    stamps = timestamps_us(rows[ts_col], ts_col)
    expected = np.full(rows.num_rows, np.nan)
    sigma = np.full(rows.num_rows, np.nan)
    order: list[np.ndarray] = []
    placed = np.zeros(rows.num_rows, dtype=bool)
    groups = series_keys(rows, model.id_cols)
    for series in sorted_series(model):
        idx = groups.get(tuple(series["id"]))
        if idx is None:
            continue
        order.append(idx[np.argsort(stamps[idx], kind="stable")])
        placed[idx] = True
        part = parts.get(tuple(series["id"]))
        if part is not None:
            fc = forecast_at(model, series, part, 0.95)
            expected[part["rows"]], sigma[part["rows"]] = fc["mean"], fc["se"]
    order.append(np.flatnonzero(~placed))
    take = np.concatenate(order).astype(np.int64)
    chosen = rows.take(pa.array(take, type=pa.int64()))
    out: dict[str, Any] = {c: chosen[c] for c in model.id_cols}
    out[ts_col] = _timestamps(stamps[take])
    out[data_col] = pa.array(values[take], type=pa.float64(), from_pandas=True)
    out.update(_anomaly_columns(values[take], expected[take], sigma[take], threshold, z))
    for name in rows.column_names:  # the input's other columns follow, as in BigQuery ML
        if name not in out:
            out[name] = chosen[name]
    return pa.table(out)


def _id_columns_from_lists(model: ForecastModel, ids: list[list[Any]]) -> dict[str, pa.Array]:
    return {
        col: pa.array(ids[i], type=pa.type_for_alias(model.config["id_types"][i]))
        for i, col in enumerate(model.id_cols)
    }


def with_arima_anomalies(
    handler: Callable[[SqlService, MLCall], pa.Table],
) -> Callable[[SqlService, MLCall], pa.Table]:
    """ML.DETECT_ANOMALIES: ARIMA models here, every other model type to ``handler``."""

    def dispatch(service: SqlService, call: MLCall) -> pa.Table:
        if service.models.get_version(call.model).model_type in ARIMA_MODEL_TYPES:
            return detect_anomalies(service, call)
        return handler(service, call)

    dispatch.__doc__ = handler.__doc__
    return dispatch


def refuse_predict(
    handler: Callable[[SqlService, MLCall], pa.Table],
) -> Callable[[SqlService, MLCall], pa.Table]:
    """ML.PREDICT: an ARIMA model points to ML.FORECAST; every other model to ``handler``."""

    def dispatch(service: SqlService, call: MLCall) -> pa.Table:
        model_type = service.models.get_version(call.model).model_type
        if model_type in ARIMA_MODEL_TYPES:
            raise InvalidArgument(
                f"ML.PREDICT does not apply to model {call.model}, a {model_type} time series "
                f"model; use ML.FORECAST(MODEL {call.model}, STRUCT(10 AS horizon)) for its "
                "forecasts (or ML.DETECT_ANOMALIES, ML.EXPLAIN_FORECAST)",
                model_type=model_type,
            )
        return handler(service, call)

    dispatch.__doc__ = handler.__doc__
    return dispatch


def _evaluate_or(
    handler: Callable[[SqlService, MLCall], pa.Table],
) -> Callable[[SqlService, MLCall], pa.Table]:
    def dispatch(service: SqlService, call: MLCall) -> pa.Table:
        if service.models.get_version(call.model).model_type in ARIMA_MODEL_TYPES:
            return ml_evaluate_forecasting(service, call)
        return handler(service, call)

    dispatch.__doc__ = handler.__doc__
    return dispatch


def handlers(
    current: dict[str, Callable[[SqlService, MLCall], pa.Table]],
) -> dict[str, Callable[[SqlService, MLCall], pa.Table]]:
    """The ML functions of ARIMA models; PREDICT, EVALUATE and DETECT_ANOMALIES wrap
    ``current``'s handlers (ARIMA models here, every other model there)."""
    from shipyard.sql.arima_explain import ml_explain_forecast  # it builds on this module

    return {
        "FORECAST": ml_forecast,
        "EXPLAIN_FORECAST": ml_explain_forecast,
        "HOLIDAY_INFO": ml_holiday_info,
        "ARIMA_EVALUATE": ml_arima_evaluate,
        "ARIMA_COEFFICIENTS": ml_arima_coefficients,
        "PREDICT": refuse_predict(current["PREDICT"]),
        "EVALUATE": _evaluate_or(current["EVALUATE"]),
        "DETECT_ANOMALIES": with_arima_anomalies(current["DETECT_ANOMALIES"]),
    }
