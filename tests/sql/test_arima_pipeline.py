"""ARIMA_PLUS's data pipeline and options, without fitting (fast: no statsforecast import)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.forecasting import (
    ForecastModel,
    from_json,
    future_timestamps,
    holiday_indicator,
    to_json,
)
from shipyard.sql.arima import (
    _clean_spikes,
    _infer_frequency,
    _regularise,
    timestamps_us,
)
from shipyard.sql.forecasting import forecast_metrics
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options

_DAY = 86400 * 1_000_000


def _us(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 1_000_000


def test_defaults_are_bigquery_mls() -> None:
    opts = parse_options(
        {"model_type": "arima_plus", "time_series_timestamp_col": "t", "time_series_data_col": "y"}
    )
    assert (opts.horizon, opts.auto_arima, opts.auto_arima_max_order) == (1000, True, 5)
    assert (opts.data_frequency, opts.clean_spikes_and_dips, opts.include_drift) == (
        "AUTO_FREQUENCY",
        True,
        False,
    )
    assert (opts.adjust_step_changes, opts.decompose_time_series) == (True, True)
    assert MODEL_TYPES["ARIMA_PLUS_XREG"].flavor == "statsforecast"


def test_id_col_takes_one_name_or_several() -> None:
    base = {"model_type": "ARIMA_PLUS", "time_series_timestamp_col": "t"}
    one = parse_options({**base, "time_series_data_col": "y", "time_series_id_col": "a"})
    two = parse_options({**base, "time_series_data_col": "y", "time_series_id_col": ["a", "b"]})
    assert (one.id_cols, two.id_cols) == (["a"], ["a", "b"])


@pytest.mark.parametrize(
    ("extra", "error", "fragment"),
    [
        ({"non_seasonal_order": [1, 3, 1], "auto_arima": False}, InvalidArgument, "d in 0..2"),
        ({"non_seasonal_order": [6, 1, 1], "auto_arima": False}, InvalidArgument, "p in 0..5"),
        ({"include_drift": True}, InvalidArgument, "auto_arima=FALSE"),
        ({"auto_arima_max_order": 6}, InvalidArgument, "auto_arima_max_order"),
        ({"time_series_length_fraction": 1.5}, InvalidArgument, "time_series_length_fraction"),
        (
            {"time_series_length_fraction": 0.5, "max_time_series_length": 30},
            InvalidArgument,
            "exclude each other",
        ),
        ({"hierarchical_time_series_cols": ["a"]}, Unsupported, "hierarchical"),
        ({"kms_key_name": "k"}, Unsupported, "kms_key_name"),
        ({"bogus": 1}, InvalidArgument, "valid options"),
    ],
)
def test_bad_options(extra: dict[str, object], error: type[Exception], fragment: str) -> None:
    raw = {"model_type": "ARIMA_PLUS", "time_series_timestamp_col": "t"}
    raw |= {"time_series_data_col": "y", **extra}
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        parse_options(raw)


def test_frequency_is_inferred_from_the_median_spacing() -> None:
    assert _infer_frequency(np.full(5, _DAY)) == "DAILY"
    assert _infer_frequency(np.asarray([31, 28, 31, 30]) * _DAY) == "MONTHLY"
    assert _infer_frequency(np.full(3, 3600 * 1_000_000)) == "HOURLY"
    assert _infer_frequency(np.asarray([92, 91, 92]) * _DAY) == "QUARTERLY"
    with pytest.raises(InvalidArgument, match="data_frequency"):
        _infer_frequency(np.zeros(0))


def test_regularise_averages_duplicates_and_interpolates_gaps() -> None:
    stamps = np.asarray([0, _DAY, _DAY, 3 * _DAY], dtype=np.int64) + _us(2024, 1, 1)
    grid, values = _regularise(stamps, np.asarray([1.0, 2.0, 4.0, 9.0]), "DAILY")
    assert list(np.diff(grid)) == [_DAY] * 3
    np.testing.assert_allclose(values, [1.0, 3.0, 6.0, 9.0])


def test_monthly_steps_follow_the_calendar() -> None:
    out = future_timestamps(_us(2024, 1, 31), 2, "MONTHLY")
    assert [dt.datetime.fromtimestamp(t / 1e6, dt.UTC).date() for t in out] == [
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 31),
    ]


def test_timestamps_of_dates_and_zoned_timestamps() -> None:
    dates = pa.chunked_array([pa.array([dt.date(2024, 1, 2)])])
    zoned = pa.chunked_array([pa.array([_us(2024, 1, 2)], type=pa.timestamp("us", tz="UTC"))])
    assert timestamps_us(dates, "d")[0] == timestamps_us(zoned, "t")[0] == _us(2024, 1, 2)
    with pytest.raises(InvalidArgument, match="TIMESTAMP, DATETIME or DATE"):
        timestamps_us(pa.chunked_array([pa.array(["2024-01-02"])]), "s")


def test_spike_cleaning_replaces_only_the_spike() -> None:
    rng = np.random.default_rng(3)
    y = 10 + np.sin(np.arange(60) * 2 * np.pi / 7) + rng.normal(0, 0.2, 60)
    y[30] += 15
    cleaned = _clean_spikes(y, 7)
    assert np.flatnonzero(cleaned != y).tolist() == [30]
    assert abs(cleaned[30] - 10) < 2


def test_holiday_indicator_marks_us_holidays() -> None:
    pytest.importorskip("holidays")
    stamps = np.asarray([_us(2024, 7, 3), _us(2024, 7, 4), _us(2024, 12, 25)])
    assert holiday_indicator(stamps, "US").tolist() == [0.0, 1.0, 1.0]


def test_forecast_metrics() -> None:
    m = forecast_metrics(np.asarray([10.0, 20.0]), np.asarray([12.0, 18.0]))
    assert m["mean_absolute_error"] == 2.0 and m["root_mean_squared_error"] == 2.0
    assert m["mean_absolute_percentage_error"] == pytest.approx(15.0)
    assert m["symmetric_mean_absolute_percentage_error"] == pytest.approx((2 / 22 + 2 / 38) * 100)


def test_model_json_round_trip_keeps_arrays_tuples_and_floats() -> None:
    model = ForecastModel(
        config={"id_cols": ["s"], "frequency": "DAILY"},
        series=[
            {
                "id": ["a"],
                "arima": {"arma": (1, 0, 0, 0, 1, 1, 0), "coef": {"ar1": np.float64(0.1 + 0.2)}},
                "P": np.arange(6, dtype=np.float64).reshape(2, 3) / 3.0,
            }
        ],
    )
    back = from_json(to_json(model))
    series = back.series[0]
    assert series["arima"]["arma"] == (1, 0, 0, 0, 1, 1, 0)
    assert series["arima"]["coef"]["ar1"] == 0.1 + 0.2
    np.testing.assert_array_equal(series["P"], model.series[0]["P"])
    assert series["P"].shape == (2, 3)
