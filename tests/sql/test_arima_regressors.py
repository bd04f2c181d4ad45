"""ARIMA_PLUS_XREG's regressors in ML.ARIMA_COEFFICIENTS and ML.EXPLAIN_FORECAST, and
ML.EVALUATE's ``mean_absolute_scaled_error``.

The data are statsmodels' US macroeconomic series (quarterly consumption, income and
unemployment, 1959-2009); the fits are real statsforecast ones, compared with statsforecast used
directly. Slow as a module: importing statsforecast takes seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument

pytest.importorskip("statsforecast")
pytestmark = pytest.mark.slow

_CUT = "TIMESTAMP '2007-01-01'"
_FUTURE = f"(SELECT quarter, income, unemp FROM demo.macro WHERE quarter >= {_CUT})"
_SEASONS = [f"seasonal_period_{s}" for s in ("yearly", "quarterly", "monthly", "weekly", "daily")]


def _macro() -> pa.Table:
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
            "unemp": df["unemp"].to_numpy(),
        }
    )


def _daily_rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(4)
    start = dt.date(2024, 1, 1)
    return [
        {
            "store": store,
            "day": start + dt.timedelta(days=t),
            "sales": level + 0.1 * t + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(),
        }
        for store, level in (("north", 20.0), ("south", 60.0))
        for t in range(98)
    ]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("arima_regressors"))
    workspace.load_table("demo.macro", _macro().to_pylist())
    workspace.load_table("demo.sales", _daily_rows())
    workspace.sql(
        "CREATE MODEL demo.xreg OPTIONS(model_type='ARIMA_PLUS_XREG', "
        "time_series_timestamp_col='quarter', time_series_data_col='consumption', "
        "clean_spikes_and_dips=FALSE, horizon=8) "
        f"AS SELECT * FROM demo.macro WHERE quarter < {_CUT}"
    )
    workspace.sql(
        "CREATE MODEL demo.sales_arima OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='day', time_series_data_col='sales', "
        "time_series_id_col='store', horizon=14, clean_spikes_and_dips=FALSE) "
        "AS SELECT * FROM demo.sales WHERE day < DATE '2024-03-25'"
    )
    yield workspace
    workspace.close()


def _train() -> Any:
    macro = _macro().to_pandas()
    return macro[macro["quarter"] < "2007-01-01"], macro[macro["quarter"] >= "2007-01-01"]


def _weights(ws: Any) -> dict[str, float]:
    rows = ws.sql("SELECT processed_input, weight FROM ML.ARIMA_COEFFICIENTS(MODEL demo.xreg)")
    return {r["processed_input"]: r["weight"] for r in rows.to_pylist()}


# -- ML.ARIMA_COEFFICIENTS --------------------------------------------------------------------


def test_coefficients_give_each_regressors_weight(ws: Any) -> None:
    from statsforecast.models import AutoARIMA

    table = ws.sql("SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demo.xreg)").to_arrow()
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("ar_coefficients", "list<item: double>"),
        ("ma_coefficients", "list<item: double>"),
        ("intercept_or_drift", "double"),
        ("processed_input", "string"),
        ("weight", "double"),
        ("category_weights", "list<item: struct<category: string, weight: double>>"),
    ]
    rows = table.to_pylist()
    assert [r["processed_input"] for r in rows] == ["income", "unemp"]
    assert all(r["category_weights"] is None for r in rows)  # numeric features
    assert rows[0]["ar_coefficients"] == rows[1]["ar_coefficients"]  # the series' ARIMA, twice
    train, _ = _train()
    direct = AutoARIMA(season_length=4).fit(
        train["consumption"].to_numpy(), X=train[["income", "unemp"]].to_numpy()
    )
    coef = direct.model_["coef"]
    np.testing.assert_allclose([r["weight"] for r in rows], [coef["ex_1"], coef["ex_2"]], rtol=1e-9)


def test_weights_are_what_the_forecast_uses(ws: Any) -> None:
    """Income one higher in every future quarter moves each forecast by exactly its weight."""
    base = ws.sql(
        f"SELECT forecast_value FROM ML.FORECAST(MODEL demo.xreg, STRUCT(4 AS horizon), {_FUTURE}) "
        "ORDER BY forecast_timestamp"
    ).to_pandas()["forecast_value"]
    moved = ws.sql(
        "SELECT forecast_value FROM ML.FORECAST(MODEL demo.xreg, STRUCT(4 AS horizon), "
        f"(SELECT quarter, income + 1 AS income, unemp FROM demo.macro WHERE quarter >= {_CUT})) "
        "ORDER BY forecast_timestamp"
    ).to_pandas()["forecast_value"]
    np.testing.assert_allclose(moved - base, _weights(ws)["income"], rtol=1e-7)


def test_arima_plus_coefficients_keep_their_columns(ws: Any) -> None:
    table = ws.sql("SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demo.sales_arima) ORDER BY store")
    assert table.to_arrow().column_names == [
        "store",
        "ar_coefficients",
        "ma_coefficients",
        "intercept_or_drift",
    ]
    assert table.to_arrow().num_rows == 2


# -- ML.EXPLAIN_FORECAST attributions -----------------------------------------------------------


def test_attributions_are_weight_times_value(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.xreg, STRUCT(4 AS horizon, "
        f"0.9 AS confidence_level), {_FUTURE}) ORDER BY time_series_timestamp"
    ).to_pandas()
    assert list(out.columns)[-2:] == ["attribution_income", "attribution_unemp"]
    weights = _weights(ws)
    train, future = _train()
    history = out[out["time_series_type"] == "history"]
    ahead = out[out["time_series_type"] == "forecast"]
    assert len(history) == len(train) and len(ahead) == 4
    for feature in ("income", "unemp"):
        np.testing.assert_allclose(
            history[f"attribution_{feature}"], weights[feature] * train[feature], rtol=1e-12
        )
        np.testing.assert_allclose(
            ahead[f"attribution_{feature}"],
            weights[feature] * future[feature].head(4).to_numpy(),
            rtol=1e-12,
        )
    attributed = out["attribution_income"] + out["attribution_unemp"]
    seasonal = out[_SEASONS].fillna(0.0).sum(axis=1)
    holidays = out["holiday_effect"].fillna(0.0)  # NULL: the model has no holidays
    assert out["holiday_effect"].isna().all()
    # history: adjusted data = trend + seasons + holidays + attributions; data = adjusted data
    # + residual + step changes (+ spikes and dips: not cleaned here, NULL)
    np.testing.assert_allclose(
        history["time_series_adjusted_data"],
        (history["trend"] + seasonal + holidays + attributed)[history.index],
        rtol=1e-9,
    )
    assert history["spikes_and_dips"].isna().all()
    np.testing.assert_allclose(
        history["time_series_data"],
        history["time_series_adjusted_data"]
        + history["residual"]
        + history["step_changes"].fillna(0.0),
        rtol=1e-9,
    )
    # forecast: the forecast = its adjusted data = trend + seasons + holidays + attributions
    np.testing.assert_allclose(
        ahead["time_series_data"],
        (ahead["trend"] + seasonal + holidays + attributed)[ahead.index],
        rtol=1e-9,
    )
    np.testing.assert_allclose(ahead["time_series_adjusted_data"], ahead["time_series_data"])
    forecast = ws.sql(
        f"SELECT forecast_value FROM ML.FORECAST(MODEL demo.xreg, STRUCT(4 AS horizon), {_FUTURE}) "
        "ORDER BY forecast_timestamp"
    ).to_pandas()
    np.testing.assert_allclose(ahead["time_series_data"], forecast["forecast_value"])


def test_attributions_beside_drift_and_holidays(ws: Any) -> None:
    """A drift term and a holiday regressor sit beside the feature in the fit: the feature's
    weight and attribution are still its own."""
    rng = np.random.default_rng(9)
    start = dt.date(2024, 1, 1)
    rows, level = [], 0.0
    for t in range(120):
        level += 0.5 + 0.3 * rng.normal()
        price = float(5 + t % 3)
        rows.append({"day": start + dt.timedelta(days=t), "price": price, "v": level - 2 * price})
    ws.load_table("demo.priced", rows)
    ws.sql(
        "CREATE MODEL demo.drifting OPTIONS(model_type='ARIMA_PLUS_XREG', "
        "time_series_timestamp_col='day', time_series_data_col='v', auto_arima=FALSE, "
        "non_seasonal_order=(1, 1, 0), include_drift=TRUE, holiday_region='US', "
        "clean_spikes_and_dips=FALSE, adjust_step_changes=FALSE, horizon=10) "
        "AS SELECT * FROM demo.priced WHERE day < DATE '2024-04-20'"
    )
    coefficients = ws.sql(
        "SELECT processed_input, weight, intercept_or_drift "
        "FROM ML.ARIMA_COEFFICIENTS(MODEL demo.drifting)"
    ).to_pylist()
    assert [c["processed_input"] for c in coefficients] == ["price"]  # no holiday regressor
    weight = coefficients[0]["weight"]
    assert weight == pytest.approx(-2.0, abs=0.2)
    assert coefficients[0]["intercept_or_drift"] == pytest.approx(0.5, abs=0.2)
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.drifting, STRUCT(5 AS horizon), "
        "(SELECT day, price FROM demo.priced WHERE day >= DATE '2024-04-20')) "
        "ORDER BY time_series_timestamp"
    ).to_pandas()
    prices = np.asarray([r["price"] for r in rows])
    np.testing.assert_allclose(out["attribution_price"], weight * prices[: len(out)], rtol=1e-12)
    per_holiday = [c for c in out.columns if c.startswith("holiday_effect_")]
    assert "holiday_effect_Martin_Luther_King_Jr_Day" in per_holiday
    np.testing.assert_allclose(out[per_holiday].sum(axis=1), out["holiday_effect"], atol=1e-9)
    history = out[out["time_series_type"] == "history"]
    seasonal = history[_SEASONS].fillna(0.0).sum(axis=1)
    np.testing.assert_allclose(
        history["time_series_adjusted_data"],
        history["trend"] + seasonal + history["holiday_effect"] + history["attribution_price"],
        rtol=1e-9,
    )


def test_arima_plus_has_no_attribution_columns(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.sales_arima, STRUCT(2 AS horizon))"
    ).to_arrow()
    assert out.column_names[-1] == "residual"


# -- ML.EVALUATE's mean_absolute_scaled_error ---------------------------------------------------


def test_evaluate_adds_the_mean_absolute_scaled_error(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.sales_arima, "
        "(SELECT * FROM demo.sales WHERE day >= DATE '2024-03-25')) ORDER BY store"
    ).to_pandas()
    assert list(out.columns)[-2:] == [
        "symmetric_mean_absolute_percentage_error",
        "mean_absolute_scaled_error",
    ]
    rows = _daily_rows()
    cut = dt.date(2024, 3, 25)
    for _, row in out.iterrows():
        history = np.asarray(
            [r["sales"] for r in rows if r["store"] == row["store"] and r["day"] < cut]
        )
        naive = np.mean(np.abs(np.diff(history)))  # the one-step naive forecast's in-sample MAE
        assert row["mean_absolute_scaled_error"] == pytest.approx(
            row["mean_absolute_error"] / naive, rel=1e-12
        )
        assert 0 < row["mean_absolute_scaled_error"] < 2


def test_evaluate_of_an_xreg_model_has_it_too(ws: Any) -> None:
    out = ws.sql(
        f"SELECT * FROM ML.EVALUATE(MODEL demo.xreg, (SELECT * FROM demo.macro WHERE quarter >= "
        f"{_CUT}))"
    ).to_pylist()
    train, _ = _train()
    naive = np.mean(np.abs(np.diff(train["consumption"].to_numpy())))
    assert len(out) == 1
    assert out[0]["mean_absolute_scaled_error"] == pytest.approx(
        out[0]["mean_absolute_error"] / naive, rel=1e-12
    )


def test_mase_needs_a_history_that_moves() -> None:
    from shipyard.sql.forecasting import forecast_metrics

    actual, predicted = np.asarray([10.0, 20.0]), np.asarray([12.0, 18.0])
    moving = forecast_metrics(actual, predicted, np.asarray([1.0, 2.0, 4.0]))
    assert moving["mean_absolute_scaled_error"] == pytest.approx(2.0 / 1.5)
    flat = forecast_metrics(actual, predicted, np.asarray([5.0, 5.0, 5.0]))
    assert flat["mean_absolute_scaled_error"] is None
    assert forecast_metrics(actual, predicted)["mean_absolute_scaled_error"] is None


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.xreg, STRUCT(2 AS horizon), "
            f"(SELECT quarter, income FROM demo.macro WHERE quarter >= {_CUT}))",
            "unemp",
        ),
        ("SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.xreg, STRUCT(2 AS horizon))", "future"),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.xreg, "
            f"(SELECT quarter, income, unemp FROM demo.macro WHERE quarter >= {_CUT}))",
            "consumption",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.xreg, "
            f"(SELECT quarter, consumption, income FROM demo.macro WHERE quarter >= {_CUT}))",
            "unemp",
        ),
        ("SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demo.xreg, TABLE demo.macro)", "no input"),
        (
            "SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demo.xreg, STRUCT(1 AS horizon))",
            "no parameter",
        ),
    ],
)
def test_bad_input(ws: Any, sql: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        ws.sql(sql)
    assert set(_weights(ws)) == {"income", "unemp"}  # the model is intact
