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
  series; without, ML.ARIMA_EVALUATE's table.
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

from shipyard.errors import InvalidArgument, Unsupported
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
    for series in model.series:
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
        rows["has_holiday_effect"].append(
            bool(series.get("holiday_coefs")) or series.get("holiday_coef") is not None
        )
        rows["has_spikes_and_dips"].append(bool(np.any(_spikes(series) != 0.0)))
        rows["has_step_changes"].append(bool(series.get("steps")))
        rows["error_message"].append("")
    out = _id_columns(model, model.series)
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
    for series in model.series:
        p, q, *_ = _orders(series)
        coef = series["arima"]["coef"]
        ar.append([float(coef[f"ar{i}"]) for i in range(1, p + 1)])
        ma.append([float(coef[f"ma{i}"]) for i in range(1, q + 1)])
        constant.append(float(coef.get("drift", coef.get("intercept", 0.0))))
    out = _id_columns(model, model.series)
    out["ar_coefficients"] = pa.array(ar, type=pa.list_(pa.float64()))
    out["ma_coefficients"] = pa.array(ma, type=pa.list_(pa.float64()))
    out["intercept_or_drift"] = pa.array(constant, type=pa.float64())
    if not model.feature_cols:
        return pa.table(out)
    # ARIMA_PLUS_XREG: each series' row repeated for each of its features
    position = {id(s): i for i, s in enumerate(model.series)}
    rows = coefficient_rows(model)
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
    if call.params.get("perform_aggregation") is False:
        raise Unsupported(
            "ML.EVALUATE perform_aggregation=FALSE is not supported for ARIMA_PLUS; leave it out "
            "for one row of metrics per time series"
        )
    if call.params.get("confidence_level") is not None:
        raise Unsupported(
            "ML.EVALUATE confidence_level only shapes the per-row output of "
            "perform_aggregation=FALSE, which is not supported; leave it out"
        )
    horizon = call.params.get("horizon")
    if horizon is not None:
        check_forecast_params(horizon, 0.95, int(model.config["horizon"]))
    rows = call.input
    data_col = model.config["data_col"]
    if data_col not in rows.column_names:
        raise InvalidArgument(
            f"ML.EVALUATE needs the data column {data_col!r} in its input; the input has: "
            f"{', '.join(rows.column_names)}"
        )
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
    if model.feature_cols:
        fc = model.forecast_series(series, len(part["timestamps"]), 0.95, part)
        return np.asarray(fc["mean"])
    steps = _steps_ahead(model, series, part["timestamps"])
    valid = steps > 0
    out = np.full(len(steps), np.nan)
    if valid.any():
        fc = model.forecast_series(series, int(steps[valid].max()), 0.95, None)
        out[valid] = np.asarray(fc["mean"])[steps[valid] - 1]
    return out


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
    are ``expected -/+ Phi^-1((1 + threshold) / 2) sigma``. New rows that are not after the
    series' history, or off its time grid, get NULLs.
    """
    from scipy.stats import norm

    threshold = _threshold(call)
    model = _arima_model(service, call)
    z = float(norm.ppf(0.5 + threshold / 2.0))
    cfg = model.config
    ids: list[list[Any]] = [[] for _ in model.id_cols]
    stamps_out: list[np.ndarray] = []
    actual_out: list[np.ndarray] = []
    expected_out: list[np.ndarray] = []
    sigma_out: list[np.ndarray] = []
    if call.input is None:
        for series in model.series:
            n = len(series["timestamps"])
            resid_sd = math.sqrt(max(float(series["arima"]["sigma2"]), 0.0))
            for i in range(len(model.id_cols)):
                ids[i].extend([series["id"][i]] * n)
            stamps_out.append(np.asarray(series["timestamps"]))
            actual_out.append(np.asarray(series["y"], dtype=np.float64))
            expected_out.append(_history_fit(series) + _steps(series))  # on the data's levels
            sigma_out.append(np.full(n, resid_sd))
    else:
        rows = call.input
        if cfg["data_col"] not in rows.column_names:
            raise InvalidArgument(
                f"ML.DETECT_ANOMALIES needs the data column {cfg['data_col']!r} in its input; "
                f"the input has: {', '.join(rows.column_names)}"
            )
        values = pc.cast(rows[cfg["data_col"]], pa.float64()).to_numpy(zero_copy_only=False)
        values = np.where(
            pc.is_valid(rows[cfg["data_col"]]).to_numpy(zero_copy_only=False), values, np.nan
        )
        parts = split_rows(
            rows, model, None, "DETECT_ANOMALIES", require_features=bool(model.feature_cols)
        )
        for series in model.series:
            part = parts.get(tuple(series["id"]))
            if part is None:
                continue
            n = len(part["timestamps"])
            expected, sigma = np.full(n, np.nan), np.full(n, np.nan)
            if model.feature_cols:
                fc = model.forecast_series(series, n, 0.95, part)
                expected, sigma = np.asarray(fc["mean"]), np.asarray(fc["se"])
            else:
                steps = _steps_ahead(model, series, part["timestamps"])
                valid = steps > 0
                if valid.any():
                    fc = model.forecast_series(series, int(steps[valid].max()), 0.95, None)
                    expected[valid] = np.asarray(fc["mean"])[steps[valid] - 1]
                    sigma[valid] = np.asarray(fc["se"])[steps[valid] - 1]
            for i in range(len(model.id_cols)):
                ids[i].extend([series["id"][i]] * n)
            stamps_out.append(part["timestamps"])
            actual_out.append(values[part["rows"]])
            expected_out.append(expected)
            sigma_out.append(sigma)
    cat: Callable[[list[np.ndarray]], np.ndarray] = lambda xs: (  # noqa: E731
        np.concatenate(xs) if xs else np.zeros(0)
    )
    actual, expected, sigma = cat(actual_out), cat(expected_out), cat(sigma_out)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.abs(actual - expected) / np.where(sigma > 0, sigma, np.nan)
    probability = 2.0 * norm.cdf(scaled) - 1.0
    known = ~np.isnan(probability)
    out = _id_columns_from_lists(model, ids)
    out[cfg["timestamp_col"]] = pa.array(cat(stamps_out).astype(np.int64), type=pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    out[cfg["data_col"]] = pa.array(actual, type=pa.float64(), from_pandas=True)
    out["is_anomaly"] = pa.array(probability > threshold, type=pa.bool_(), mask=~known)
    out["lower_bound"] = pa.array(expected - z * sigma, type=pa.float64(), from_pandas=True)
    out["upper_bound"] = pa.array(expected + z * sigma, type=pa.float64(), from_pandas=True)
    out["anomaly_probability"] = pa.array(probability, type=pa.float64(), from_pandas=True)
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
