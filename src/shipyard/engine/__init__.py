"""Engines run jobs: LocalEngine (threads, the default); RayEngine comes as an extra."""

from shipyard.engine.jobs import Job, JobCancelled, JobContext, JobState, LogLine
from shipyard.engine.local import LocalEngine

__all__ = ["Job", "JobCancelled", "JobContext", "JobState", "LocalEngine", "LogLine"]
