"""MetadataStore contract: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shipyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from shipyard.store import MetadataStore, Page
from shipyard.store.schema import job_logs, jobs, model_versions, models

N_JOBS = 2345
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    opened = MetadataStore(metadata_url)
    yield opened
    opened.dispose()


def _job(i: int, **overrides: Any) -> dict[str, Any]:
    row = {
        "id": f"job-{i:05d}",
        "kind": "demo",
        "state": "FAILED" if i % 3 == 0 else "SUCCEEDED",
        "params": {"i": i},
        # Ten jobs share each timestamp, so the id has to break ties.
        "created_at": BASE_TIME + timedelta(seconds=i // 10, microseconds=7),
    }
    return row | overrides


# -- opening ----------------------------------------------------------------------------------


def test_dialect_name_matches_url(store: MetadataStore, metadata_url: str) -> None:
    assert store.dialect_name == metadata_url.split(":")[0].split("+")[0]
    assert isinstance(store.engine, sa.Engine)


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "duckdb:///x.db", "sqlite+aiosqlite:///x.db", "postgresql+asyncpg://h/d"],
)
def test_unsupported_url_scheme_is_invalid_argument(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        MetadataStore(url)
    message = str(info.value)
    assert url.split(":")[0] in message
    assert "sqlite:///" in message and "postgresql+psycopg://" in message


def test_malformed_url_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="invalid metadata URL"):
        MetadataStore("not a url")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql"])
def test_unreachable_postgres_is_unavailable_quickly(scheme: str) -> None:
    pytest.importorskip("psycopg")
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        MetadataStore(f"{scheme}://postgres:secret@127.0.0.1:{port}/shipyard?connect_timeout=3")
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}/shipyard" in str(info.value)
    assert "secret" not in str(info.value)


def test_sqlite_creates_folder_and_sets_pragmas(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'a' / 'b' / 'metadata.db'}")
    try:
        assert (tmp_path / "a" / "b" / "metadata.db").is_file()
        with store.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        store.dispose()


def test_sqlite_in_memory_is_shared_by_its_connections() -> None:
    store = MetadataStore("sqlite://")
    try:
        with store.transaction() as conn:
            conn.execute(models.insert().values(name="demo.m"))
        with store.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(models)) == 1
    finally:
        store.dispose()


# -- transactions and errors ------------------------------------------------------------------


def _count(store: MetadataStore, table: sa.Table) -> int:
    with store.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def test_transaction_commits(store: MetadataStore) -> None:
    with store.transaction() as conn:
        conn.execute(jobs.insert(), [_job(i) for i in range(3)])
    assert _count(store, jobs) == 3


def test_failed_multi_row_write_leaves_nothing(store: MetadataStore) -> None:
    with pytest.raises(AlreadyExists), store.transaction() as conn:
        conn.execute(jobs.insert(), [_job(i) for i in range(5)])
        conn.execute(job_logs.insert().values(job_id="job-00000", seq=1, line="hi"))
        conn.execute(jobs.insert().values(_job(2)))  # duplicate key half way
    assert _count(store, jobs) == 0
    assert _count(store, job_logs) == 0


def test_any_exception_rolls_back(store: MetadataStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as conn:
        conn.execute(jobs.insert(), [_job(i) for i in range(5)])
        raise RuntimeError("boom")
    assert _count(store, jobs) == 0


def test_translate_errors_names_the_object(store: MetadataStore) -> None:
    with store.transaction() as conn:
        conn.execute(models.insert().values(name="demo.m"))
    with pytest.raises(AlreadyExists, match=r"^model demo\.m already exists$") as info:  # noqa: SIM117
        with store.transaction() as conn:
            with store.translate_errors(already_exists="model demo.m already exists"):
                conn.execute(models.insert().values(name="demo.m"))
    assert isinstance(info.value.__cause__, sa.exc.IntegrityError)
    assert _count(store, models) == 1


def test_foreign_key_violation_is_failed_precondition(store: MetadataStore) -> None:
    row = {"model_type": "t", "flavor": "f", "manifest_digest": "0" * 64, "manifest": {}}
    with pytest.raises(FailedPrecondition), store.transaction() as conn:
        conn.execute(model_versions.insert().values(model_name="nope", version=1, source={}, **row))


def test_other_errors_are_not_translated(store: MetadataStore) -> None:
    with pytest.raises(sa.exc.DBAPIError), store.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))


# -- paging -----------------------------------------------------------------------------------


@pytest.fixture
def many_jobs(store: MetadataStore) -> list[dict[str, Any]]:
    rows = [_job(i) for i in range(N_JOBS)]
    with store.transaction() as conn:
        conn.execute(jobs.insert(), rows)
    return rows


def _all_pages(
    store: MetadataStore, order_by: list[Any], page_size: int, stmt: sa.Select[Any] | None = None
) -> tuple[list[str], int]:
    ids: list[str] = []
    token: str | None = None
    pages = 0
    with store.connect() as conn:
        while True:
            page = store.page(
                conn,
                stmt if stmt is not None else sa.select(jobs.c.id, jobs.c.created_at),
                order_by=order_by,
                page_size=page_size,
                page_token=token,
                row_to_item=_id,
            )
            pages += 1
            assert len(page.items) <= page_size
            ids += page.items
            token = page.next_page_token
            if token is None:
                return ids, pages
            assert len(page.items) == page_size


def _expected(rows: list[dict[str, Any]], key: Any, reverse: bool = False) -> list[str]:
    return [row["id"] for row in sorted(rows, key=key, reverse=reverse)]


ORDERS: dict[str, tuple[list[Any], Any, bool]] = {
    "id asc": ([jobs.c.id], lambda r: r["id"], False),
    "newest first": (
        [jobs.c.created_at.desc(), jobs.c.id.desc()],
        lambda r: (r["created_at"], r["id"]),
        True,
    ),
    "oldest first": (
        [jobs.c.created_at.asc(), jobs.c.id.asc()],
        lambda r: (r["created_at"], r["id"]),
        False,
    ),
}


@pytest.mark.parametrize(
    ("order", "page_size"),
    [(order, size) for order in ("id asc", "newest first") for size in (1, 7, 1000)]
    + [("oldest first", 7)],
)
def test_paging_visits_every_row_once_in_order(
    store: MetadataStore, many_jobs: list[dict[str, Any]], order: str, page_size: int
) -> None:
    order_by, key, reverse = ORDERS[order]
    ids, pages = _all_pages(store, order_by, page_size)
    assert ids == _expected(many_jobs, key, reverse)
    assert pages == -(-N_JOBS // page_size)


def test_paging_mixed_directions(store: MetadataStore, many_jobs: list[dict[str, Any]]) -> None:
    ids, _ = _all_pages(store, [jobs.c.created_at.desc(), jobs.c.id.asc()], 7)
    by_time_desc = sorted(many_jobs, key=lambda r: r["id"])
    by_time_desc.sort(key=lambda r: r["created_at"], reverse=True)  # stable: id asc within ties
    assert ids == [r["id"] for r in by_time_desc]


def test_paging_keeps_filters(store: MetadataStore, many_jobs: list[dict[str, Any]]) -> None:
    failed = sa.select(jobs.c.id, jobs.c.created_at).where(jobs.c.state == "FAILED")
    ids, _ = _all_pages(store, [jobs.c.id.desc()], 100, failed)
    assert ids == [r["id"] for r in reversed(many_jobs) if r["state"] == "FAILED"]


def test_exact_last_page_has_no_token(store: MetadataStore) -> None:
    with store.transaction() as conn:
        conn.execute(jobs.insert(), [_job(i) for i in range(4)])
    with store.connect() as conn:

        def page_of(stmt: sa.Select[Any], token: str | None = None) -> Page[str]:
            return store.page(
                conn, stmt, order_by=[jobs.c.id], page_size=2, page_token=token, row_to_item=_id
            )

        first = page_of(sa.select(jobs))
        assert first.items == ["job-00000", "job-00001"] and first.next_page_token
        last = page_of(sa.select(jobs), first.next_page_token)
        assert last.items == ["job-00002", "job-00003"]
        assert last.next_page_token is None
        empty = page_of(sa.select(jobs).where(jobs.c.id == "x"))
        assert empty.items == [] and empty.next_page_token is None


def _id(row: sa.Row[Any]) -> str:
    return str(row.id)


def _token(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


BAD_TOKENS = [
    "!!!not base64!!!",
    "bm90IGpzb24",  # "not json"
    _token({"a": 1}),
    _token(["job-1"]),  # one value for two columns
    _token([12, "job-1"]),  # a number where a timestamp belongs
    _token([{"dt": "yesterday"}, "job-1"]),
    _token([{"dt": "2025-01-01T00:00:00"}, "job-1"]),  # naive
    _token([{"dt": "2025-01-01T00:00:00+00:00"}, 5]),
]


def test_bad_page_tokens_are_invalid_argument(store: MetadataStore) -> None:
    order_by = [jobs.c.created_at.desc(), jobs.c.id.desc()]
    with store.connect() as conn:
        for token in BAD_TOKENS:
            with pytest.raises(InvalidArgument, match="invalid page token"):
                store.page(
                    conn,
                    sa.select(jobs),
                    order_by=order_by,
                    page_size=10,
                    page_token=token,
                    row_to_item=_id,
                )
        good = _token([{"dt": "2025-01-01T00:00:00+00:00"}, "job-1"])
        page = store.page(
            conn, sa.select(jobs), order_by=order_by, page_size=10, page_token=good, row_to_item=_id
        )
        assert page.items == []


def test_bad_page_sizes_are_invalid_argument(store: MetadataStore) -> None:
    with store.connect() as conn:
        bad_sizes: list[Any] = [0, -1, 1001, True, "10", 2.5, None]
        for page_size in bad_sizes:
            with pytest.raises(InvalidArgument, match="page_size"):
                store.page(
                    conn,
                    sa.select(jobs),
                    order_by=[jobs.c.id],
                    page_size=page_size,
                    row_to_item=_id,
                )


# -- SQLite concurrency -----------------------------------------------------------------------


def test_sqlite_concurrent_read_then_write_transactions(tmp_path: Path) -> None:
    """Writers queue for the lock instead of failing with 'database is locked'."""
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    with store.transaction() as conn:
        conn.execute(jobs.insert().values(_job(0)))
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def append_logs() -> None:
        try:
            barrier.wait()
            for _ in range(40):
                with store.transaction() as conn:
                    last = conn.scalar(sa.select(sa.func.max(job_logs.c.seq))) or 0
                    conn.execute(
                        job_logs.insert().values(job_id="job-00000", seq=last + 1, line="x")
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append_logs) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with store.connect() as conn:
            seqs = conn.scalars(sa.select(job_logs.c.seq).order_by(job_logs.c.seq)).all()
        assert seqs == list(range(1, 241))
    finally:
        store.dispose()
