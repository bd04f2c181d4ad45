"""ARIMA_PLUS and ARIMA_PLUS_XREG end to end: CREATE MODEL, ML.FORECAST / EXPLAIN_FORECAST /
EVALUATE / ARIMA_EVALUATE / ARIMA_COEFFICIENTS / DETECT_ANOMALIES, parity with statsforecast used
directly, the model package, and bad input.

Slow as a module: importing statsforecast (it imports statsmodels) takes seconds, and each
auto.ARIMA fit about one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, Unsupported

pytest.importorskip("statsforecast")
pytestmark = pytest.mark.slow

_START = dt.datetime(2024, 1, 1)
_TRAIN, _TEST = 98, 14
_LEVELS = {"north": 20.0, "south": 60.0}


def _series(level: float, seed: int, n: int) -> np.ndarray:
    """Trend + weekly seasonality + noise (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return level + 0.15 * t + 4.0 * np.sin(2 * np.pi * t / 7) + rng.normal(0.0, 1.0, n)


def _rows(first: int, last: int) -> list[dict[str, Any]]:
    rows = []
    for seed, (store, level) in enumerate(_LEVELS.items()):
        y = _series(level, seed, _TRAIN + _TEST)
        for t in range(first, last):
            rows.append({"store": store, "day": _START + dt.timedelta(days=t), "sales": y[t]})
    return rows


def _macro() -> pa.Table:
    """statsmodels' US macroeconomic data (quarterly, 1959-2009): consumption and income."""
    from statsmodels.datasets import macrodata

    df = macrodata.load_pandas().data
    quarters = [
        dt.datetime(int(y), 3 * (int(q) - 1) + 1, 1)
        for y, q in zip(df["year"], df["quarter"], strict=True)
    ]
    return pa.table(
        {
            "quarter": pa.array(quarters, type=pa.timestamp("us")),
            "consumption": df["realcons"].to_numpy(),
            "income": df["realdpi"].to_numpy(),
        }
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("arima")


@pytest.fixture(scope="module")
def ws(home: Path) -> Iterator[Any]:
    workspace = sy.connect(home)
    workspace.load_table("demo.sales", _rows(0, _TRAIN))
    workspace.load_table("demo.holdout", _rows(_TRAIN, _TRAIN + _TEST))
    workspace.load_table("demo.macro", _macro().to_pylist())
    workspace.sql(
        "CREATE MODEL demo.sales_arima OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='day', time_series_data_col='sales', "
        "time_series_id_col='store', horizon=30, clean_spikes_and_dips=FALSE) "
        "AS SELECT store, day, sales FROM demo.sales"
    )
    workspace.sql(
        "CREATE MODEL demo.manual OPTIONS(model_type='arima_plus', "
        "time_series_timestamp_col='day', time_series_data_col='sales', auto_arima=FALSE, "
        "non_seasonal_order=(1, 1, 1), include_drift=TRUE, horizon=10) "
        "AS SELECT day, sales FROM demo.sales WHERE store = 'north'"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['sales']) "
        "AS SELECT sales, EXTRACT(DOW FROM day) AS dow FROM demo.sales"
    )
    yield workspace
    workspace.close()


def _train(store: str) -> np.ndarray:
    seed = list(_LEVELS).index(store)
    return _series(_LEVELS[store], seed, _TRAIN + _TEST)


# -- forecasts --------------------------------------------------------------------------------


def test_forecast_equals_statsforecast_autoarima(ws: Any) -> None:
    from statsforecast.models import AutoARIMA

    out = ws.sql(
        "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(7 AS horizon, "
        "0.9 AS confidence_level)) ORDER BY store, forecast_timestamp"
    ).to_pandas()
    for store in _LEVELS:
        y = _train(store)[:_TRAIN]
        direct = AutoARIMA(season_length=7).fit(y).predict(7, level=[90])
        got = out[out["store"] == store]
        np.testing.assert_allclose(got["forecast_value"], direct["mean"], rtol=1e-9)
        np.testing.assert_allclose(
            got["prediction_interval_lower_bound"], direct["lo-90"], rtol=1e-9
        )
        np.testing.assert_allclose(
            got["prediction_interval_upper_bound"], direct["hi-90"], rtol=1e-9
        )
        assert list(got["confidence_level"]) == [0.9] * 7
        first = got["forecast_timestamp"].iloc[0].to_pydatetime().replace(tzinfo=None)
        assert first == _START + dt.timedelta(days=_TRAIN)


def test_holdout_accuracy_matches_statsforecast(ws: Any) -> None:
    from statsforecast.models import AutoARIMA

    metrics = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, TABLE demo.holdout) ORDER BY store"
    ).to_pandas()
    assert list(metrics.columns) == [
        "store",
        "mean_absolute_error",
        "mean_squared_error",
        "root_mean_squared_error",
        "mean_absolute_percentage_error",
        "symmetric_mean_absolute_percentage_error",
        "mean_absolute_scaled_error",
    ]
    for _, row in metrics.iterrows():
        y = _train(row["store"])
        direct = AutoARIMA(season_length=7).fit(y[:_TRAIN]).predict(_TEST)["mean"]
        mae = float(np.mean(np.abs(y[_TRAIN:] - direct)))
        assert row["mean_absolute_error"] == pytest.approx(mae, rel=1e-9)
        naive = float(np.mean(np.abs(np.diff(y[:_TRAIN]))))
        assert row["mean_absolute_scaled_error"] == pytest.approx(mae / naive, rel=1e-9)
        assert row["root_mean_squared_error"] == pytest.approx(np.sqrt(row["mean_squared_error"]))
        assert row["mean_absolute_error"] < 2.0  # the noise has sd 1
    first_week = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, TABLE demo.holdout, "
        "STRUCT(7 AS horizon)) ORDER BY store"
    ).to_pandas()
    y = _train("north")
    direct = AutoARIMA(season_length=7).fit(y[:_TRAIN]).predict(7)["mean"]
    expected = float(np.mean(np.abs(y[_TRAIN : _TRAIN + 7] - direct)))
    assert first_week["mean_absolute_error"].iloc[0] == pytest.approx(expected, rel=1e-9)


