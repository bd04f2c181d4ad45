"""Alembic environment: runs on the connection handed over in ``config.attributes``.

Without one (Alembic's own command line with a ``sqlalchemy.url``), it opens its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from shipyard.store.schema import metadata


def _run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite has no ALTER for most changes: batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite runs DDL inside a transaction just fine (the store issues BEGIN itself), so a
        # failed migration leaves nothing half-done.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        _run_offline()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the migrations")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as own:
            _run_online(own)
    finally:
        engine.dispose()


_main()
