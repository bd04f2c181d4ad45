"""The DuckDB warehouse: ownership of the database file, tables in and Arrow out.

DuckDB lets one process open a database file for writing. The process that serves a workspace owns
it; threads share the connection through a cursor each (``con.cursor()``), which also keeps one
query's registered Arrow tables private to it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from shipyard.errors import AlreadyExists, InvalidArgument, NotFound, SQLError, Unavailable
from shipyard.warehouse.functions import register_function, register_functions
from shipyard.warehouse.names import QualifiedName

SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "main"})


@dataclass(frozen=True)
class TableStats:
    name: QualifiedName
    num_rows: int
    columns: list[dict[str, str]]  # [{"name", "type"}] in DuckDB type names
    fingerprint: str


class Warehouse:
    """One DuckDB database, owned by this process."""

    def __init__(
        self,
        path: Path | str,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self.path = str(path)
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path, config=config)
        except duckdb.IOException as exc:
            raise Unavailable(
                f"the warehouse {self.path} is owned by another process: {exc}. "
                "Connect to the server that owns this home instead.",
                path=self.path,
            ) from exc
        register_functions(self._con)  # FARM_FINGERPRINT …, seen by every cursor
        self._lock = threading.Lock()  # guards DDL that must be atomic across cursors
        self._closed = False

    # -- connections ----------------------------------------------------------------------

    def register_function(
        self,
        name: str,
        function: Any,
        parameters: list[str] | None,
        return_type: str,
        **options: Any,
    ) -> None:
        """Add a Python scalar function that every cursor sees (the layers above register
        theirs here: ML.TFDV_VALIDATE's); types are DuckDB type names, ``options`` those of
        DuckDB's ``create_function``. One already registered under ``name`` is kept."""
        if self._closed:
            raise Unavailable("the warehouse is closed")
        register_function(self._con, name, function, parameters, return_type, **options)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor private to the caller: its own transaction and registered views."""
        if self._closed:
            raise Unavailable("the warehouse is closed")
        return self._con.cursor()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one transaction: everything or nothing."""
        cur = self.cursor()
        cur.begin()
        try:
            yield cur
        except BaseException:
            cur.rollback()
            raise
        else:
            cur.commit()
        finally:
            cur.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._con.close()

    # -- queries --------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one statement and return its rows as Arrow."""
        cur = self.cursor()
        try:
            return fetch_arrow(cur, sql, params)
        finally:
            cur.close()

    # -- tables ---------------------------------------------------------------------------

    def ensure_dataset(self, cur: duckdb.DuckDBPyConnection, dataset: str) -> None:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')

    def exists(self, name: QualifiedName) -> bool:
        rows = self.query(
            "SELECT 1 FROM duckdb_tables() WHERE schema_name = ? AND table_name = ? "
            "UNION ALL SELECT 1 FROM duckdb_views() WHERE schema_name = ? AND view_name = ? "
            "AND NOT internal",
            [name.dataset, name.name, name.dataset, name.name],
        )
        return rows.num_rows > 0

    def require(self, name: QualifiedName) -> None:
        if not self.exists(name):
            raise NotFound(f"table {name} not found", resource=f"tables/{name}")

    def list_tables(self, dataset: str | None = None) -> list[tuple[QualifiedName, int]]:
        """Tables and views as (name, estimated rows), sorted by name."""
        sql = (
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() "
            "WHERE database_name = current_database() "
            "UNION ALL SELECT schema_name, view_name, NULL FROM duckdb_views() "
            "WHERE NOT internal AND database_name = current_database()"
        )
        rows = self.query(sql).to_pylist()
        out = [
            (QualifiedName(r["schema_name"], r["table_name"]), int(r["estimated_size"] or 0))
            for r in rows
            if r["schema_name"] not in SYSTEM_SCHEMAS
            and (dataset is None or r["schema_name"] == dataset)
        ]
        return sorted(out)

    def columns(self, name: QualifiedName) -> list[dict[str, str]]:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [name.dataset, name.name],
        ).to_pylist()
        if not rows:
            raise NotFound(f"table {name} not found", resource=f"tables/{name}")
        return [{"name": r["column_name"], "type": r["data_type"]} for r in rows]

    def stats(
        self, name: QualifiedName, cur: duckdb.DuckDBPyConnection | None = None
    ) -> TableStats:
        """Row count, columns and a content fingerprint (order-insensitive hash of all rows)."""
        columns = self.columns(name)
        sql = f"SELECT count(*) AS n, sum(hash(t)::HUGEINT) AS h FROM {name.sql} AS t"
        owned = cur is None
        c = cur or self.cursor()
        try:
            n, h = c.execute(sql).fetchone() or (0, 0)
        finally:
            if owned:
                c.close()
        schema_text = ",".join(f"{c['name']}:{c['type']}" for c in columns)
        fingerprint = _digest(f"{schema_text}|{n}|{h}")
        return TableStats(name=name, num_rows=int(n), columns=columns, fingerprint=fingerprint)

    def write_arrow(
        self,
        name: QualifiedName,
        data: pa.Table,
        *,
        mode: str = "replace",
        cur: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        """Create, replace or append a table from Arrow, atomically."""

        def _write(c: duckdb.DuckDBPyConnection) -> None:
            self.ensure_dataset(c, name.dataset)
            c.register("__shipyard_incoming", data)
            try:
                if mode == "append" and _exists(c, name):
                    c.execute(f"INSERT INTO {name.sql} BY NAME SELECT * FROM __shipyard_incoming")
                elif mode == "fail" and _exists(c, name):
                    raise AlreadyExists(f"table {name} already exists", resource=f"tables/{name}")
                else:
                    c.execute(
                        f"CREATE OR REPLACE TABLE {name.sql} AS SELECT * FROM __shipyard_incoming"
                    )
            finally:
                c.unregister("__shipyard_incoming")

        if mode not in ("replace", "append", "fail"):
            raise InvalidArgument(f"invalid write mode {mode!r}: expected replace, append or fail")
        if cur is not None:
            _write(cur)
        else:
            with self.transaction() as c:
                _write(c)

    def drop(self, name: QualifiedName) -> None:
        self.require(name)
        with self.transaction() as c:
            kind = "VIEW" if _is_view(c, name) else "TABLE"
            c.execute(f"DROP {kind} {name.sql}")


def _exists(cur: duckdb.DuckDBPyConnection, name: QualifiedName) -> bool:
    row = cur.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [name.dataset, name.name],
    ).fetchone()
    return bool(row and row[0])