def test_forecast_columns_and_types(ws: Any) -> None:
    schema = ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.sales_arima)").schema
    assert schema.names == [
        "store",
        "forecast_timestamp",
        "forecast_value",
        "standard_error",
        "confidence_level",
        "prediction_interval_lower_bound",
        "prediction_interval_upper_bound",
        "confidence_interval_lower_bound",
        "confidence_interval_upper_bound",
    ]
    assert pa.types.is_timestamp(schema.field("forecast_timestamp").type)
    assert schema.field("store").type == pa.string()
    assert all(schema.field(n).type == pa.float64() for n in schema.names[2:])
    # default horizon 3 per series
    assert ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.sales_arima)").num_rows == 6


def test_standard_error_and_interval_agree(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(5 AS horizon))"
    ).to_pandas()
    half = out["prediction_interval_upper_bound"] - out["forecast_value"]
    np.testing.assert_allclose(half, 1.959963984540054 * out["standard_error"], rtol=1e-6)
    assert (out["confidence_interval_lower_bound"] == out["prediction_interval_lower_bound"]).all()


def test_confidence_level_zero_gives_a_point_interval(ws: Any) -> None:
    zero = ws.sql(
        "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(0.0 AS confidence_level))"
    ).to_pandas()
    usual = ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.sales_arima)").to_pandas()
    assert (zero["prediction_interval_lower_bound"] == zero["forecast_value"]).all()
    assert (zero["prediction_interval_upper_bound"] == zero["forecast_value"]).all()
    np.testing.assert_allclose(zero["standard_error"], usual["standard_error"], rtol=1e-6)


