"""Fitting ARIMA_PLUS's series: in turn, and in worker processes when that pays.

statsforecast's ARIMA holds the GIL, so threads do not help (measured: 8 series, 4.7 s in turn,
5.2 s in 8 threads). Workers are fresh interpreters started as ``python -m
shipyard.sql.arima_parallel``: not ``fork`` (the caller holds DuckDB's threads, and forking a
threaded process can deadlock) and not multiprocessing's ``spawn``/``forkserver`` (they re-run
the caller's ``__main__``, which breaks every script without an ``if __name__ == "__main__"``
guard). They speak pickled frames over their own stdin/stdout pipes.

Work sharing: the series are cut into chunks of about 0.25 s of work. The calling thread fits
chunks in turn; once the chunks done show that the rest would take more than
:data:`START_AFTER_S` (a worker's start, importing statsforecast and compiling its kernels,
costs seconds), it starts one worker per idle core (:func:`default_workers`), each fed by a
thread that sends it the next chunk and stores what comes back. Every series is fitted by
exactly one process with the same function on the same arrays, so the results equal those of
fitting in turn. A worker that fails gives its chunk back; when no worker can start, the calling
thread fits everything.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

import numpy as np

__all__ = ["START_AFTER_S", "default_workers", "fit_one", "fit_series", "fit_task"]

#: Start workers only when the series left would take longer than this in turn.
START_AFTER_S = 5.0
_CHUNK_S = 0.25
_HEADER = struct.Struct("<Q")

#: One series to fit: (values, external regressors or None, seasonal period, fit settings).
Task = tuple[np.ndarray, np.ndarray | None, int, dict[str, Any]]
Result = dict[str, Any] | str


def fit_one(
    y: np.ndarray, xreg: np.ndarray | None, period: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """statsforecast's auto.ARIMA (``settings["auto_arima"]``) or ARIMA of a given order."""
    from shipyard.registry.forecasting import require_statsforecast

    arima = require_statsforecast()
    if settings["auto_arima"]:
        order = settings["max_order"]
        return dict(
            arima.auto_arima_f(
                y,
                period=period,
                seasonal=period > 1,
                max_p=order,
                max_q=order,
                max_order=order,
                xreg=xreg,
            )
        )
    p, d, q = settings["order"]
    return dict(
        arima.Arima(
            y,
            order=(p, d, q),
            seasonal={"order": (0, 0, 0), "period": 1},
            xreg=xreg,
            include_mean=True,
            include_drift=settings["include_drift"],
            method="CSS-ML",
        )
    )


