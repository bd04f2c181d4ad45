"""The DuckDB warehouse: BigQuery-style names, loading, Arrow in and out."""

from shipyard.warehouse.duck import TableStats, Warehouse, duckdb_error, fetch_arrow
from shipyard.warehouse.loading import FILE_FORMATS, WRITE_MODES, load
from shipyard.warehouse.names import QualifiedName

__all__ = [
    "FILE_FORMATS",
    "WRITE_MODES",
    "QualifiedName",
    "TableStats",
    "Warehouse",
    "duckdb_error",
    "fetch_arrow",
    "load",
]