def test_manual_order_equals_statsforecast_arima(ws: Any) -> None:
    from statsforecast.models import ARIMA

    got = ws.sql(
        "SELECT forecast_value FROM ML.FORECAST(MODEL demo.manual, STRUCT(5 AS horizon))"
    ).to_pandas()
    direct = ARIMA(order=(1, 1, 1), include_drift=True).fit(_train("north")[:_TRAIN]).predict(5)
    np.testing.assert_allclose(got["forecast_value"], direct["mean"], rtol=1e-9)
    ev = ws.sql("SELECT * FROM ML.ARIMA_EVALUATE(MODEL demo.manual)").to_pylist()
    assert len(ev) == 1
    assert (ev[0]["non_seasonal_p"], ev[0]["non_seasonal_d"], ev[0]["non_seasonal_q"]) == (1, 1, 1)
    coef = ws.sql("SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demo.manual)").to_pylist()[0]
    assert len(coef["ar_coefficients"]) == 1 and len(coef["ma_coefficients"]) == 1
    assert list(ws.sql("SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demo.manual)").schema.names) == [
        "ar_coefficients",
        "ma_coefficients",
        "intercept_or_drift",
    ]


def test_arima_evaluate_one_row_per_series(ws: Any) -> None:
    result = ws.sql("SELECT * FROM ML.ARIMA_EVALUATE(MODEL demo.sales_arima) ORDER BY store")
    assert result.column_names == [
        "store",
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
    ]
    rows = result.to_pylist()
    assert [r["store"] for r in rows] == ["north", "south"]
    assert all(r["seasonal_periods"] == ["WEEKLY"] for r in rows)
    assert all(0.3 < r["variance"] < 3.0 for r in rows)  # the noise variance is 1
    # ML.EVALUATE without input rows is ML.ARIMA_EVALUATE
    assert (
        ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima) ORDER BY store").to_pylist()
        == rows
    )


def test_explain_forecast_history_then_forecast(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.sales_arima, STRUCT(4 AS horizon)) "
        "WHERE store = 'north' ORDER BY time_series_timestamp"
    ).to_pandas()
    history = out[out["time_series_type"] == "history"]
    forecast = out[out["time_series_type"] == "forecast"]
    assert (len(history), len(forecast)) == (_TRAIN, 4)
    np.testing.assert_allclose(history["time_series_data"], _train("north")[:_TRAIN])
    # the weekly season is split out by MSTL; the reference's identities: the adjusted data is
    # trend + seasons (+ holidays, none here), the data is that + residual (+ spikes and steps,
    # none here: NULL, "no effect found")
    assert history["seasonal_period_weekly"].notna().all()
    assert history["seasonal_period_yearly"].isna().all()
    for col in ("holiday_effect", "spikes_and_dips", "step_changes"):
        assert out[col].isna().all(), col
    np.testing.assert_allclose(
        history["trend"] + history["seasonal_period_weekly"],
        history["time_series_adjusted_data"],
    )
    np.testing.assert_allclose(
        history["time_series_adjusted_data"] + history["residual"], history["time_series_data"]
    )
    # history rows: the residuals' standard error on each, no interval
    variance = ws.sql(
        "SELECT variance FROM ML.ARIMA_EVALUATE(MODEL demo.sales_arima) WHERE store = 'north'"
    ).to_pylist()[0]["variance"]
    np.testing.assert_allclose(history["standard_error"], np.sqrt(variance))
    for col in ("confidence_level", "prediction_interval_lower_bound"):
        assert history[col].isna().all() and forecast[col].notna().all(), col
    # forecast rows: the adjusted data is the forecast; no residual, spikes or steps
    fc = ws.sql(
        "SELECT forecast_value, standard_error FROM ML.FORECAST(MODEL demo.sales_arima, "
        "STRUCT(4 AS horizon)) WHERE store = 'north' ORDER BY forecast_timestamp"
    ).to_pandas()
    np.testing.assert_allclose(forecast["time_series_data"], fc["forecast_value"])
    np.testing.assert_allclose(forecast["time_series_adjusted_data"], fc["forecast_value"])
    np.testing.assert_allclose(forecast["standard_error"], fc["standard_error"])
    np.testing.assert_allclose(
        forecast["trend"] + forecast["seasonal_period_weekly"], fc["forecast_value"]
    )
    assert forecast["residual"].isna().all()


