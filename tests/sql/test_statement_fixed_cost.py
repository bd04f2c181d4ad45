"""The fixed work of every ``ws.sql`` statement, and that cutting it changes nothing a user sees:
the metadata database hears two writes per statement (the job created RUNNING, then finished)
and one read per model an ML function uses; the job's record is complete and is what ``jobs.get``
reads; a model's alias moved by another workspace on the same home is seen by the next
statement; a script run again from the DuckDB text cache answers for the tables as they are now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import event

import shipyard as sy

_TRAIN = (
    "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
    "data_split_method='no_split') AS SELECT {features}, y FROM demo.t"
)
_PREDICT = "SELECT * FROM ML.PREDICT(MODEL demo.m, (SELECT 1.0 AS a, 1.0 AS b))"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fixed_cost")


@pytest.fixture(scope="module")
def ws(home: Path) -> Iterator[Any]:
    workspace = sy.connect(home)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2))
    y = 2.0 * x[:, 0] - x[:, 1] + 0.01 * rng.normal(size=400)
    workspace.load_table("demo.t", pa.table({"a": x[:, 0], "b": x[:, 1], "y": y}))
    workspace.sql(_TRAIN.format(features="a"))  # version 1: y from a (slope ~2)
    workspace.sql(_TRAIN.format(features="b"))  # version 2, the default: y from b (~ -1)
    yield workspace
    workspace.close()


@pytest.fixture
def statements(ws: Any) -> Iterator[list[str]]:
    """The SQL statements the metadata database receives, and its commits (BEGIN left out)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            seen.append(f"{verb} {_table(statement, verb)}")

    def commit(conn: Any) -> None:
        seen.append("COMMIT")

    engine = ws.ctx.metadata.engine
    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", commit)
    yield seen
    event.remove(engine, "before_cursor_execute", record)
    event.remove(engine, "commit", commit)


