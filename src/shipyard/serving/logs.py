"""Request logs of online endpoints: Parquet files, written off the hot path, read as SQL views.

Every prediction request an endpoint serves (or a deterministic sample of them) becomes one row per
instance in ``<root>/endpoint_logs/<endpoint>/part-<utc time>-<pid>-<seq>.parquet``. The serving
thread appends a tuple to an in-memory deque (:meth:`RequestLog.record`) and does no encoding
when it hands over Arrow tables (the instances as the model reads them, the predictions as it
returned them): a daemon thread turns the buffer into a Parquet file every ``flush_interval_s``
seconds (or sooner when ``max_rows`` are waiting), and writes the tables' rows as JSON with
DuckDB's ``to_json``, in C++ with the GIL released, so that logging costs the serving thread
almost nothing. Instances and predictions given as Python objects are encoded at record time
(orjson), never in the flush: a flush that encoded 2,600 requests at once held the GIL long
enough to put 9 ms on a one-row request's p99. Files are written under a temporary name and
renamed, so readers never see half a file and several worker processes can write the same
folder.

**Crash semantics.** A process that exits normally flushes what it holds (``close()`` runs at
exit). A process that is killed loses the rows recorded since its last flush — at most the last
``flush_interval_s`` seconds of traffic — and nothing else: every renamed file is complete.

Ground truth arrives later through :func:`record_feedback` and is stored beside the logs in
``<root>/endpoint_logs/<endpoint>/feedback/``. :func:`register_log_tables` makes both readable in
the warehouse as ``endpoint_logs.<table>`` and ``endpoint_logs.<table>_feedback``, where
``<table>`` is the endpoint name in lower case with ``-`` replaced by ``_``
(:func:`log_table_name`), so that SQL can name it without quotes.

Inputs and outputs are stored as JSON text, not Parquet structs: the deployments of one endpoint
may serve different models whose inputs and outputs differ in columns and types, and a struct
column would give every file its own schema (DuckDB's ``union_by_name`` cannot reconcile the same
field with two types). JSON stays one stable ``VARCHAR`` column that DuckDB queries directly
(``inputs->>'$.age'``, ``json_extract(outputs, '$.predicted_label')``). Rows logged from Arrow
tables are written as DuckDB writes JSON: numbers as the model's types saw them (an integer sent
for a FLOAT64 field reads back as ``3.0``), NaN and infinities as null.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc  # loaded here: its first use costs ~1 s, not in a flush
import pyarrow.parquet as pq

from shipyard.errors import InvalidArgument

if TYPE_CHECKING:
    from shipyard.warehouse import Warehouse

__all__ = [
    "DEFER_JSON_ROWS",
    "FEEDBACK_SCHEMA",
    "LOG_DATASET",
    "LOG_SCHEMA",
    "RequestLog",
    "drop_log_tables",
    "feedback_dir",
    "log_dir",
    "log_table_name",
    "record_feedback",
    "register_log_tables",
]

LOG_DATASET = "endpoint_logs"
_logger = logging.getLogger(__name__)

# Requests of at least this many instances hand the log their Arrow tables (JSON written in the
# flush, GIL released); smaller ones are cheaper as JSON at record time (orjson, a microsecond
# or two) than as tables, which cost tens of microseconds each to gather and free in a flush.
DEFER_JSON_ROWS = 16
# Requests the flush gathers or frees between two yields of the GIL to the serving thread.
_FLUSH_STEP = 128

LOG_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("instance_index", pa.int32(), nullable=False),
        pa.field("deployment_id", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.int64()),
        pa.field("shadow", pa.bool_(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("inputs", pa.string()),  # JSON text: one instance
        pa.field("outputs", pa.string()),  # JSON text: that instance's prediction
    ]
)

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("instance_index", pa.int32(), nullable=False),
        pa.field("ground_truth", pa.string()),  # JSON text
    ]
)

# The empty file that keeps each folder's view bound to the right columns before any traffic.
_SCHEMA_FILE = "_schema.parquet"
_ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_SEQ = itertools.count()  # process-wide, so two logs of one endpoint never pick the same name


# -- names and folders --------------------------------------------------------------------------


def _check_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str) or not _ENDPOINT.match(endpoint):
        raise InvalidArgument(
            f"invalid endpoint name {endpoint!r}: expected letters, digits, '_' and '-'",
            endpoint=endpoint,
        )
    return endpoint


def log_table_name(endpoint: str) -> str:
    """The warehouse table (in dataset ``endpoint_logs``) that holds an endpoint's request logs.

    >>> log_table_name("Fraud-V2")
    'fraud_v2'
    """
    return _check_endpoint(endpoint).lower().replace("-", "_")


def log_dir(root: str | Path, endpoint: str) -> Path:
    """The folder of an endpoint's request log files."""
    return Path(root) / LOG_DATASET / _check_endpoint(endpoint)


