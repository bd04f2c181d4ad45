"""Batch prediction: every source and destination kind gives exactly ML.PREDICT's rows; bad input
is refused before a job starts; a killed or cancelled job resumes without redoing its chunks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import shipyard as sy
from shipyard.client.local import LocalWorkspace
from shipyard.demo import _tables
from shipyard.engine import JobState
from shipyard.serving.batch import BatchPredictionService

CANCER_ROWS = 569


def _train(ws: LocalWorkspace) -> None:
    tables = _tables()
    ws.load_table("d.bc", tables["breast_cancer"][0]())
    ws.load_table("d.db", tables["diabetes"][0]())
    ws.sql(
        "CREATE MODEL d.clf OPTIONS(model_type='boosted_tree_classifier', "
        "input_label_cols=['diagnosis']) AS SELECT * FROM d.bc"
    )
    ws.sql(
        "CREATE MODEL d.lin OPTIONS(model_type='linear_reg', input_label_cols=['progression']) "
        "AS SELECT * FROM d.db"
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with d.bc, d.db and two models, trained once for the module."""
    home = tmp_path_factory.mktemp("batch") / "home"
    with sy.connect(home) as ws:
        _train(ws)
    return home


@pytest.fixture
def ws(trained: Path) -> Iterator[LocalWorkspace]:
    with sy.connect(trained) as workspace:
        yield workspace


