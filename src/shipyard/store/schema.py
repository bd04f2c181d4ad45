"""The metadata schema: every table Shipyard keeps in SQLite or PostgreSQL.

This is the one description of the schema. Alembic migrations under ``migrations/versions`` bring
a database to it; a test checks that a freshly migrated database matches these definitions.
JSON documents are stored as text (``JSONText``) so SQLite and PostgreSQL behave the same.
Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect


class JSONText(TypeDecorator[Any]):
    """A JSON document kept as text, identical on SQLite and PostgreSQL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the metadata store; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# -- warehouse tables and their versions ------------------------------------------------------
# Each write of a table through Shipyard records a version: a counter and a content fingerprint,
# so lineage and caching can say which data a model or step read.
table_versions = Table(
    "table_versions",
    metadata,
    Column("table_name", String(255), primary_key=True),  # dataset.table
    Column("version", Integer, primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("schema", JSONText, nullable=False),  # [{"name":…, "type":…}]
    Column("source", JSONText, nullable=True),  # {"kind": "file", "uri": …} or {"kind": "sql", …}
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

# -- model registry -----------------------------------------------------------------------------
models = Table(
    "models",
    metadata,
    Column("name", String(255), primary_key=True),  # dataset.model
    Column("description", Text, nullable=True),
    Column("labels", JSONText, nullable=False, default=dict),
    Column("latest_version", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    # OPTIONS(expiration_timestamp=…): the model is deleted once this has passed (0006)
    Column("expiration_time", UTCDateTime, nullable=True),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model_name", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("model_type", String(64), nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("manifest_digest", String(64), nullable=False),  # sha256 of manifest.json
    Column("manifest", JSONText, nullable=False),
    Column("metrics", JSONText, nullable=False, default=dict),
    Column("source", JSONText, nullable=False),  # statement, input tables (with versions), job
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    ForeignKeyConstraint(["model_name"], ["models.name"], ondelete="CASCADE"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_name", String(255), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    ForeignKeyConstraint(
        ["model_name", "version"],
        ["model_versions.model_name", "model_versions.version"],
        ondelete="CASCADE",
    ),
)

# -- jobs ------------------------------------------------------------------------------------
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(64), nullable=False),  # e.g. "sql", "demo"
    Column("description", Text, nullable=True),
    Column("state", String(16), nullable=False),  # QUEUED RUNNING SUCCEEDED FAILED CANCELLED
    Column("progress", Float, nullable=True),  # 0..1 when known
    Column("progress_message", Text, nullable=True),
    Column("params", JSONText, nullable=False, default=dict),
    Column("result", JSONText, nullable=True),
    Column("error", JSONText, nullable=True),  # {code, message, details}
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("started_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Index("ix_jobs_created_at", "created_at"),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Column("line", Text, nullable=False),
    ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
)

# -- experiment tracking ------------------------------------------------------------------------
# Metric points are append-only history; ``run_latest_metrics`` keeps each key's latest point
# (highest step, then newest timestamp) so searching and ordering runs never scans history.
# Metric timestamps are integer milliseconds since the epoch, as training code and MLflow use.
experiments = Table(
    "experiments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("tags", JSONText, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("lifecycle", String(16), nullable=False, default="active"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", String(32), nullable=False),
    Column("parent_run_id", String(32), nullable=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # RUNNING FINISHED FAILED KILLED
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime, nullable=True),
    Column("created_by", String(255), nullable=True),
    Column("notes", Text, nullable=True),
    ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["parent_run_id"], ["runs.id"], ondelete="CASCADE"),
    Index("ix_runs_experiment_start", "experiment_id", "start_time", "id"),
    Index("ix_runs_parent_run_id", "parent_run_id"),
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
)

run_metrics = Table(
    "run_metrics",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),
)

run_latest_metrics = Table(
    "run_latest_metrics",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    Index("ix_run_latest_metrics_key_value", "key", "value"),
)

# -- metadata and lineage -----------------------------------------------------------------------
# An ML-Metadata-style graph: artifacts (table versions, model versions, runs, files) and
# executions (SQL statements, loads, runs, jobs) joined by INPUT/OUTPUT events. An artifact is
# named by its resource path (``tables/demo.t/versions/3``), unique. Contexts (experiments, and
# later pipelines) group them: attributions put artifacts in a context, associations executions.
md_artifacts = Table(
    "md_artifacts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),  # table_version model_version run file …
    Column("uri", String(1024), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("properties", JSONText, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

md_executions = Table(
    "md_executions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),  # sql_statement load run job …
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=True),
    Column("properties", JSONText, nullable=False, default=dict),  # statement, job_id …
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

md_events = Table(
    "md_events",
    metadata,
    Column("execution_id", String(32), primary_key=True),
    Column("artifact_id", String(32), primary_key=True),
    Column("type", String(8), primary_key=True),  # INPUT OUTPUT
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    ForeignKeyConstraint(["execution_id"], ["md_executions.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["artifact_id"], ["md_artifacts.id"], ondelete="CASCADE"),
    Index("ix_md_events_artifact_type", "artifact_id", "type"),
)

# An experiment's context has the experiment's id, so renaming one renames the other.
md_contexts = Table(
    "md_contexts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("type", String(32), nullable=False),  # experiment pipeline …
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=True),
    Column("properties", JSONText, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("type", "name"),
)

md_attributions = Table(
    "md_attributions",
    metadata,
    Column("context_id", String(32), primary_key=True),
    Column("artifact_id", String(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    ForeignKeyConstraint(["context_id"], ["md_contexts.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["artifact_id"], ["md_artifacts.id"], ondelete="CASCADE"),
    Index("ix_md_attributions_artifact_id", "artifact_id"),
)

md_associations = Table(
    "md_associations",
    metadata,
    Column("context_id", String(32), primary_key=True),
    Column("execution_id", String(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    ForeignKeyConstraint(["context_id"], ["md_contexts.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["execution_id"], ["md_executions.id"], ondelete="CASCADE"),
    Index("ix_md_associations_execution_id", "execution_id"),
)


# -- serving -----------------------------------------------------------------------------------

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text, nullable=True),
    # {"deployments": [...], "traffic": {id: pct}, "sticky_key": str | None}
    Column("state", JSONText, nullable=False),
    Column("config", JSONText, nullable=False, default=dict),  # timeouts, log sampling, …
    Column("revision", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

# Every change to an endpoint: who, when, which action, the state before and after.
endpoint_changes = Table(
    "endpoint_changes",
    metadata,
    Column("endpoint", String(128), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("action", String(32), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("before", JSONText, nullable=True),
    Column("after", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    ForeignKeyConstraint(["endpoint"], ["endpoints.name"], ondelete="CASCADE"),
)