def _is_view(cur: duckdb.DuckDBPyConnection, name: QualifiedName) -> bool:
    row = cur.execute(
        "SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name = ?",
        [name.dataset, name.name],
    ).fetchone()
    return bool(row and row[0])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")


def _qualify(name: str, sql: str | None) -> str:
    """``dataset.name`` as the statement wrote it (DuckDB's message gives the bare name)."""
    if sql:
        found = re.search(rf'([A-Za-z_][\w]*)"?\s*\.\s*"?{re.escape(name)}\b', sql)
        if found:
            return f"{found.group(1)}.{name}"
    return name


def fetch_arrow(
    cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> pa.Table:
    """Execute and drain one statement into Arrow; DuckDB errors become SQLError."""
    try:
        # The relation API hands Arrow over without the extra copy a DB-API result makes.
        relation = cur.sql(sql, params=params) if params is not None else cur.sql(sql)
        if relation is None:
            return pa.table({})
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        raise duckdb_error(exc, sql) from exc


def duckdb_error(exc: duckdb.Error, sql: str | None = None) -> SQLError | NotFound:
    """Turn a DuckDB error into a Shipyard error with the message DuckDB gave."""
    message = str(exc).strip()
    if isinstance(exc, duckdb.CatalogException) and "does not exist" in message:
        missing = _MISSING_TABLE.search(message)
        if missing:
            name = _qualify(missing.group(1), sql)
            return NotFound(f"table {name} not found", resource=f"tables/{name}")
        return NotFound(message.splitlines()[0])
    return SQLError(message.splitlines()[0], sql=sql, detail=message)
