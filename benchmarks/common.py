"""Shared helpers for the benchmarks: data, timing, interleaving and probes.

Timing: wall-clock seconds (``time.perf_counter``) and process CPU seconds (all threads,
``time.process_time``). The machines are small and shared, so the two sides of a comparison are
run interleaved (ABBA order) and the median of the repetitions is reported.
"""

from __future__ import annotations

import functools
import gc
import inspect
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

SEED = 20261122


class BenchmarkInvalid(Exception):
    """The comparison would not be fair (e.g. the raw side's parameters drifted)."""


# --------------------------------------------------------------------------------------------
# data


def make_regression_table(rows: int, cols: int = 20, seed: int = SEED) -> pa.Table:
    """``cols`` FLOAT64 features ``x0…`` and a FLOAT64 label ``y`` (a smooth nonlinear target).

    Fixed seed: the same ``rows`` always gives the same table.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols))
    y = (
        2.0 * x[:, 0]
        + np.sin(3.0 * x[:, 1])
        + x[:, 2] * x[:, 3]
        + 0.5 * np.abs(x[:, 4 % cols])
        + 0.1 * rng.standard_normal(rows)
    )
    columns = {f"x{i}": pa.array(x[:, i]) for i in range(cols)}
    columns["y"] = pa.array(y)
    return pa.table(columns)


def float32_matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    """The C-contiguous float32 matrix of ``names`` (what XGBoost is given)."""
    out = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = table.column(name).to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# timing


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float


@dataclass
class Series:
    """Repeated measurements of one thing (seconds)."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def low(self) -> float:
        return min(s.wall for s in self.samples)

    @property
    def high(self) -> float:
        return max(s.wall for s in self.samples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": round(self.wall, 4),
            "cpu_median_s": round(self.cpu, 4),
            "min_s": round(self.low, 4),
            "max_s": round(self.high, 4),
            "wall_s": [round(s.wall, 4) for s in self.samples],
            "cpu_s": [round(s.cpu, 4) for s in self.samples],
        }


class Clock:
    """``with clock: …`` measures one block; ``clock.sample`` holds the result."""

    sample: Sample

    def __enter__(self) -> Clock:
        gc.collect()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample = Sample(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def timed(fn: Callable[[], Any]) -> tuple[Sample, Any]:
    with Clock() as clock:
        value = fn()
    return clock.sample, value


def interleave(
    sides: dict[str, Callable[[], dict[str, Sample]]],
    *,
    reps: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
    settled: Callable[[dict[str, Series]], bool] | None = None,
    max_reps: int | None = None,
    budget_s: float = float("inf"),
) -> dict[str, Series]:
    """Run every side ``warmup + reps`` times, alternating the order (ABBA), medians after.

    Each side returns named samples (e.g. {"total": …} or {"scan": …, "predict": …}); the
    result maps ``"<side>.<name>"`` to its series. Warm-up runs are not recorded. While
    ``settled(series)`` is false (a busy machine), up to ``max_reps`` repetitions are run in
    all, as long as the whole call stays within ``budget_s`` seconds.
    """
    series: dict[str, Series] = defaultdict(Series)
    names = list(sides)
    start = time.perf_counter()
    limit = max(reps, max_reps or reps)
    rep = 0
    while True:
        timed_reps = rep - warmup
        if timed_reps >= reps:
            if timed_reps >= limit or time.perf_counter() - start > budget_s:
                break
            if settled is None or settled(dict(series)):
                break
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            if progress:
                kind = "warm-up" if rep < warmup else f"rep {timed_reps + 1}"
                progress(f"{name} ({kind})")
            samples = sides[name]()
            if rep >= warmup:
                for part, sample in samples.items():
                    series[f"{name}.{part}"].add(sample)
        rep += 1
    return dict(series)


def settled_medians(keys: list[str], tolerance: float) -> Callable[[dict[str, Series]], bool]:
    """True when the median of every series in ``keys`` is within ``tolerance`` x its best run
    (a median that a burst of load on the machine did not lift)."""

    def check(series: dict[str, Series]) -> bool:
        return all(series[k].wall <= tolerance * series[k].low for k in keys if k in series)

    return check


# --------------------------------------------------------------------------------------------
# probes: where the time goes inside the library, for one instrumented run


class Probe:
    """Temporarily wraps callables to add up the wall time spent in each (by label).

    ``probe.wrap(owner, "attr", "label")`` replaces ``owner.attr`` (a module function, a class's
    method, classmethod or staticmethod, or an instance's bound method) until the ``with`` block
    ends. A missing attribute is skipped (recorded in ``missing``), so a refactoring of the
    library degrades the breakdown instead of failing the benchmark.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def timer(self, fn: Callable[..., Any], label: str | list[str]) -> Callable[..., Any]:
        """``fn`` wrapped to add its time to ``label`` (not installed anywhere)."""
        return self._timer(fn, [label] if isinstance(label, str) else list(label))

    def _timer(self, fn: Callable[..., Any], labels: list[str]) -> Callable[..., Any]:
        count = 0

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            label = labels[min(count, len(labels) - 1)]
            count += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] += 1

        return wrapper

    def wrap(self, owner: Any, attr: str, label: str | list[str]) -> None:
        """Time ``owner.attr`` under ``label``; a list labels the 1st, 2nd, … call (the last
        label takes the remaining calls)."""
        labels = [label] if isinstance(label, str) else list(label)
        if not hasattr(owner, attr):
            self.missing.append(f"{getattr(owner, '__name__', type(owner).__name__)}.{attr}")
            return
        if inspect.isclass(owner):
            raw = owner.__dict__.get(attr)
            if raw is None:  # inherited: wrap the resolved attribute on this class
                raw = getattr(owner, attr)
            if isinstance(raw, classmethod | staticmethod):
                replacement: Any = staticmethod(self._timer(getattr(owner, attr), labels))
            else:
                replacement = self._timer(raw, labels)
            had = attr in owner.__dict__
            setattr(owner, attr, replacement)
            self._undo.append(
                (lambda: setattr(owner, attr, raw)) if had else (lambda: delattr(owner, attr))
            )
            return
        had_own = attr in getattr(owner, "__dict__", {})
        original = getattr(owner, attr)
        setattr(owner, attr, self._timer(original, labels))
        if had_own or inspect.ismodule(owner):
            self._undo.append(lambda: setattr(owner, attr, original))
        else:
            self._undo.append(lambda: delattr(owner, attr))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


@contextmanager
def replaced(mapping: dict[str, Any], key: str, value: Any) -> Iterator[None]:
    """``mapping[key] = value`` for the duration of the block."""
    old = mapping[key]
    mapping[key] = value
    try:
        yield
    finally:
        mapping[key] = old


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}"
