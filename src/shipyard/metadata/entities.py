"""Lineage objects: artifacts, executions, events, contexts and the graph a query returns."""

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


class LineageContext(BaseModel):
    """A group of artifacts and executions: an experiment (its runs, what they read and wrote),
    later a pipeline. ``type`` and ``name`` name it together (``experiment/churn``)."""

    id: str
    type: str  # experiment pipeline …
    name: str
    description: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime

    @property
    def ref(self) -> str:
        """``type/name``: how lineage queries and the CLI name the context."""
        return f"{self.type}/{self.name}"


class Membership(BaseModel):
    """An attribution (``artifact_id`` set) or an association (``execution_id`` set)."""

    context_id: str
    artifact_id: str | None = None
    execution_id: str | None = None


class LineageGraph(BaseModel):
    """The part of the graph around ``root`` (an artifact's uri) that a query walked.

    ``depth`` is how many executions away from the root the walk went (None: all the way);
    ``context`` (``type/name``), when set, is the context the walk was narrowed to: only its
    executions were followed. ``contexts`` are the contexts of the graph's nodes, and
    ``memberships`` say which node is in which.
    """

    root: str
    direction: Direction
    depth: int | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    executions: list[Execution] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    context: str | None = None
    contexts: list[LineageContext] = Field(default_factory=list)
    memberships: list[Membership] = Field(default_factory=list)

    def artifact(self, uri: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.uri == uri), None)

    @property
    def uris(self) -> list[str]:
        return [a.uri for a in self.artifacts]

    def contexts_of(self, node_id: str) -> list[LineageContext]:
        """The contexts an artifact or execution of the graph (by id) belongs to."""
        ids = {m.context_id for m in self.memberships if node_id in (m.artifact_id, m.execution_id)}
        return [c for c in self.contexts if c.id in ids]