def feedback_dir(root: str | Path, endpoint: str) -> Path:
    """The folder of an endpoint's ground-truth files (inside its log folder)."""
    return log_dir(root, endpoint) / "feedback"


def _part_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"part-{stamp}-{os.getpid()}-{next(_SEQ):06d}.parquet"


def _write_atomically(table: pa.Table, folder: Path, name: str) -> Path:
    """Write a Parquet file under a temporary name, then rename: readers see all of it or none.

    The temporary name ends in ``.tmp`` so the ``*.parquet`` glob of the views never matches it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _remove_stale_temporaries(folder: Path, older_than_s: float = 3600.0) -> None:
    """Delete what killed writers left behind (a live writer renames within seconds)."""
    cutoff = time.time() - older_than_s
    for tmp in folder.glob(".part-*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:  # another process removed or renamed it first
            pass


def _ensure_schema_file(folder: Path, schema: pa.Schema) -> None:
    if not (folder / _SCHEMA_FILE).exists():
        _write_atomically(schema.empty_table(), folder, _SCHEMA_FILE)


# -- JSON ----------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    # Values come from Arrow/NumPy/pandas; turn them into plain JSON without importing NumPy.
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy scalars and arrays
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _finite(value: Any) -> Any:
    """NaN and infinities become null: they are not JSON, and DuckDB's JSON reader rejects them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _to_json(value: Any) -> str | bytes | None:
    """JSON text (UTF-8 bytes from orjson, which Arrow takes as they are for a string column)."""
    if value is None:
        return None
    try:  # orjson writes NaN and infinities as null, as the slow path below does
        return orjson.dumps(value, default=_json_default)
    except Exception:  # an odd key or value: the slow path
        pass
    try:
        plain = json.loads(json.dumps(value, default=_json_default))
        return json.dumps(_finite(plain), separators=(",", ":"), allow_nan=False)
    except Exception:  # one odd value must never block the log: keep its repr
        return json.dumps(repr(value)[:1000])


# -- sampling ------------------------------------------------------------------------------------


