"""Scalar functions Shipyard adds to DuckDB, on every connection that runs user or model SQL.

* ``farm_fingerprint(x)``: BigQuery's ``FARM_FINGERPRINT`` — FarmHash's ``Fingerprint64`` of a
  STRING (its UTF-8 bytes) or BYTES value, as a signed INT64 (``NULL`` for ``NULL``). Unlike
  DuckDB's ``hash()``, whose values may change between DuckDB releases, its values are fixed by
  the FarmHash library, so SQL stored in a model (``ML.HASH_BUCKETIZE`` in a ``TRANSFORM``)
  buckets the same way under any DuckDB version, and the same way BigQuery does.

:func:`connect` opens a DuckDB connection with them; :func:`register_functions` adds them to a
connection opened elsewhere (the warehouse's). A connection's cursors see its functions.

The functions are Python (vectorised over Arrow, 2,048 rows per call); a connection that still
holds one when the interpreter exits makes DuckDB's bindings report "leaked" objects, so they
are taken off every still-open connection at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

__all__ = ["FUNCTIONS", "connect", "farm_fingerprint", "register_function", "register_functions"]

FUNCTIONS = ("farm_fingerprint",)
# Functions added by the layers above (register_function), taken off at exit as FUNCTIONS are.
_added: set[str] = set()

_STRINGS = (pa.string(), pa.large_string(), pa.string_view())
_BYTES = (pa.binary(), pa.large_binary(), pa.binary_view())

_registered: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
_lock = threading.Lock()


def farm_fingerprint(*columns: pa.Array | pa.ChunkedArray) -> pa.Array:
    """FarmHash ``Fingerprint64`` of each STRING (UTF-8) or BYTES value, as a signed INT64."""
    if len(columns) != 1:
        raise TypeError(f"FARM_FINGERPRINT takes 1 argument, got {len(columns)}")
    values = columns[0]
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count == len(values):  # all NULL (also NULL's own type)
        return pa.nulls(len(values), pa.int64())
    if values.type not in _STRINGS and values.type not in _BYTES:
        raise TypeError(
            f"FARM_FINGERPRINT takes a STRING or BYTES value, got {values.type}; "
            "cast it first: FARM_FINGERPRINT(CAST(x AS STRING))"
        )
    from farmhash import fingerprint64  # pyfarmhash: a C extension, imported on first use

    # int64 values behind the input's own validity bitmap (and offset); pa.array(ndarray) would
    # import pandas on the first call
    offset = values.offset
    hashes = np.zeros(offset + len(values), dtype=np.uint64)
    strings = values.to_pylist()
    if values.null_count == 0:
        hashes[offset:] = np.fromiter(map(fingerprint64, strings), np.uint64, len(strings))
    else:
        hashes[offset:] = np.fromiter(
            (0 if v is None else fingerprint64(v) for v in strings), np.uint64, len(strings)
        )
    validity = values.buffers()[0] if values.null_count else None
    return pa.Array.from_buffers(
        pa.int64(), len(values), [validity, pa.py_buffer(hashes)], values.null_count, offset
    )


def register_functions(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Add Shipyard's functions to ``con`` (and so to its cursors); returns ``con``."""
    # Arrow batches in and out; NULLs handled by the function; the same value for the same input
    # (strings: DuckDB's enum spellings differ between releases)
    udf: dict[str, Any] = {"type": "arrow", "null_handling": "special", "side_effects": False}
    # parameters None: any argument types (STRING and BYTES; the function refuses others)
    _create(con, "farm_fingerprint", farm_fingerprint, None, "BIGINT", udf)
    return con


def register_function(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Any,
    parameters: list[str] | None,
    return_type: str,
    **options: Any,
) -> None:
    """Add one Python function of a layer above to ``con`` (so to its cursors): ``parameters``
    and ``return_type`` are DuckDB type names, ``options`` those of ``create_function``
    (``type``, ``null_handling``, ``side_effects`` …). A function of that name already there
    (a second connection to the same database in this process) is kept."""
    params = None if parameters is None else [duckdb.sqltype(t) for t in parameters]
    _create(con, name, function, params, duckdb.sqltype(return_type), options)
    with _lock:
        _added.add(name)


def _create(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Any,
    parameters: Any,
    return_type: Any,
    options: dict[str, Any],
) -> None:
    try:
        con.create_function(name, function, parameters, return_type, **options)
    except (duckdb.CatalogException, duckdb.NotImplementedException) as exc:
        # Connections to one database file in one process share its catalog: a second
        # connection (a second workspace on the same home) finds the function there already;
        # the same connection says "already created".
        if "already exists" not in str(exc) and "already created" not in str(exc):
            raise
    with _lock:
        _registered.add(con)


def connect(
    database: str = ":memory:", config: dict[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` with Shipyard's functions registered; close it when done."""
    con = duckdb.connect(database, config=config or {})
    try:
        return register_functions(con)
    except BaseException:
        con.close()
        raise


@atexit.register
def _unregister_at_exit() -> None:
    with _lock:
        connections = list(_registered)
        names = (*FUNCTIONS, *sorted(_added))
    for con in connections:
        for name in names:
            with contextlib.suppress(Exception):  # closed already, or removed
                con.remove_function(name)
