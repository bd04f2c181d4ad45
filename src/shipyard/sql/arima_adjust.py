"""ARIMA_PLUS's step-change adjustment and seasonal decomposition.

**Step changes** (``adjust_step_changes``, default TRUE as in BigQuery ML). No maintained
change-point library is installed (ruptures is not), and BigQuery ML does not publish its rule,
so Shipyard uses this one, on the spike-cleaned series:

1. ``w`` = the smallest multiple of the seasonal period that is at least 7 points (7 without a
   season), so that each window holds whole seasons. Needs at least ``4 w`` points.
2. The noise scale ``sigma`` = 1.4826 x MAD of the lag-``period`` differences / sqrt(2) (robust,
   and blind to the season and to a linear trend).
3. For each point ``t``: ``d_t`` = median of the ``w`` points from ``t`` on minus the median of
   the ``w`` points before ``t``; a trend adds about the same to every ``d_t``, so ``d_t`` minus
   the median of the ``d`` within ``4 w`` points (the local trend) is the level shift.
4. Shifts above ``5 sigma`` are step changes, the largest first, at least ``w`` points apart;
   each is placed at the split of its ``2 w`` neighbourhood that best separates two means, and
   must be abrupt: the lag-``period`` difference into the new level must be more than 5 robust
   standard deviations from the median difference (so a random walk's drift is not a step).
5. A step's size: the mean of the ``w`` points after it minus that of the ``w`` before, less
   the local trend. The history before a step is moved by that size, so the series ends at its
   latest level
   (the forecast starts there); ML.EXPLAIN_FORECAST's ``step_changes`` gives the moved amount.

**Decomposition** (``decompose_time_series``, default TRUE): statsforecast's MSTL (STL per
seasonal period, :func:`statsforecast.mstl.mstl`) splits the adjusted history into trend,
seasonal components and remainder. It explains the history and does not change the forecasts,
which come from the ARIMA as before. A season is reported when it was declared
(``seasonalities``), when it is the ARIMA's season and auto.ARIMA chose seasonal terms, or when
its seasonal strength ``1 - var(remainder) / var(seasonal + remainder)`` (Wang, Smith and
Hyndman 2006) is at least 0.6. Forecast rows repeat each season's last cycle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "SEASON_NAMES",
    "STEP_SIGMAS",
    "decompose",
    "detect_step_changes",
    "remove_steps",
    "season_extension",
    "step_component",
]

STEP_SIGMAS = 5.0
_STEP_MIN_WINDOW = 7
_STRENGTH = 0.6
#: ML.EXPLAIN_FORECAST's seasonal columns, longest first.
SEASON_NAMES = ("YEARLY", "QUARTERLY", "MONTHLY", "WEEKLY", "DAILY")


# --------------------------------------------------------------------------------------------
# step changes


def _window(period: int) -> int:
    if period <= 1:
        return _STEP_MIN_WINDOW
    return period * math.ceil(_STEP_MIN_WINDOW / period)


def detect_step_changes(y: np.ndarray, period: int) -> list[tuple[int, float]]:
    """(index of the first point at the new level, size) of each step change, in time order."""
    from numpy.lib.stride_tricks import sliding_window_view

    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    w = _window(period)
    if n < 4 * w:
        return []
    lag = max(1, period)
    diffs = y[lag:] - y[:-lag]
    centre = float(np.median(diffs))
    spread = 1.4826 * float(np.median(np.abs(diffs - centre)))
    scale = max(float(np.median(np.abs(y))), 1.0)
    spread = max(spread, 1e-9 * scale)  # a noiseless series: any level shift is a step
    if not np.any(np.abs(diffs - centre) > STEP_SIGMAS * spread):
        return []  # no abrupt jump anywhere (the common case; see step 4): nothing to place
    sigma = spread / math.sqrt(2.0)
    medians = np.median(sliding_window_view(y, w), axis=1)  # medians[i] = median(y[i:i+w])
    starts = np.arange(w, n - w + 1)
    d = medians[starts] - medians[starts - w]
    reach = 4 * w
    padded = np.pad(d, reach, mode="reflect") if len(d) > reach else np.pad(d, reach, "edge")
    local = np.median(sliding_window_view(padded, 2 * reach + 1), axis=1)
    shift = d - local
    score = np.abs(shift) / sigma
    chosen: list[int] = []
    for i in np.argsort(-score, kind="stable"):
        if score[i] <= STEP_SIGMAS:
            break
        at = _best_split(y, int(starts[i]), w)
        # abrupt: the jump into the new level is itself an outlier among the differences (a
        # random walk drifts between levels in small moves, and has no step changes)
        abrupt = abs(float(diffs[at - lag]) - centre) > STEP_SIGMAS * spread
        if abrupt and all(abs(at - c) >= w for c in chosen):
            chosen.append(at)
    out = []
    for at in sorted(chosen):
        trend = float(local[min(max(at - w, 0), len(local) - 1)])
        size = float(np.mean(y[at : at + w]) - np.mean(y[at - w : at])) - trend
        out.append((at, size))
    return out


def _best_split(y: np.ndarray, around: int, w: int) -> int:
    """The split in ``y[around - w : around + w]`` that minimises the two sides' squared error."""
    lo, hi = max(around - w, 1), min(around + w, len(y) - 1)
    segment = y[lo - 1 : hi + 1]
    best, best_cost = around, math.inf
    for k in range(1, len(segment)):
        left, right = segment[:k], segment[k:]
        cost = float(((left - left.mean()) ** 2).sum() + ((right - right.mean()) ** 2).sum())
        if cost < best_cost:
            best, best_cost = lo - 1 + k, cost
    return min(max(best, w), len(y) - w)


