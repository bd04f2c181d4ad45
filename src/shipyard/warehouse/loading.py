"""Loading data into the warehouse from files, pandas and Arrow.

Files are read by DuckDB's own readers (CSV, Parquet, JSON/JSONL), Excel through openpyxl. Each
load is one DuckDB transaction: a file that cannot be parsed leaves the warehouse as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from shipyard.errors import AlreadyExists, InvalidArgument, NotFound
from shipyard.warehouse.duck import Warehouse, _exists
from shipyard.warehouse.names import QualifiedName

FILE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".xlsx": "excel",
    ".xlsm": "excel",
}
_READERS = {
    "csv": "read_csv(?, auto_detect = true)",
    "parquet": "read_parquet(?)",
    "json": "read_json_auto(?)",
}
WRITE_MODES = ("replace", "append", "fail")


def detect_format(path: Path, format: str | None) -> str:
    if format:
        fmt = format.lower()
        if fmt in ("jsonl", "ndjson"):
            fmt = "json"
        if fmt not in ("csv", "parquet", "json", "excel"):
            raise InvalidArgument(
                f"unknown format {format!r}: expected csv, parquet, json, jsonl or excel"
            )
        return fmt
    fmt_or_none = FILE_FORMATS.get(path.suffix.lower())
    if fmt_or_none is None:
        raise InvalidArgument(
            f"cannot tell the format of {path.name!r} from its extension; pass format= "
            f"(one of csv, parquet, json, jsonl, excel)"
        )
    return fmt_or_none


def to_arrow(source: Any) -> pa.Table | None:
    """Arrow for in-memory sources (pandas, Arrow, record batches); None for a path."""
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if isinstance(source, list) and all(isinstance(row, dict) for row in source):
        if not source:
            raise InvalidArgument("cannot load an empty list of rows: the columns are unknown")
        try:
            return pa.Table.from_pylist(source)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidArgument(f"cannot make a table of these rows: {exc}") from exc
    if isinstance(source, pd.DataFrame):
        # Non-default indexes carry data (e.g. after set_index); keep them as columns.
        keep_index = not isinstance(source.index, pd.RangeIndex)
        try:
            return pa.Table.from_pandas(source, preserve_index=keep_index)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidArgument(f"cannot make a table of this DataFrame: {exc}") from exc
    return None


def rows_to_arrow(data: Any, *, purpose: str = "predict on") -> pa.Table:
    """Arrow from Arrow, pandas or a list of dicts; anything else is an InvalidArgument."""
    table = to_arrow(data)
    if table is None:
        raise InvalidArgument(
            f"cannot {purpose} a {type(data).__name__}: expected Arrow, pandas or a list of dicts"
        )
    return table


def load(
    warehouse: Warehouse,
    name: QualifiedName,
    source: Any,
    *,
    mode: str = "replace",
    format: str | None = None,
) -> dict[str, Any]:
    """Load ``source`` into table ``name``; returns a description of the source for lineage."""
    if mode not in WRITE_MODES:
        raise InvalidArgument(f"invalid mode {mode!r}: expected one of {', '.join(WRITE_MODES)}")
    data = to_arrow(source)
    if data is not None:
        warehouse.write_arrow(name, data, mode=mode)
        return {"kind": type(source).__module__.split(".")[0], "rows": data.num_rows}

    if not isinstance(source, str | Path):
        raise InvalidArgument(
            f"cannot load a {type(source).__name__}: expected a file path, a pandas DataFrame, "
            "an Arrow table or a list of dicts"
        )
    path = Path(source).expanduser()
    if not path.is_file():
        raise NotFound(f"file {str(path)!r} not found")
    fmt = detect_format(path, format)
    with warehouse.transaction() as cur:
        if mode == "fail" and _exists(cur, name):
            raise AlreadyExists(f"table {name} already exists", resource=f"tables/{name}")
        if fmt == "excel":
            warehouse.write_arrow(name, _read_excel(path), mode=mode, cur=cur)
        else:
            _load_with_duckdb(warehouse, cur, name, path, fmt, mode)
    return {"kind": "file", "uri": str(path.resolve()), "format": fmt}


def _load_with_duckdb(
    warehouse: Warehouse,
    cur: duckdb.DuckDBPyConnection,
    name: QualifiedName,
    path: Path,
    fmt: str,
    mode: str,
) -> None:
    warehouse.ensure_dataset(cur, name.dataset)
    reader = _READERS[fmt]
    try:
        if mode == "append" and _exists(cur, name):
            cur.execute(f"INSERT INTO {name.sql} BY NAME SELECT * FROM {reader}", [str(path)])
        else:
            cur.execute(
                f"CREATE OR REPLACE TABLE {name.sql} AS SELECT * FROM {reader}", [str(path)]
            )
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidArgument(
            f"could not load {path.name!r} as {fmt}: {first}", file=str(path), format=fmt
        ) from exc


def _read_excel(path: Path) -> pa.Table:
    try:
        frame = pd.read_excel(path, engine="openpyxl")
    except Exception as exc:  # openpyxl raises a zoo of types for broken workbooks
        raise InvalidArgument(
            f"could not load {path.name!r} as excel: {exc}", file=str(path), format="excel"
        ) from exc
    return pa.Table.from_pandas(frame, preserve_index=False)
