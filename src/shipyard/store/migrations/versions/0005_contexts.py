"""Lineage contexts: groups of artifacts and executions (experiments now, pipelines later).

A context has a type and a name (unique together); attributions put artifacts in a context,
associations put executions in one (ML Metadata's model). Written by hand to match
``shipyard/store/schema.py``; a test compares a freshly migrated database against it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "md_contexts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("properties", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_md_contexts"),
        sa.UniqueConstraint("type", "name", name="uq_md_contexts_type"),
    )
    for table, member, referred in (
        ("md_attributions", "artifact_id", "md_artifacts"),
        ("md_associations", "execution_id", "md_executions"),
    ):
        op.create_table(
            table,
            sa.Column("context_id", sa.String(32), nullable=False),
            sa.Column(member, sa.String(32), nullable=False),
            _created_at(),
            sa.PrimaryKeyConstraint("context_id", member, name=f"pk_{table}"),
            sa.ForeignKeyConstraint(
                ["context_id"],
                ["md_contexts.id"],
                name=f"fk_{table}_context_id_md_contexts",
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                [member],
                [f"{referred}.id"],
                name=f"fk_{table}_{member}_{referred}",
                ondelete="CASCADE",
            ),
        )
        op.create_index(f"ix_{table}_{member}", table, [member])


def downgrade() -> None:
    for table, member in (
        ("md_associations", "execution_id"),
        ("md_attributions", "artifact_id"),
    ):
        op.drop_index(f"ix_{table}_{member}", table_name=table)
        op.drop_table(table)
    op.drop_table("md_contexts")
