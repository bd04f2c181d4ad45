"""The fluent tracking API: ``sy.start_run()``, ``sy.log_metric()``… over a workspace.

>>> import shipyard as sy
>>> sy.set_experiment("churn")                         # doctest: +SKIP
>>> with sy.start_run(name="xgb-depth-6"):             # doctest: +SKIP
...     sy.log_params({"max_depth": 6, "eta": 0.1})
...     for step in range(100):
...         sy.log_metric("loss", 1 / (step + 1), step=step)

It works over the workspace given to :func:`set_workspace`, or else ``sy.connect()`` (the home
in ``SHIPYARD_HOME``, or a server that owns it). Runs nest: ``start_run(nested=True)`` inside an
active run starts a child run.

**Logging never blocks training.** ``log_*`` calls validate their arguments at once (a bad key,
a NaN, a param changed after it was logged raise right there) and queue the data; a background
thread sends the queue through ``ws.runs.log_batch`` every 0.2 s, or sooner when 5,000 points
are waiting. :func:`end_run` (and leaving a ``with start_run()`` block) sends everything queued
for the run before ending it, and at interpreter exit everything queued is sent and runs still
active are ended as FINISHED.

**Crash semantics.** If the process dies without running exit handlers (``kill -9``, a segfault,
``os._exit``), what was logged in the last flush interval — at most 0.2 s or 5,000 points — is
lost, and the run stays RUNNING; everything sent before is committed (each batch is one
transaction, so a batch is stored whole or not at all). A batch the server refuses (for example
because the run was ended elsewhere) is dropped and its error raised by the next fluent call.
"""

from __future__ import annotations

import atexit
import getpass
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound, ShipyardError
from shipyard.tracking.artifacts import ArtifactFile
from shipyard.tracking.entities import Experiment, Run, RunStatus, metric_tuples

__all__ = [
    "ActiveRun",
    "active_run",
    "end_run",
    "flush",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_workspace",
    "start_run",
]

DEFAULT_EXPERIMENT = "default"
FLUSH_INTERVAL_S = 0.2
FLUSH_POINTS = 5_000
MAX_BATCH_POINTS = 10_000  # per request: keeps REST bodies small


@dataclass
class _Pending:
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.metrics or self.params or self.tags)


class _AsyncLogger:
    """A queue per run, drained by one daemon thread (and synchronously by :meth:`flush`)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._pending: dict[str, _Pending] = {}
        self._points = 0
        self._cond = threading.Condition()
        self._send = threading.Lock()  # one drain at a time keeps batches in logging order
        self._errors: dict[str, ShipyardError] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="shipyard-fluent", daemon=True)
        self._thread.start()

    def add(
        self,
        run_id: str,
        metrics: list[tuple[str, float, int, int]] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        with self._cond:
            pending = self._pending.setdefault(run_id, _Pending())
            if metrics:
                pending.metrics += metrics
                self._points += len(metrics)
            if params:
                pending.params.update(params)
            if tags:
                pending.tags.update(tags)
            if self._points >= FLUSH_POINTS:
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._stop and self._points < FLUSH_POINTS:
                    self._cond.wait(FLUSH_INTERVAL_S)
                stop = self._stop
            self.flush(raise_errors=False)
            if stop:
                return

    def flush(self, run_id: str | None = None, *, raise_errors: bool = True) -> None:
        """Send what is queued (for ``run_id``, or every run); raise a refused batch's error."""
        with self._send:
            with self._cond:
                if run_id is None:
                    taken, self._pending = self._pending, {}
                else:
                    one = self._pending.pop(run_id, None)
                    taken = {run_id: one} if one is not None else {}
                self._points -= sum(len(p.metrics) for p in taken.values())
            for rid, pending in taken.items():
                if not pending.empty():
                    self._send_run(rid, pending)
        if raise_errors:
            self.raise_error(run_id)

    def _send_run(self, run_id: str, pending: _Pending) -> None:
        try:
            chunks = range(0, max(len(pending.metrics), 1), MAX_BATCH_POINTS)
            for i, start in enumerate(chunks):
                self.ws.runs.log_batch(
                    run_id,
                    pending.metrics[start : start + MAX_BATCH_POINTS],
                    params=pending.params if i == 0 else None,
                    tags=pending.tags if i == 0 else None,
                )
        except ShipyardError as exc:
            self._errors.setdefault(run_id, exc)

    def raise_error(self, run_id: str | None = None) -> None:
        keys = [run_id] if run_id is not None else list(self._errors)
        for key in keys:
            error = self._errors.pop(key, None)
            if error is not None:
                raise error

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=30)