def _sampled(request_id: str, rate: float) -> bool:
    """Whether a request is logged: the same answer for the same id in every process and run.

    A request's primary and shadow rows share the id, so they are kept or dropped together.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


# -- the log ------------------------------------------------------------------------------------

# A request's instances or predictions in the buffer: their JSON texts (encoded at record time),
# or the Arrow table the flush writes as JSON.
_Rows: TypeAlias = "list[str | bytes | None] | pa.Table"

# (epoch µs, request_id, deployment_id, model, model_version, shadow, status, error, latency_ms,
#  rows, inputs, outputs): one request.
_Pending = tuple[
    int,
    str,
    str,
    str,
    int,
    bool,
    int,
    "str | None",
    float,
    int,
    _Rows,
    _Rows,
]


class RequestLog:
    """The request log of one endpoint in one process.

    >>> log = RequestLog(tmp_path, "e1", flush_interval_s=0.5)  # doctest: +SKIP
    >>> log.record(request_id="r1", deployment_id="d1", model="demo.m", model_version=1,
    ...            shadow=False, instances=[{"x": 1}], predictions=[{"predicted_y": 2.0}],
    ...            latency_ms=0.8)  # doctest: +SKIP
    >>> log.close()  # doctest: +SKIP

    ``record`` is safe to call from any thread. Instances and predictions given as Arrow tables
    are kept as they are and written as JSON by the flush thread (DuckDB, GIL released); given
    as Python objects, they are encoded there and then (orjson: a microsecond or two an
    instance). Either way the flush never holds the GIL for long against the serving thread.
    When the flush thread cannot keep up, more than ``10 * max_rows`` waiting requests are
    dropped rather than let memory grow: :attr:`dropped` counts them.
    """

    def __init__(
        self,
        root: str | Path,
        endpoint: str,
        *,
        sample_rate: float = 1.0,
        flush_interval_s: float = 1.0,
        max_rows: int = 10_000,
    ) -> None:
        if not isinstance(sample_rate, int | float) or not 0.0 <= sample_rate <= 1.0:
            raise InvalidArgument(
                f"invalid sample_rate {sample_rate!r} for endpoint {endpoint!r}: "
                "expected a number from 0 to 1"
            )
        if not isinstance(flush_interval_s, int | float) or flush_interval_s <= 0:
            raise InvalidArgument(
                f"invalid flush_interval_s {flush_interval_s!r}: expected a positive number"
            )
        if not isinstance(max_rows, int) or max_rows < 1:
            raise InvalidArgument(f"invalid max_rows {max_rows!r}: expected a positive integer")
        self.endpoint = endpoint
        self.folder = log_dir(root, endpoint)
        self.sample_rate = float(sample_rate)
        self.flush_interval_s = float(flush_interval_s)
        self.max_rows = max_rows
        self.dropped = 0
        self.files_written = 0
        self.flush_errors = 0
        self._buffer: deque[_Pending] = deque()
        self._buffered_rows = 0  # approximate (unlocked); only decides when to wake the flusher
        self._max_pending = 10 * max_rows
        self._write_lock = threading.Lock()
        self._duckdb: duckdb.DuckDBPyConnection | None = None  # the flush's JSON writer
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        _ensure_schema_file(self.folder, LOG_SCHEMA)
        _remove_stale_temporaries(self.folder)
        self._thread = threading.Thread(
            target=self._run, name=f"shipyard-request-log-{endpoint}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    # -- hot path -------------------------------------------------------------------------------

    def record(
        self,
        *,
        request_id: str,
        deployment_id: str,
        model: str,
        model_version: int,
        shadow: bool,
        instances: Sequence[Any] | pa.Table,
        predictions: Sequence[Any] | pa.Table,
        latency_ms: float,
        status: int = 200,
        error: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Queue one request for the log; the Parquet (and the JSON of tables) comes later.

        ``instances`` and ``predictions`` are one row per instance: Python objects (encoded as
        JSON now) or Arrow tables (written as JSON by the flush thread; not modified after).
        """
        if self._closed or not _sampled(request_id, self.sample_rate):
            return
        if len(self._buffer) >= self._max_pending:
            self.dropped += 1
            return
        if timestamp is None:
            micros = time.time_ns() // 1000
        else:
            if timestamp.tzinfo is None:  # naive times are taken as UTC
                timestamp = timestamp.replace(tzinfo=UTC)
            micros = int(timestamp.timestamp() * 1_000_000)
        rows = max(_count(instances), _count(predictions), 1)
        self._buffer.append(
            (
                micros,
                request_id,
                deployment_id,
                model,
                model_version,
                bool(shadow),
                int(status),
                error,
                float(latency_ms),
                rows,
                _rows(instances),
                _rows(predictions),
            )
        )
        self._buffered_rows += rows
        if self._buffered_rows >= self.max_rows:
            self._wake.set()

    # -- flushing -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # a full disk must not kill the thread; retry later
                self.flush_errors += 1
                _logger.warning("request log of endpoint %r: flush failed: %s", self.endpoint, exc)
                self._wake.wait(min(self.flush_interval_s, 5.0))

    def flush(self) -> int:
        """Write everything recorded so far to a new Parquet file; returns the rows written."""
        with self._write_lock:
            pending: list[_Pending] = []
            while True:
                try:
                    pending.append(self._buffer.popleft())
                except IndexError:
                    break
            self._buffered_rows = len(self._buffer)
            if not pending:
                return 0
            try:
                table = _log_table(pending, self._json_writer())
                _write_atomically(table, self.folder, _part_name())
            except Exception:
                # Put the requests back (in order) for the next attempt, then report.
                self._buffer.extendleft(reversed(pending))
                raise
            self.files_written += 1
            _release(pending)
            return table.num_rows

    def _json_writer(self) -> duckdb.DuckDBPyConnection:
        # One in-memory DuckDB on one thread, used under the write lock only.
        if self._duckdb is None:
            self._duckdb = duckdb.connect(config={"threads": 1})
        return self._duckdb

    def close(self) -> None:
        """Flush what is buffered and stop the flush thread (also runs at interpreter exit)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, 2 * self.flush_interval_s))
        try:
            self.flush()
        finally:
            atexit.unregister(self.close)
            with self._write_lock:
                if self._duckdb is not None:
                    with contextlib.suppress(Exception):
                        self._duckdb.close()
                    self._duckdb = None

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RequestLog(endpoint={self.endpoint!r}, folder={str(self.folder)!r})"


def _log_table(pending: list[_Pending], duck: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per instance; a request that failed before predicting keeps its inputs.

    The request-level columns are built once per request and repeated with one ``take``; the
    JSON texts are there already, or written from the requests' Arrow tables by DuckDB, one
    query per schema. Nothing here loops in Python over instances but the flattening of the
    texts recorded as Python objects.
    """
    fields = list(zip(*pending, strict=True))
    counts = np.asarray(fields[9], dtype=np.int64)
    request_of_row = np.repeat(np.arange(len(pending)), counts)
    starts = np.cumsum(counts) - counts
    columns: dict[str, pa.Array] = {}
    for position, name in enumerate(_REQUEST_COLUMNS):
        field = LOG_SCHEMA.field(name)
        values = pa.array(fields[position], type=pa.int64() if name == "timestamp" else field.type)
        columns[name] = values.take(request_of_row)
    columns["timestamp"] = columns["timestamp"].cast(LOG_SCHEMA.field("timestamp").type)
    columns["instance_index"] = pa.array(
        np.arange(len(request_of_row)) - np.repeat(starts, counts), pa.int32()
    )
    columns["inputs"] = _texts(fields[10], counts, duck)
    columns["outputs"] = _texts(fields[11], counts, duck)
    return pa.Table.from_arrays([columns[n] for n in LOG_SCHEMA.names], schema=LOG_SCHEMA)


