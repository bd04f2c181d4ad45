"""Model expiration: ``models.expiration_time`` (CREATE/ALTER MODEL … expiration_timestamp).

A nullable column (NULL: the model never expires). Written by hand to match
``shipyard/store/schema.py``; a test compares a freshly migrated database against it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("models", sa.Column("expiration_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:  # SQLite rebuilds the table
        batch.drop_column("expiration_time")
