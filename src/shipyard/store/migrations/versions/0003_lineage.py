"""Metadata and lineage: artifacts, executions and the INPUT/OUTPUT events between them.

Written by hand to match ``shipyard/store/schema.py``; a test compares a freshly migrated
database against it. Contexts and attributions (experiments, pipelines) come later.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "md_artifacts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("uri", sa.String(1024), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_md_artifacts"),
        sa.UniqueConstraint("uri", name="uq_md_artifacts_uri"),
    )
    op.create_table(
        "md_executions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("properties", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_md_executions"),
    )
    op.create_table(
        "md_events",
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("artifact_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("execution_id", "artifact_id", "type", name="pk_md_events"),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["md_executions.id"],
            name="fk_md_events_execution_id_md_executions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["md_artifacts.id"],
            name="fk_md_events_artifact_id_md_artifacts",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_md_events_artifact_type", "md_events", ["artifact_id", "type"])


def downgrade() -> None:
    op.drop_index("ix_md_events_artifact_type", table_name="md_events")
    op.drop_table("md_events")
    op.drop_table("md_executions")
    op.drop_table("md_artifacts")
