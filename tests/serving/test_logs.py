"""Request logs: Parquet written off the hot path, read back through the warehouse views."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.errors import InvalidArgument
from shipyard.serving.logs import (
    RequestLog,
    drop_log_tables,
    feedback_dir,
    log_dir,
    log_table_name,
    record_feedback,
    register_log_tables,
)
from shipyard.warehouse import Warehouse


@pytest.fixture
def wh():
    warehouse = Warehouse(":memory:")
    yield warehouse
    warehouse.close()


def _record(log: RequestLog, request_id: str, *, shadow: bool = False, n: int = 1, **kw) -> None:
    fields: dict[str, Any] = dict(
        request_id=request_id,
        deployment_id="d-shadow" if shadow else "d1",
        model="demo.m",
        model_version=2 if shadow else 1,
        shadow=shadow,
        instances=[{"x": i, "name": f"n{i}"} for i in range(n)],
        predictions=[{"predicted_y": float(i)} for i in range(n)],
        latency_ms=1.5,
    )
    fields.update(kw)
    log.record(**fields)


def _count(wh: Warehouse, table: str = "endpoint_logs.e1") -> int:
    return wh.query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_rows_from_many_threads_all_reach_the_view_with_their_types(tmp_path, wh):
    register_log_tables(wh, tmp_path, "e1")
    # max_rows bounds memory at 10 * max_rows waiting requests: 4,000 never reach that, however
    # slowly a loaded machine runs the flush thread.
    log = RequestLog(tmp_path, "e1", flush_interval_s=0.05, max_rows=1000)

    def serve(thread: int) -> None:
        for i in range(500):
            _record(log, f"t{thread}-r{i}", n=2)

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()

    assert log.files_written > 1  # the background thread flushed while the threads ran
    assert log.dropped == 0
    assert _count(wh) == 8 * 500 * 2
    distinct = wh.query("SELECT count(DISTINCT request_id) AS n FROM endpoint_logs.e1")
    assert distinct.column("n")[0].as_py() == 4000
    types = {
        r["column_name"]: r["column_type"]
        for r in wh.query("DESCRIBE SELECT * FROM endpoint_logs.e1").to_pylist()
    }
    assert types == {
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "request_id": "VARCHAR",
        "instance_index": "INTEGER",
        "deployment_id": "VARCHAR",
        "model": "VARCHAR",
        "model_version": "BIGINT",
        "shadow": "BOOLEAN",
        "status": "INTEGER",
        "error": "VARCHAR",
        "latency_ms": "DOUBLE",
        "inputs": "VARCHAR",
        "outputs": "VARCHAR",
    }
    # Inputs and outputs are JSON that SQL reads directly.
    row = wh.query(
        "SELECT inputs->>'$.name' AS name, (outputs->>'$.predicted_y')::DOUBLE AS y "
        "FROM endpoint_logs.e1 WHERE request_id = 't3-r7' AND instance_index = 1"
    ).to_pylist()
    assert row == [{"name": "n1", "y": 1.0}]


def test_view_is_empty_before_traffic_and_sees_later_flushes(tmp_path, wh):
    names = register_log_tables(wh, tmp_path, "fraud-V2")
    assert names == ("endpoint_logs.fraud_v2", "endpoint_logs.fraud_v2_feedback")
    assert _count(wh, "endpoint_logs.fraud_v2") == 0
    assert _count(wh, "endpoint_logs.fraud_v2_feedback") == 0
    assert "ground_truth" in wh.query("SELECT * FROM endpoint_logs.fraud_v2_feedback").column_names

    with RequestLog(tmp_path, "fraud-V2", flush_interval_s=60) as log:
        _record(log, "r1", n=3)
        assert _count(wh, "endpoint_logs.fraud_v2") == 0  # not flushed yet
        assert log.flush() == 3
        assert _count(wh, "endpoint_logs.fraud_v2") == 3  # no re-registration needed
        _record(log, "r2")
    assert _count(wh, "endpoint_logs.fraud_v2") == 4  # close() flushed the rest
    # Registering again (a restart) keeps the rows.
    register_log_tables(wh, tmp_path, "fraud-V2")
    assert _count(wh, "endpoint_logs.fraud_v2") == 4

    drop_log_tables(wh, "fraud-V2")
    assert not [t for t, _ in wh.list_tables("endpoint_logs")]
    drop_log_tables(wh, "fraud-V2")  # twice is fine
    register_log_tables(wh, tmp_path, "fraud-V2")  # the files were kept
    assert _count(wh, "endpoint_logs.fraud_v2") == 4


def test_background_flush_on_interval_and_on_max_rows(tmp_path, wh):
    register_log_tables(wh, tmp_path, "e1")
    log = RequestLog(tmp_path, "e1", flush_interval_s=60, max_rows=100)
    try:
        for i in range(120):
            _record(log, f"r{i}")
        deadline = time.monotonic() + 5
        while _count(wh) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(wh) >= 100  # max_rows woke the flusher long before the 60 s interval
    finally:
        log.close()

    fast = RequestLog(tmp_path, "e2", flush_interval_s=0.05)
    try:
        _record(fast, "r1")
        deadline = time.monotonic() + 5
        files: list[Path] = []
        while not files and time.monotonic() < deadline:
            files = list(log_dir(tmp_path, "e2").glob("part-*.parquet"))
            time.sleep(0.02)
        assert len(files) == 1
        assert not list(log_dir(tmp_path, "e2").glob("*.tmp"))
    finally:
        fast.close()


def test_sampling_keeps_about_half_and_is_deterministic_per_request(tmp_path, wh):
    register_log_tables(wh, tmp_path, "e1")
    with RequestLog(tmp_path, "e1", sample_rate=0.5, flush_interval_s=60) as log:
        for i in range(4000):
            _record(log, f"req-{i}")
            _record(log, f"req-{i}", shadow=True)
    rows = wh.query(
        "SELECT request_id, count(*) AS n FROM endpoint_logs.e1 GROUP BY request_id"
    ).to_pylist()
    assert 1800 <= len(rows) <= 2200
    assert {r["n"] for r in rows} == {2}  # primary and shadow kept or dropped together

    # Another process (another log) keeps exactly the same requests.
    register_log_tables(wh, tmp_path, "e2")
    with RequestLog(tmp_path, "e2", sample_rate=0.5, flush_interval_s=60) as other:
        for i in range(4000):
            _record(other, f"req-{i}")
    kept = {r["request_id"] for r in rows}
    again = wh.query("SELECT request_id FROM endpoint_logs.e2").column("request_id").to_pylist()
    assert set(again) == kept

    register_log_tables(wh, tmp_path, "none")
    with RequestLog(tmp_path, "none", sample_rate=0.0, flush_interval_s=60) as nothing:
        for i in range(100):
            _record(nothing, f"r{i}")
    assert _count(wh, "endpoint_logs.none") == 0


def test_errors_awkward_values_and_explicit_timestamps(tmp_path, wh):
    register_log_tables(wh, tmp_path, "e1")
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with RequestLog(tmp_path, "e1", flush_interval_s=60) as log:
        log.record(
            request_id="bad",
            deployment_id="d1",
            model="demo.m",
            model_version=1,
            shadow=False,
            instances=[{"x": "oops"}, {"x": None}],
            predictions=[],
            latency_ms=0.2,
            status=400,
            error="column x: expected a number",
            timestamp=when,
        )
        log.record(
            request_id="np",
            deployment_id="d1",
            model="demo.m",
            model_version=1,
            shadow=False,
            instances=[{"x": np.float32(1.5), "n": np.int64(3), "d": when, "v": np.arange(2)}],
            predictions=[{"predicted_y": math.nan, "p": [math.inf, 1.0]}],
            latency_ms=0.3,
        )
        log.record(
            request_id="odd",
            deployment_id="d1",
            model="demo.m",
            model_version=1,
            shadow=False,
            instances=[{("a", "b"): 1}],  # not JSON at all: kept as its repr, never blocks
            predictions=[{"predicted_y": 1}],
            latency_ms=0.3,
        )
    rows = {
        (r["request_id"], r["instance_index"]): r
        for r in wh.query("SELECT * FROM endpoint_logs.e1").to_pylist()
    }
    assert set(rows) == {("bad", 0), ("bad", 1), ("np", 0), ("odd", 0)}
    assert json.loads(rows[("odd", 0)]["inputs"]) == "{('a', 'b'): 1}"
    bad = rows[("bad", 1)]
    assert bad["status"] == 400 and bad["error"] == "column x: expected a number"
    assert bad["outputs"] is None and json.loads(bad["inputs"]) == {"x": None}
    assert bad["timestamp"] == when
    assert json.loads(rows[("np", 0)]["inputs"]) == {
        "x": 1.5,
        "n": 3,
        "d": when.isoformat(),
        "v": [0, 1],
    }
    # NaN and infinities are not JSON: they are logged as null.
    assert json.loads(rows[("np", 0)]["outputs"]) == {"predicted_y": None, "p": [None, 1.0]}


def test_leftovers_of_killed_writers_are_ignored_and_cleaned(tmp_path, wh):
    folder = log_dir(tmp_path, "e1")
    folder.mkdir(parents=True)
    stale = folder / ".part-20260101T000000.000000Z-1-000001.parquet.1.2.tmp"
    fresh = folder / ".part-20260101T000000.000000Z-1-000002.parquet.1.2.tmp"
    stale.write_bytes(b"PAR1 half a file")
    fresh.write_bytes(b"PAR1 being written")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    register_log_tables(wh, tmp_path, "e1")
    assert _count(wh) == 0  # the views never read temporary files
    RequestLog(tmp_path, "e1").close()
    assert not stale.exists() and fresh.exists()  # a writer may still be renaming the fresh one


def test_record_after_close_is_ignored(tmp_path, wh):
    register_log_tables(wh, tmp_path, "e1")
    log = RequestLog(tmp_path, "e1", flush_interval_s=60)
    _record(log, "r1")
    log.close()
    log.close()  # twice is fine
    _record(log, "r2")
    assert log.flush() == 0
    assert _count(wh) == 1


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from shipyard.serving.logs import RequestLog

    log = RequestLog(sys.argv[1], "e1", flush_interval_s=3600)
    def rec(i):
        log.record(request_id=f"r{i}", deployment_id="d1", model="m.m", model_version=1,
                   shadow=False, instances=[{"x": i}], predictions=[{"predicted_y": i}],
                   latency_ms=1.0)
    for i in range(10):
        rec(i)
    log.flush()
    for i in range(10, 15):
        rec(i)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    # a normal exit: atexit flushes the last five
    """
)


