"""ARIMA_PLUS custom holidays, step changes and the seasonal decomposition, end to end.

Real statsforecast (ARIMA and MSTL), the holidays package and DuckDB. Slow as a module: importing
statsforecast takes seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument

pytest.importorskip("statsforecast")
pytestmark = pytest.mark.slow

_START = dt.date(2023, 1, 1)
_DAYS = 500  # 2023-01-01 .. 2024-05-14; a 60-day horizon reaches into July 2024
_MEMBERS = [dt.date(2023, 3, 15), dt.date(2023, 9, 15), dt.date(2024, 3, 15), dt.date(2024, 6, 14)]


def _holiday_rows() -> list[dict[str, Any]]:
    """Weekly season; US holidays -15; 'Members day' (custom, +-1 day) +20; July 3-5 -15."""
    import holidays

    us = holidays.country_holidays("US", years=[2023, 2024])
    rng = np.random.default_rng(11)
    window = {m + dt.timedelta(days=k) for m in _MEMBERS for k in (-1, 0, 1)}
    july = {dt.date(y, 7, d) for y in (2023, 2024) for d in (3, 4, 5)}
    rows = []
    for t in range(_DAYS):
        day = _START + dt.timedelta(days=t)
        bump = -15.0 if (day in us or day in july) else 0.0
        bump += 20.0 if day in window else 0.0
        value = 50.0 + 3 * np.sin(2 * np.pi * t / 7) + bump + rng.normal()
        rows.append({"d": day, "v": value})
    return rows


def _step_rows() -> list[dict[str, Any]]:
    """Weekly season, a slow trend, and a level shift of +15 on day 60 of 112."""
    rng = np.random.default_rng(3)
    rows = []
    for t in range(112):
        value = (
            20 + 0.05 * t + 4 * np.sin(2 * np.pi * t / 7) + rng.normal() + (15 if t >= 60 else 0)
        )
        rows.append({"d": _START + dt.timedelta(days=t), "v": value})
    return rows


def _seasonal_rows() -> list[dict[str, Any]]:
    """Three years of daily data: a weekly and a yearly season."""
    rng = np.random.default_rng(5)
    t = np.arange(3 * 365)
    y = (
        100
        + 4 * np.sin(2 * np.pi * t / 7)
        + 10 * np.sin(2 * np.pi * t / 365)
        + rng.normal(size=len(t))
    )
    return [
        {"d": _START + dt.timedelta(days=int(i)), "v": float(v)} for i, v in zip(t, y, strict=True)
    ]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("arima_adjust"))
    workspace.load_table("demo.visits", _holiday_rows())
    workspace.load_table(
        "demo.members",
        [
            {"region": "US", "holiday_name": "Members day", "primary_date": m, "pre": 1, "post": 1}
            for m in _MEMBERS
        ]
        + [
            {
                "region": "US",
                "holiday_name": "Independence Day",
                "primary_date": d,
                "pre": 1,
                "post": 1,
            }
            for d in (dt.date(2023, 7, 4), dt.date(2024, 7, 4))
        ],
    )
    workspace.load_table("demo.shift", _step_rows())
    workspace.load_table("demo.seasons", _seasonal_rows())
    workspace.sql(
        "CREATE MODEL demo.custom OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='d', "
        "time_series_data_col='v', holiday_region='US', clean_spikes_and_dips=FALSE, "
        "horizon=60) AS (training_data AS (SELECT d, v FROM demo.visits), "
        "custom_holiday AS (SELECT region, holiday_name, primary_date, pre AS preholiday_days, "
        "post AS postholiday_days FROM demo.members))"
    )
    workspace.sql(
        "CREATE MODEL demo.shifted OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='d', "
        "time_series_data_col='v') AS SELECT * FROM demo.shift"
    )
    yield workspace
    workspace.close()


def _forecast_effects(ws: Any, model: str, horizon: int = 60) -> dict[dt.date, float]:
    rows = ws.sql(
        "SELECT time_series_timestamp AS t, holiday_effect FROM ML.EXPLAIN_FORECAST("
        f"MODEL {model}, STRUCT({horizon} AS horizon)) WHERE time_series_type = 'forecast'"
    ).to_pylist()
    return {r["t"].date(): r["holiday_effect"] for r in rows}


# -- custom holidays --------------------------------------------------------------------------


def test_custom_holiday_adds_its_own_effect_over_its_window(ws: Any) -> None:
    effects = _forecast_effects(ws, "demo.custom")
    members = [dt.date(2024, 6, 13), dt.date(2024, 6, 14), dt.date(2024, 6, 15)]
    assert all(17 < effects[d] < 23 for d in members), [effects[d] for d in members]
    assert abs(effects[dt.date(2024, 6, 12)]) < 1e-9 and abs(effects[dt.date(2024, 6, 16)]) < 1e-9
    # the built-in US holidays keep theirs
    assert -18 < effects[dt.date(2024, 5, 27)] < -12  # Memorial Day
    forecast = ws.sql(
        "SELECT forecast_timestamp AS t, forecast_value FROM ML.FORECAST(MODEL demo.custom, "
        "STRUCT(60 AS horizon))"
    ).to_pylist()
    value = {r["t"].date(): r["forecast_value"] for r in forecast}
    assert value[dt.date(2024, 6, 14)] - value[dt.date(2024, 6, 7)] > 15  # a week before


def test_custom_holiday_overrides_the_builtin_of_the_same_name(ws: Any) -> None:
    effects = _forecast_effects(ws, "demo.custom")
    # the custom Independence Day spans July 3-5; the built-in one was July 4 alone
    for day in (3, 4, 5):
        assert -18 < effects[dt.date(2024, 7, day)] < -12, day
    ev = ws.sql("SELECT has_holiday_effect FROM ML.ARIMA_EVALUATE(MODEL demo.custom)").to_pylist()
    assert ev == [{"has_holiday_effect": True}]


def test_custom_holidays_without_a_region_and_lineage(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.custom_only OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='d', time_series_data_col='v', horizon=60) AS ("
        "training_data AS (SELECT d, v FROM demo.visits), custom_holiday AS (SELECT region, "
        "holiday_name, primary_date, pre AS preholiday_days, post AS postholiday_days FROM "
        "demo.members WHERE holiday_name = 'Members day'))"
    )
    effects = _forecast_effects(ws, "demo.custom_only")
    assert 15 < effects[dt.date(2024, 6, 14)] < 25
    assert abs(effects[dt.date(2024, 5, 27)]) < 1e-9  # no built-in holidays without a region
    version = ws.models.get_version("demo.custom_only")
    read = {t["name"] for t in version.lineage.input_tables}
    assert read == {"demo.visits", "demo.members"}


_BASE = (
    "CREATE OR REPLACE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
    "time_series_timestamp_col='d', time_series_data_col='v'{extra}) AS (training_data AS "
    "(SELECT d, v FROM {table}), custom_holiday AS ({holidays}))"
)
_GB = (
    "SELECT 'GB' AS region, 'Bank day' AS holiday_name, DATE '2023-05-01' AS primary_date, "
    "0 AS preholiday_days, 0 AS postholiday_days"
)


@pytest.mark.parametrize(
    ("extra", "table", "holidays", "fragment"),
    [
        (
            ", holiday_region='US'",
            "demo.visits",
            _GB,
            "has region 'GB', but the model's holiday_region is 'US'",
        ),
        (
            "",
            "demo.visits",
            _GB.replace("'Bank day'", "NULL"),
            "has no holiday_name",
        ),
        ("", "demo.visits", _GB.replace("DATE '2023-05-01'", "NULL"), "has no primary_date"),
        (
            "",
            "demo.visits",
            _GB.replace("0 AS postholiday_days", "NULL AS postholiday_days"),
            "postholiday_days None",
        ),
        ("", "demo.visits", _GB + " WHERE FALSE", "returned no rows"),
        (
            "",
            "(SELECT DATE_TRUNC(d, MONTH) AS d, AVG(v) AS v FROM demo.visits GROUP BY 1)",
            _GB,
            "custom holidays need daily or finer data; this data is MONTHLY",
        ),
    ],
)
def test_bad_custom_holidays(ws: Any, extra: str, table: str, holidays: str, fragment: str) -> None:
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(")):
        ws.sql(_BASE.format(extra=extra, table=table, holidays=holidays))
    assert [m.name for m in ws.models.list().items] == before


# -- step changes -----------------------------------------------------------------------------


def test_step_change_is_found_removed_and_reported(ws: Any) -> None:
    ev = ws.sql("SELECT has_step_changes FROM ML.ARIMA_EVALUATE(MODEL demo.shifted)").to_pylist()
    assert ev == [{"has_step_changes": True}]
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.shifted, STRUCT(7 AS horizon)) "
        "ORDER BY time_series_timestamp"
    ).to_pandas()
    history = out[out["time_series_type"] == "history"]
    steps = history["step_changes"].to_numpy()
    assert np.all(steps[60:] == 0) and np.all(steps[:60] == steps[0]) and -17 < steps[0] < -13
    # the parts add up to the data (the reference's identity), and no spike was made up (NULL:
    # none found); no holidays are modelled (NULL)
    np.testing.assert_allclose(
        history["time_series_adjusted_data"] + steps + history["residual"],
        history["time_series_data"],
    )
    assert history["spikes_and_dips"].isna().all() and out["holiday_effect"].isna().all()
    # forecast rows carry no step changes
    assert out.loc[out["time_series_type"] == "forecast", "step_changes"].isna().all()
    # the forecast continues from the new level, not an average of both
    forecast = out[out["time_series_type"] == "forecast"]["time_series_data"].to_numpy()
    assert abs(forecast.mean() - history["time_series_data"].to_numpy()[-7:].mean()) < 3


def test_history_anomalies_follow_the_step(ws: Any) -> None:
    flagged = ws.sql(
        "SELECT COUNT(*) AS n FROM ML.DETECT_ANOMALIES(MODEL demo.shifted, "
        "STRUCT(0.99 AS anomaly_prob_threshold)) WHERE is_anomaly"
    ).to_pylist()
    assert flagged[0]["n"] <= 2  # the history before the step is not one long anomaly


def test_adjust_step_changes_false_keeps_the_data(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.unshifted OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='d', time_series_data_col='v', adjust_step_changes=FALSE) "
        "AS SELECT * FROM demo.shift"
    )
    ev = ws.sql("SELECT has_step_changes FROM ML.ARIMA_EVALUATE(MODEL demo.unshifted)").to_pylist()
    assert ev == [{"has_step_changes": False}]
    steps = ws.sql(
        "SELECT DISTINCT step_changes FROM ML.EXPLAIN_FORECAST(MODEL demo.unshifted) "
        "WHERE time_series_type = 'history'"
    ).to_pylist()
    assert steps == [{"step_changes": None}]  # NULL: no step change found


# -- decomposition ----------------------------------------------------------------------------


def test_decomposition_finds_weekly_and_yearly_seasons(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.seasonal OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='d', time_series_data_col='v', auto_arima=FALSE, "
        "non_seasonal_order=(1, 0, 1), horizon=30) AS SELECT * FROM demo.seasons"
    )
    ev = ws.sql("SELECT seasonal_periods FROM ML.ARIMA_EVALUATE(MODEL demo.seasonal)").to_pylist()
    assert ev == [{"seasonal_periods": ["WEEKLY", "YEARLY"]}]
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.seasonal, STRUCT(14 AS horizon)) "
        "ORDER BY time_series_timestamp"
    ).to_pandas()
    for column in ("daily", "monthly", "quarterly"):
        assert out[f"seasonal_period_{column}"].isna().all()
    seasons = out["seasonal_period_weekly"] + out["seasonal_period_yearly"]
    history, forecast = (
        out[out["time_series_type"] == "history"],
        out["time_series_type"] == "forecast",
    )
    np.testing.assert_allclose(
        history["trend"] + seasons[history.index], history["time_series_adjusted_data"]
    )
    np.testing.assert_allclose(
        out.loc[forecast, "trend"] + seasons[forecast],
        out.loc[forecast, "time_series_adjusted_data"],
    )
    np.testing.assert_allclose(
        out.loc[forecast, "time_series_data"], out.loc[forecast, "time_series_adjusted_data"]
    )
    t = np.arange(len(history))
    weekly = history["seasonal_period_weekly"].to_numpy()
    assert np.corrcoef(weekly, np.sin(2 * np.pi * t / 7))[0, 1] > 0.95
    yearly = history["seasonal_period_yearly"].to_numpy()
    assert np.corrcoef(yearly, np.sin(2 * np.pi * t / 365))[0, 1] > 0.95
    # forecast rows repeat the last week of the weekly season
    np.testing.assert_allclose(
        out.loc[forecast, "seasonal_period_weekly"].to_numpy()[:7], weekly[-7:]
    )


def test_decomposition_leaves_forecasts_and_noise_alone(ws: Any) -> None:
    rng = np.random.default_rng(9)
    ws.load_table(
        "demo.noise",
        [{"d": _START + dt.timedelta(days=t), "v": float(10 + rng.normal())} for t in range(200)],
    )
    for name, decompose in (("demo.noise_d", "TRUE"), ("demo.noise_n", "FALSE")):
        ws.sql(
            f"CREATE MODEL {name} OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='d', time_series_data_col='v', "
            f"decompose_time_series={decompose}) AS SELECT * FROM demo.noise"
        )
    ev = ws.sql("SELECT seasonal_periods FROM ML.ARIMA_EVALUATE(MODEL demo.noise_d)").to_pylist()
    assert ev == [{"seasonal_periods": ["NO_SEASONALITY"]}]
    seasonal = ws.sql(
        "SELECT COUNT(seasonal_period_weekly) AS n FROM ML.EXPLAIN_FORECAST(MODEL demo.noise_d)"
    ).to_pylist()
    assert seasonal == [{"n": 0}]
    a, b = (
        ws.sql(
            f"SELECT forecast_value FROM ML.FORECAST(MODEL {m}, STRUCT(5 AS horizon))"
        ).to_pylist()
        for m in ("demo.noise_d", "demo.noise_n")
    )
    assert a == b


def test_model_with_custom_holidays_reloads_from_its_package(ws: Any, tmp_path: Path) -> None:
    from shipyard.registry.forecasting import from_json, to_json

    model = ws.models.load("demo.custom").model
    again = from_json(to_json(model))
    first = model.forecast_table(60, 0.9, None).to_pylist()
    assert again.forecast_table(60, 0.9, None).to_pylist() == first
