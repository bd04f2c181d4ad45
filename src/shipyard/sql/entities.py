"""What a SQL statement gives back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd


class QueryResult:
    """The rows of a statement (Arrow underneath) and what the statement did.

    ``statement_type`` is BigQuery's name for it (``SELECT``, ``CREATE_MODEL``, ``DROP_MODEL``,
    ``CREATE_TABLE_AS_SELECT``, …); ``job_id`` names the job that ran it; ``model`` is the model
    version a ``CREATE MODEL`` produced (``dataset.model`` and version), ``table`` the table a DDL
    or DML statement wrote.
    """

    def __init__(
        self,
        table: pa.Table,
        *,
        statement_type: str = "SELECT",
        job_id: str | None = None,
        message: str | None = None,
        model: dict[str, Any] | None = None,
        table_name: str | None = None,
    ) -> None:
        self._table = table
        self.statement_type = statement_type
        self.job_id = job_id
        self.message = message
        self.model = model
        self.table_name = table_name

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        return self._table.to_pandas()

    def to_pylist(self) -> list[dict[str, Any]]:
        return self._table.to_pylist()

    @property
    def schema(self) -> pa.Schema:
        return self._table.schema

    @property
    def num_rows(self) -> int:
        return self._table.num_rows

    @property
    def column_names(self) -> list[str]:
        return self._table.column_names

    def __len__(self) -> int:
        return self._table.num_rows

    def info(self) -> dict[str, Any]:
        """Everything but the rows, JSON-friendly (REST sends it beside the Arrow stream)."""
        return {
            "statement_type": self.statement_type,
            "job_id": self.job_id,
            "message": self.message,
            "model": self.model,
            "table": self.table_name,
            "num_rows": self.num_rows,
        }

    def __repr__(self) -> str:
        head = f"<QueryResult {self.statement_type}: {self.num_rows} rows"
        if self.message:
            head += f" — {self.message}"
        return head + ">\n" + self._table.slice(0, 10).to_string(preview_cols=12)

    def _repr_html_(self) -> str:
        frame = self._table.slice(0, 50).to_pandas()
        caption = f"{self.statement_type}: {self.num_rows} rows"
        return f"<div><small>{caption}</small>{frame.to_html(index=False, max_cols=30)}</div>"