class ActiveRun:
    """The run :func:`start_run` began; a context manager that ends it (FAILED on an error)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.params: dict[str, str] = {}

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def experiment(self) -> str:
        return self.run.experiment

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        status = RunStatus.FINISHED if exc_type is None else RunStatus.FAILED
        if exc_type is KeyboardInterrupt:
            status = RunStatus.KILLED
        _end(self, status.value)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.run.name!r} in {self.experiment!r}>"


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.ws: Any = None
        self.owns_ws = False
        self.experiment: str | None = None
        self.stack: list[ActiveRun] = []
        self.logger: _AsyncLogger | None = None
        self.atexit = False


_state = _State()


def set_workspace(ws: Any) -> None:
    """Track into ``ws`` (a workspace from ``sy.connect``) instead of the default one."""
    with _state.lock:
        if _state.stack:
            raise FailedPrecondition("end the active run before changing the workspace")
        _close_logger()
        _state.ws, _state.owns_ws = ws, False
        _state.experiment = None


def _workspace() -> Any:
    with _state.lock:
        if _state.ws is None:
            from shipyard.client import connect

            _state.ws, _state.owns_ws = connect(), True
        return _state.ws


def _logger() -> _AsyncLogger:
    with _state.lock:
        if _state.logger is None:
            _state.logger = _AsyncLogger(_workspace())
        if not _state.atexit:
            atexit.register(_at_exit)
            _state.atexit = True
        return _state.logger


def _close_logger() -> None:
    if _state.logger is not None:
        _state.logger.close()
        _state.logger = None


def set_experiment(name: str) -> Experiment:
    """Make ``name`` the experiment new runs go to, creating it when it does not exist."""
    ws = _workspace()
    try:
        experiment = ws.experiments.get(name)
    except NotFound:
        try:
            experiment = ws.experiments.create(name)
        except ShipyardError:  # another process created it first
            experiment = ws.experiments.get(name)
    with _state.lock:
        _state.experiment = experiment.name
    return experiment


def start_run(
    name: str | None = None, *, nested: bool = False, tags: Mapping[str, Any] | None = None
) -> ActiveRun:
    """Start a run in the current experiment (``"default"`` unless :func:`set_experiment`).

    With a run already active, ``nested=True`` starts a child run of it; otherwise that is a
    FailedPrecondition. Use it as a context manager to end it FINISHED, or FAILED on an error.
    """
    with _state.lock:
        if _state.stack and not nested:
            raise FailedPrecondition(
                f"run {_state.stack[-1].id} is already active: end it first, or pass nested=True"
            )
        parent = _state.stack[-1].id if _state.stack else None
        experiment = _state.experiment
    if experiment is None:
        experiment = set_experiment(DEFAULT_EXPERIMENT).name
    logger = _logger()
    run = logger.ws.runs.create(
        experiment,
        name=name,
        parent_run_id=parent,
        tags=dict(tags or {}),
        created_by=_user(),
    )
    active = ActiveRun(run)
    with _state.lock:
        _state.stack.append(active)
    return active


def active_run() -> ActiveRun | None:
    """The innermost active run, or None."""
    with _state.lock:
        return _state.stack[-1] if _state.stack else None


def end_run(status: str = "FINISHED") -> Run | None:
    """Send everything logged to the innermost active run and end it; None if none is active."""
    run = active_run()
    return None if run is None else _end(run, status)


def flush() -> None:
    """Send everything queued now (for every run), raising the error of a refused batch."""
    with _state.lock:
        logger = _state.logger
    if logger is not None:
        logger.flush()


def _end(active: ActiveRun, status: str) -> Run:
    with _state.lock:
        if active not in _state.stack:
            raise FailedPrecondition(f"run {active.id} is not active")
        # Children end with their parent.
        while _state.stack[-1] is not active:
            _end(_state.stack[-1], status)
        _state.stack.remove(active)
    logger = _logger()
    try:
        logger.flush(active.id)
    finally:
        ended = logger.ws.runs.end(active.id, status)
    active.run = ended
    return ended


def _require_run() -> tuple[ActiveRun, _AsyncLogger]:
    run = active_run()
    if run is None:
        raise FailedPrecondition("no active run: call sy.start_run() first")
    logger = _logger()
    logger.raise_error(run.id)
    return run, logger


def log_input(table: str, version: int | None = None) -> str:
    """Record that the active run read ``table`` (``dataset.table``) at ``version`` (its latest
    when None), for lineage; returns ``tables/<table>/versions/<n>``. Sent at once."""
    run, _ = _require_run()
    path: str = _workspace().runs.log_input(run.id, table, version)
    return path


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None
) -> list[ArtifactFile]:
    """Upload a file, or a folder with everything in it, into the active run's artifacts
    (under ``artifact_path``); returns the files written. Sent at once."""
    run, _ = _require_run()
    files: list[ArtifactFile] = _workspace().runs.log_artifact(run.id, local_path, artifact_path)
    return files


_TABLE_FORMATS = (".parquet", ".csv", ".json", ".jsonl")
_FIGURE_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def log_table(data: Any, artifact_file: str) -> list[ArtifactFile]:
    """Store a table in the active run's artifacts as ``artifact_file`` (``.parquet``, ``.csv``,
    ``.json`` — a JSON array of rows — or ``.jsonl``), from a pyarrow Table, a pandas DataFrame,
    a list of row dicts or a dict of columns."""
    import tempfile

    import pyarrow as pa

    suffix = os.path.splitext(artifact_file)[1].lower()
    if suffix not in _TABLE_FORMATS:
        raise InvalidArgument(
            f"artifact_file {artifact_file!r} must end in one of {', '.join(_TABLE_FORMATS)}"
        )
    if isinstance(data, pa.Table):
        table = data
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
        table = pa.Table.from_pylist(data)
    elif isinstance(data, Mapping):
        table = pa.table(dict(data))
    else:
        raise InvalidArgument(
            f"log_table takes a pyarrow Table, a pandas DataFrame, a list of row dicts or a dict "
            f"of columns, got {type(data).__name__}"
        )
    folder, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory(prefix="shipyard-table-") as tmp:
        path = os.path.join(tmp, name)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, path)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, path)
        else:
            import json

            rows = table.to_pylist()
            with open(path, "w", encoding="utf-8") as out:
                if suffix == ".json":
                    json.dump(rows, out, default=str)
                else:
                    out.writelines(json.dumps(r, default=str) + "\n" for r in rows)
        return log_artifact(path, folder or None)


def log_figure(figure: Any, artifact_file: str) -> list[ArtifactFile]:
    """Store a plot in the active run's artifacts: anything with ``savefig`` (a matplotlib or
    seaborn figure) or ``write_image`` (plotly), saved as ``artifact_file`` (.png, .svg, …)."""
    import tempfile

    suffix = os.path.splitext(artifact_file)[1].lower()
    if suffix not in _FIGURE_FORMATS:
        raise InvalidArgument(
            f"artifact_file {artifact_file!r} must end in one of {', '.join(_FIGURE_FORMATS)}"
        )
    save = getattr(figure, "savefig", None) or getattr(figure, "write_image", None)
    if save is None:
        raise InvalidArgument(
            f"log_figure takes a figure with savefig (matplotlib) or write_image (plotly), got "
            f"{type(figure).__name__}"
        )
    folder, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory(prefix="shipyard-figure-") as tmp:
        path = os.path.join(tmp, name)
        save(path)
        return log_artifact(path, folder or None)


def log_metric(key: str, value: float, step: int = 0, *, timestamp: int | None = None) -> None:
    """Queue one point of metric ``key`` (sent within 0.2 s; never blocks)."""
    run, logger = _require_run()
    ((k, s, t, v),) = metric_tuples([(key, value, step, timestamp)])
    logger.add(run.id, metrics=[(k, v, s, t)])


def log_metrics(
    metrics: Mapping[str, float], step: int = 0, *, timestamp: int | None = None
) -> None:
    run, logger = _require_run()
    points = metric_tuples([(k, v, step, timestamp) for k, v in metrics.items()])
    logger.add(run.id, metrics=[(k, v, s, t) for k, s, t, v in points])


def log_param(key: str, value: Any) -> None:
    log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Queue params; changing one already logged to this run raises InvalidArgument at once."""
    run, logger = _require_run()
    clean = {str(k): str(v) for k, v in params.items()}
    for key, value in clean.items():
        old = run.params.get(key)
        if old is not None and old != value:
            raise InvalidArgument(
                f"param {key!r} of run {run.id} is already {old!r}; params are written once "
                f"(got {value!r})",
                key=key,
            )
    run.params.update(clean)
    logger.add(run.id, params=clean)


def set_tag(key: str, value: Any) -> None:
    set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    run, logger = _require_run()
    logger.add(run.id, tags={str(k): str(v) for k, v in tags.items()})


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _at_exit() -> None:
    """Send what is queued and end the runs still active as FINISHED."""
    try:
        while (run := active_run()) is not None:
            _end(run, "FINISHED")
        flush()
    except ShipyardError:
        pass  # nowhere to report at exit; the runs stay RUNNING
    finally:
        with _state.lock:
            _close_logger()
            if _state.owns_ws and _state.ws is not None:
                _state.ws.close()
                _state.ws, _state.owns_ws = None, False