def test_detect_anomalies_on_new_rows_and_history(ws: Any) -> None:
    ws.sql("CREATE TABLE demo.new_points AS SELECT * FROM demo.holdout")
    ws.sql(
        "UPDATE demo.new_points SET sales = sales + 25 "
        f"WHERE store = 'south' AND day = TIMESTAMP '{(_START + dt.timedelta(days=_TRAIN + 2))}'"
    )
    out = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.sales_arima, "
        "STRUCT(0.99 AS anomaly_prob_threshold), TABLE demo.new_points) "
        "ORDER BY store, day"
    ).to_pandas()
    assert list(out.columns) == [
        "store",
        "day",
        "sales",
        "is_anomaly",
        "lower_bound",
        "upper_bound",
        "anomaly_probability",
    ]
    flagged = out[out["is_anomaly"]]
    assert len(flagged) == 1 and flagged["store"].iloc[0] == "south"
    assert (out["lower_bound"] < out["upper_bound"]).all()
    history = ws.sql("SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.sales_arima)")
    assert history.num_rows == 2 * _TRAIN
    strict = ws.sql(
        "SELECT COUNT(*) AS n FROM ML.DETECT_ANOMALIES(MODEL demo.sales_arima, "
        "STRUCT(0.5 AS anomaly_prob_threshold)) WHERE is_anomaly"
    ).to_pylist()[0]["n"]
    assert 0.3 * 2 * _TRAIN < strict < 0.7 * 2 * _TRAIN  # ~half beyond the median |error|


def test_spikes_are_cleaned_and_reported(ws: Any) -> None:
    ws.sql("CREATE TABLE demo.spiky AS SELECT day, sales FROM demo.sales WHERE store = 'north'")
    ws.sql(
        "UPDATE demo.spiky SET sales = sales + 40 "
        f"WHERE day = TIMESTAMP '{_START + dt.timedelta(days=50)}'"
    )
    ws.sql(
        "CREATE MODEL demo.spiky_arima OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='day', time_series_data_col='sales') AS SELECT * FROM demo.spiky"
    )
    ev = ws.sql("SELECT has_spikes_and_dips FROM ML.ARIMA_EVALUATE(MODEL demo.spiky_arima)")
    assert ev.to_pylist() == [{"has_spikes_and_dips": True}]
    spikes = ws.sql(
        "SELECT time_series_timestamp, spikes_and_dips FROM ML.EXPLAIN_FORECAST("
        "MODEL demo.spiky_arima) WHERE spikes_and_dips <> 0"
    ).to_pylist()
    assert len(spikes) == 1 and spikes[0]["spikes_and_dips"] > 30


def test_xreg_on_statsmodels_macrodata(ws: Any) -> None:
    from statsforecast.models import AutoARIMA

    ws.sql(
        "CREATE MODEL demo.macro_xreg OPTIONS(model_type='ARIMA_PLUS_XREG', "
        "time_series_timestamp_col='quarter', time_series_data_col='consumption', "
        "clean_spikes_and_dips=FALSE, horizon=8) "
        "AS SELECT * FROM demo.macro WHERE quarter < TIMESTAMP '2007-01-01'"
    )
    out = ws.sql(
        "SELECT * FROM ML.FORECAST(MODEL demo.macro_xreg, STRUCT(4 AS horizon), "
        "(SELECT quarter, income FROM demo.macro WHERE quarter >= TIMESTAMP '2007-01-01')) "
        "ORDER BY forecast_timestamp"
    ).to_pandas()
    macro = _macro().to_pandas()
    train = macro[macro["quarter"] < "2007-01-01"]
    future = macro[macro["quarter"] >= "2007-01-01"].head(4)
    direct = (
        AutoARIMA(season_length=4)
        .fit(train["consumption"].to_numpy(), X=train[["income"]].to_numpy())
        .predict(4, X=future[["income"]].to_numpy())
    )
    np.testing.assert_allclose(out["forecast_value"], direct["mean"], rtol=1e-9)
    stamps = [t.to_pydatetime().replace(tzinfo=None) for t in out["forecast_timestamp"]]
    assert stamps == list(future["quarter"].dt.to_pydatetime())
    table_first = ws.sql(
        "SELECT forecast_value FROM ML.FORECAST(MODEL demo.macro_xreg, (SELECT quarter, income, "
        "0 AS ignored FROM demo.macro WHERE quarter >= TIMESTAMP '2007-01-01'), "
        "STRUCT(4 AS horizon)) ORDER BY forecast_timestamp"
    ).to_pandas()
    np.testing.assert_allclose(table_first["forecast_value"], out["forecast_value"])
    with pytest.raises(InvalidArgument, match="future values"):
        ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.macro_xreg)")
    with pytest.raises(InvalidArgument, match="income"):
        ws.sql(
            "SELECT * FROM ML.FORECAST(MODEL demo.macro_xreg, STRUCT(2 AS horizon), "
            "(SELECT quarter FROM demo.macro))"
        )
    metrics = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.macro_xreg, "
        "(SELECT * FROM demo.macro WHERE quarter >= TIMESTAMP '2007-01-01'))"
    ).to_pylist()
    assert len(metrics) == 1 and metrics[0]["mean_absolute_percentage_error"] < 5.0


