"""TableService: load, list, describe, preview and drop warehouse tables, recording versions."""

from __future__ import annotations

import base64
import builtins
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import func, insert, select

from shipyard.context import Context
from shipyard.data.entities import Column, TableInfo, TableVersion
from shipyard.errors import InvalidArgument
from shipyard.metadata.service import MetadataService, table_version_uri
from shipyard.store import Page
from shipyard.store.schema import table_versions, utcnow
from shipyard.warehouse import QualifiedName, load

MAX_PREVIEW_ROWS = 10_000


class TableService:
    def __init__(self, ctx: Context, metadata: MetadataService | None = None) -> None:
        self.ctx = ctx
        self.metadata = metadata
        self.warehouse = ctx.warehouse
        # The last version seen per table while no write went through this process since.
        # This process owns the warehouse, so every write passes through Shipyard and calls
        # forget() or record_version(); reads can then skip re-hashing the whole table.
        self._seen: dict[str, TableVersion] = {}
        self._seen_lock = threading.Lock()

    # -- writing --------------------------------------------------------------------------

    def load(
        self,
        name: str,
        source: Any,
        *,
        mode: str = "replace",
        format: str | None = None,
        source_name: str | None = None,
    ) -> TableInfo:
        """Load a file path (CSV, Parquet, JSON/JSONL, Excel), a DataFrame or an Arrow table.

        ``source_name`` is what lineage records as the source's URI when the file is a stand-in
        (e.g. the server's temporary copy of an upload).
        """
        qname = QualifiedName.parse(name)
        described = load(self.warehouse, qname, source, mode=mode, format=format)
        if source_name is not None:
            described["uri"] = source_name
        version = self.record_version(qname, {**described, "mode": mode})
        if self.metadata is not None:
            uri = described.get("uri")
            if isinstance(uri, str) and uri.startswith("/"):
                uri = Path(uri).as_uri()
            self.metadata.record_execution(
                "load",
                f"load {qname}",
                {"mode": mode, "format": described.get("format"), "source": uri},
                inputs=[uri] if isinstance(uri, str) and uri else [],
                outputs=[table_version_uri(str(qname), version.version)],
                artifact_properties={
                    table_version_uri(str(qname), version.version): {
                        "fingerprint": version.fingerprint
                    }
                },
            )
        return self.get(str(qname))

    def observed_version(self, qname: QualifiedName) -> TableVersion:
        """The version of ``qname`` as it is now, for lineage of a read (e.g. a training query).

        Hashes the table only when Shipyard may have written it since it last looked.
        """
        with self._seen_lock:
            seen = self._seen.get(str(qname))
        return seen or self.record_version(qname, {"kind": "observed"})

    def known_version(self, qname: QualifiedName) -> TableVersion | None:
        """The version :meth:`observed_version` would give without hashing, if there is one
        (Shipyard has looked at ``qname`` and not written it since); None otherwise."""
        with self._seen_lock:
            return self._seen.get(str(qname))

    def forget(self, qname: QualifiedName | None = None) -> None:
        """Drop what is known of one table (or all): a write may have changed it."""
        with self._seen_lock:
            if qname is None:
                self._seen.clear()
            else:
                self._seen.pop(str(qname), None)

    def record_version(self, qname: QualifiedName, source: dict[str, Any] | None) -> TableVersion:
        """Record a write of ``qname``: a new version unless the content did not change."""
        version = self._record_version(qname, source)
        with self._seen_lock:
            self._seen[str(qname)] = version
        return version

    def _record_version(self, qname: QualifiedName, source: dict[str, Any] | None) -> TableVersion:
        self.forget(qname)
        stats = self.warehouse.stats(qname)
        with self.ctx.metadata.transaction() as conn:
            last = _latest_row(conn, qname)
            if last is not None and last["fingerprint"] == stats.fingerprint:
                return _version(last)
            version = (last["version"] if last else 0) + 1
            row = {
                "table_name": str(qname),
                "version": version,
                "fingerprint": stats.fingerprint,
                "num_rows": stats.num_rows,
                "schema": stats.columns,
                "source": source,
                "created_at": utcnow(),
            }
            conn.execute(insert(table_versions).values(**row))
        return _version(row)

    def drop(self, name: str) -> None:
        qname = QualifiedName.parse(name)
        self.forget(qname)
        self.warehouse.drop(qname)

    # -- reading --------------------------------------------------------------------------

    def get(self, name: str) -> TableInfo:
        qname = QualifiedName.parse(name)
        self.warehouse.require(qname)
        columns = self.warehouse.columns(qname)
        num_rows = self.warehouse.query(f"SELECT count(*) AS n FROM {qname.sql}")["n"][0].as_py()
        latest = self.latest_version(qname)
        return TableInfo(
            name=str(qname),
            dataset=qname.dataset,
            num_rows=num_rows,
            columns=[Column(**c) for c in columns],
            version=latest.version if latest else None,
            fingerprint=latest.fingerprint if latest else None,
            updated_at=latest.created_at if latest else None,
        )

    def latest_version(self, qname: QualifiedName) -> TableVersion | None:
        with self.ctx.metadata.connect() as conn:
            row = _latest_row(conn, qname)
        return _version(row) if row else None

    def versions(self, name: str) -> list[TableVersion]:
        qname = QualifiedName.parse(name)
        with self.ctx.metadata.connect() as conn:
            rows = conn.execute(
                select(table_versions)
                .where(table_versions.c.table_name == str(qname))
                .order_by(table_versions.c.version)
            ).mappings()
            return [_version(r) for r in rows]

    def list(
        self, *, dataset: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[TableInfo]:
        """Tables sorted by name; row counts are DuckDB's estimates (exact in ``get``)."""
        if not 1 <= page_size <= 1000:
            raise InvalidArgument(f"page_size must be between 1 and 1000, got {page_size}")
        after = _decode_token(page_token) if page_token else None
        tables = self.warehouse.list_tables(dataset.lower() if dataset else None)
        if after is not None:
            tables = [t for t in tables if str(t[0]) > after]
        page, rest = tables[:page_size], tables[page_size:]
        versions = self._latest_versions([str(q) for q, _ in page])
        items = []
        for qname, rows in page:
            v = versions.get(str(qname))
            items.append(
                TableInfo(
                    name=str(qname),
                    dataset=qname.dataset,
                    num_rows=v.num_rows if v else rows,
                    version=v.version if v else None,
                    fingerprint=v.fingerprint if v else None,
                    updated_at=v.created_at if v else None,
                )
            )
        token = _encode_token(str(page[-1][0])) if rest and page else None
        return Page(items=items, next_page_token=token)

    def preview(self, name: str, *, limit: int = 100) -> pa.Table:
        if not 0 <= limit <= MAX_PREVIEW_ROWS:
            raise InvalidArgument(f"limit must be between 0 and {MAX_PREVIEW_ROWS}, got {limit}")
        qname = QualifiedName.parse(name)
        self.warehouse.require(qname)
        return self.warehouse.query(f"SELECT * FROM {qname.sql} LIMIT {int(limit)}")

    def _latest_versions(self, names: builtins.list[str]) -> dict[str, TableVersion]:
        if not names:
            return {}
        latest = (
            select(table_versions.c.table_name, func.max(table_versions.c.version).label("v"))
            .where(table_versions.c.table_name.in_(names))
            .group_by(table_versions.c.table_name)
            .subquery()
        )
        stmt = select(table_versions).join(
            latest,
            (table_versions.c.table_name == latest.c.table_name)
            & (table_versions.c.version == latest.c.v),
        )
        with self.ctx.metadata.connect() as conn:
            return {r["table_name"]: _version(r) for r in conn.execute(stmt).mappings()}


def _latest_row(conn: Any, qname: QualifiedName) -> Any:
    return (
        conn.execute(
            select(table_versions)
            .where(table_versions.c.table_name == str(qname))
            .order_by(table_versions.c.version.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )


def _version(row: Any) -> TableVersion:
    return TableVersion(
        table=row["table_name"],
        version=row["version"],
        fingerprint=row["fingerprint"],
        num_rows=row["num_rows"],
        created_at=row["created_at"],
        source=row["source"],
    )


def _encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("invalid page token") from None