def _run(ws: LocalWorkspace, model: str, **kwargs: Any) -> Any:
    job = ws.batch_predict(model, **kwargs)
    done = ws.jobs.wait(job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED, (done.error, [ln.line for ln in ws.jobs.logs(job.id)])
    return done


def _ml_predict(ws: LocalWorkspace, model: str, relation: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ws.sql(
        f"SELECT * FROM ML.PREDICT(MODEL {model}, {relation})"
    ).to_pylist()
    return rows


def _rows(ws: LocalWorkspace, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ws.sql(f"SELECT * FROM {table}").to_pylist()
    return rows


# -- equality with ML.PREDICT ----------------------------------------------------------------------


def test_table_to_table_equals_ml_predict_with_an_uneven_last_chunk(ws: LocalWorkspace) -> None:
    job = _run(ws, "d.clf", source="d.bc", destination="d.scored", chunk_rows=50)
    assert job.result["rows"] == CANCER_ROWS
    assert job.result["chunks"] == 12  # 11 x 50 + 19
    assert job.result["chunks_written"] == 12 and job.result["chunks_skipped"] == 0
    assert job.progress == 1.0
    assert _rows(ws, "d.scored") == _ml_predict(ws, "d.clf", "TABLE d.bc")
    # The write is a table version, with lineage from the model version and the source table.
    versions = ws.tables.versions("d.scored")
    assert versions[-1].version == job.result["table_version"]
    assert versions[-1].source == {"kind": "batch_predict", "job_id": job.id, "mode": "truncate"}
    graph = ws.lineage("tables/d.scored", direction="upstream", depth=1)
    uris = {a.uri for a in graph.artifacts}
    assert {"models/d.clf/versions/1", "tables/d.bc/versions/1"} <= uris
    logs = [line.line for line in ws.jobs.logs(job.id)]
    assert logs[-1].startswith(f"done: {CANCER_ROWS} rows in 12 chunks (12 predicted, 0 reused")


def test_linear_regression_matches_ml_predict(ws: LocalWorkspace) -> None:
    _run(ws, "d.lin", source="d.db", destination="d.lin_scored", chunk_rows=64)
    got, expected = _rows(ws, "d.lin_scored"), _ml_predict(ws, "d.lin", "TABLE d.db")
    assert len(got) == len(expected) == 442
    assert next(iter(got[0])) == "predicted_progression"
    assert got == expected


def test_linear_regression_exact_whatever_the_chunk_size(ws: LocalWorkspace) -> None:
    _run(ws, "d.lin", source="d.db", destination="d.lin_uneven", chunk_rows=50)
    assert _rows(ws, "d.lin_uneven") == _ml_predict(ws, "d.lin", "TABLE d.db")


def test_linear_regression_with_odd_chunks_within_one_ulp(ws: LocalWorkspace) -> None:
    _run(ws, "d.lin", source="d.db", destination="d.lin_odd", chunk_rows=50)
    got, expected = _rows(ws, "d.lin_odd"), _ml_predict(ws, "d.lin", "TABLE d.db")
    key = "predicted_progression"
    np.testing.assert_allclose(
        [r[key] for r in got], [r[key] for r in expected], rtol=1e-13, atol=0
    )
    assert [{**r, key: 0} for r in got] == [{**r, key: 0} for r in expected]


def test_query_source_with_bigquery_names_threshold_and_predictions_only(
    ws: LocalWorkspace,
) -> None:
    query = "SELECT * FROM `my-project.d.bc` WHERE mean_radius > 15 ORDER BY mean_area"
    _run(
        ws,
        "d.clf",
        source=query,
        destination="d.big",
        chunk_rows=40,
        threshold=0.3,
        keep_original_columns=False,
    )
    expected = _ml_predict(
        ws,
        "d.clf",
        "(SELECT * FROM d.bc WHERE mean_radius > 15 ORDER BY mean_area), "
        "STRUCT(0.3 AS threshold, FALSE AS keep_original_columns)",
    )
    got = _rows(ws, "d.big")
    assert got == expected and list(got[0]) == ["predicted_diagnosis", "predicted_diagnosis_probs"]


def test_file_sources_csv_jsonl_and_a_glob_of_parquet_files(
    ws: LocalWorkspace, tmp_path: Path
) -> None:
    table = ws.sql("SELECT * FROM d.bc").to_arrow()
    csv_path, jsonl_path = tmp_path / "bc.csv", tmp_path / "bc.jsonl"
    pacsv.write_csv(table, csv_path)
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, CANCER_ROWS, 200)):
        pq.write_table(table.slice(start, 200), parts / f"bc-{i}.parquet")

    for path, name in ((csv_path, "d.bc_csv"), (jsonl_path, "d.bc_jsonl")):
        ws.load_table(name, path)  # DuckDB's readers, as batch prediction uses
        _run(ws, "d.clf", source=str(path), destination=f"{name}_scored", chunk_rows=64)
        assert _rows(ws, f"{name}_scored") == _ml_predict(ws, "d.clf", f"TABLE {name}")

    expected = _ml_predict(ws, "d.clf", "TABLE d.bc")
    _run(ws, "d.clf", source=str(parts / "*.parquet"), destination="d.bc_glob", chunk_rows=64)
    assert _rows(ws, "d.bc_glob") == expected
    _run(ws, "d.clf", source=parts, destination="d.bc_folder", chunk_rows=1000)
    assert _rows(ws, "d.bc_folder") == expected
    listed = [parts / "bc-0.parquet", str(parts / "bc-1.parquet"), parts / "bc-2.parquet"]
    job = _run(ws, "d.clf", source=listed, destination="d.bc_list", chunk_rows=64)
    assert _rows(ws, "d.bc_list") == expected
    assert job.result["rows"] == CANCER_ROWS
    graph = ws.lineage("tables/d.bc_list", direction="upstream", depth=1)
    assert (parts / "bc-1.parquet").as_uri() in {a.uri for a in graph.artifacts}


def test_file_destinations_parquet_csv_jsonl_and_a_folder(
    ws: LocalWorkspace, tmp_path: Path
) -> None:
    expected = _ml_predict(ws, "d.clf", "TABLE d.bc")
    _run(ws, "d.clf", source="d.bc", destination=tmp_path / "out.parquet", chunk_rows=100)
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == expected

    _run(ws, "d.clf", source="d.bc", destination=str(tmp_path / "out.jsonl"), chunk_rows=100)
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == expected

    _run(ws, "d.clf", source="d.bc", destination=str(tmp_path / "out.csv"), chunk_rows=100)
    csv_rows = pacsv.read_csv(tmp_path / "out.csv").to_pylist()
    assert len(csv_rows) == CANCER_ROWS
    assert [r["predicted_diagnosis"] for r in csv_rows] == [
        r["predicted_diagnosis"] for r in expected
    ]
    assert [r["mean_area"] for r in csv_rows] == [r["mean_area"] for r in expected]

    folder = tmp_path / "scored"
    job = _run(ws, "d.clf", source="d.bc", destination=f"{folder}/", chunk_rows=100)
    assert sorted(p.name for p in folder.iterdir()) == [f"part-{i:06d}.parquet" for i in range(6)]
    assert pq.read_table(folder).to_pylist() == expected
    assert job.result["destination_kind"] == "folder"
    # Nothing is left behind: no staging folder, no temporary files next to the outputs.
    assert not any((ws.home / "batch").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.csv",
        "out.jsonl",
        "out.parquet",
        "scored",
    ]


def test_empty_source_makes_an_empty_destination_with_ml_predict_columns(
    ws: LocalWorkspace,
) -> None:
    job = _run(ws, "d.clf", source="SELECT * FROM d.bc WHERE FALSE", destination="d.nothing")
    assert job.result["rows"] == 0
    info = ws.tables.get("d.nothing")
    assert info.num_rows == 0
    assert [c.name for c in info.columns][:2] == [
        "predicted_diagnosis",
        "predicted_diagnosis_probs",
    ]
    assert len(info.columns) == 2 + len(ws.tables.get("d.bc").columns)


def test_version_and_alias_pick_the_model(ws: LocalWorkspace) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL d.clf2 OPTIONS(model_type='logistic_reg', "
        "input_label_cols=['diagnosis']) AS SELECT * FROM d.bc"
    )
    ws.sql(
        "CREATE OR REPLACE MODEL d.clf2 OPTIONS(model_type='boosted_tree_classifier', "
        "input_label_cols=['diagnosis']) AS SELECT * FROM d.bc"
    )
    ws.models.set_alias("d.clf2", "champion", 1)
    by_alias = _run(ws, "d.clf2", source="d.bc", destination="d.by_alias", alias="champion")
    by_version = _run(ws, "d.clf2", source="d.bc", destination="d.by_version", version=2)
    assert by_alias.result["model_version"] == 1 and by_version.result["model_version"] == 2
    assert (
        _rows(ws, "d.by_alias") == ws.models.predict("d.clf2", _source(ws), version=1).to_pylist()
    )
    assert _rows(ws, "d.by_version") == _ml_predict(ws, "d.clf2", "TABLE d.bc")


def _source(ws: LocalWorkspace) -> pa.Table:
    return ws.sql("SELECT * FROM d.bc").to_arrow()


# -- write modes -----------------------------------------------------------------------------------


def test_write_modes_for_tables_and_folders(ws: LocalWorkspace, tmp_path: Path) -> None:
    _run(ws, "d.clf", source="d.bc", destination="d.modes", chunk_rows=300)
    first = ws.tables.get("d.modes")
    _run(ws, "d.clf", source="d.bc", destination="d.modes", write_mode="append")
    assert ws.tables.get("d.modes").num_rows == 2 * CANCER_ROWS
    assert ws.tables.get("d.modes").version == first.version + 1  # type: ignore[operator]
    with pytest.raises(sy.AlreadyExists, match=r"d\.modes already holds rows"):
        ws.batch_predict("d.clf", source="d.bc", destination="d.modes", write_mode="empty")
    assert ws.tables.get("d.modes").num_rows == 2 * CANCER_ROWS
    _run(ws, "d.clf", source="d.bc", destination="d.modes", write_mode="truncate")
    assert ws.tables.get("d.modes").num_rows == CANCER_ROWS
    _run(ws, "d.clf", source="d.bc", destination="d.modes_new", write_mode="empty")
    assert ws.tables.get("d.modes_new").num_rows == CANCER_ROWS

    folder = tmp_path / "parts"
    _run(ws, "d.clf", source="d.bc", destination=f"{folder}/", chunk_rows=300)
    job = _run(ws, "d.clf", source="d.bc", destination=folder, write_mode="append")
    assert len(list(folder.iterdir())) == 3
    assert (folder / f"part-{job.id[:8]}-000000.parquet").is_file()
    assert pq.read_table(folder).num_rows == 2 * CANCER_ROWS
    with pytest.raises(sy.AlreadyExists, match="not empty"):
        ws.batch_predict("d.clf", source="d.bc", destination=folder, write_mode="empty")
    _run(ws, "d.clf", source="d.bc", destination=folder)  # truncate: the folder's content swaps
    assert pq.read_table(folder).num_rows == CANCER_ROWS

    out = tmp_path / "one.parquet"
    out.write_bytes(b"keep me")
    with pytest.raises(sy.AlreadyExists, match="one.parquet"):
        ws.batch_predict("d.clf", source="d.bc", destination=out, write_mode="empty")
    with pytest.raises(sy.InvalidArgument, match="append"):
        ws.batch_predict("d.clf", source="d.bc", destination=out, write_mode="append")
    assert out.read_bytes() == b"keep me"


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "d.nope"}, sy.NotFound, r"d\.nope"),
        ({"version": 9}, sy.NotFound, "no version 9"),
        ({"alias": "gold"}, sy.NotFound, "no alias 'gold'"),
        ({"version": 1, "alias": "default"}, sy.InvalidArgument, "not both"),
        ({"source": "d.missing"}, sy.NotFound, r"d\.missing"),
        ({"source": "/nowhere/x.csv"}, sy.NotFound, "x.csv"),
        ({"source": "/nowhere/*.parquet"}, sy.NotFound, "no files match"),
        ({"source": "SELECT 1 AS x; SELECT 2 AS y"}, sy.InvalidArgument, "one SELECT"),
        ({"source": "SELECT * FROM d.nope"}, sy.NotFound, r"d\.nope"),
        ({"source": "SELECT mean_radius FROM d.bc"}, sy.InvalidArgument, "mean_texture"),
        (
            {"source": "SELECT * FROM ML.PREDICT(MODEL d.clf, TABLE d.bc)"},
            sy.InvalidArgument,
            "ML functions",
        ),
        ({"source": "d.bc", "source_format": "xlsx"}, sy.InvalidArgument, "source_format"),
        ({"destination": "/tmp/out.xlsx"}, sy.InvalidArgument, "unknown extension '.xlsx'"),
        ({"destination": "/nowhere/at/all.parquet"}, sy.NotFound, "does not exist"),
        ({"destination": "not a name"}, sy.InvalidArgument, "invalid table name"),
        ({"chunk_rows": 0}, sy.InvalidArgument, "chunk_rows"),
        ({"parallelism": 0}, sy.InvalidArgument, "parallelism"),
        ({"write_mode": "overwrite"}, sy.InvalidArgument, "truncate, append, empty"),
        ({"threshold": 1.5}, sy.InvalidArgument, "threshold"),
        (
            {"model": "d.lin", "source": "d.db", "threshold": 0.5},
            sy.InvalidArgument,
            "binary classification",
        ),
    ],
)
def test_bad_input_is_refused_before_a_job_starts(
    ws: LocalWorkspace, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"model": "d.clf", "source": "d.bc", "destination": "d.bad"}
    args.update(kwargs)
    before = ws.jobs.list(kind="batch_predict", page_size=1000).items
    with pytest.raises(error, match=match):
        ws.batch_predict(args.pop("model"), **args)
    assert ws.jobs.list(kind="batch_predict", page_size=1000).items == before
    assert not any(t.name == "d.bad" for t in ws.tables.list().items)


