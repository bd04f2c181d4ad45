"""Lineage objects: artifacts, executions, events and the graph a query returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class EventType(StrEnum):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


class Direction(StrEnum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"


class Artifact(BaseModel):
    """A thing that lineage tracks, named by its resource path (``uri``)."""

    id: str
    kind: str  # table_version model_version run file …
    uri: str  # tables/demo.t/versions/3, models/demo.m/versions/2, runs/<id>, file:///…
    name: str
    properties: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class Execution(BaseModel):
    """Something that read and wrote artifacts: a SQL statement, a load, a run, a job."""

    id: str
    kind: str  # sql_statement load run job …
    name: str
    description: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)  # statement, job_id …
    state: str
    created_at: datetime


class Edge(BaseModel):
    """An event: ``artifact`` was an INPUT of or an OUTPUT of ``execution``."""

    execution_id: str
    artifact_id: str
    type: EventType


class LineageGraph(BaseModel):
    """The part of the graph around ``root`` (an artifact's uri) that a query walked.

    ``depth`` is how many executions away from the root the walk went (None: all the way).
    """

    root: str
    direction: Direction
    depth: int | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    executions: list[Execution] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)

    def artifact(self, uri: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.uri == uri), None)

    @property
    def uris(self) -> list[str]:
        return [a.uri for a in self.artifacts]
