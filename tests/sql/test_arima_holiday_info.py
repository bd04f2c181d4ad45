"""ML.HOLIDAY_INFO and ML.EXPLAIN_FORECAST's per-holiday ``holiday_effect_<name>`` columns.

Real statsforecast, the holidays package and DuckDB. Slow as a module: importing statsforecast
takes seconds, and each fit about one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound

pytest.importorskip("statsforecast")
pytestmark = pytest.mark.slow

_START = dt.date(2024, 1, 1)
_DAYS = 200  # 2024-01-01 .. 2024-07-18; a 30-day horizon ends on 2024-08-17
_MEMBERS = [dt.date(2024, m, 15) for m in range(1, 7)]
_EPS = 1e-9


def _rows() -> list[dict[str, Any]]:
    """Weekly season; US holidays -15; 'Members day' (custom, +-1 day) +20; July 3-5 -15."""
    import holidays

    us = holidays.country_holidays("US", years=[2024])
    rng = np.random.default_rng(21)
    window = {m + dt.timedelta(days=k) for m in _MEMBERS for k in (-1, 0, 1)}
    july = {dt.date(2024, 7, d) for d in (3, 4, 5)}
    out = []
    for t in range(_DAYS):
        day = _START + dt.timedelta(days=t)
        bump = (-15.0 if (day in us or day in july) else 0.0) + (20.0 if day in window else 0.0)
        out.append({"d": day, "v": 50.0 + 3 * np.sin(2 * np.pi * t / 7) + bump + rng.normal()})
    return out


def _holidays() -> list[dict[str, Any]]:
    members = [
        {"region": "US", "holiday_name": "Members day", "primary_date": m, "pre": 1, "post": 1}
        for m in _MEMBERS
    ]
    july = {
        "region": "US",
        "holiday_name": "Independence Day",
        "primary_date": dt.date(2024, 7, 4),
        "pre": 1,
        "post": 1,
    }
    ghost = {  # after the history and the horizon: never modelled
        "region": "US",
        "holiday_name": "Ghost day",
        "primary_date": dt.date(2030, 1, 1),
        "pre": 0,
        "post": 0,
    }
    return [*members, july, ghost]


_CUSTOM = (
    "custom_holiday AS (SELECT region, holiday_name, primary_date, pre AS preholiday_days, "
    "post AS postholiday_days FROM demo.hol_days)"
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("arima_holiday_info"))
    workspace.load_table("demo.visits", _rows())
    workspace.load_table("demo.hol_days", _holidays())
    workspace.sql(
        "CREATE MODEL demo.hol OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='d', "
        "time_series_data_col='v', holiday_region='US', clean_spikes_and_dips=FALSE, "
        f"horizon=30) AS (training_data AS (SELECT d, v FROM demo.visits), {_CUSTOM})"
    )
    workspace.sql(
        "CREATE MODEL demo.plain OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='d', "
        "time_series_data_col='v', horizon=5) AS SELECT d, v FROM demo.visits"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['v']) "
        "AS SELECT v, EXTRACT(DOW FROM d) AS dow FROM demo.visits"
    )
    yield workspace
    workspace.close()


# -- ML.HOLIDAY_INFO --------------------------------------------------------------------------


def test_holiday_info_lists_builtin_and_custom_holidays(ws: Any) -> None:
    table = ws.sql("SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.hol)").to_arrow()
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("region", "string"),
        ("holiday_name", "string"),
        ("primary_date", "date32[day]"),
        ("preholiday_days", "int64"),
        ("postholiday_days", "int64"),
    ]
    rows = [tuple(r.values()) for r in table.to_pylist()]
    members = [r for r in rows if r[1] == "Members day"]
    assert members == [("US", "Members day", m, 1, 1) for m in _MEMBERS]
    # the custom 'Independence Day' replaces the built-in one: its window, not 0 days
    assert [r for r in rows if r[1] == "Independence Day"] == [
        ("US", "Independence Day", dt.date(2024, 7, 4), 1, 1)
    ]
    assert ("US", "Memorial Day", dt.date(2024, 5, 27), 0, 0) in rows
    assert ("US", "New Year's Day", dt.date(2024, 1, 1), 0, 0) in rows
    names = {r[1] for r in rows}
    # built-in holidays from the first training day to the end of the horizon (2024-08-17)
    assert "Labor Day" not in names and "Ghost day" not in names
    # sorted by holiday name, then date
    assert rows == sorted(rows, key=lambda r: (r[1].casefold(), r[1], r[2]))


def test_holiday_info_of_a_model_without_holidays_is_empty(ws: Any) -> None:
    table = ws.sql("SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.plain)").to_arrow()
    assert table.num_rows == 0
    assert table.column_names == [
        "region",
        "holiday_name",
        "primary_date",
        "preholiday_days",
        "postholiday_days",
    ]


def test_holiday_info_composes_with_sql(ws: Any) -> None:
    counts = ws.sql(
        "SELECT holiday_name, COUNT(*) AS n FROM ML.HOLIDAY_INFO(MODEL demo.hol) "
        "WHERE preholiday_days > 0 GROUP BY holiday_name ORDER BY holiday_name"
    ).to_pylist()
    assert counts == [
        {"holiday_name": "Independence Day", "n": 1},
        {"holiday_name": "Members day", "n": 6},
    ]


# -- ML.EXPLAIN_FORECAST's holiday_effect_<name> ----------------------------------------------


def _explain(ws: Any, model: str, horizon: int = 30) -> Any:
    return ws.sql(
        f"SELECT * FROM ML.EXPLAIN_FORECAST(MODEL {model}, STRUCT({horizon} AS horizon)) "
        "ORDER BY time_series_timestamp"
    ).to_pandas()


def test_one_column_per_holiday_summing_to_holiday_effect(ws: Any) -> None:
    out = _explain(ws, "demo.hol")
    # ML.HOLIDAY_INFO's own row order (DISTINCT would not keep it)
    rows = ws.sql("SELECT holiday_name FROM ML.HOLIDAY_INFO(MODEL demo.hol)").to_pandas()
    names = list(dict.fromkeys(rows["holiday_name"]))
    per_holiday = [c for c in out.columns if c.startswith("holiday_effect_")]
    assert per_holiday == [
        "holiday_effect_" + n.replace("'", "_").replace(". ", "_").replace(" ", "_") for n in names
    ]
    assert "holiday_effect_New_Year_s_Day" in per_holiday
    # after BigQuery ML's fixed columns, in ML.HOLIDAY_INFO's order
    assert list(out.columns).index("residual") + 1 == list(out.columns).index(per_holiday[0])
    total = out[per_holiday].sum(axis=1)
    np.testing.assert_allclose(total, out["holiday_effect"], atol=_EPS)
    assert (out["time_series_type"] == "forecast").sum() == 30


def test_each_holiday_carries_its_own_effect_on_its_own_days(ws: Any) -> None:
    out = _explain(ws, "demo.hol")
    out["day"] = [t.date() for t in out["time_series_timestamp"]]
    members = out["holiday_effect_Members_day"]
    window = {m + dt.timedelta(days=k) for m in _MEMBERS for k in (-1, 0, 1)}
    on = out["day"].isin(window)
    assert on.sum() == 18 and (members[~on] == 0).all()
    assert members[on].between(17, 23).all()
    memorial = out["holiday_effect_Memorial_Day"]
    assert out.loc[memorial != 0, "day"].tolist() == [dt.date(2024, 5, 27)]
    assert -18 < memorial[memorial != 0].iloc[0] < -12
    july = out["holiday_effect_Independence_Day"]
    assert set(out.loc[july != 0, "day"]) == {dt.date(2024, 7, d) for d in (3, 4, 5)}


def test_a_model_without_holidays_has_no_holiday_columns(ws: Any) -> None:
    out = _explain(ws, "demo.plain", horizon=3)
    assert not [c for c in out.columns if c.startswith(("holiday_effect_", "attribution_"))]
    assert out["holiday_effect"].isna().all()  # NULL: no holiday effect found


def test_a_holiday_outside_a_series_history_is_null_there(ws: Any) -> None:
    # series 'a' (Jan-Apr) sees the promotion, series 'b' (Apr-Jul) never does
    rows = [{**r, "sid": "a" if r["d"] < dt.date(2024, 4, 10) else "b"} for r in _rows()]
    for r in rows:
        if r["d"] in (dt.date(2024, 2, 10), dt.date(2024, 3, 9)):
            r["v"] += 25.0
    ws.load_table("demo.split", rows)
    ws.load_table(
        "demo.promo",
        [
            {"region": "US", "holiday_name": "Promo", "primary_date": day, "pre": 0, "post": 0}
            for day in (dt.date(2024, 2, 10), dt.date(2024, 3, 9))
        ],
    )
    ws.sql(
        "CREATE MODEL demo.split_hol OPTIONS(model_type='ARIMA_PLUS', "
        "time_series_timestamp_col='d', time_series_data_col='v', time_series_id_col='sid', "
        "clean_spikes_and_dips=FALSE, horizon=5) AS (training_data AS (SELECT sid, d, v FROM "
        "demo.split), custom_holiday AS (SELECT region, holiday_name, primary_date, "
        "pre AS preholiday_days, post AS postholiday_days FROM demo.promo))"
    )
    info = ws.sql("SELECT holiday_name FROM ML.HOLIDAY_INFO(MODEL demo.split_hol)").to_pylist()
    assert info == [{"holiday_name": "Promo"}, {"holiday_name": "Promo"}]
    out = ws.sql(
        "SELECT sid, time_series_timestamp AS t, holiday_effect, `holiday_effect_Promo` AS promo "
        "FROM ML.EXPLAIN_FORECAST(MODEL demo.split_hol, STRUCT(5 AS horizon)) ORDER BY sid, t"
    ).to_pandas()
    a, b = out[out["sid"] == "a"], out[out["sid"] == "b"]
    assert b["promo"].isna().all() and b["holiday_effect"].isna().all()
    assert a["promo"].notna().all()
    promo_days = a.loc[a["promo"] != 0, "t"].map(lambda t: t.date()).tolist()
    assert promo_days == [dt.date(2024, 2, 10), dt.date(2024, 3, 9)]
    np.testing.assert_allclose(a["promo"], a["holiday_effect"], atol=_EPS)


def test_column_names_are_plain_identifiers() -> None:
    from shipyard.sql.arima_holiday_effects import holiday_columns

    assert holiday_columns(
        ["Martin Luther King Jr. Day", "Independence Day (observed)", "xmas", "XMAS", "x-mas"]
    ) == {
        "Martin Luther King Jr. Day": "holiday_effect_Martin_Luther_King_Jr_Day",
        "Independence Day (observed)": "holiday_effect_Independence_Day_observed",
        "xmas": "holiday_effect_xmas",
        "XMAS": "holiday_effect_xmas",  # SQL names are case-insensitive: one column
        "x-mas": "holiday_effect_x_mas",
    }


def test_builtin_holidays_of_the_same_day_share_its_effect() -> None:
    """Korea, 2025-05-05: Buddha's Birthday and Children's Day share the built-in effect."""
    from shipyard.registry.forecasting import ForecastModel
    from shipyard.sql.arima_holiday_effects import effects_by_holiday

    model = ForecastModel(
        config={"holiday_region": "KR", "custom_holidays": {}, "overridden_holidays": []}
    )
    series: dict[str, Any] = {"holiday_coefs": {"__holiday__": -6.0}}
    days = [dt.date(2025, 5, 4) + dt.timedelta(days=k) for k in range(3)]
    stamps = np.asarray(
        [(d - dt.date(1970, 1, 1)).days * 86_400_000_000 for d in days], dtype=np.int64
    )
    effects = effects_by_holiday(model, series, stamps)
    assert effects["Buddha's Birthday"].tolist() == [0.0, -3.0, 0.0]
    assert effects["Children's Day"].tolist() == [0.0, -3.0, 0.0]
    np.testing.assert_allclose(
        sum(effects.values()), model.holiday_effect(series, stamps), atol=_EPS
    )


def test_same_answers_over_http(ws: Any) -> None:
    from starlette.testclient import TestClient

    from shipyard.client.remote import RemoteWorkspace
    from shipyard.server import create_app

    info = "SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.hol)"
    explain = (
        "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demo.hol, STRUCT(3 AS horizon)) "
        "ORDER BY time_series_timestamp"
    )
    with TestClient(create_app(ws.services), base_url="http://127.0.0.1:8765") as client:
        remote = RemoteWorkspace("http://127.0.0.1:8765", client=client)
        assert remote.sql(info).to_pylist() == ws.sql(info).to_pylist()
        assert remote.sql(explain).to_arrow().equals(ws.sql(explain).to_arrow())
        with pytest.raises(InvalidArgument, match="LINEAR_REG"):
            remote.sql("SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.lin)")


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error", "fragment"),
    [
        (
            "SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.lin)",
            InvalidArgument,
            "a LINEAR_REG model; it applies to ARIMA_PLUS, ARIMA_PLUS_XREG",
        ),
        (
            "SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.hol, TABLE demo.visits)",
            InvalidArgument,
            "takes no input rows",
        ),
        (
            "SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.hol, STRUCT(3 AS horizon))",
            InvalidArgument,
            "has no parameter 'horizon'",
        ),
        ("SELECT * FROM ML.HOLIDAY_INFO(MODEL demo.nope)", NotFound, "demo.nope"),
    ],
)
def test_bad_input(ws: Any, sql: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        ws.sql(sql)
    # the model is intact
    assert (
        ws.sql("SELECT COUNT(*) AS n FROM ML.HOLIDAY_INFO(MODEL demo.hol)").to_pylist()[0]["n"] > 0
    )
