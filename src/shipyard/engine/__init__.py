"""Engines run jobs: LocalEngine (threads, the default); RayEngine comes as an extra.

The job entities import nothing heavy; the engine itself is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.engine.jobs import Job, JobCancelled, JobContext, JobState, LogLine

if TYPE_CHECKING:
    from shipyard.engine.local import LocalEngine


def __getattr__(name: str) -> Any:
    if name == "LocalEngine":
        from shipyard.engine.local import LocalEngine

        return LocalEngine
    raise AttributeError(f"module 'shipyard.engine' has no attribute {name!r}")


__all__ = ["Job", "JobCancelled", "JobContext", "JobState", "LocalEngine", "LogLine"]
