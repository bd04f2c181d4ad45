"""MetadataStore: the SQL database behind every service (SQLite embedded, PostgreSQL for teams).

SQLAlchemy Core, no ORM. Opening a store brings the database to the newest schema with Alembic.
Every list call pages through :meth:`MetadataStore.page` (keyset pagination, opaque tokens)::

    store = MetadataStore("sqlite:///tmp/demo/metadata.db")
    with store.transaction() as conn:
        conn.execute(jobs.insert(), rows)
    with store.connect() as conn:
        first = store.page(
            conn, select(jobs), order_by=[jobs.c.id], page_size=50, row_to_item=Job.from_row
        )
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import ColumnElement, Select, operators
from sqlalchemy.sql.elements import UnaryExpression

from shipyard.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable
from shipyard.store import migrations
from shipyard.store.page import Page

__all__ = ["MAX_PAGE_SIZE", "MetadataStore", "Page"]

T = TypeVar("T")

MAX_PAGE_SIZE = 1000
_VALID_URLS = "sqlite:///path/metadata.db or postgresql+psycopg://user:pw@host:port/db"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10
# pg_advisory_lock key that serialises schema upgrades ("shipyard" in ASCII, fits a bigint).
_PG_MIGRATION_LOCK = 0x7368697079617264
# Execution option read by the SQLite "begin" hook: IMMEDIATE takes the write lock up front.
_BEGIN_OPTION = "shipyard_sqlite_begin"


class MetadataStore:
    """The metadata database: an Engine, migrated to head, plus transactions, errors and paging.

    ``url`` is ``sqlite:///path/metadata.db`` (``sqlite://`` for a private in-memory database)
    or ``postgresql+psycopg://user:pw@host:port/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = _parse_url(url)
        self.dialect_name: str = self.url.drivername.partition("+")[0]
        self.engine: Engine = (
            _sqlite_engine(self.url) if self.dialect_name == "sqlite" else _pg_engine(self.url)
        )
        try:
            self._migrate()
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"MetadataStore({self.url.render_as_string(hide_password=True)!r})"

    # -- connections ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside one transaction: committed on success, rolled back on error.

        Driver errors are translated as by :meth:`translate_errors`. On SQLite the transaction
        takes the write lock when it starts (``BEGIN IMMEDIATE``), so a read-then-write cannot
        fail with "database is locked" half way; writers queue for up to 30 s instead.
        """
        with self.translate_errors(), self.engine.connect() as conn:
            conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading; anything not committed explicitly is rolled back."""
        with self.translate_errors(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def translate_errors(self, already_exists: str | None = None) -> Iterator[None]:
        """Turn driver errors raised inside the block into Shipyard errors.

        A unique or primary-key violation becomes :class:`AlreadyExists` (with the message
        ``already_exists`` when given, e.g. ``"model demo.m already exists"``); a foreign-key
        violation becomes :class:`FailedPrecondition`; a lost or refused connection, or a SQLite
        database locked past the busy timeout, becomes :class:`Unavailable`. Anything else (a bug
        in a query) propagates unchanged.
        """
        try:
            yield
        except IntegrityError as exc:
            detail = _driver_message(exc)
            if _is_foreign_key_violation(exc):
                raise FailedPrecondition(
                    f"the write refers to a row that does not exist, or removes one still "
                    f"referred to: {detail}"
                ) from exc
            if not _is_unique_violation(exc):
                raise
            raise AlreadyExists(already_exists or f"already exists: {detail}") from exc
        except DBAPIError as exc:
            if not _is_unavailable(exc):
                raise
            raise Unavailable(
                f"the metadata database at {self._where()} is unavailable: {_driver_message(exc)}"
            ) from exc

    def dispose(self) -> None:
        """Close every pooled connection; the store can still be used afterwards (reconnects)."""
        self.engine.dispose()

    # -- paging --------------------------------------------------------------------------------

    def page(
        self,
        conn: Connection,
        stmt: Select[Any],
        *,
        order_by: Sequence[ColumnElement[Any]],
        page_size: int,
        page_token: str | None = None,
        row_to_item: Callable[[Row[Any]], T],
    ) -> Page[T]:
        """One page of ``stmt`` in ``order_by`` order, resuming after ``page_token``.

        ``row_to_item`` turns each row into the item the page holds (e.g. an entity model).

        ``order_by`` lists columns that are unique together and never NULL (e.g. the primary
        key, or ``[jobs.c.created_at.desc(), jobs.c.id.desc()]`` for newest first), each
        optionally ``.asc()``/``.desc()``; they must be selected by ``stmt``. The token is
        url-safe base64 of the last row's order-by values, so a page costs one indexed query
        however deep it is. Any ORDER BY or LIMIT already on ``stmt`` is replaced.
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise InvalidArgument(f"page_size must be an integer, got {page_size!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(
                f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
            )
        keys = [_sort_key(item) for item in order_by]
        if not keys:
            raise InvalidArgument("page needs at least one order_by column")
        if page_token:
            stmt = stmt.where(_after(keys, _decode_token(page_token, keys)))
        ordering = [col.desc() if desc else col.asc() for col, desc in keys]
        stmt = stmt.order_by(None).order_by(*ordering).limit(page_size + 1)
        rows = list(conn.execute(stmt))
        token = None
        if len(rows) > page_size:
            rows = rows[:page_size]
            token = _encode_token([rows[-1]._mapping[col] for col, _ in keys])
        return Page(items=[row_to_item(row) for row in rows], next_page_token=token)

    # -- opening -------------------------------------------------------------------------------

    def _where(self) -> str:
        if self.dialect_name == "sqlite":
            return self.url.database or ":memory:"
        return f"{self.url.host or 'localhost'}:{self.url.port or 5432}/{self.url.database}"

    def _migrate(self) -> None:
        """Upgrade to head, one process at a time."""
        with self.translate_errors(), self.engine.connect() as conn:
            if self.dialect_name == "postgresql":
                # A session-level lock survives the commit; Alembic then runs its own transaction.
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
                try:
                    migrations.upgrade(conn)
                finally:
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                    conn.commit()
                return
            conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            with _file_lock(_sqlite_file(self.url)):
                migrations.upgrade(conn)


# -- engines ---------------------------------------------------------------------------------


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidArgument(f"invalid metadata URL {url!r}: use {_VALID_URLS}") from exc
    # Split the name by hand: asking SQLAlchemy would import (or fail to find) the dialect.
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed
    if backend == "postgresql" and driver in ("", "psycopg"):
        # Plain postgresql:// means psycopg2 to SQLAlchemy; Shipyard ships psycopg (3).
        return parsed.set(drivername="postgresql+psycopg")
    raise InvalidArgument(
        f"unsupported metadata URL scheme {parsed.drivername!r}: use {_VALID_URLS}"
    )


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _sqlite_engine(url: URL) -> Engine:
    path = _sqlite_file(url)
    if path is None:
        # One shared connection, or every pooled connection would see its own empty database.
        engine = sa.create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url.set(database=str(path)),
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=24,
            pool_timeout=_SQLITE_BUSY_TIMEOUT_MS / 1000,
        )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (the "begin" hook below) issue BEGIN instead of pysqlite's guesswork.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        for pragma in (
            f"busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}",
            "synchronous=NORMAL",  # durable across process crashes in WAL mode; fast
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        _enable_wal(cursor)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch a database file to WAL (persistent, so usually already done).

    Switching needs a moment of exclusive access, and SQLite answers "database is locked" at once
    — without waiting out busy_timeout — when another connection is opening the same new file,
    so the switch is retried briefly.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() in ("wal", "memory"):
        return
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


def _pg_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)


@contextlib.contextmanager
def _file_lock(db_path: Path | None) -> Iterator[None]:
    """An exclusive lock on ``<db>.migrate.lock`` (POSIX); nothing for in-memory databases."""
    try:
        import fcntl
    except ImportError:  # Windows: BEGIN IMMEDIATE around the upgrade still serialises it
        fcntl = None  # type: ignore[assignment]
    if db_path is None or fcntl is None:
        yield
        return
    fd = os.open(f"{db_path}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- errors ----------------------------------------------------------------------------------


def _driver_message(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or "")


def _is_unique_violation(exc: IntegrityError) -> bool:
    message = str(exc.orig)
    return _sqlstate(exc) == "23505" or "UNIQUE constraint failed" in message


def _is_foreign_key_violation(exc: IntegrityError) -> bool:
    return _sqlstate(exc) == "23503" or "FOREIGN KEY constraint failed" in str(exc.orig)


def _is_unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    state = _sqlstate(exc)
    if state:  # 08: connection exception, 57P: server shutting down or refusing connections
        return state.startswith(("08", "57P"))
    message = str(exc.orig).lower()
    return any(
        hint in message
        for hint in ("connection", "database is locked", "unable to open database", "timeout")
    )


# -- page tokens -----------------------------------------------------------------------------


def _sort_key(item: ColumnElement[Any]) -> tuple[ColumnElement[Any], bool]:
    if isinstance(item, UnaryExpression) and item.modifier in (operators.desc_op, operators.asc_op):
        return item.element, item.modifier is operators.desc_op
    return item, False


def _after(keys: list[tuple[ColumnElement[Any], bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys``."""
    bound = [sa.literal(value, col.type) for (col, _), value in zip(keys, values, strict=True)]
    if len({desc for _, desc in keys}) == 1:
        # Row-value comparison: one range scan on a matching index (SQLite and PostgreSQL).
        left, right = sa.tuple_(*(col for col, _ in keys)), sa.tuple_(*bound)
        return left < right if keys[0][1] else left > right
    # Mixed directions: (a > x) OR (a = x AND b < y) OR ...
    clauses = []
    for i, (col, desc) in enumerate(keys):
        equal = [keys[j][0] == bound[j] for j in range(i)]
        clauses.append(sa.and_(*equal, col < bound[i] if desc else col > bound[i]))
    return sa.or_(*clauses)


def _encode_token(values: list[Any]) -> str:
    encoded = [{"dt": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(encoded, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, keys: list[tuple[ColumnElement[Any], bool]]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        encoded = json.loads(raw)
        if not isinstance(encoded, list) or len(encoded) != len(keys):
            raise ValueError("wrong shape")
        return [_decode_value(v, col) for v, (col, _) in zip(encoded, keys, strict=True)]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        # json and UnicodeDecodeError are ValueErrors; the cause stays chained for debugging.
        raise InvalidArgument("invalid page token") from exc


def _decode_value(value: Any, col: ColumnElement[Any]) -> Any:
    col_type = col.type
    if isinstance(col_type, sa.TypeDecorator):
        col_type = col_type.impl_instance
    try:
        expected: type | None = col_type.python_type
    except NotImplementedError:
        expected = None
    if isinstance(value, dict):
        value = datetime.fromisoformat(value["dt"])
        if value.tzinfo is None:
            raise ValueError("naive datetime in token")
    if expected is None or (isinstance(value, expected) and not isinstance(value, bool)):
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"token value {value!r} does not fit column {col}")
