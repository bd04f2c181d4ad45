"""The hot path's pieces: instances to Arrow (the all-numeric block and the per-column path) and
the asyncio micro-batcher."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pyarrow as pa
import pytest

from shipyard.errors import DeadlineExceeded, InvalidArgument
from shipyard.serving.runtime import AsyncMicroBatcher, InstanceSchema

NUMERIC = [{"name": "a", "type": "double"}, {"name": "b", "type": "int64"}]


def per_column(schema: InstanceSchema, instances: list[Any]) -> pa.Table:
    """The general path, for comparison with the all-numeric block."""
    schema._numeric = False
    try:
        return schema.to_table(instances)
    finally:
        schema._numeric = True


def test_the_numeric_block_equals_the_per_column_path() -> None:
    schema = InstanceSchema(NUMERIC)
    instances: list[Any] = [
        {"a": 1.5, "b": 2},
        {"a": None, "b": -7},
        {"a": float("nan"), "b": None},
        {"b": 10**12, "a": 0},  # key order does not matter
    ]
    fast = schema.to_table(instances)
    slow = per_column(schema, instances)
    assert fast.schema == slow.schema
    for name in ("a", "b"):
        got, want = fast.column(name).to_pylist(), slow.column(name).to_pylist()
        assert [None if v is None else ("nan" if math.isnan(v) else v) for v in got] == [
            None if v is None else ("nan" if math.isnan(v) else v) for v in want
        ]
        assert fast.column(name).null_count == slow.column(name).null_count
    assert fast.column("a").null_count == 1  # null is a null, NaN stays NaN


@pytest.mark.parametrize(
    ("instance", "field", "message"),
    [
        ({"a": True, "b": 1}, "instances[0].a", "must be a number"),
        ({"a": "1.5", "b": 1}, "instances[0].a", "must be a number"),
        ({"a": 1.0, "b": [1]}, "instances[0].b", "must be a number"),
        ({"a": 1.0}, "instances[0].b", "lacks field 'b'"),
        ({"a": 1.0, "c": 2}, "instances[0].c", "unknown field 'c'"),
        ({"a": 1.0, "b": 2, "c": 3}, "instances[0].c", "unknown field 'c'"),
    ],
)
def test_bad_instances_are_named_whatever_the_path(
    instance: dict[str, Any], field: str, message: str
) -> None:
    schema = InstanceSchema(NUMERIC)
    with pytest.raises(InvalidArgument, match=message) as caught:
        schema.to_table([{"a": 0.0, "b": 0}, instance][1:])
    assert caught.value.details["field"] == field


def test_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"instances\[1\] must be an object"):
        InstanceSchema(NUMERIC).to_table([{"a": 1.0, "b": 2}, [1.0, 2]])


def test_the_sticky_key_may_travel_with_the_instance() -> None:
    schema = InstanceSchema(NUMERIC, allowed_extra=["user"])
    table = schema.to_table([{"a": 1.0, "b": 2, "user": "u1"}, {"a": 3.0, "b": 4}])
    assert table.column_names == ["a", "b"] and table.column("a").to_pylist() == [1.0, 3.0]


# -- AsyncMicroBatcher -----------------------------------------------------------------------


class Model:
    """Doubles column x; records each call's row count; can be slowed down or broken."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[tuple[int, Any]] = []
        self.delay = delay
        self.fail = fail
        self.threads: set[str] = set()

    def __call__(self, table: pa.Table, key: Any) -> pa.Table:
        self.calls.append((table.num_rows, key))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model broke")
        return pa.table({"y": [2 * v for v in table.column("x").to_pylist()]})


def rows(*values: float) -> pa.Table:
    return pa.table({"x": list(values)})


def test_requests_of_one_loop_turn_share_one_model_call() -> None:
    model = Model()
    batcher = AsyncMicroBatcher(model)

    async def main() -> list[pa.Table]:
        return await asyncio.gather(*(batcher(rows(i, i + 0.5)) for i in range(10)))

    results = asyncio.run(main())
    assert [r.column("y").to_pylist() for r in results] == [[2 * i, 2 * i + 1] for i in range(10)]
    assert model.calls == [(20, None)]  # one call, on the loop's own thread
    assert model.threads == {threading.current_thread().name}
    assert (batcher.batches, batcher.batched_requests) == (1, 10)


def test_keys_that_cannot_share_a_call_get_their_own() -> None:
    model = Model()
    batcher = AsyncMicroBatcher(model)

    async def main() -> list[pa.Table]:
        return await asyncio.gather(
            batcher(rows(1), 0.5), batcher(rows(2), 0.7), batcher(rows(3), 0.5)
        )

    results = asyncio.run(main())
    assert [r.column("y").to_pylist() for r in results] == [[2], [4], [6]]
    assert sorted(model.calls) == [(1, 0.7), (2, 0.5)]


def test_slow_batches_run_off_the_loop_and_requests_queue_behind_them() -> None:
    model = Model(delay=0.05)
    batcher = AsyncMicroBatcher(model)  # runs on the loop what it expects to take <= 2 ms

    async def main() -> list[pa.Table]:
        await batcher(rows(0))  # the first call runs on the loop and measures 50 ms a row
        first = asyncio.ensure_future(batcher(rows(*range(10))))
        await asyncio.sleep(0.01)  # the 10-row batch is now running on a worker thread
        later = [batcher(rows(i)) for i in range(3)]
        return [await first, *await asyncio.gather(*later)]

    results = asyncio.run(main())
    assert results[0].column("y").to_pylist() == [2 * i for i in range(10)]
    assert [r.column("y").to_pylist() for r in results[1:]] == [[0], [2], [4]]
    assert model.calls == [(1, None), (10, None), (3, None)]  # the three went together
    assert batcher.offloaded == 2 and batcher.row_cost_s > 0.01
    assert len(model.threads) == 2  # the loop's own thread, then a worker


def test_a_failing_call_fails_its_requests_and_the_next_batch_runs() -> None:
    model = Model(fail=True)
    batcher = AsyncMicroBatcher(model)

    async def main() -> list[Any]:
        return await asyncio.gather(batcher(rows(1)), batcher(rows(2)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) and "model broke" in str(o) for o in outcomes)
    model.fail = False
    assert asyncio.run(batcher(rows(3))).column("y").to_pylist() == [6]


def test_a_request_stuck_behind_a_slow_batch_times_out() -> None:
    model = Model(delay=0.3)
    batcher = AsyncMicroBatcher(model, inline_s=-1.0)  # every batch on a worker thread

    async def main() -> tuple[pa.Table, BaseException]:
        slow = asyncio.ensure_future(batcher(rows(1)))
        await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExceeded, match=r"timeout \(0.05 s\)") as caught:
            await batcher(rows(2), timeout=0.05)
        return await slow, caught.value

    first, _ = asyncio.run(main())
    assert first.column("y").to_pylist() == [2]
    assert model.calls == [(1, None)]  # the timed-out request never reached the model