def test_missing_input_columns_are_named(ws: LocalWorkspace, tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("mean_radius,worst_area\n1.0,2.0\n")
    with pytest.raises(sy.InvalidArgument) as info:
        ws.batch_predict("d.clf", source=path, destination="d.bad")
    assert "mean_texture" in info.value.details["missing"]
    assert "mean_radius" not in info.value.details["missing"]
    odd = tmp_path / "data.txt"
    odd.write_text("a\n1\n")
    with pytest.raises(sy.InvalidArgument, match="cannot tell the format of 'data.txt'"):
        ws.batch_predict("d.clf", source=[odd], destination="d.bad")
    with pytest.raises(sy.InvalidArgument, match=r"predicted_diagnosis"):
        ws.batch_predict(
            "d.clf",
            source="SELECT *, 'x' AS predicted_diagnosis FROM d.bc",
            destination="d.bad",
        )


# -- cancel and resume -----------------------------------------------------------------------------


@pytest.fixture
def slow_chunks(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Each chunk takes 20 ms more; ``release`` set makes them fast again."""
    release = threading.Event()
    original = BatchPredictionService._predict_chunk

    def slow(*args: Any) -> tuple[int, int]:
        if not release.is_set():
            time.sleep(0.02)
        return original(*args)

    monkeypatch.setattr(BatchPredictionService, "_predict_chunk", staticmethod(slow))
    return release


def _staged(home: Path) -> list[dict[str, Any]]:
    manifests = list((home / "batch").glob("*/chunks.jsonl"))
    if not manifests:
        return []
    return [json.loads(line) for line in manifests[0].read_text().splitlines() if line]


def test_cancel_then_resume_skips_the_written_chunks(
    ws: LocalWorkspace, slow_chunks: threading.Event
) -> None:
    job = ws.batch_predict(
        "d.clf", source="d.bc", destination="d.resumed", chunk_rows=10, parallelism=1
    )
    deadline = time.monotonic() + 30
    while len(_staged(ws.home)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    running = ws.jobs.get(job.id)
    assert running.state is JobState.RUNNING
    assert running.progress is not None and 0 < running.progress < 1  # a table's size is known
    assert running.progress_message is not None and "rows" in running.progress_message
    ws.jobs.cancel(job.id)
    cancelled = ws.jobs.wait(job.id, timeout=30)
    assert cancelled.state is JobState.CANCELLED
    staged = _staged(ws.home)
    assert 5 <= len(staged) < 57
    with pytest.raises(sy.NotFound):
        ws.tables.get("d.resumed")  # nothing is visible until every chunk is done

    slow_chunks.set()
    resumed = ws.batch_predict_resume(job.id)
    assert resumed.params["resumed_from"] == job.id
    done = ws.jobs.wait(resumed.id, timeout=60)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["chunks"] == 57
    assert done.result["chunks_skipped"] == len(staged)
    assert done.result["chunks_written"] == 57 - len(staged)
    assert _rows(ws, "d.resumed") == _ml_predict(ws, "d.clf", "TABLE d.bc")
    logs = [line.line for line in ws.jobs.logs(resumed.id)]
    assert logs[0].startswith(f"resuming job {job.id}: {len(staged)} chunks")
    with pytest.raises(sy.FailedPrecondition, match="already succeeded"):
        ws.batch_predict_resume(resumed.id)


def test_resume_refuses_what_cannot_be_resumed(ws: LocalWorkspace, trained: Path) -> None:
    with pytest.raises(sy.NotFound):
        ws.batch_predict_resume("nope")
    query = ws.submit_sql("SELECT 1")
    ws.jobs.wait(query.id)
    with pytest.raises(sy.InvalidArgument, match="only 'batch_predict' jobs"):
        ws.batch_predict_resume(query.id)

    ws.load_table("d.changing", _source(ws))
    job = ws.batch_predict("d.clf", source="d.changing", destination="d.never", chunk_rows=100)
    ws.jobs.cancel(job.id)
    job = ws.jobs.wait(job.id, timeout=30)
    if job.state is JobState.SUCCEEDED:  # finished before the cancel arrived: nothing to test
        pytest.skip("the job finished before it could be cancelled")
    ws.load_table("d.changing", _source(ws).slice(0, 10))
    with pytest.raises(sy.FailedPrecondition, match=r"d\.changing changed"):
        ws.batch_predict_resume(job.id)


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import shipyard as sy
    from shipyard.serving.batch import BatchPredictionService

    original = BatchPredictionService._predict_chunk

    def slow(*args):
        time.sleep(0.05)
        return original(*args)

    BatchPredictionService._predict_chunk = staticmethod(slow)
    ws = sy.connect(sys.argv[1])
    job = ws.batch_predict(
        "d.clf", source="d.bc", destination="d.killed", chunk_rows=10, parallelism=1
    )
    print(job.id, flush=True)
    ws.jobs.wait(job.id)
    """
)


@pytest.mark.slow
def test_a_killed_job_is_failed_on_reopen_and_resumes_without_redoing_chunks(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with sy.connect(home) as ws:
        ws.load_table("d.bc", _tables()["breast_cancer"][0]())
        ws.sql(
            "CREATE MODEL d.clf OPTIONS(model_type='boosted_tree_classifier', "
            "input_label_cols=['diagnosis'], max_iterations=5) AS SELECT * FROM d.bc"
        )
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT, str(home)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        job_id = proc.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while len(_staged(home)) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert job_id and proc.returncode == -signal.SIGKILL
    staged = _staged(home)
    assert 5 <= len(staged) < 57
    with sy.connect(home) as ws:
        dead = ws.jobs.get(job_id)
        assert dead.state is JobState.FAILED
        assert "stopped before it finished" in dead.error["message"]
        resumed = ws.batch_predict_resume(job_id)
        done = ws.jobs.wait(resumed.id, timeout=60)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.result["chunks_skipped"] == len(staged)
        assert done.result["chunks_written"] == 57 - len(staged)
        assert _rows(ws, "d.killed") == _ml_predict(ws, "d.clf", "TABLE d.bc")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_stays_bounded_on_two_million_rows(ws: LocalWorkspace, tmp_path: Path) -> None:
    source = tmp_path / "big.parquet"
    rng = np.random.default_rng(7)
    sample = _source(ws).drop_columns(["diagnosis"])
    with pq.ParquetWriter(source, sample.schema) as writer:
        for _ in range(20):  # 2M rows, written 100k at a time
            idx = rng.integers(0, CANCER_ROWS, 100_000)
            writer.write_table(sample.take(pa.array(idx)))
    size_in_memory = 2_000_000 * sample.num_columns * 8  # ~480 MB of input alone
    peak = [_rss_bytes()]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(_rss_bytes())
            time.sleep(0.02)

    baseline = _rss_bytes()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        job = _run(
            ws,
            "d.clf",
            source=source,
            destination=tmp_path / "scored/",
            chunk_rows=20_000,
            parallelism=2,
        )
    finally:
        stop.set()
        watcher.join()
    assert job.result["rows"] == 2_000_000 and job.result["chunks"] == 100
    growth = max(peak) - baseline
    print(f"RSS growth {growth / 1e6:.0f} MB for {size_in_memory / 1e6:.0f} MB of input")
    # Holding the input (let alone the output) would grow it by more than the whole input.
    assert growth < size_in_memory / 2, f"RSS grew by {growth / 1e6:.0f} MB"
