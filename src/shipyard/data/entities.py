"""Warehouse tables as users see them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class Column(BaseModel):
    name: str
    type: str


class TableVersion(BaseModel):
    """One recorded write of a table: a counter and a content fingerprint."""

    table: str
    version: int
    fingerprint: str
    num_rows: int
    created_at: datetime
    source: dict[str, Any] | None = None


class TableInfo(BaseModel):
    """A warehouse table (or view): ``dataset.name``, its columns, size and latest version."""

    name: str
    dataset: str
    num_rows: int
    columns: list[Column] = []
    version: int | None = None
    fingerprint: str | None = None
    updated_at: datetime | None = None

    @property
    def resource(self) -> str:
        return f"tables/{self.name}"