def test_holiday_region_adds_a_holiday_effect(ws: Any) -> None:
    rng = np.random.default_rng(7)
    start = dt.date(2023, 1, 1)
    import holidays

    us = holidays.country_holidays("US", years=[2023, 2024])
    rows = []
    for t in range(500):
        day = start + dt.timedelta(days=t)
        bump = -15.0 if day in us else 0.0
        rows.append({"d": day, "v": 50.0 + 3 * np.sin(2 * np.pi * t / 7) + bump + rng.normal()})
    ws.load_table("demo.visits", rows)
    ws.sql(
        "CREATE MODEL demo.visits_arima OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='d', time_series_data_col='v', holiday_region='US', "
        "clean_spikes_and_dips=FALSE, horizon=60) AS SELECT * FROM demo.visits"
    )
    ev = ws.sql("SELECT has_holiday_effect FROM ML.ARIMA_EVALUATE(MODEL demo.visits_arima)")
    assert ev.to_pylist() == [{"has_holiday_effect": True}]
    explained = ws.sql(
        "SELECT time_series_timestamp, holiday_effect FROM ML.EXPLAIN_FORECAST("
        "MODEL demo.visits_arima, STRUCT(60 AS horizon)) WHERE time_series_type = 'forecast' "
        "AND holiday_effect <> 0"
    ).to_pylist()
    # 2024-05-16 + 60 days includes Memorial Day, Juneteenth and Independence Day
    days = {r["time_series_timestamp"].date() for r in explained}
    assert {dt.date(2024, 5, 27), dt.date(2024, 6, 19), dt.date(2024, 7, 4)} <= days
    assert all(-18 < r["holiday_effect"] < -12 for r in explained)


# -- the model package and serving ------------------------------------------------------------


def test_package_is_json_and_reloads_to_the_same_forecasts(ws: Any, home: Path) -> None:
    from shipyard.registry.flavors import load_model
    from shipyard.registry.forecasting import ForecastModel

    manifest = ws.models.manifest("demo.sales_arima")
    assert manifest.flavor == "statsforecast" and manifest.task == "forecasting"
    assert list(manifest.files) == ["model.json"]
    before = ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.sales_arima)").to_arrow()
    # the verified copy the registry loaded from: plain JSON, read back by the flavor
    digest = ws.models.get_version("demo.sales_arima").manifest_digest
    folder = home / "cache" / "packages" / digest
    json.loads((folder / "model.json").read_text())
    model = load_model("statsforecast", folder, manifest.flavor_meta)
    assert isinstance(model, ForecastModel)
    assert model.forecast_table(3, 0.95, None).equals(before)


