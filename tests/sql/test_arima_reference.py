"""ARIMA_PLUS output checked against BigQuery ML's reference pages, behaviour by behaviour:
ML.EVALUATE with ``perform_aggregation=FALSE``, ML.DETECT_ANOMALIES on new rows (every row
kept, NULLs where the model cannot judge, the input's other columns after), the
``decompose_time_series=FALSE`` rules, and the id order of ML.ARIMA_EVALUATE and
ML.ARIMA_COEFFICIENTS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import FailedPrecondition

pytest.importorskip("statsforecast")
pytestmark = pytest.mark.slow

_START = dt.date(2024, 1, 1)
_TRAIN, _TEST, _HORIZON = 70, 10, 7


def _rows() -> list[dict[str, Any]]:
    """Two daily series, 'z' listed before 'a' (the output orders them by id)."""
    rows = []
    for seed, (store, level) in enumerate((("z", 50.0), ("a", 20.0))):
        rng = np.random.default_rng(seed)
        for t in range(_TRAIN + _TEST):
            value = level + 0.1 * t + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1)
            rows.append({"store": store, "day": _START + dt.timedelta(days=t), "sales": value})
    return rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("arima_reference"))
    rows = _rows()
    workspace.load_table("demo.sales", rows)
    cut = (_START + dt.timedelta(days=_TRAIN)).isoformat()
    workspace.sql(
        "CREATE MODEL demo.arima OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='day', time_series_data_col='sales', "
        f"time_series_id_col='store', horizon={_HORIZON}) "
        f"AS SELECT store, day, sales FROM demo.sales WHERE day < DATE '{cut}'"
    )
    workspace.sql(
        "CREATE MODEL demo.plain OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='day', time_series_data_col='sales', "
        f"time_series_id_col='store', horizon={_HORIZON}, decompose_time_series=FALSE) "
        f"AS SELECT store, day, sales FROM demo.sales WHERE day < DATE '{cut}'"
    )
    yield workspace
    workspace.close()


def _day(t: int) -> dt.date:
    return _START + dt.timedelta(days=t)


# -- ML.EVALUATE(…, STRUCT(FALSE AS perform_aggregation)) --------------------------------------


def test_evaluate_per_timestamp_columns_and_values(ws: Any) -> None:
    table = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.arima, (SELECT * FROM demo.sales WHERE "
        f"day >= DATE '{_day(_TRAIN - 3)}'), STRUCT(FALSE AS perform_aggregation, "
        "0.8 AS confidence_level)) ORDER BY store, day"
    ).to_arrow()
    assert table.column_names == [
        "store",
        "day",
        "sales",
        "forecasted_sales",
        "lower_bound",
        "upper_bound",
        "absolute_error",
        "absolute_percentage_error",
    ]
    assert str(table.schema.field("day").type) == "date32[day]"  # the training column's type
    out = table.to_pandas()
    assert len(out) == 2 * 13  # every input row of both series
    forecast = ws.sql(
        "SELECT store, forecast_value, prediction_interval_lower_bound AS lo, "
        "prediction_interval_upper_bound AS hi FROM ML.FORECAST(MODEL demo.arima, "
        f"STRUCT({_HORIZON} AS horizon, 0.8 AS confidence_level)) ORDER BY store, "
        "forecast_timestamp"
    ).to_pandas()
    for store in ("a", "z"):
        rows = out[out["store"] == store]
        history, steps, beyond = rows.iloc[:3], rows.iloc[3 : 3 + _HORIZON], rows.iloc[10:]
        # the history and the days past the model's horizon are not forecast: NULL
        for part in (history, beyond):
            assert part[["forecasted_sales", "lower_bound", "absolute_error"]].isna().all().all()
        expected = forecast[forecast["store"] == store]
        np.testing.assert_allclose(steps["forecasted_sales"], expected["forecast_value"])
        np.testing.assert_allclose(steps["lower_bound"], expected["lo"])
        np.testing.assert_allclose(steps["upper_bound"], expected["hi"])
        error = np.abs(steps["sales"] - steps["forecasted_sales"])
        np.testing.assert_allclose(steps["absolute_error"], error)
        np.testing.assert_allclose(steps["absolute_percentage_error"], error / steps["sales"])


def test_evaluate_per_timestamp_agrees_with_the_aggregate(ws: Any) -> None:
    future = f"(SELECT * FROM demo.sales WHERE day >= DATE '{_day(_TRAIN)}')"
    rows = ws.sql(
        f"SELECT store, AVG(absolute_error) AS mae, 100 * AVG(absolute_percentage_error) AS mape "
        f"FROM ML.EVALUATE(MODEL demo.arima, {future}, STRUCT(FALSE AS perform_aggregation, "
        "3 AS horizon)) GROUP BY store ORDER BY store"
    ).to_pylist()
    aggregate = ws.sql(
        "SELECT store, mean_absolute_error AS mae, mean_absolute_percentage_error AS mape "
        f"FROM ML.EVALUATE(MODEL demo.arima, {future}, STRUCT(3 AS horizon)) ORDER BY store"
    ).to_pylist()
    assert [r["store"] for r in rows] == ["a", "z"]
    for got, want in zip(rows, aggregate, strict=True):
        assert got["mae"] == pytest.approx(want["mae"], rel=1e-12)
        assert got["mape"] == pytest.approx(want["mape"], rel=1e-12)


# -- ML.DETECT_ANOMALIES on new rows ------------------------------------------------------------


def test_detect_anomalies_keeps_every_row_and_the_other_columns(ws: Any) -> None:
    ws.sql(
        "CREATE TABLE demo.checks AS SELECT store, day, sales, 'sunny' AS weather "
        f"FROM demo.sales WHERE day >= DATE '{_day(_TRAIN - 2)}' "
        f"UNION ALL SELECT 'unknown' AS store, DATE '{_day(_TRAIN)}' AS day, 1.0 AS sales, "
        "'rainy' AS weather"
    )
    table = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.arima, "
        "STRUCT(0.9 AS anomaly_prob_threshold), TABLE demo.checks)"
    ).to_arrow()
    assert table.column_names == [
        "store",
        "day",
        "sales",
        "is_anomaly",
        "lower_bound",
        "upper_bound",
        "anomaly_probability",
        "weather",
    ]
    assert str(table.schema.field("day").type) == "timestamp[us, tz=UTC]"
    out = table.to_pandas()
    assert len(out) == 2 * 12 + 1
    judged = out["anomaly_probability"].notna()
    # the days before the forecast, those past the horizon and an unknown series: NULL
    days = out["day"].dt.date
    inside = (days >= _day(_TRAIN)) & (days < _day(_TRAIN + _HORIZON)) & (out["store"] != "unknown")
    assert (judged == inside).all()
    assert out.loc[~judged, "is_anomaly"].isna().all()
    assert out.loc[out["store"] == "unknown", "weather"].tolist() == ["rainy"]
    # each series in time order, the unknown series last
    assert out["store"].tolist() == ["a"] * 12 + ["z"] * 12 + ["unknown"]


# -- decompose_time_series=FALSE ------------------------------------------------------------------


def test_without_decomposition_the_decomposition_flags_are_null(ws: Any) -> None:
    rows = ws.sql(
        "SELECT store, has_holiday_effect, has_spikes_and_dips, has_step_changes "
        "FROM ML.ARIMA_EVALUATE(MODEL demo.plain)"
    ).to_pylist()
    assert rows == [
        {
            "store": s,
            "has_holiday_effect": None,
            "has_spikes_and_dips": None,
            "has_step_changes": None,
        }
        for s in ("a", "z")
    ]
    decomposed = ws.sql("SELECT has_step_changes FROM ML.ARIMA_EVALUATE(MODEL demo.arima)")
    assert None not in [r["has_step_changes"] for r in decomposed.to_pylist()]


def test_without_decomposition_history_anomalies_are_refused(ws: Any) -> None:
    with pytest.raises(FailedPrecondition, match="decompose_time_series=TRUE"):
        ws.sql("SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.plain)")
    # new rows still apply
    out = ws.sql(
        "SELECT COUNT(anomaly_probability) AS n FROM ML.DETECT_ANOMALIES(MODEL demo.plain, "
        f"STRUCT(0.9 AS anomaly_prob_threshold), (SELECT * FROM demo.sales WHERE "
        f"day >= DATE '{_day(_TRAIN)}'))"
    ).to_pylist()
    assert out == [{"n": 2 * _HORIZON}]


# -- order --------------------------------------------------------------------------------------


def test_series_come_in_ascending_id_order(ws: Any) -> None:
    for function in ("ARIMA_EVALUATE", "ARIMA_COEFFICIENTS"):
        out = ws.sql(f"SELECT store FROM ML.{function}(MODEL demo.arima)").to_pylist()
        assert [r["store"] for r in out] == ["a", "z"], function


def test_xreg_without_decomposition_is_still_explained(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.xreg_plain OPTIONS(model_type='ARIMA_PLUS_XREG', "
        "time_series_timestamp_col='day', time_series_data_col='sales', "
        f"decompose_time_series=FALSE, horizon={_HORIZON}) AS SELECT day, sales, "
        f"1.0 * EXTRACT(DAY FROM day) AS x FROM demo.sales WHERE store = 'a' AND day < DATE "
        f"'{_day(_TRAIN)}'"
    )
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.xreg_plain, STRUCT(3 AS horizon), "
        "(SELECT day, 1.0 * EXTRACT(DAY FROM day) AS x FROM demo.sales WHERE store = 'a' "
        f"AND day >= DATE '{_day(_TRAIN)}')) ORDER BY time_series_timestamp"
    ).to_pandas()
    seasons = [c for c in out.columns if c.startswith("seasonal_period_")]
    assert out[seasons].isna().all().all()  # nothing decomposed
    np.testing.assert_allclose(
        out["time_series_adjusted_data"], out["trend"] + out["attribution_x"], rtol=1e-9
    )
    forecast = out[out["time_series_type"] == "forecast"]
    np.testing.assert_allclose(forecast["time_series_adjusted_data"], forecast["time_series_data"])
    with pytest.raises(FailedPrecondition, match="ARIMA_PLUS model"):
        ws.sql("SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.plain)")