def remove_steps(y: np.ndarray, steps: list[tuple[int, float]]) -> np.ndarray:
    """``y`` with the history before each step moved by its size (the last level is kept)."""
    return np.asarray(y, dtype=np.float64) - step_component(len(y), steps)


def step_component(n: int, steps: list[tuple[int, float]]) -> np.ndarray:
    """ML.EXPLAIN_FORECAST's ``step_changes``: minus the later steps' sizes at each point."""
    out = np.zeros(n)
    for at, size in steps:
        out[:at] -= size
    return out


# --------------------------------------------------------------------------------------------
# decomposition


def decompose(
    values: np.ndarray,
    periods: dict[str, int],
    always: set[str],
) -> dict[str, list[float]]:
    """Seasonal components (name → values) of ``values`` by MSTL, for the seasons reported.

    ``periods``: candidate seasons and their lengths in points; ``always``: those reported
    whatever their strength (declared, or the ARIMA's own season). A season needs two full
    cycles of data.
    """
    x = np.asarray(values, dtype=np.float64)
    fitting = {name: p for name, p in periods.items() if p >= 2 and 2 * p < len(x)}
    if not fitting or not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return {}
    from statsforecast.mstl import mstl

    lengths = sorted(set(fitting.values()))
    frame = mstl(x, lengths if len(lengths) > 1 else lengths[0])
    remainder = frame["remainder"].to_numpy()
    out: dict[str, list[float]] = {}
    for name, p in fitting.items():
        seasonal = frame["seasonal" if len(lengths) == 1 else f"seasonal{p}"].to_numpy()
        total = float(np.var(seasonal + remainder))
        strength = 0.0 if total <= 0 else max(0.0, 1.0 - float(np.var(remainder)) / total)
        if name in always or strength >= _STRENGTH:
            out[name] = seasonal.tolist()
    return out


def season_extension(seasonal: Any, period: int, horizon: int) -> np.ndarray:
    """A seasonal component's next ``horizon`` values: its last cycle, repeated."""
    history = np.asarray(seasonal, dtype=np.float64)
    last = history[-period:]
    return last[np.arange(horizon) % period]  # type: ignore[no-any-return]