def test_predictor_serves_forecast_requests(ws: Any) -> None:
    predictor = ws.models.load("demo.sales_arima")
    out = predictor.predict(
        pa.table({"store": ["south", "north"], "horizon": [2, 1]}), keep_original_columns=False
    )
    assert out.column("store").to_pylist() == ["south", "south", "north"]
    assert out.schema.names == [s["name"] for s in predictor.signature["outputs"]]
    with pytest.raises(InvalidArgument, match="no time series"):
        predictor.predict(pa.table({"store": ["east"]}))
    with pytest.raises(InvalidArgument, match="missing"):
        predictor.predict(pa.table({"horizon": [2]}))
    with pytest.raises(InvalidArgument, match="larger than the model's horizon"):
        predictor.predict(pa.table({"store": ["north"], "horizon": [31]}))


def test_same_answers_over_http(ws: Any) -> None:
    from starlette.testclient import TestClient

    from shipyard.client.remote import RemoteWorkspace
    from shipyard.server import create_app

    forecast = "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima) ORDER BY store"
    evaluate = "SELECT * FROM ML.ARIMA_EVALUATE(MODEL demo.sales_arima) ORDER BY store"
    with TestClient(create_app(ws.services), base_url="http://127.0.0.1:8765") as client:
        remote = RemoteWorkspace("http://127.0.0.1:8765", client=client)
        assert remote.sql(forecast).to_arrow().equals(ws.sql(forecast).to_arrow())
        assert remote.sql(evaluate).to_pylist() == ws.sql(evaluate).to_pylist()
        with pytest.raises(InvalidArgument, match="use ML.FORECAST"):
            remote.sql("SELECT * FROM ML.PREDICT(MODEL demo.sales_arima, TABLE demo.holdout)")


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error", "fragment"),
    [
        (
            "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(31 AS horizon))",
            InvalidArgument,
            "model's horizon 30",
        ),
        (
            "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(1.0 AS confidence_level))",
            InvalidArgument,
            "[0, 1)",
        ),
        (
            "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(0 AS horizon))",
            InvalidArgument,
            "positive integer",
        ),
        (
            "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(3 AS steps))",
            InvalidArgument,
            "no parameter 'steps'",
        ),
        (
            "SELECT * FROM ML.FORECAST(MODEL demo.sales_arima, STRUCT(3 AS horizon), "
            "TABLE demo.holdout)",
            InvalidArgument,
            "takes no input rows",
        ),
        (
            "SELECT * FROM ML.PREDICT(MODEL demo.sales_arima, TABLE demo.holdout)",
            InvalidArgument,
            "use ML.FORECAST",
        ),
        (
            "SELECT * FROM ML.FORECAST(MODEL demo.lin)",
            InvalidArgument,
            "a LINEAR_REG model; it applies to ARIMA_PLUS, ARIMA_PLUS_XREG",
        ),
        (
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.sales_arima, "
            "STRUCT(1.5 AS anomaly_prob_threshold))",
            InvalidArgument,
            "anomaly_prob_threshold",
        ),
        (
            "SELECT * FROM ML.ARIMA_EVALUATE(MODEL demo.sales_arima, "
            "STRUCT(TRUE AS show_all_candidate_models))",
            Unsupported,
            "show_all_candidate_models",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, TABLE demo.holdout, "
            "STRUCT(0.9 AS confidence_level))",
            InvalidArgument,
            "perform_aggregation=FALSE only",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, TABLE demo.holdout, "
            "STRUCT(FALSE AS perform_aggregation, 1.0 AS confidence_level))",
            InvalidArgument,
            "ML.EVALUATE: confidence_level must be a number in [0, 1), got 1.0",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, TABLE demo.holdout, "
            "STRUCT(FALSE AS perform_aggregation, 0 AS horizon))",
            InvalidArgument,
            "horizon must be a positive integer",
        ),
        (
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.sales_arima, "
            "STRUCT(-0.1 AS anomaly_prob_threshold))",
            InvalidArgument,
            "'anomaly_prob_threshold' must be in [0, 1), got -0.1",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, TABLE demo.holdout, "
            "STRUCT(40 AS horizon))",
            InvalidArgument,
            "model's horizon 30",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, (SELECT store, day FROM "
            "demo.holdout))",
            InvalidArgument,
            "data column 'sales'",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales') "
            "AS SELECT * FROM demo.sales",
            InvalidArgument,
            "ARIMA_PLUS_XREG",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='store') "
            "AS SELECT day, store FROM demo.sales",
            InvalidArgument,
            "must be numeric",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='shop') AS SELECT * FROM demo.sales",
            InvalidArgument,
            "time_series_id_col 'shop'",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='store', holiday_region='GLOBAL') AS SELECT * FROM demo.sales",
            Unsupported,
            "GLOBAL",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='store', holiday_region='XX') AS SELECT * FROM demo.sales",
            InvalidArgument,
            "holiday_region 'XX'",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='store', seasonalities=['WEEKLY', 'YEARLY']) "
            "AS SELECT * FROM demo.sales",
            Unsupported,
            "one seasonal period",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='store', seasonalities=['HOURLY']) AS SELECT * FROM demo.sales",
            InvalidArgument,
            "seasonalities",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='store', seasonalities=['DAILY']) AS SELECT * FROM demo.sales",
            InvalidArgument,
            "does not fit DAILY data",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "auto_arima_min_order=1) AS SELECT day, sales FROM demo.sales",
            Unsupported,
            "auto_arima_min_order",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "forecast_limit_lower_bound=10, forecast_limit_upper_bound=5) "
            "AS SELECT day, sales FROM demo.sales",
            InvalidArgument,
            "must be below",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='ARIMA_PLUS_XREG', "
            "time_series_timestamp_col='day', time_series_data_col='sales', "
            "time_series_id_col='store') AS SELECT * FROM demo.sales",
            InvalidArgument,
            "at least one feature column",
        ),
    ],
)
def test_bad_input(ws: Any, sql: str, error: type[Exception], fragment: str) -> None:
    models = [m.name for m in ws.models.list().items]
    with pytest.raises(error) as info:
        ws.sql(sql)
    assert fragment in str(info.value)
    assert [m.name for m in ws.models.list().items] == models


