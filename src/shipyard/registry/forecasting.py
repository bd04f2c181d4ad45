"""Forecasting models (ARIMA_PLUS, ARIMA_PLUS_XREG): the fitted series and how they forecast.

A :class:`ForecastModel` holds one fitted statsforecast ARIMA per time series (the dict that
``statsforecast.arima.auto_arima_f`` / ``Arima`` return: coefficients, the state-space model,
residuals, …) plus the series' history. It is stored by the ``statsforecast`` flavor as JSON
(:func:`to_json` / :func:`from_json`): numpy arrays become lists of exact float reprs, so the
package holds no pickle and forecasts from a loaded model equal those of the fitted one.

``statsforecast`` (the ``forecast`` extra) and ``holidays`` are imported lazily.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.errors import ArtifactCorrupted, InvalidArgument, Unsupported

__all__ = [
    "CUSTOM_HOLIDAY_PREFIX",
    "FORECAST_COLUMNS",
    "FREQUENCIES",
    "HOLIDAY_REGRESSOR",
    "ForecastModel",
    "custom_holiday_indicator",
    "from_json",
    "future_timestamps",
    "holiday_indicator",
    "require_statsforecast",
    "to_json",
]

#: ML.FORECAST's columns after the time series id columns (BigQuery ML's names and order).
FORECAST_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("forecast_timestamp", pa.timestamp("us", tz="UTC")),
    ("forecast_value", pa.float64()),
    ("standard_error", pa.float64()),
    ("confidence_level", pa.float64()),
    ("prediction_interval_lower_bound", pa.float64()),
    ("prediction_interval_upper_bound", pa.float64()),
    ("confidence_interval_lower_bound", pa.float64()),
    ("confidence_interval_upper_bound", pa.float64()),
)

_US = 1_000_000
#: data_frequency → (fixed step in microseconds, or calendar months), default seasonal period.
FREQUENCIES: dict[str, tuple[int, int, int]] = {
    # name: (step_us, months, seasonal period)
    "PER_MINUTE": (60 * _US, 0, 60),
    "HOURLY": (3600 * _US, 0, 24),
    "DAILY": (86400 * _US, 0, 7),
    "WEEKLY": (7 * 86400 * _US, 0, 52),
    "MONTHLY": (0, 1, 12),
    "QUARTERLY": (0, 3, 4),
    "YEARLY": (0, 12, 1),
}


def require_statsforecast() -> Any:
    try:
        from statsforecast import arima
    except ImportError as exc:  # pragma: no cover - the forecast extra is in dev
        raise Unsupported(
            "ARIMA_PLUS models need statsforecast: pip install 'shipyard[forecast]'"
        ) from exc
    return arima


def future_timestamps(last_us: int, horizon: int, frequency: str) -> np.ndarray:
    """The ``horizon`` timestamps (epoch microseconds, UTC) after ``last_us``."""
    step, months, _ = FREQUENCIES[frequency]
    steps = np.arange(1, horizon + 1, dtype=np.int64)
    if step:
        return last_us + steps * step  # type: ignore[no-any-return]
    import pandas as pd

    last = pd.Timestamp(int(last_us), unit="us")
    out = [last + pd.DateOffset(months=int(k) * months) for k in steps]
    return np.asarray([int(t.value // 1000) for t in out], dtype=np.int64)


def holiday_indicator(
    timestamps_us: np.ndarray, region: str, exclude: Sequence[str] = ()
) -> np.ndarray:
    """1.0 where the (UTC) date of a timestamp is a public holiday of ``region``, else 0.0.

    ``exclude``: holiday names (case-insensitive) left out, e.g. those a custom holiday overrides.
    """
    import holidays

    days = np.asarray(timestamps_us, dtype=np.int64) // (86400 * _US)
    if len(days) == 0:
        return np.zeros(0)
    dates = days.astype("datetime64[D]")
    years = range(int(str(dates.min())[:4]), int(str(dates.max())[:4]) + 1)
    calendar = holidays.country_holidays(region, years=years)
    skip = {name.casefold() for name in exclude}
    holiday_days = {
        np.datetime64(d, "D")
        for d in calendar
        if not skip or any(name.casefold() not in skip for name in calendar.get_list(d))
    }
    return np.asarray([1.0 if d in holiday_days else 0.0 for d in dates])


def custom_holiday_indicator(timestamps_us: np.ndarray, occurrences: Sequence[Any]) -> np.ndarray:
    """1.0 where the (UTC) date of a timestamp falls in a custom holiday's window, else 0.0.

    ``occurrences``: ``[primary date (days since 1970-01-01), preholiday_days, postholiday_days]``.
    """
    days = np.asarray(timestamps_us, dtype=np.int64) // (86400 * _US)
    hit = np.zeros(len(days), dtype=bool)
    for primary, before, after in occurrences:
        hit |= (days >= int(primary) - int(before)) & (days <= int(primary) + int(after))
    return hit.astype(np.float64)


#: The regressor names of holidays: the region's built-in ones, and one per custom holiday.
HOLIDAY_REGRESSOR = "__holiday__"
CUSTOM_HOLIDAY_PREFIX = "__holiday__:"


# --------------------------------------------------------------------------------------------
# the model


@dataclass
class ForecastModel:
    """Fitted series. Each series dict: ``id`` (list of id values), ``arima`` (statsforecast's
    fitted dict), ``timestamps`` (epoch µs), ``y`` (data), ``adjusted`` (data after spike
    cleaning and step-change removal; what ARIMA saw), ``steps`` (``[index, size]`` of each step
    change), ``xreg_names``, ``xreg`` (training regressors, rows x k), ``holiday_coefs``
    (holiday regressor name → coefficient; ``holiday_coef``: the built-in one's), ``period``.
    ``config["custom_holidays"]`` / ``["overridden_holidays"]``: the custom holidays' windows and
    the built-in names they replace.
    """

    config: dict[str, Any]
    series: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id_cols(self) -> list[str]:
        return list(self.config.get("id_cols") or [])

    @property
    def feature_cols(self) -> list[str]:
        return list(self.config.get("feature_cols") or [])

    def find(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        for s in self.series:
            if tuple(s["id"]) == key:
                return s
        return None

    def forecast_series(
        self, series: dict[str, Any], horizon: int, confidence_level: float, future_x: Any = None
    ) -> dict[str, np.ndarray]:
        """mean, standard_error, lower, upper and timestamps of one series' next ``horizon``."""
        arima = require_statsforecast()
        from scipy.stats import norm

        last = int(series["timestamps"][-1])
        stamps = (
            future_timestamps(last, horizon, self.config["frequency"])
            if future_x is None or "timestamps" not in future_x
            else np.asarray(future_x["timestamps"], dtype=np.int64)
        )
        xreg = self._future_xreg(series, stamps, future_x)
        # One call: the interval at confidence_level gives the standard error too (normal
        # errors); a level of 0 asks for the one-sigma interval instead.
        z = float(norm.ppf(0.5 + confidence_level / 2.0)) if confidence_level > 0 else 1.0
        level = 100.0 * confidence_level if confidence_level > 0 else _ONE_SIGMA
        out = arima.forecast_arima(series["arima"], h=len(stamps), xreg=xreg, level=(level,))
        mean = np.asarray(out["mean"], dtype=np.float64)
        upper = np.asarray(out["upper"].iloc[:, 0], dtype=np.float64)
        lower = np.asarray(out["lower"].iloc[:, 0], dtype=np.float64)
        se = (upper - mean) / z
        if confidence_level <= 0:
            lower, upper = mean.copy(), mean.copy()
        mean, lower, upper = self._limit(mean), self._limit(lower), self._limit(upper)
        return {"timestamps": stamps, "mean": mean, "se": se, "lower": lower, "upper": upper}

    def holiday_effect(self, series: dict[str, Any], stamps: np.ndarray) -> np.ndarray:
        """The sum of the series' holiday regressors times their coefficients at ``stamps``."""
        coefs = series.get("holiday_coefs")
        if coefs is None:  # a model from before custom holidays: one built-in indicator
            coef = series.get("holiday_coef")
            coefs = {} if coef is None else {HOLIDAY_REGRESSOR: coef}
        effect = np.zeros(len(stamps))
        for name, coef in coefs.items():
            effect += float(coef) * self.holiday_column(name, stamps)
        return effect

    def holiday_column(self, name: str, stamps: np.ndarray) -> np.ndarray:
        """The 0/1 regressor ``name`` (built-in or custom holidays) at ``stamps``."""
        if name.startswith(CUSTOM_HOLIDAY_PREFIX):
            custom = self.config["custom_holidays"][name[len(CUSTOM_HOLIDAY_PREFIX) :]]
            return custom_holiday_indicator(stamps, custom["occurrences"])
        overridden = self.config.get("overridden_holidays") or ()
        return holiday_indicator(stamps, self.config["holiday_region"], exclude=overridden)

    def _future_xreg(
        self, series: dict[str, Any], stamps: np.ndarray, future_x: Any
    ) -> np.ndarray | None:
        columns: list[np.ndarray] = []
        for name in series.get("xreg_names") or []:
            if name.startswith(HOLIDAY_REGRESSOR):
                columns.append(self.holiday_column(name, stamps))
            else:
                assert future_x is not None, "ARIMA_PLUS_XREG forecasts need feature values"
                columns.append(np.asarray(future_x[name], dtype=np.float64))
        return np.column_stack(columns) if columns else None

    def _limit(self, values: np.ndarray) -> np.ndarray:
        low = self.config.get("forecast_limit_lower_bound")
        high = self.config.get("forecast_limit_upper_bound")
        if low is None and high is None:
            return values
        return np.clip(values, low, high)

    def forecast_table(
        self, horizon: int, confidence_level: float, futures: dict[tuple[Any, ...], Any] | None
    ) -> pa.Table:
        """ML.FORECAST's rows for every series (``futures``: XREG feature values per series)."""
        ids: list[list[Any]] = [[] for _ in self.id_cols]
        parts: list[dict[str, np.ndarray]] = []
        for series in self.series:
            future = None
            if futures is not None:
                future = futures.get(tuple(series["id"]))
                if future is None:
                    continue
            part = self.forecast_series(series, horizon, confidence_level, future)
            parts.append(part)
            for i, value in enumerate(series["id"]):
                ids[i].extend([value] * len(part["mean"]))

        def cat(name: str) -> np.ndarray:
            return np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)

        n = sum(len(p["mean"]) for p in parts)
        lower, upper = cat("lower"), cat("upper")
        columns: dict[str, pa.Array] = {}
        for i, name in enumerate(self.id_cols):
            columns[name] = pa.array(ids[i], type=pa.type_for_alias(self.config["id_types"][i]))
        values = [
            pa.array(cat("timestamps").astype(np.int64), type=pa.int64()).cast(
                FORECAST_COLUMNS[0][1]
            ),
            cat("mean"),
            cat("se"),
            np.full(n, confidence_level),
            lower,
            upper,
            lower,
            upper,
        ]
        for (name, dtype), value in zip(FORECAST_COLUMNS, values, strict=True):
            columns[name] = value if isinstance(value, pa.Array) else pa.array(value, type=dtype)
        return pa.table(columns)


