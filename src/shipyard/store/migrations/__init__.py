"""Alembic migrations of the metadata schema, run from code: no ``alembic.ini`` on disk.

:class:`~shipyard.store.MetadataStore` calls :func:`upgrade` on open. To work on migrations by
hand, build the configuration here and use Alembic's commands::

    from alembic import command
    from shipyard.store.migrations import alembic_config

    command.revision(alembic_config(url="sqlite:///dev.db"), "add runs", autogenerate=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

__all__ = ["MIGRATIONS_DIR", "alembic_config", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """An Alembic configuration for this folder, bound to ``connection`` or to ``url``."""
    from alembic.config import Config  # lazy: alembic is only needed when migrating

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%': escape it so URL-encoded passwords survive.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the database behind ``connection`` to ``revision`` (idempotent).

    The caller serialises concurrent upgrades (a file lock or an advisory lock).
    """
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def head_revision() -> str:
    """The newest revision id in ``versions/``."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head
