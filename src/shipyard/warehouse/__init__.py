"""The DuckDB warehouse: BigQuery-style names, loading, Arrow in and out.

:class:`QualifiedName` is light; DuckDB and the loaders are imported on first use, so code that
only handles names (the SDK's fluent API, the remote client) never loads DuckDB or pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.warehouse.names import QualifiedName, quote_identifier, quote_literal

if TYPE_CHECKING:
    from shipyard.warehouse.duck import TableStats, Warehouse, duckdb_error, fetch_arrow
    from shipyard.warehouse.loading import FILE_FORMATS, WRITE_MODES, load

_LAZY = {
    "TableStats": "shipyard.warehouse.duck",
    "Warehouse": "shipyard.warehouse.duck",
    "duckdb_error": "shipyard.warehouse.duck",
    "fetch_arrow": "shipyard.warehouse.duck",
    "FILE_FORMATS": "shipyard.warehouse.loading",
    "WRITE_MODES": "shipyard.warehouse.loading",
    "load": "shipyard.warehouse.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipyard.warehouse' has no attribute {name!r}")


__all__ = [
    "FILE_FORMATS",
    "WRITE_MODES",
    "QualifiedName",
    "TableStats",
    "Warehouse",
    "duckdb_error",
    "fetch_arrow",
    "load",
    "quote_identifier",
    "quote_literal",
]
