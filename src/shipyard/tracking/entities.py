"""The tracking objects: experiments, runs and metric points (pure pydantic, light to import)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from shipyard.errors import InvalidArgument

MAX_KEY_LENGTH = 250


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def done(self) -> bool:
        return self is not RunStatus.RUNNING


class Experiment(BaseModel):
    """A namespace of runs, named once per workspace."""

    id: str
    name: str
    description: str | None = None
    tags: dict[str, Any] = {}
    lifecycle: str = "active"
    created_at: datetime

    @property
    def resource(self) -> str:
        return f"experiments/{self.name}"


class Run(BaseModel):
    """One run: its status, params, tags and the latest value of each metric."""

    id: str
    experiment_id: str
    experiment: str  # the experiment's name
    parent_run_id: str | None = None
    name: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None = None
    created_by: str | None = None
    notes: str | None = None
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    metrics: dict[str, float] = {}  # latest value per key (highest step, then newest)

    @property
    def resource(self) -> str:
        return f"runs/{self.id}"


class MetricPoint(BaseModel):
    """One point of a metric series; ``timestamp`` is milliseconds since the epoch."""

    key: str
    value: float
    step: int = 0
    timestamp: int


MetricInput = Sequence[Any] | Mapping[str, Any] | MetricPoint


def now_ms() -> int:
    """Now, in milliseconds since the epoch (the unit of metric timestamps)."""
    return time.time_ns() // 1_000_000


def check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidArgument(
            f"invalid {what} key {key!r}: expected 1 to {MAX_KEY_LENGTH} printable characters",
            key=str(key)[:MAX_KEY_LENGTH],
        )
    return key


def metric_tuples(metrics: Iterable[MetricInput]) -> list[tuple[str, int, int, float]]:
    """Validated ``(key, step, timestamp, value)`` tuples from what callers log.

    Each item is ``(key, value[, step[, timestamp]])``, a dict with those keys, or a
    :class:`MetricPoint`. Values must be finite numbers (NaN and infinities are refused), steps
    integers (default 0), timestamps integer milliseconds (default now) or datetimes.
    """
    now = now_ms()
    rows: list[tuple[str, int, int, float]] = []
    append = rows.append
    checked: set[str] = set()
    key: Any
    value: Any
    step: Any
    ts: Any
    # Exact-type checks first: they keep 100,000-point batches cheap; the general checks below
    # give the same answers for everything else.
    for item in metrics:
        if type(item) is tuple and len(item) == 3:
            key, value, step = item
            ts = None
        elif isinstance(item, MetricPoint):
            key, value, step, ts = item.key, item.value, item.step, item.timestamp
        elif isinstance(item, Mapping):
            key, value = item.get("key"), item.get("value")
            step, ts = item.get("step", 0), item.get("timestamp")
        elif isinstance(item, tuple | list) and 2 <= len(item) <= 4:
            key, value, step, ts = (*item, 0, None)[:4] if len(item) == 2 else (*item, None)[:4]
        else:
            raise InvalidArgument(
                f"invalid metric {item!r}: expected (key, value, step, timestamp) or a dict"
            )
        if key not in checked:
            checked.add(check_key(key, "metric"))
        if type(value) is float:
            pass
        elif isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value)  # numpy scalars and the like
            except (TypeError, ValueError):
                raise InvalidArgument(
                    f"metric {key!r} value {value!r} is not a number", key=key
                ) from None
        if not math.isfinite(value):
            raise InvalidArgument(
                f"metric {key!r} value {value!r} is not finite: NaN and infinities are refused",
                key=key,
            )
        step = 0 if step is None else step
        if type(step) is int:
            pass
        elif isinstance(step, bool) or not isinstance(step, int):
            if isinstance(step, float) and step.is_integer():
                step = int(step)
            else:
                raise InvalidArgument(f"metric {key!r} step {step!r} is not an integer", key=key)
        if ts is None:
            ts = now
        elif type(ts) is int:
            pass
        elif isinstance(ts, datetime):
            ts = int(ts.timestamp() * 1000)
        elif isinstance(ts, bool) or not isinstance(ts, int):
            raise InvalidArgument(
                f"metric {key!r} timestamp {ts!r} is not integer milliseconds", key=key
            )
        append((key, step, ts, float(value)))
    return rows