@pytest.mark.slow  # a fresh interpreter imports shipyard: ~2 s, more on a busy machine
@pytest.mark.parametrize(("how", "kept"), [("kill", 10), ("exit", 15)])
def test_a_killed_process_loses_only_unflushed_rows(tmp_path, wh, how, kept):
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path), how], capture_output=True, timeout=60
    )
    assert done.returncode == (-9 if how == "kill" else 0), done.stderr.decode()
    register_log_tables(wh, tmp_path, "e1")
    ids = wh.query("SELECT request_id FROM endpoint_logs.e1").column("request_id").to_pylist()
    assert sorted(ids, key=lambda s: int(s[1:])) == [f"r{i}" for i in range(kept)]


def test_feedback_is_stored_and_validated(tmp_path, wh):
    register_log_tables(wh, tmp_path, "e1")
    stored = record_feedback(
        tmp_path,
        "e1",
        [
            {"request_id": "r1", "ground_truth": "cat"},
            {"request_id": "r2", "instance_index": 3, "ground_truth": {"y": 1.5}},
        ],
    )
    assert stored == 2
    rows = wh.query(
        "SELECT request_id, instance_index, ground_truth FROM endpoint_logs.e1_feedback "
        "ORDER BY request_id"
    ).to_pylist()
    assert rows == [
        {"request_id": "r1", "instance_index": 0, "ground_truth": '"cat"'},
        {"request_id": "r2", "instance_index": 3, "ground_truth": '{"y":1.5}'},
    ]
    assert record_feedback(tmp_path, "e1", []) == 0

    bad_batches = [
        (
            [{"request_id": "r1", "ground_truth": 1}, {"ground_truth": 1}],
            "item 1 needs a request_id",
        ),
        ([{"request_id": "", "ground_truth": 1}], "item 0 needs a request_id"),
        ([{"request_id": "r", "instance_index": -1, "ground_truth": 1}], "invalid instance_index"),
        (
            [{"request_id": "r", "instance_index": True, "ground_truth": 1}],
            "invalid instance_index",
        ),
        ([{"request_id": "r"}], "item 0 needs a ground_truth"),
        ([{"request_id": "r", "ground_truth": 1, "truth": 2}], "unknown field(s) ['truth']"),
        (["r1"], "item 0 must be an object"),
        ({"request_id": "r1"}, "must be a list"),
    ]
    for items, message in bad_batches:
        with pytest.raises(InvalidArgument) as info:
            record_feedback(tmp_path, "e1", items)  # type: ignore[arg-type]
        assert message in str(info.value)
    # One bad item rejects its whole batch: nothing more was written.
    assert _count(wh, "endpoint_logs.e1_feedback") == 2
    assert len(list(feedback_dir(tmp_path, "e1").glob("part-*.parquet"))) == 1


