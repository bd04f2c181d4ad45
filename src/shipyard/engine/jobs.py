"""Jobs: what the engine runs, as users see them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from shipyard.errors import FailedPrecondition


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Job(BaseModel):
    """A unit of work run by the engine, persisted in the metadata store."""

    id: str
    kind: str
    description: str | None = None
    state: JobState
    progress: float | None = None
    progress_message: str | None = None
    params: dict[str, Any] = {}
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()


class LogLine(BaseModel):
    seq: int
    at: datetime
    line: str


class JobCancelled(FailedPrecondition):
    """Raised inside a job's function when the job was cancelled."""


class JobContext:
    """Handed to a job's function: report progress, write logs, honour cancellation.

    Progress updates are throttled before they reach the metadata store, so calling
    ``progress`` every iteration is cheap.
    """

    _MIN_INTERVAL_S = 0.2

    def __init__(
        self,
        job_id: str,
        on_progress: Callable[[float | None, str | None], None],
        on_log: Callable[[str], None],
    ) -> None:
        self.job_id = job_id
        self._on_progress = on_progress
        self._on_log = on_log
        self._cancel = threading.Event()
        self._last = 0.0

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self.check_cancelled()
        now = time.monotonic()
        if (fraction is not None and fraction >= 1.0) or now - self._last >= self._MIN_INTERVAL_S:
            self._last = now
            self._on_progress(fraction, message)

    def log(self, line: str) -> None:
        self._on_log(line)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def _request_cancel(self) -> None:
        self._cancel.set()