# The request-level columns, in the order of a _Pending tuple.
_REQUEST_COLUMNS = (
    "timestamp",
    "request_id",
    "deployment_id",
    "model",
    "model_version",
    "shadow",
    "status",
    "error",
    "latency_ms",
)


def _release(pending: list[_Pending]) -> None:
    """Drop the flushed requests a step at a time, yielding the GIL in between: freeing a
    thousand requests' Arrow tables at once is one C call that would hold it for milliseconds."""
    while pending:
        del pending[-_FLUSH_STEP:]
        time.sleep(0)


def _rows(given: Sequence[Any] | pa.Table) -> _Rows:
    """What the buffer keeps: a table as it is (the flush writes it), objects as JSON now."""
    return given if isinstance(given, pa.Table) else [_to_json(v) for v in given]


def _count(rows: Sequence[Any] | pa.Table) -> int:
    return int(rows.num_rows) if isinstance(rows, pa.Table) else len(rows)


def _texts(
    per_request: Sequence[_Rows], counts: np.ndarray, duck: duckdb.DuckDBPyConnection
) -> pa.Array:
    """Every request's JSON texts, each padded with nulls to its row count, as one column."""
    if all(isinstance(rows, pa.Table) for rows in per_request):
        tables: list[pa.Table] = list(per_request)  # type: ignore[arg-type]
        first = tables[0].schema
        if all(t.schema.equals(first) for t in tables) and sum(t.num_rows for t in tables) == int(
            counts.sum()
        ):  # the common case, one deployment's tables: nothing to pad
            return _tables_as_json(tables, duck)
    written = _json_of_tables(per_request, duck)
    pieces: list[pa.Array] = []
    flat: list[str | bytes | None] = []  # texts of consecutive Python-object requests
    for n, (rows, count) in enumerate(zip(per_request, counts.tolist(), strict=True)):
        if isinstance(rows, pa.Table):
            if flat:
                pieces.append(pa.array(flat, type=pa.string()))
                flat = []
            pieces.append(written[n])
            count -= rows.num_rows
            if count:
                pieces.append(pa.nulls(count, pa.string()))
            continue
        flat += rows
        if len(rows) < count:
            flat += [None] * (count - len(rows))
    if flat or not pieces:
        pieces.append(pa.array(flat, type=pa.string()))
    return pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]


