"""ONNX for the calendar components of a TIMESTAMP feature (LINEAR_REG / LOGISTIC_REG).

A linear model's TIMESTAMP feature also becomes ``_TS_DOM_<col>``, ``_TS_DOW_<col>``,
``_TS_MOY_<col>``, ``_TS_HOD_<col>``, ``_TS_MOH_<col>``, ``_TS_WOY_<col>`` and
``_TS_YEAR_<col>`` (:data:`shipyard.registry.preprocessing.TIMESTAMP_PARTS`), computed in UTC.
The exported graph receives the timestamp as DOUBLE seconds since the Unix epoch (NaN for
NULL) and computes the components with ``Floor``/``Sub``/``Mul``/``Div`` on whole numbers held
in doubles (exact: every intermediate is an integer far below 2**53, and each floored quotient
is at least 1/146097 away from the next integer): the days since the epoch, then the civil
date by Howard Hinnant's ``civil_from_days`` (proleptic Gregorian, any year), the weekday
(1970-01-01 was a Thursday), and the week of the year as ``strftime('%U')``. NaN propagates, so
a NULL timestamp lands in the component's NULL category as in Shipyard.

Sub-second inputs are floored like Arrow's kernels floor the timestamp's integer units, except
that seconds as a double carry about 0.1 µs of rounding for present-day dates: an instant within
that of a minute boundary may read as the neighbouring minute.
"""

from __future__ import annotations

import numpy as np

from shipyard.sql.onnx_ops import Builder

__all__ = ["timestamp_parts"]


class _Arith:
    """Double arithmetic on ``[batch, 1]`` tensors, with constants made on demand."""

    def __init__(self, b: Builder) -> None:
        self.b = b

    def c(self, value: float) -> str:
        return self.b.const(np.array([[float(value)]]), "cal")

    def add(self, x: str, y: str | float) -> str:
        return self.b.op("Add", [x, y if isinstance(y, str) else self.c(y)])

    def sub(self, x: str, y: str | float) -> str:
        return self.b.op("Sub", [x, y if isinstance(y, str) else self.c(y)])

    def mul(self, x: str, y: float) -> str:
        return self.b.op("Mul", [x, self.c(y)])

    def fdiv(self, x: str, y: float) -> str:
        """floor(x / y)."""
        return self.b.op("Floor", [self.b.op("Div", [x, self.c(y)])])

    def mod(self, x: str, y: float) -> str:
        """x - y * floor(x / y): the non-negative remainder."""
        return self.sub(x, self.mul(self.fdiv(x, y), y))


def timestamp_parts(b: Builder, seconds: str) -> dict[str, str]:
    """``{TIMESTAMP_PARTS prefix: [batch, 1] DOUBLE}`` of Unix ``seconds`` (NaN: NULL)."""
    a = _Arith(b)
    days = a.fdiv(seconds, 86400)
    second_of_day = a.sub(seconds, a.mul(days, 86400))
    hour = a.fdiv(second_of_day, 3600)
    minute = a.fdiv(a.sub(second_of_day, a.mul(hour, 3600)), 60)
    weekday0 = a.mod(a.add(days, 4), 7)  # 0 = Sunday
    # civil_from_days
    z = a.add(days, 719468)
    era = a.fdiv(z, 146097)
    doe = a.sub(z, a.mul(era, 146097))
    yoe = a.fdiv(
        a.sub(a.add(a.sub(doe, a.fdiv(doe, 1460)), a.fdiv(doe, 36524)), a.fdiv(doe, 146096)),
        365,
    )
    doy = a.sub(doe, a.sub(a.add(a.mul(yoe, 365), a.fdiv(yoe, 4)), a.fdiv(yoe, 100)))
    mp = a.fdiv(a.add(a.mul(doy, 5), 2), 153)
    day = a.add(a.sub(doy, a.fdiv(a.add(a.mul(mp, 153), 2), 5)), 1)
    month = a.sub(a.add(mp, 3), a.mul(a.fdiv(mp, 10), 12))
    # the March-based year, +1 in January and February: 1 - floor((month + 9) / 12)
    year = a.sub(a.add(a.add(yoe, a.mul(era, 400)), 1), a.fdiv(a.add(month, 9), 12))
    # days_from_civil(year, 1, 1): March-based year ``year - 1``, day-of-era 306
    y = a.sub(year, 1)
    era1 = a.fdiv(y, 400)
    yoe1 = a.sub(y, a.mul(era1, 400))
    doe1 = a.add(a.sub(a.add(a.mul(yoe1, 365), a.fdiv(yoe1, 4)), a.fdiv(yoe1, 100)), 306)
    jan1 = a.sub(a.add(a.mul(era1, 146097), doe1), 719468)
    yday = a.sub(days, jan1)  # 0-based day of the year
    week = a.fdiv(a.sub(a.add(yday, 7), weekday0), 7)  # strftime %U
    return {
        "_TS_DOM_": day,
        "_TS_DOW_": a.add(weekday0, 1),
        "_TS_MOY_": month,
        "_TS_HOD_": hour,
        "_TS_MOH_": minute,
        "_TS_WOY_": week,
        "_TS_YEAR_": year,
    }