def fit_task(task: Task) -> Result:
    """Fit one series; an error comes back as text (the caller names the series)."""
    y, xreg, period, settings = task
    try:
        return fit_one(y, xreg, period, settings)
    except Exception as exc:  # statsforecast raises ValueError, LinAlgError, …
        return f"{type(exc).__name__}: {exc}"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """One worker per idle core beside the calling one: the cores less the 1-minute load
    average (which counts the calling process). On a busy machine a worker only competes for
    the same cores and adds its start: measured on 2 cores at load 7-9, 40 series took 68-71 s in
    turn and 86-93 s with a worker."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        load = 1.0
    return max(0, min(_cores() - 1, math.floor(_cores() - load + 0.5)))


def fit_series(
    tasks: list[Task],
    report: Callable[[float, str], None],
    *,
    workers: int | None = None,
    start_after: float = START_AFTER_S,
    local: bool = True,
    stats: dict[str, int] | None = None,
) -> list[Result]:
    """Every task's result, in order (see the module doc).

    ``workers``: this many worker processes when they are started (default: one per idle core,
    :func:`default_workers`, counted then; 0 fits in turn); ``local=False`` leaves the fitting to
    the workers while any is alive (tests, and measuring them); ``stats`` receives
    ``fitted_by_workers``.
    """
    run = _Run(tasks, report, workers, local)
    results = run.run(start_after)
    if stats is not None:
        stats["fitted_by_workers"] = run.fitted_by_workers
    return results


class _Run:
    def __init__(
        self,
        tasks: list[Task],
        report: Callable[[float, str], None],
        workers: int | None,
        local: bool,
    ):
        self.tasks = tasks
        self.local = local
        self.report = report
        self.max_workers = workers
        self.results: list[Result | None] = [None] * len(tasks)
        self.pending: deque[tuple[int, int]] = deque()
        self.done = 0
        self.cond = threading.Condition()
        self.workers: list[_Worker] = []
        self.started_workers = False
        self.fitted_by_workers = 0

    def run(self, start_after: float) -> list[Result]:
        n = len(self.tasks)
        first, size = 0, 1
        started = time.perf_counter()
        if self.local:  # the first two series size the chunks (the first pays numba's compile)
            self._fit_range(0, min(n, 1))
            started = time.perf_counter()
            self._fit_range(1, min(n, 2))
            per_series = max(time.perf_counter() - started, 1e-6)
            first, size = min(n, 2), max(1, min(64, int(_CHUNK_S / per_series)))
        with self.cond:
            self.pending.extend((lo, min(lo + size, n)) for lo in range(first, n, size))
        if not self.local:
            self._start_workers()
        try:
            while True:
                with self.cond:
                    while not self.pending and self.done < n:
                        self.cond.wait(0.5)
                    if self.done >= n:
                        break
                    if not self.local and any(w.thread.is_alive() for w in self.workers):
                        self.cond.wait(0.5)  # the workers take the chunks
                        continue
                    lo, hi = self.pending.popleft()
                self._fit_range(lo, hi)
                if not self.started_workers and self.max_workers != 0:
                    rate = (time.perf_counter() - started) / max(self.done - 1, 1)
                    if rate * (n - self.done) > start_after:
                        self._start_workers()
        finally:
            for worker in self.workers:
                worker.stop()
        return [r if r is not None else "no result" for r in self.results]

    def _fit_range(self, lo: int, hi: int) -> None:
        if hi > lo:
            self._store(lo, [fit_task(self.tasks[i]) for i in range(lo, hi)])

    def _store(self, lo: int, out: list[Result], *, by_worker: bool = False) -> None:
        n = len(self.tasks)
        with self.cond:
            self.results[lo : lo + len(out)] = out
            self.done += len(out)
            self.fitted_by_workers += len(out) if by_worker else 0
            done = self.done
            self.cond.notify_all()
        self.report(0.1 + 0.85 * done / n, f"fitted {done} of {n} series")

    def _start_workers(self) -> None:
        self.started_workers = True
        count = default_workers() if self.max_workers is None else self.max_workers
        for _ in range(count):
            worker = _Worker(self)
            self.workers.append(worker)
            worker.thread.start()

    def take(self) -> tuple[int, int] | None:
        with self.cond:
            return self.pending.popleft() if self.pending else None

    def give_back(self, chunk: tuple[int, int]) -> None:
        with self.cond:
            self.pending.appendleft(chunk)
            self.cond.notify_all()


class _Worker:
    """One worker process and the thread that feeds it."""

    def __init__(self, run: _Run):
        self.run = run
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="arima-worker", daemon=True)

    def _serve(self) -> None:
        chunk = None
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shipyard.sql.arima_parallel"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            assert self.process.stdin is not None and self.process.stdout is not None
            if _read(self.process.stdout) != "ready":
                return
            while not self.stopped.is_set():
                chunk = self.run.take()
                if chunk is None:
                    return
                lo, hi = chunk
                _write(self.process.stdin, self.run.tasks[lo:hi])
                out = _read(self.process.stdout)
                if not isinstance(out, list) or len(out) != hi - lo:
                    raise RuntimeError("the worker answered out of turn")
                self.run._store(lo, out, by_worker=True)
                chunk = None
        except (OSError, EOFError, RuntimeError, pickle.PickleError):
            pass  # the calling thread fits what is left
        finally:
            if chunk is not None:
                self.run.give_back(chunk)
            self._end()

    def stop(self) -> None:
        self.stopped.set()
        self._end()

    def _end(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()  # our own child, by its handle
            process.wait()


def _write(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the worker closed its pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the worker closed its pipe")
    return pickle.loads(data)  # our own child's frames, over a private pipe


def _worker_main() -> None:  # pragma: no cover - runs in the worker process
    """Fit the chunks that come on stdin; answer on stdout (stray prints go to stderr)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    from shipyard.registry.forecasting import require_statsforecast

    require_statsforecast()
    _write(answers, "ready")
    while True:
        try:
            tasks = _read(requests)
        except EOFError:
            return
        _write(answers, [fit_task(t) for t in tasks])


if __name__ == "__main__":  # pragma: no cover - the worker process
    _worker_main()
