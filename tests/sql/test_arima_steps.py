"""ARIMA_PLUS's step-change rule and custom holiday rows, without fitting (fast)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument
from shipyard.registry.forecasting import custom_holiday_indicator, holiday_indicator
from shipyard.sql.arima_adjust import detect_step_changes, remove_steps, step_component
from shipyard.sql.arima_holidays import parse_custom_holidays

_DAY = 86400 * 1_000_000
_t = np.arange(112)


def _weekly(seed: int, shift: float = 0.0, at: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    season = 4 * np.sin(2 * np.pi * _t / 7)
    return 20 + 0.1 * _t + season + rng.normal(0, 1, len(_t)) + np.where(_t >= at, shift, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_a_level_shift_is_found_at_its_day_with_its_size(seed: int) -> None:
    ((at, size),) = detect_step_changes(_weekly(seed, shift=15.0), 7)
    assert at == 60 and 13 < size < 17


def test_two_shifts_are_two_steps() -> None:
    y = _weekly(1, shift=15.0, at=40) + np.where(_t >= 80, -12.0, 0.0)
    steps = detect_step_changes(y, 7)
    assert [at for at, _ in steps] == [40, 80]
    assert 12 < steps[0][1] < 18 and -15 < steps[1][1] < -9


def test_no_steps_in_trend_season_and_noise_or_in_random_walks() -> None:
    assert sum(len(detect_step_changes(_weekly(seed), 7)) for seed in range(100)) == 0
    walks = [np.random.default_rng(s).normal(size=200).cumsum() for s in range(100)]
    assert sum(len(detect_step_changes(w, 1)) for w in walks) == 0
    curve = 100 * np.exp(0.02 * _t) + np.random.default_rng(1).normal(size=len(_t))
    assert detect_step_changes(curve, 1) == []


def test_a_noiseless_step_and_a_short_series() -> None:
    assert detect_step_changes(np.where(_t >= 50, 5.0, 1.0), 1) == [(50, 4.0)]
    assert detect_step_changes(np.where(np.arange(20) >= 10, 5.0, 1.0), 7) == []  # < 4 weeks


def test_removing_steps_keeps_the_last_level() -> None:
    y = np.where(_t >= 50, 5.0, 1.0)
    steps = [(50, 4.0)]
    np.testing.assert_array_equal(remove_steps(y, steps), np.full(len(_t), 5.0))
    component = step_component(len(_t), steps)
    assert set(component[:50]) == {-4.0} and set(component[50:]) == {0.0}


def test_custom_holiday_rows_group_by_name() -> None:
    table = pa.table(
        {
            "Region": ["us", "US"],
            "holiday_name": ["Members day", "Members day"],
            "primary_date": pa.array([dt.date(2024, 3, 15), dt.date(2025, 3, 14)]),
            "preholiday_days": [1, 0],
            "postholiday_days": [2, 0],
        }
    )
    (holiday,) = parse_custom_holidays(table)
    day = (dt.date(2024, 3, 15) - dt.date(1970, 1, 1)).days
    assert holiday["region"] == "US" and holiday["occurrences"][0] == [day, 1, 2]
    stamps = np.asarray([day - 2, day - 1, day, day + 2, day + 3], dtype=np.int64) * _DAY
    assert custom_holiday_indicator(stamps, holiday["occurrences"]).tolist() == [0, 1, 1, 1, 0]


def test_one_holiday_in_two_regions_is_refused() -> None:
    table = pa.table(
        {
            "region": ["US", "GB"],
            "holiday_name": ["Members day", "Members day"],
            "primary_date": ["2024-03-15", "2024-03-16"],
            "preholiday_days": [0, 0],
            "postholiday_days": [0, 0],
        }
    )
    with pytest.raises(InvalidArgument, match="regions 'US' and 'GB'"):
        parse_custom_holidays(table)


def test_builtin_holidays_can_be_left_out_by_name() -> None:
    july4 = (dt.date(2024, 7, 4) - dt.date(1970, 1, 1)).days * _DAY
    stamps = np.asarray([july4, july4 + _DAY])
    assert holiday_indicator(stamps, "US").tolist() == [1.0, 0.0]
    assert holiday_indicator(stamps, "US", exclude=["independence day"]).tolist() == [0.0, 0.0]