def _json_of_tables(
    per_request: Sequence[_Rows], duck: duckdb.DuckDBPyConnection
) -> dict[int, pa.Array]:
    """Each table-valued request's rows as JSON objects, written per schema."""
    groups: list[tuple[pa.Schema, list[int]]] = []  # Schema equality is cheap, its hash is not
    tables: dict[int, pa.Table] = {}
    for n, rows in enumerate(per_request):
        if isinstance(rows, pa.Table):
            tables[n] = rows
            schema = rows.schema
            for known, members in groups:
                if schema.equals(known):
                    members.append(n)
                    break
            else:
                groups.append((schema, [n]))
    out: dict[int, pa.Array] = {}
    for _, members in groups:
        texts = _tables_as_json([tables[n] for n in members], duck)
        offset = 0
        for n in members:
            rows = tables[n].num_rows
            out[n] = texts.slice(offset, rows)
            offset += rows
    return out


def _tables_as_json(tables: list[pa.Table], duck: duckdb.DuckDBPyConnection) -> pa.Array:
    """The rows of tables of one schema as JSON texts, in order; a step of tables at a time,
    yielding the GIL between steps."""
    pieces = []
    for start in range(0, len(tables), _FLUSH_STEP):
        step = pa.concat_tables(tables[start : start + _FLUSH_STEP]).combine_chunks()
        try:
            pieces.append(_rows_as_json(step, duck))
        except Exception:  # a type DuckDB cannot write: never let it block the log
            _logger.debug("request log: DuckDB could not write %s as JSON", step.schema)
            pieces.append(pa.array([_to_json(r) for r in step.to_pylist()], pa.string()))
        time.sleep(0)
    return pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]


def _rows_as_json(table: pa.Table, duck: duckdb.DuckDBPyConnection) -> pa.Array:
    """``to_json`` of every row (a JSON object keyed by column name); NaN and infinities null."""
    columns = []
    for column in table.columns:
        if pa.types.is_floating(column.type) and not pc.all(pc.is_finite(column)).as_py():
            column = pc.if_else(pc.is_finite(column), column, None)  # NaN is not JSON
        columns.append(column)
    clean = pa.Table.from_arrays(columns, names=table.column_names)
    duck.register("_shipyard_log_rows", clean)
    try:
        result = duck.sql(
            "SELECT to_json(r)::VARCHAR AS j FROM _shipyard_log_rows AS r"
        ).to_arrow_table()
    finally:
        duck.unregister("_shipyard_log_rows")
    texts = result.column(0).combine_chunks()
    if any(_nested_float(c.type) for c in table.columns):
        # DuckDB writes NaN, Infinity and -Infinity inside lists and structs as such.
        for _ in range(2):  # a match takes the separator the next one starts with
            texts = pc.replace_substring_regex(texts, _NOT_FINITE, r"\1null\2")
    return texts


_NOT_FINITE = r"([\[,:])-?(?:NaN|Infinity)([\],}])"