def test_bad_arguments_are_refused(tmp_path):
    bad: list[tuple[dict[str, Any], str]] = [
        ({"sample_rate": 1.5}, "invalid sample_rate 1.5"),
        ({"sample_rate": -0.1}, "invalid sample_rate"),
        ({"flush_interval_s": 0}, "invalid flush_interval_s 0"),
        ({"max_rows": 0}, "invalid max_rows 0"),
    ]
    for kwargs, message in bad:
        with pytest.raises(InvalidArgument, match=message):
            RequestLog(tmp_path, "e1", **kwargs)
    for name in ("../etc", "a/b", "", "a.b", "-x"):
        with pytest.raises(InvalidArgument, match="invalid endpoint name"):
            RequestLog(tmp_path, name)
        with pytest.raises(InvalidArgument, match="invalid endpoint name"):
            record_feedback(tmp_path, name, [])
    assert not (Path(tmp_path) / "etc").exists()
    assert log_table_name("Fraud-V2") == "fraud_v2"


def test_tables_are_written_as_json_by_the_flush(tmp_path, wh):
    """Arrow tables handed to record() become the same JSON objects, off the serving thread."""
    import pyarrow as pa

    register_log_tables(wh, tmp_path, "e1")
    inputs = pa.table({"x": [1.0, None, 0.1], "y": [3.0, 4.0, math.nan]})
    outputs = pa.table(
        {
            "predicted_y": [0.5, math.inf, -1e20],
            "probs": [[0.25, 0.75], [math.nan, 1.0], None],
            "label": ['a "quoted", NaN]', "é\n", None],
        }
    )
    other = pa.table({"k": pa.array([7], pa.int64()), "flag": [True]})
    with RequestLog(tmp_path, "e1", flush_interval_s=60) as log:
        common = dict(deployment_id="d1", model="demo.m", model_version=1, shadow=False)
        log.record(request_id="t1", instances=inputs, predictions=outputs, latency_ms=1.0, **common)
        log.record(  # Python objects between two tables of one schema
            request_id="p1", instances=[{"x": 9}], predictions=[{"y": 1}], latency_ms=1.0, **common
        )
        log.record(  # a second schema, and a failure that predicted nothing
            request_id="t2", instances=other, predictions=[], latency_ms=1.0, status=500, **common
        )
        log.record(
            request_id="t3",
            instances=inputs.slice(1, 1),
            predictions=outputs.slice(1, 1),
            latency_ms=1.0,
            **common,
        )
    rows = {
        (r["request_id"], r["instance_index"]): r
        for r in wh.query("SELECT * FROM endpoint_logs.e1").to_pylist()
    }
    assert set(rows) == {("t1", 0), ("t1", 1), ("t1", 2), ("p1", 0), ("t2", 0), ("t3", 0)}
    got = {
        key: (json.loads(r["inputs"]), r["outputs"] and json.loads(r["outputs"]))
        for key, r in rows.items()
    }
    assert got[("t1", 0)] == (
        {"x": 1.0, "y": 3.0},
        {"predicted_y": 0.5, "probs": [0.25, 0.75], "label": 'a "quoted", NaN]'},
    )
    # NaN and infinities become null, at the top level and inside lists; text is kept as sent.
    assert got[("t1", 1)] == (
        {"x": None, "y": 4.0},
        {"predicted_y": None, "probs": [None, 1.0], "label": "é\n"},
    )
    assert got[("t1", 2)] == (
        {"x": 0.1, "y": None},
        {"predicted_y": -1e20, "probs": None, "label": None},
    )
    assert got[("t3", 0)] == got[("t1", 1)]
    assert got[("p1", 0)] == ({"x": 9}, {"y": 1})
    assert got[("t2", 0)] == ({"k": 7, "flag": True}, None)
    assert rows[("t2", 0)]["status"] == 500
    # DuckDB reads every text back as JSON (NaN would have been refused).
    assert (
        wh.query(
            "SELECT count(*) AS n FROM endpoint_logs.e1 WHERE json_valid(inputs) "
            "AND (outputs IS NULL OR json_valid(outputs))"
        )
        .column("n")[0]
        .as_py()
        == 6
    )


def test_a_table_duckdb_cannot_write_is_logged_all_the_same(tmp_path, wh, monkeypatch):
    import pyarrow as pa

    import shipyard.serving.logs as logs

    def refuse(table, duck):
        raise RuntimeError("not writable")

    monkeypatch.setattr(logs, "_rows_as_json", refuse)  # as DuckDB would fail on an odd type
    register_log_tables(wh, tmp_path, "e1")
    with RequestLog(tmp_path, "e1", flush_interval_s=60) as log:
        log.record(
            request_id="t1",
            deployment_id="d1",
            model="demo.m",
            model_version=1,
            shadow=False,
            instances=pa.table({"x": [1.5, None]}),
            predictions=pa.table({"y": [2.0, 3.0]}),
            latency_ms=1.0,
        )
        assert log.flush() == 2 and log.flush_errors == 0
    rows = wh.query("SELECT inputs, outputs FROM endpoint_logs.e1 ORDER BY instance_index")
    assert [json.loads(v) for v in rows.column("inputs").to_pylist()] == [{"x": 1.5}, {"x": None}]
    assert [json.loads(v) for v in rows.column("outputs").to_pylist()] == [{"y": 2.0}, {"y": 3.0}]