#: The two-sided level whose half-width is one standard error.
_ONE_SIGMA = 68.26894921370858


# --------------------------------------------------------------------------------------------
# JSON, not pickle


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": value.shape}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InvalidArgument(f"cannot store a {type(value).__name__} in a statsforecast package")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def to_json(model: ForecastModel) -> str:
    return json.dumps({"config": _encode(model.config), "series": _encode(model.series)})


def from_json(text: str) -> ForecastModel:
    try:
        data = json.loads(text)
        return ForecastModel(config=_decode(data["config"]), series=_decode(data["series"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactCorrupted(f"the statsforecast model file cannot be read: {exc}") from exc


def save_forecast_model(model: Any, folder: Any) -> dict[str, Any]:
    """The ``statsforecast`` flavor's writer: ``model.json``."""
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    if not isinstance(model, ForecastModel):
        raise InvalidArgument(
            f"the statsforecast flavor stores a ForecastModel, got {type(model).__qualname__}"
        )
    (Path(folder) / "model.json").write_text(to_json(model), encoding="utf-8")
    try:
        library_version: str | None = version("statsforecast")
    except PackageNotFoundError:  # pragma: no cover - it fitted the model, so it is installed
        library_version = None
    return {"files": ["model.json"], "format": "json", "library_version": library_version}


def load_forecast_model(path: Any) -> ForecastModel:
    from pathlib import Path

    return from_json(Path(path).read_text(encoding="utf-8"))


#: Predictor.predict on a forecasting model: the columns an instance (row) may carry.
INSTANCE_COLUMNS = ("horizon", "confidence_level")


def predict_instances(model: ForecastModel, table: pa.Table) -> pa.Table:
    """Online/batch prediction for ARIMA_PLUS: each row asks for one series' forecast.

    A row carries the model's time series id columns (when it has any) and optionally
    ``horizon`` (default 3) and ``confidence_level`` (default 0.95); the answer is ML.FORECAST's
    rows for each request, in order. ARIMA_PLUS_XREG needs future feature values per step, which
    a single row cannot give: use ML.FORECAST(MODEL m, STRUCT(…), TABLE future) instead.
    """
    if model.feature_cols:
        raise InvalidArgument(
            "an ARIMA_PLUS_XREG model forecasts from future feature values, not single rows; "
            "use ML.FORECAST(MODEL m, STRUCT(h AS horizon), TABLE future_features)"
        )
    allowed = {*model.id_cols, *INSTANCE_COLUMNS}
    extra = [c for c in table.column_names if c not in allowed]
    missing = [c for c in model.id_cols if c not in table.column_names]
    if extra or missing:
        raise InvalidArgument(
            f"a forecasting request row has the series id columns {model.id_cols} and optional "
            f"{list(INSTANCE_COLUMNS)}; got {table.column_names}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unknown {extra})" if extra else ""),
            missing=missing,
            unknown=extra,
        )
    pieces: list[pa.Table] = []
    max_horizon = int(model.config.get("horizon", 1000))
    for row in table.to_pylist():
        horizon = row.get("horizon", 3)
        level = row.get("confidence_level", 0.95)
        horizon = 3 if horizon is None else horizon
        level = 0.95 if level is None else level
        check_forecast_params(horizon, level, max_horizon)
        key = tuple(row[c] for c in model.id_cols)
        series = model.find(key)
        if series is None:
            raise InvalidArgument(
                f"the model has no time series with {dict(zip(model.id_cols, key, strict=True))}",
                series=list(key),
            )
        single = ForecastModel(config=model.config, series=[series])
        pieces.append(single.forecast_table(int(horizon), float(level), None))
    if not pieces:
        return ForecastModel(config=model.config).forecast_table(1, 0.95, None)
    return pa.concat_tables(pieces)


def check_forecast_params(horizon: Any, confidence_level: Any, max_horizon: int) -> None:
    """BigQuery ML's ranges: 1 <= horizon <= the model's horizon; 0 <= confidence_level < 1."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise InvalidArgument(f"horizon must be a positive integer, got {horizon!r}")
    if horizon > max_horizon:
        raise InvalidArgument(
            f"horizon {horizon} is larger than the model's horizon {max_horizon} (the "
            "CREATE MODEL option 'horizon'); forecast at most that many points",
            horizon=horizon,
        )
    if (
        isinstance(confidence_level, bool)
        or not isinstance(confidence_level, int | float)
        or not 0.0 <= float(confidence_level) < 1.0
    ):
        raise InvalidArgument(
            f"confidence_level must be a number in [0, 1), got {confidence_level!r}"
        )
