"""LocalEngine: jobs on a thread pool in the process that owns the workspace.

Each job is a row in the metadata store (state, progress, result, error) with its log lines beside
it, so any client of the workspace sees it, and it outlives the client that submitted it. Jobs
left QUEUED or RUNNING by a process that died are marked FAILED when the next engine starts.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, insert, select, update

from shipyard.engine.jobs import Job, JobCancelled, JobContext, JobState, LogLine
from shipyard.errors import Internal, InvalidArgument, NotFound, ShipyardError
from shipyard.store import MetadataStore, Page
from shipyard.store.schema import job_logs, jobs, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

JobFunction = Callable[[JobContext], Any]

# Statements built once: SQLAlchemy keeps their cache keys, so a job's writes skip statement
# construction and cache-key generation (half the cost of a short job's bookkeeping). The values
# come as execution parameters; each distinct set of columns compiles once.
_INSERT_JOB = insert(jobs)
_UPDATE_JOB = update(jobs).where(jobs.c.id == bindparam("job_id_"))
_INSERT_LOG = insert(job_logs)
_GET_JOB = select(jobs).where(jobs.c.id == bindparam("job_id_"))


class LocalEngine:
    """Runs jobs in threads; ``map`` fans work out over the same pool size."""

    def __init__(self, store: MetadataStore, *, max_workers: int = 2) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="shipyard-job")
        self._max_workers = max_workers
        self._running: dict[str, tuple[JobContext, Future[Any] | None]] = {}
        self._lock = threading.Lock()
        self._log_seq: dict[str, int] = {}
        self._recover()

    # -- submitting -----------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        fn: JobFunction,
        *,
        description: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Job:
        """Queue ``fn(ctx)``; returns the job as persisted (state QUEUED)."""
        record = self._create(kind, description, params)
        job = Job.model_validate(record)  # the row as written, before a worker can change it
        ctx = self._context(job.id)
        with self._lock:
            future = self._pool.submit(self._run, job.id, fn, ctx)
            self._running[job.id] = (ctx, future)
        return job

    def run(
        self,
        kind: str,
        fn: JobFunction,
        *,
        description: str | None = None,
        params: dict[str, Any] | None = None,
        summary: Callable[[Any], Any] | None = None,
    ) -> tuple[Job, Any]:
        """Run ``fn`` as a recorded job in the calling thread; its own error is re-raised.

        Used for work a caller waits on anyway (a query, a CREATE MODEL): the job is listed,
        logged and cancellable like any other, without a hop to the pool. ``summary(value)``
        is what the job's record keeps as its result (by default the value itself when it is
        JSON-friendly, else its repr). The job comes back as written: two writes (created
        RUNNING, then finished), no read.
        """
        # Born RUNNING: one write fewer per statement than a queued job.
        record = self._create(kind, description, params, running=True)
        job_id = record["id"]
        ctx = self._context(job_id, record)
        with self._lock:
            self._running[job_id] = (ctx, None)
        value = self._run(job_id, fn, ctx, started=True, summary=summary, record=record)
        return Job.model_validate(record), value

    def _create(
        self,
        kind: str,
        description: str | None,
        params: dict[str, Any] | None,
        *,
        running: bool = False,
    ) -> dict[str, Any]:
        """Insert the job's row; returns the values written (the job's record as stored)."""
        job_id = uuid.uuid4().hex
        now = utcnow()
        record: dict[str, Any] = {
            "id": job_id,
            "kind": kind,
            "description": description,
            "state": (JobState.RUNNING if running else JobState.QUEUED).value,
            # as the JSON column stores it, so the record equals the row read back
            "params": json.loads(json.dumps(params or {}, sort_keys=True, default=str)),
            "created_at": now,
            "started_at": now if running else None,
        }
        with self._store.transaction() as conn:
            conn.execute(_INSERT_JOB, record)
        with self._lock:
            self._log_seq[job_id] = 0  # a new job has no log lines: no lookup at the first
        return record

    def _context(self, job_id: str, record: dict[str, Any] | None = None) -> JobContext:
        return JobContext(
            job_id,
            on_progress=lambda f, m: self._set_progress(job_id, f, m, record),
            on_log=lambda line: self._append_log(job_id, line),
        )

    def _run(
        self,
        job_id: str,
        fn: JobFunction,
        ctx: JobContext,
        *,
        started: bool = False,
        summary: Callable[[Any], Any] | None = None,
        record: dict[str, Any] | None = None,
    ) -> Any:
        """Run ``fn`` and record how it ended; ``record`` (the values written so far, when
        given) is updated with every later write, so it stays the job's row."""
        try:
            if ctx.cancelled:
                raise JobCancelled(f"job {job_id} was cancelled before it started")
            if not started:
                self._update(job_id, state=JobState.RUNNING.value, started_at=utcnow())
            value = fn(ctx)
            result = _jsonable(summary(value) if summary is not None else value)
        except JobCancelled as exc:
            self._finish(job_id, JobState.CANCELLED, error=exc.to_dict(), record=record)
            raise
        except ShipyardError as exc:
            line = f"ERROR {exc.code}: {exc}"
            self._finish(job_id, JobState.FAILED, error=exc.to_dict(), record=record, log=line)
            raise
        except Exception as exc:
            # A bug, not a user error: the traceback goes to the job's log, the caller gets an
            # Internal error that names the job (never a bare library exception).
            internal = Internal(
                f"job {job_id} failed unexpectedly: {type(exc).__name__}: {exc}", job_id=job_id
            )
            self._finish(
                job_id,
                JobState.FAILED,
                error=internal.to_dict(),
                record=record,
                log="".join(traceback.format_exception(exc)).rstrip(),
            )
            raise internal from exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: record and let it go
            self._finish(
                job_id, JobState.FAILED, error=Internal(repr(exc)).to_dict(), record=record
            )
            raise
        else:
            self._finish(job_id, JobState.SUCCEEDED, result=result, record=record)
            return value
        finally:
            with self._lock:
                self._running.pop(job_id, None)
                self._log_seq.pop(job_id, None)

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        with self._store.connect() as conn:
            row = conn.execute(_GET_JOB, {"job_id_": job_id}).mappings().first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found", resource=f"jobs/{job_id}")
        return Job.model_validate(dict(row))

    def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[Job]:
        """Newest first."""
        stmt = select(jobs)
        if state is not None:
            try:
                stmt = stmt.where(jobs.c.state == JobState(state.upper()).value)
            except ValueError:
                valid = ", ".join(s.value for s in JobState)
                raise InvalidArgument(
                    f"unknown job state {state!r}: expected one of {valid}"
                ) from None
        if kind is not None:
            stmt = stmt.where(jobs.c.kind == kind)
        with self._store.connect() as conn:
            return self._store.page(
                conn,
                stmt,
                order_by=[jobs.c.created_at.desc(), jobs.c.id.desc()],
                page_size=page_size,
                page_token=page_token,
                row_to_item=lambda r: Job.model_validate(dict(r._mapping)),
            )

    def logs(self, job_id: str, *, since: int = 0, limit: int = 10_000) -> builtins.list[LogLine]:
        """Log lines with ``seq > since``, oldest first."""
        self.get(job_id)
        stmt = (
            select(job_logs.c.seq, job_logs.c.at, job_logs.c.line)
            .where(job_logs.c.job_id == job_id, job_logs.c.seq > since)
            .order_by(job_logs.c.seq)
            .limit(limit)
        )
        with self._store.connect() as conn:
            return [LogLine.model_validate(dict(r)) for r in conn.execute(stmt).mappings()]

    def wait(self, job_id: str, *, timeout: float | None = None, poll: float = 0.05) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.state.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return job
            time.sleep(poll)

    # -- control --------------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop. Queued jobs never start; running ones stop at their next check."""
        job = self.get(job_id)
        if job.state.done:
            return job
        with self._lock:
            entry = self._running.get(job_id)
        if entry is not None:
            ctx, future = entry
            ctx._request_cancel()
            if future is not None and future.cancel():  # never started: finish it here
                with self._lock:
                    self._running.pop(job_id, None)
                    self._log_seq.pop(job_id, None)
                self._finish(
                    job_id,
                    JobState.CANCELLED,
                    error=JobCancelled(f"job {job_id} was cancelled before it started").to_dict(),
                )
        return self.get(job_id)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> builtins.list[R]:
        """Apply ``fn`` to every item in parallel threads; results in input order."""
        with ThreadPoolExecutor(max_workers=self._max_workers) as pool:
            return list(pool.map(fn, items))

    def shutdown(self, *, wait: bool = True) -> None:
        with self._lock:
            for ctx, _ in self._running.values():
                ctx._request_cancel()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- persistence ----------------------------------------------------------------------

    def _update(
        self,
        job_id: str,
        record: dict[str, Any] | None = None,
        *,
        log: str | None = None,
        **values: Any,
    ) -> None:
        """Update the job's row (and ``record``, its copy); with ``log``, append that line in
        the same transaction."""
        line = self._log_row(job_id, log) if log is not None else None
        with self._store.transaction() as conn:
            if line is not None:
                conn.execute(_INSERT_LOG, line)
            conn.execute(_UPDATE_JOB, {"job_id_": job_id, **values})
        if record is not None:
            record.update(values)

    def _finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        record: dict[str, Any] | None = None,
        log: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state.value, "ended_at": utcnow(), "error": error}
        if state is JobState.SUCCEEDED:
            values.update(progress=1.0, result=result)
        self._update(job_id, record, log=log, **values)

    def _set_progress(
        self,
        job_id: str,
        fraction: float | None,
        message: str | None,
        record: dict[str, Any] | None = None,
    ) -> None:
        self._update(job_id, record, progress=fraction, progress_message=message)

    def _append_log(self, job_id: str, line: str) -> None:
        row = self._log_row(job_id, line)
        with self._store.transaction() as conn:
            conn.execute(_INSERT_LOG, row)

    def _log_row(self, job_id: str, line: str) -> dict[str, Any]:
        """The job's next log line, numbered."""
        with self._lock:
            seq = self._log_seq.get(job_id)
            if seq is None:
                with self._store.connect() as conn:
                    seq = conn.execute(
                        select(func.coalesce(func.max(job_logs.c.seq), 0)).where(
                            job_logs.c.job_id == job_id
                        )
                    ).scalar_one()
            seq += 1
            self._log_seq[job_id] = seq
        return {"job_id": job_id, "seq": seq, "at": utcnow(), "line": line}

    def _recover(self) -> None:
        """Jobs a dead process left unfinished are failed, with a reason."""
        error = {
            "code": "JOB_FAILED",
            "message": "the process running this job stopped before it finished",
            "details": {},
        }
        with self._store.transaction() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]))
                .values(state=JobState.FAILED.value, ended_at=utcnow(), error=error)
            )


def _jsonable(value: Any) -> Any:
    """Keep JSON-friendly job results; summarise anything else."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return repr(value)
