"""Serving: endpoints (their deployments and traffic split) and the history of every change.

Written by hand to match ``shipyard/store/schema.py``; a test compares a freshly migrated
database against it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_endpoints"),
    )
    op.create_table(
        "endpoint_changes",
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "revision", name="pk_endpoint_changes"),
        sa.ForeignKeyConstraint(
            ["endpoint"],
            ["endpoints.name"],
            name="fk_endpoint_changes_endpoint_endpoints",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("endpoint_changes")
    op.drop_table("endpoints")