def _nested_float(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.types.is_floating(t.value_type) or _nested_float(t.value_type)
    if pa.types.is_struct(t):
        return any(
            pa.types.is_floating(t.field(i).type) or _nested_float(t.field(i).type)
            for i in range(t.num_fields)
        )
    return False


# -- feedback -----------------------------------------------------------------------------------


def record_feedback(root: str | Path, endpoint: str, items: Sequence[Mapping[str, Any]]) -> int:
    """Attach ground truth to logged predictions; returns how many items were stored.

    Each item is ``{"request_id": str, "instance_index": int (default 0), "ground_truth": any
    JSON value}``. All items are checked before anything is written: one bad item rejects the
    batch. A later answer for the same (request_id, instance_index) supersedes an earlier one.
    """
    folder = feedback_dir(root, endpoint)
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise InvalidArgument(
            f"feedback for endpoint {endpoint!r} must be a list of items, "
            f"got {type(items).__name__}"
        )
    request_ids: list[str] = []
    indexes: list[int] = []
    truths: list[str | bytes | None] = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidArgument(
                f"feedback item {n} must be an object, got {type(item).__name__}", item=n
            )
        unknown = sorted(set(item) - {"request_id", "instance_index", "ground_truth"})
        if unknown:
            raise InvalidArgument(
                f"feedback item {n} has unknown field(s) {unknown}: expected request_id, "
                "instance_index and ground_truth",
                item=n,
            )
        request_id = item.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise InvalidArgument(
                f"feedback item {n} needs a request_id (a non-empty string), got {request_id!r}",
                item=n,
            )
        index = item.get("instance_index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**31:
            raise InvalidArgument(
                f"feedback item {n} has an invalid instance_index {index!r}: "
                "expected an integer >= 0",
                item=n,
            )
        if "ground_truth" not in item:
            raise InvalidArgument(f"feedback item {n} needs a ground_truth value", item=n)
        request_ids.append(request_id)
        indexes.append(index)
        truths.append(_to_json(item["ground_truth"]))
    if not request_ids:
        return 0
    now = time.time_ns() // 1000
    table = pa.Table.from_arrays(
        [
            pa.array([now] * len(request_ids), type=pa.int64()).cast(
                FEEDBACK_SCHEMA.field("timestamp").type
            ),
            pa.array(request_ids, type=pa.string()),
            pa.array(indexes, type=pa.int32()),
            pa.array(truths, type=pa.string()),
        ],
        schema=FEEDBACK_SCHEMA,
    )
    _ensure_schema_file(folder, FEEDBACK_SCHEMA)
    _write_atomically(table, folder, _part_name())
    return table.num_rows


# -- warehouse views ----------------------------------------------------------------------------


def _view_sql(folder: Path, schema: pa.Schema) -> str:
    pattern = str(folder / "*.parquet").replace("'", "''")
    columns = ", ".join(f'"{name}"' for name in schema.names)
    return f"SELECT {columns} FROM read_parquet('{pattern}', union_by_name = true)"


def register_log_tables(warehouse: Warehouse, root: str | Path, endpoint: str) -> tuple[str, str]:
    """Create (or refresh) the views ``endpoint_logs.<table>`` and ``<table>_feedback``.

    The views read the Parquet folders at query time, so rows that later flushes add show up
    without registering again. An empty schema file in each folder keeps them queryable (with no
    rows and the right column types) before the first request. Returns the two table names.
    """
    table = log_table_name(endpoint)
    logs, feedback = log_dir(root, endpoint), feedback_dir(root, endpoint)
    _ensure_schema_file(logs, LOG_SCHEMA)
    _ensure_schema_file(feedback, FEEDBACK_SCHEMA)
    with warehouse.transaction() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{LOG_DATASET}"')
        cur.execute(
            f'CREATE OR REPLACE VIEW "{LOG_DATASET}"."{table}" AS {_view_sql(logs, LOG_SCHEMA)}'
        )
        cur.execute(
            f'CREATE OR REPLACE VIEW "{LOG_DATASET}"."{table}_feedback" AS '
            f"{_view_sql(feedback, FEEDBACK_SCHEMA)}"
        )
    return f"{LOG_DATASET}.{table}", f"{LOG_DATASET}.{table}_feedback"


def drop_log_tables(warehouse: Warehouse, endpoint: str) -> None:
    """Drop an endpoint's two views (its Parquet files stay: they are data, delete them apart)."""
    table = log_table_name(endpoint)
    with warehouse.transaction() as cur:
        cur.execute(f'DROP VIEW IF EXISTS "{LOG_DATASET}"."{table}"')
        cur.execute(f'DROP VIEW IF EXISTS "{LOG_DATASET}"."{table}_feedback"')