def _table(statement: str, verb: str) -> str:
    words = statement.replace("\n", " ").split()
    keyword = {"SELECT": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE", "DELETE": "FROM"}[verb]
    return words[[w.upper() for w in words].index(keyword) + 1]


def test_a_query_writes_its_job_twice_and_reads_nothing(ws: Any, statements: list[str]) -> None:
    ws.sql("SELECT 1 AS one")  # parsed once before counting
    statements.clear()
    out = ws.sql("SELECT 1 AS one")
    assert out.to_pylist() == [{"one": 1}]
    assert statements == ["INSERT jobs", "COMMIT", "UPDATE jobs", "COMMIT"]


def test_ml_predict_adds_one_read_for_its_model(ws: Any, statements: list[str]) -> None:
    ws.sql(_PREDICT)
    statements.clear()
    ws.sql(_PREDICT)
    assert statements == ["INSERT jobs", "COMMIT", "SELECT models", "UPDATE jobs", "COMMIT"]


def test_the_job_of_a_statement_is_complete_and_is_what_jobs_get_reads(ws: Any) -> None:
    for query, rows in (("SELECT a FROM demo.t LIMIT 3", 3), (_PREDICT, 1)):
        out = ws.sql(query)
        job = ws.jobs.get(out.job_id)
        assert job.kind == "query" and job.state == "SUCCEEDED" and job.progress == 1.0
        assert job.params == {"sql": query} and job.description == query
        assert job.created_at == job.started_at <= job.ended_at
        assert job.error is None
        # the record keeps the result's summary (as a submitted job's), never its rows
        assert job.result == out.info()
        assert job.result["job_id"] == job.id and job.result["num_rows"] == rows
        assert job.result["statement_type"] == "SELECT"
        assert ws.jobs.list(kind="query", page_size=1).items[0] == job


def test_the_engine_hands_back_the_record_it_wrote(ws: Any) -> None:
    engine = ws.ctx.engine

    def work(job: sy.engine.JobContext) -> dict[str, Any]:
        job.progress(0.5, "half way")
        job.log("a line")
        return {"answer": 42, "items": (1, 2)}

    job, value = engine.run("test", work, description="d", params={"p": 1, "at": Path("/x")})
    assert value == {"answer": 42, "items": (1, 2)}
    stored = engine.get(job.id)
    assert job == stored
    assert stored.params == {"p": 1, "at": "/x"}  # as the JSON column keeps it
    assert stored.result == {"answer": 42, "items": [1, 2]}
    assert stored.progress == 1.0 and stored.progress_message == "half way"
    assert [line.line for line in engine.logs(job.id)] == ["a line"]

    summarised, _ = engine.run("test", lambda job: object(), summary=lambda v: {"kind": "obj"})
    assert engine.get(summarised.id).result == {"kind": "obj"} == summarised.result

    release = threading.Event()
    queued = engine.submit("test", lambda job: release.wait(10), params={"q": [1]})
    try:
        assert queued.state == "QUEUED" and queued.params == {"q": [1]}
        assert queued.created_at == engine.get(queued.id).created_at
    finally:
        release.set()
    assert engine.wait(queued.id, timeout=10).state == "SUCCEEDED"


def test_a_summary_that_fails_fails_the_job_instead_of_leaving_it_running(ws: Any) -> None:
    engine = ws.ctx.engine

    def bad_summary(value: Any) -> Any:
        raise RuntimeError("no summary")

    with pytest.raises(sy.Internal, match="no summary"):
        engine.run("test-summary", lambda job: 1, summary=bad_summary)
    failed = engine.list(kind="test-summary").items[0]
    assert failed.state == "FAILED" and failed.error and failed.error["code"] == "INTERNAL"


def test_a_failed_statement_is_recorded_with_its_error(ws: Any, statements: list[str]) -> None:
    with pytest.raises(sy.NotFound, match=r"demo\.nope"):
        ws.sql("SELECT * FROM demo.nope")
    # the error's log line and the finished state: one transaction
    assert statements == ["INSERT jobs", "COMMIT", "INSERT job_logs", "UPDATE jobs", "COMMIT"]
    job = ws.jobs.list(kind="query", page_size=1).items[0]
    assert job.state == "FAILED" and job.error and job.error["code"] == "NOT_FOUND"
    assert job.params == {"sql": "SELECT * FROM demo.nope"} and job.ended_at is not None
    assert [line.line for line in ws.ctx.engine.logs(job.id)] == [
        "ERROR NOT_FOUND: table demo.nope not found"
    ]


def test_an_alias_moved_by_another_workspace_is_seen_by_the_next_statement(
    ws: Any, home: Path
) -> None:
    other = sy.connect(home)  # a second workspace object on the same home
    try:
        assert ws.sql(_PREDICT).to_pylist()[0]["predicted_y"] == pytest.approx(-1.0, abs=0.3)
        other.models.set_alias("demo.m", "default", 1)
        assert ws.sql(_PREDICT).to_pylist()[0]["predicted_y"] == pytest.approx(2.0, abs=0.3)
        other.models.set_alias("demo.m", "default", 2)
        assert ws.sql(_PREDICT).to_pylist()[0]["predicted_y"] == pytest.approx(-1.0, abs=0.3)
    finally:
        other.close()


def test_a_model_dropped_by_another_workspace_is_gone_for_the_next_statement(
    ws: Any, home: Path
) -> None:
    ws.sql(_TRAIN.format(features="a").replace("demo.m", "demo.gone"))
    query = "SELECT * FROM ML.PREDICT(MODEL demo.gone, (SELECT 1.0 AS a))"
    assert ws.sql(query).num_rows == 1
    other = sy.connect(home)
    try:
        other.sql("DROP MODEL demo.gone")
    finally:
        other.close()
    with pytest.raises(sy.NotFound, match=r"model demo\.gone not found"):
        ws.sql(query)


def test_a_script_run_again_answers_for_the_tables_as_they_are_now(ws: Any) -> None:
    query = "SELECT * FROM demo.changing ORDER BY 1"
    ws.sql("CREATE OR REPLACE TABLE demo.changing AS SELECT 1 AS x")
    assert ws.sql(query).to_pylist() == [{"x": 1}]
    assert ("statement", query) in ws._sql._duckdb_texts  # kept by the script's text
    ws.sql(
        "CREATE OR REPLACE TABLE demo.changing AS SELECT 'b' AS y, 2 AS x UNION ALL SELECT 'a', 3"
    )
    assert ws.sql(query).to_pylist() == [{"y": "a", "x": 3}, {"y": "b", "x": 2}]
    ws.sql("DROP TABLE demo.changing")
    with pytest.raises(sy.NotFound, match=r"demo\.changing"):
        ws.sql(query)


def test_which_duckdb_texts_are_kept_and_that_runs_from_them_agree(ws: Any) -> None:
    texts = ws._sql._duckdb_texts
    first = ws.sql(_PREDICT).to_arrow()
    assert ws.sql(_PREDICT).to_arrow().equals(first)
    assert ("input", _PREDICT) in texts  # the input of its only ML function
    assert ("statement", _PREDICT) not in texts  # the statement reads a fresh name each time
    nested = (
        "SELECT count(*) AS n, sum(predicted_y) AS s FROM ML.PREDICT(MODEL demo.m, "
        "(SELECT a, b FROM ML.PREDICT(MODEL demo.m, (SELECT a, b FROM demo.t))))"
    )
    once = ws.sql(nested).to_pylist()
    assert ws.sql(nested).to_pylist() == once and once[0]["n"] == 400
    assert not [key for key in texts if key[1] == nested]  # two calls: nothing kept
    with_cte = (
        "WITH pos AS (SELECT a, b FROM demo.t WHERE a > 0) "
        "SELECT count(*) AS n FROM ML.PREDICT(MODEL demo.m, TABLE pos)"
    )
    counted = ws.sql(with_cte).to_pylist()
    assert ws.sql(with_cte).to_pylist() == counted
    assert ("input", with_cte) in texts
    assert (
        counted[0]["n"]
        == ws.sql("SELECT count(*) AS n FROM demo.t WHERE a > 0").to_pylist()[0]["n"]
    )
    script = "SELECT 1 AS a; SELECT 2 AS a"
    assert ws.sql(script).to_pylist() == [{"a": 2}]
    assert not [key for key in texts if key[1] == script]  # scripts: nothing kept
    bucketize = "SELECT ML.BUCKETIZE(2.5, [1, 2, 3]) AS b"
    plain = ws.sql(bucketize).to_pylist()
    assert ws.sql(bucketize).to_pylist() == plain == [{"b": "bin_3"}]
    assert ("statement", bucketize) in texts
