"""The hot path: JSON instances to Arrow, adaptive micro-batching, one model call per batch.

Everything that can be done once is done at deploy time: the predictor is loaded and verified,
the input fields and their converters are laid out (``InstanceSchema``). A request then costs one
NumPy block for all-numeric signatures (a per-column ``pa.array`` otherwise), the model call, and
``to_pylist`` of the output.

Micro-batching comes in two forms, with the same rule: nothing is added at low load, and under
load batches grow by themselves to what the model can absorb.

* ``MicroBatcher`` (threads: the SDK, and any synchronous caller) is leader/follower: a request
  that finds its deployment idle runs at once (no queue hop, no timer); requests arriving while a
  batch runs queue up, and when the batch ends the first of them leads the next batch with
  everything queued behind it.
* ``AsyncMicroBatcher`` (the HTTP servers' event loop) collects the requests that arrive in the
  same turn of the loop and runs them as one model call: quick calls (under 2 ms, by the
  deployment's own measured cost per row) on the loop itself, since a thread hop costs more
  than a few rows of trees; longer ones on a worker thread while the loop goes on reading, and
  collecting, the next requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import DeadlineExceeded, InvalidArgument
from shipyard.serving.logs import DEFER_JSON_ROWS

__all__ = ["AsyncMicroBatcher", "InstanceSchema", "MicroBatcher"]


def _kind(type_string: str) -> str:
    """The feature kind of an Arrow type string in a model signature."""
    if type_string.startswith("struct<"):
        return "struct"
    if type_string.startswith(("list<", "large_list<")):
        return "string_array"  # the only arrays automatic preprocessing takes: ARRAY<STRING>
    if type_string in ("binary", "large_binary"):
        return "bytes"
    if type_string.startswith("timestamp"):
        return "timestamp"
    if type_string.startswith("date"):
        return "date"
    if type_string.startswith("time"):
        return "time"
    if type_string in ("string", "large_string", "utf8", "large_utf8"):
        return "string"
    if type_string == "bool":
        return "bool"
    return "numeric"


_JSON_TYPE = {
    "numeric": "a number",
    "string": "a string",
    "bool": "true or false",
    "timestamp": "an ISO 8601 timestamp string",
    "date": "an ISO 8601 date string",
    "time": "an ISO 8601 time string",
    "struct": "an object of the STRUCT's fields",
    "string_array": "an array of strings",
    "bytes": "a base64 string",
}


def _valid(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind == "numeric":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "struct":
        return isinstance(value, dict)
    if kind == "string_array":
        return isinstance(value, list) and all(v is None or isinstance(v, str) for v in value)
    if kind == "bytes":
        return isinstance(value, str) and _base64(value) is not None
    return isinstance(value, str)


def _base64(text: str) -> bytes | None:
    """BYTES as JSON carries them (BigQuery's convention): base64 text; None if it is not."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


_NUMBERS = frozenset({int, float, type(None)})  # bool is not int here: type() is exact


@dataclass
class _Field:
    name: str
    type: str
    kind: str
    arrow: pa.DataType = field(init=False)

    def __post_init__(self) -> None:
        if self.kind == "numeric":
            self.arrow = pa.float64()
        elif self.kind == "bool":
            self.arrow = pa.bool_()
        elif self.kind == "timestamp":
            self.arrow = pa.timestamp("us", tz="UTC" if "tz=" in self.type else None)
        elif self.kind == "date":
            self.arrow = pa.date32()
        elif self.kind == "time":
            self.arrow = pa.time64("us")
        elif self.kind == "string_array":
            self.arrow = pa.list_(pa.string())
        elif self.kind == "bytes":
            self.arrow = pa.binary()
        elif self.kind == "struct":
            self.arrow = pa.null()  # the fields' types come from the values
        else:
            self.arrow = pa.string()

    def column(self, values: list[Any]) -> pa.Array:
        if self.kind == "numeric":
            if any(type(v) is bool for v in values):  # Arrow would take True as 1.0
                raise TypeError("a bool where a number belongs")
            return pa.array(values, type=self.arrow)
        if self.kind == "string_array":
            if not all(v is None or type(v) is list for v in values):  # Arrow splits a str
                raise TypeError("an ARRAY value that is not a JSON array")
            return pa.array(values, type=self.arrow)
        if self.kind in ("bool", "string"):
            return pa.array(values, type=self.arrow)
        if self.kind == "struct":
            if not all(v is None or type(v) is dict for v in values):
                raise TypeError("a STRUCT value that is not an object")
            return pa.array(values)  # a StructArray (NullArray if every value is null)
        if self.kind == "bytes":
            decoded = [_base64(v) if type(v) is str else None for v in values]
            if any(d is None and v is not None for d, v in zip(decoded, values, strict=True)):
                raise TypeError("a BYTES value that is not base64 text")
            return pa.array(decoded, type=self.arrow)
        return pc.cast(pa.array(values, type=pa.string()), self.arrow)


class InstanceSchema:
    """Validates JSON instances against a model's input signature and builds the Arrow table.

    Rules: every field of the signature must be present in every instance (``null`` is a value:
    the model imputes it, as in training); a field the model does not know is refused, except
    the endpoint's sticky key; values must have the field's JSON type. Each violation is an
    InvalidArgument naming the instance and the field.
    """

    def __init__(self, inputs: Sequence[dict[str, str]], *, allowed_extra: Sequence[str] = ()):
        self.fields = [_Field(c["name"], c["type"], _kind(c["type"])) for c in inputs]
        self.names = [f.name for f in self.fields]
        self._known = frozenset(self.names) | frozenset(allowed_extra)
        # a STRUCT's Arrow type comes from its values: then the columns name the table
        self._schema = (
            None
            if any(f.kind == "struct" for f in self.fields)
            else pa.schema([(f.name, f.arrow) for f in self.fields])
        )
        self._numeric = all(f.kind == "numeric" for f in self.fields)
        self._faithful = self._numeric and not (frozenset(allowed_extra) - frozenset(self.names))
        self._getter = itemgetter(*self.names)

    def describe(self) -> list[dict[str, str]]:
        return [{"name": f.name, "type": f.type, "json": _JSON_TYPE[f.kind]} for f in self.fields]

    def logged(self, instances: list[dict[str, Any]], table: pa.Table) -> list[Any] | pa.Table:
        """What the request log keeps of the instances: for a request of many instances, the
        table built from them when it holds all they said (every field numeric, no extra field
        such as a sticky key) — the log then writes it as JSON off the serving thread — else
        the instances themselves (see ``logs.DEFER_JSON_ROWS``)."""
        if self._faithful and table.num_rows >= DEFER_JSON_ROWS:
            return table
        return instances

    def to_table(self, instances: Sequence[Any]) -> pa.Table:
        if self._numeric:
            table = self._numeric_table(instances)
            if table is not None:
                return table
        known = self._known
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise InvalidArgument(
                    f"instances[{index}] must be an object of feature values, got "
                    f"{type(instance).__name__}",
                    field=f"instances[{index}]",
                )
            if len(instance) != len(self.names) or not known.issuperset(instance):
                self._check_keys(index, instance)
        columns = []
        for f in self.fields:
            values = [instance[f.name] for instance in instances]
            try:
                columns.append(f.column(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                raise self._bad_value(f, values) from None
        if self._schema is None:
            return pa.Table.from_arrays(columns, names=self.names)
        return pa.Table.from_arrays(columns, schema=self._schema)

    def _numeric_table(self, instances: Sequence[Any]) -> pa.Table | None:
        """All fields numeric: one float64 block for the whole request, ``None`` as Arrow null.

        Only for the common case — objects with exactly the model's fields, numbers or null —
        and with the values of the per-column path. Anything else returns None, and the
        per-column path names the instance and the field at fault.
        """
        width = len(self.names)
        if not all(type(i) is dict and len(i) == width for i in instances):
            return None
        try:  # with as many keys as fields, finding every field means no unknown one
            rows = (
                list(map(self._getter, instances))
                if width > 1
                else [(i[self.names[0]],) for i in instances]
            )
        except KeyError:
            return None
        types = set(map(type, chain.from_iterable(rows)))
        if not types <= _NUMBERS:
            return None
        n = len(rows)
        try:  # column-major: each field's values are one stretch of a single Arrow array
            block = np.array(rows, dtype=np.float64).T.copy().ravel()
        except (OverflowError, ValueError, TypeError):
            return None
        nulls = None
        if type(None) in types:
            nulls = np.fromiter((v is None for v in chain.from_iterable(rows)), bool, n * width)
            nulls = nulls.reshape(n, width).T.ravel()
        whole = pa.array(block, pa.float64(), mask=nulls)
        arrays = [whole.slice(j * n, n) for j in range(width)]
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def _check_keys(self, index: int, instance: dict[str, Any]) -> None:
        unknown = sorted(k for k in instance if k not in self._known)
        if unknown:
            raise InvalidArgument(
                f"instances[{index}] has unknown field {unknown[0]!r}; the model's fields are "
                f"{self.names}",
                field=f"instances[{index}].{unknown[0]}",
                expected=self.names,
            )
        missing = [n for n in self.names if n not in instance]
        if missing:
            raise InvalidArgument(
                f"instances[{index}] lacks field {missing[0]!r} (send null for a missing "
                f"value); the model's fields are {self.names}",
                field=f"instances[{index}].{missing[0]}",
                expected=self.names,
            )

    def _bad_value(self, f: _Field, values: list[Any]) -> InvalidArgument:
        for index, value in enumerate(values):
            bad = not _valid(f.kind, value)
            if not bad and value is not None and f.kind in ("timestamp", "date", "time"):
                try:
                    pc.cast(pa.array([value], type=pa.string()), f.arrow)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    bad = True
            if bad:
                return InvalidArgument(
                    f"instances[{index}].{f.name} must be {_JSON_TYPE[f.kind]} (the model was "
                    f"trained on {f.type}), got {value!r}",
                    field=f"instances[{index}].{f.name}",
                    expected=f.type,
                )
        return InvalidArgument(
            f"field {f.name!r} has values that do not convert to {f.type}", field=f.name
        )


# -- micro-batching --------------------------------------------------------------------------


class _Item:
    __slots__ = ("error", "event", "key", "leader", "result", "table")

    def __init__(self, table: pa.Table, key: Any) -> None:
        self.table = table
        self.key = key
        self.event = threading.Event()
        self.result: pa.Table | None = None
        self.error: BaseException | None = None
        self.leader = False


class MicroBatcher:
    """Runs ``fn(table, key)`` over batches of concurrent requests (see the module docstring).

    ``key`` separates requests that cannot share a model call (e.g. a different threshold).
    ``fn`` must return one output row per input row, in order.
    """

    def __init__(self, fn: Callable[[pa.Table, Any], pa.Table], *, max_rows: int = 4096) -> None:
        self._fn = fn
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._queue: deque[_Item] = deque()
        self._busy = False
        self.batches = 0  # counters for tests and /metrics
        self.batched_requests = 0

    def __call__(
        self, table: pa.Table, key: Any = None, *, timeout: float | None = None
    ) -> pa.Table:
        item = _Item(table, key)
        with self._lock:
            if self._busy:
                self._queue.append(item)
            else:
                self._busy = True
                item.leader = True
        if not item.leader and not item.event.wait(timeout):
            with self._lock:
                queued = item in self._queue
                if queued:
                    self._queue.remove(item)
            if queued or not item.leader:  # still waiting, or inside a batch that runs late
                raise DeadlineExceeded(
                    f"the prediction did not finish within the endpoint's timeout ({timeout} s)"
                )
            # else: it was handed the lead just as it timed out; leading cannot be refused.
        if item.leader:
            self._lead(item)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _lead(self, first: _Item) -> None:
        batch = [first]
        rows = first.table.num_rows
        with self._lock:
            while self._queue and rows + self._queue[0].table.num_rows <= self._max_rows:
                nxt = self._queue.popleft()
                batch.append(nxt)
                rows += nxt.table.num_rows
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue.popleft()
                    successor.leader = True
                    successor.event.set()
                else:
                    self._busy = False
            for other in batch[1:]:
                other.event.set()

    def _run(self, batch: list[_Item]) -> None:
        self.batches += 1
        self.batched_requests += len(batch)
        for item, outcome in zip(batch, _outcomes(self._fn, batch), strict=True):
            if isinstance(outcome, BaseException):
                item.error = outcome
            else:
                item.result = outcome


class _Request:
    __slots__ = ("future", "key", "table")

    def __init__(self, table: pa.Table, key: Any, future: asyncio.Future[pa.Table]) -> None:
        self.table = table
        self.key = key
        self.future = future


class AsyncMicroBatcher:
    """``MicroBatcher`` for an asyncio event loop (see the module docstring).

    Requests that arrive in the same turn of the loop share one model call. A batch expected to
    take at most ``inline_s`` runs on the loop itself — the expectation is the rows times the
    deployment's own running average cost per row, so a first call always runs inline — and a
    longer one runs on ``executor`` (None: the loop's default pool) while the loop collects the
    next batch. One batch runs at a time. Must be used from one event loop.
    """

    def __init__(
        self,
        fn: Callable[[pa.Table, Any], pa.Table],
        *,
        max_rows: int = 4096,
        inline_s: float = 0.002,
        executor: Any = None,
    ) -> None:
        self._fn = fn
        self._max_rows = max_rows
        self._inline_s = inline_s
        self._executor = executor
        self._pending: deque[_Request] = deque()
        self._scheduled = False
        self._running = False
        self.row_cost_s = 0.0  # running average of a model call's seconds per row
        self.batches = 0
        self.batched_requests = 0
        self.offloaded = 0  # batches run on a worker thread

    async def __call__(
        self, table: pa.Table, key: Any = None, *, timeout: float | None = None
    ) -> pa.Table:
        loop = asyncio.get_running_loop()
        request = _Request(table, key, loop.create_future())
        self._pending.append(request)
        if not self._scheduled and not self._running:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        try:
            return await asyncio.wait_for(request.future, timeout)
        except TimeoutError:  # wait_for cancelled the future: the batch skips or ignores it
            raise DeadlineExceeded(
                f"the prediction did not finish within the endpoint's timeout ({timeout} s)"
            ) from None

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._running:
            return
        batch: list[_Request] = []
        rows = 0
        while self._pending:
            nxt = self._pending[0]
            if nxt.future.done():  # timed out while queued
                self._pending.popleft()
                continue
            if batch and rows + nxt.table.num_rows > self._max_rows:
                break
            batch.append(self._pending.popleft())
            rows += nxt.table.num_rows
        if not batch:
            return
        self.batches += 1
        self.batched_requests += len(batch)
        if rows * self.row_cost_s <= self._inline_s:
            self._deliver(batch, self._timed(batch, rows))
            self._next(loop)
            return
        self._running = True
        self.offloaded += 1
        done = loop.run_in_executor(self._executor, self._timed, batch, rows)
        done.add_done_callback(lambda f: self._finished(loop, batch, f))

    def _timed(self, batch: list[_Request], rows: int) -> list[Any]:
        started = time.perf_counter()
        outcomes = _outcomes(self._fn, batch)
        per_row = (time.perf_counter() - started) / max(rows, 1)
        self.row_cost_s = per_row if not self.row_cost_s else 0.8 * self.row_cost_s + 0.2 * per_row
        return outcomes

    def _finished(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Request], done: asyncio.Future[Any]
    ) -> None:
        self._running = False
        error = done.exception()
        self._deliver(batch, [error] * len(batch) if error is not None else done.result())
        self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    @staticmethod
    def _deliver(batch: list[_Request], outcomes: list[Any]) -> None:
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():  # timed out while its batch ran
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)


def _outcomes(fn: Callable[[pa.Table, Any], pa.Table], batch: Sequence[Any]) -> list[Any]:
    """One model call per key in ``batch`` (items with ``table`` and ``key``): each item's output
    rows, or the call's error."""
    groups: dict[Any, list[int]] = {}
    for index, request in enumerate(batch):
        groups.setdefault(request.key, []).append(index)
    outcomes: list[Any] = [None] * len(batch)
    for key, indexes in groups.items():
        tables = [batch[i].table for i in indexes]
        try:
            output = fn(tables[0] if len(tables) == 1 else pa.concat_tables(tables), key)
        except Exception as exc:  # every request of the group gets the error
            for i in indexes:
                outcomes[i] = exc
            continue
        offset = 0
        for i, table in zip(indexes, tables, strict=True):
            outcomes[i] = output if len(tables) == 1 else output.slice(offset, table.num_rows)
            offset += table.num_rows
    return outcomes
