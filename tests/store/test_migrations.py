"""Migrations: applied on open, idempotent, concurrent-safe, and matching schema.py exactly."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shipyard.store import MetadataStore, schema
from shipyard.store.migrations import alembic_config, head_revision


def _revision(store: MetadataStore) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _schema_diff(store: MetadataStore) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, schema.metadata))


def test_open_applies_migrations_to_head(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    try:
        assert _revision(store) == head_revision()
        tables = set(sa.inspect(store.engine).get_table_names())
        assert set(schema.metadata.tables) <= tables
    finally:
        store.dispose()


def test_migrated_database_matches_schema_exactly(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    try:
        assert _schema_diff(store) == []
    finally:
        store.dispose()


def test_reopen_is_idempotent_and_keeps_rows(metadata_url: str) -> None:
    first = MetadataStore(metadata_url)
    with first.transaction() as conn:
        conn.execute(schema.models.insert().values(name="demo.m"))
    first.dispose()

    again = MetadataStore(metadata_url)
    try:
        assert _revision(again) == head_revision()
        with again.connect() as conn:
            assert conn.scalar(sa.select(schema.models.c.name)) == "demo.m"
    finally:
        again.dispose()


def test_concurrent_opens_of_a_new_database_all_succeed(metadata_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[MetadataStore] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        try:
            barrier.wait()
            stores.append(MetadataStore(metadata_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert all(_revision(store) == head_revision() for store in stores)
    finally:
        for store in stores:
            store.dispose()


def test_downgrade_to_base_and_upgrade_again(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    try:
        with store.engine.connect() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not set(schema.metadata.tables) & set(sa.inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            command.upgrade(alembic_config(conn), "head")
        assert _schema_diff(store) == []
    finally:
        store.dispose()