def test_several_id_columns(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.by_two OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='day',"
        " time_series_data_col='sales', time_series_id_col=['region', 'store'], "
        "seasonalities=['WEEKLY'], auto_arima_max_order=2) AS SELECT IF(store = 'north', 1, 2) "
        "AS region, store, day, sales FROM demo.sales"
    )
    out = ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.by_two) ORDER BY region").to_arrow()
    assert out.column_names[:3] == ["region", "store", "forecast_timestamp"]
    assert pa.types.is_integer(out.schema.field("region").type)
    pairs = set(zip(out["region"].to_pylist(), out["store"].to_pylist(), strict=True))
    assert sorted(pairs) == [(1, "north"), (2, "south")]
    coef = ws.sql("SELECT region, store FROM ML.ARIMA_COEFFICIENTS(MODEL demo.by_two)")
    assert coef.num_rows == 2


def test_explain_forecast_needs_decomposition(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.plain OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='day', "
        "time_series_data_col='sales', decompose_time_series=FALSE, "
        "seasonalities=['NO_SEASONALITY']) "
        "AS SELECT day, sales FROM demo.sales WHERE store = 'south'"
    )
    assert ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.plain)").num_rows == 3
    ev = ws.sql("SELECT seasonal_periods FROM ML.ARIMA_EVALUATE(MODEL demo.plain)").to_pylist()
    assert ev == [{"seasonal_periods": ["NO_SEASONALITY"]}]
    with pytest.raises(sy.FailedPrecondition, match="decompose_time_series=TRUE"):
        ws.sql("SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.plain)")


def test_forecast_limits_clip(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.limited OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='day', time_series_data_col='sales', "
        "forecast_limit_upper_bound=35) AS SELECT day, sales FROM demo.sales WHERE store = 'north'"
    )
    out = ws.sql("SELECT * FROM ML.FORECAST(MODEL demo.limited, STRUCT(14 AS horizon))").to_pandas()
    assert (out["prediction_interval_upper_bound"] <= 35).all()
    assert (out["forecast_value"] <= 35).all()
