"""``ws.batch_predict`` and ``ws.batch_predict_resume``, embedded and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import shipyard as sy
from shipyard.engine import JobState


def _setup(ws: Any) -> None:
    rows = pa.table(
        {
            "x": [float(i % 11) for i in range(200)],
            "color": [["red", "blue", "green"][i % 3] for i in range(200)],
            "y": [int(i % 11 > 5) for i in range(200)],
        }
    )
    ws.load_table("demo.points", rows)
    ws.sql(
        "CREATE MODEL demo.clf OPTIONS(model_type='boosted_tree_classifier', "
        "input_label_cols=['y'], max_iterations=5) AS SELECT * FROM demo.points"
    )


def test_batch_predict_table_and_file_and_resume_errors(ws: Any, tmp_path: Path) -> None:
    _setup(ws)
    job = ws.batch_predict(
        "demo.clf", source="demo.points", destination="demo.scored", chunk_rows=30
    )
    assert job.kind == "batch_predict" and job.params["chunk_rows"] == 30
    done = ws.jobs.wait(job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["rows"] == 200 and done.result["chunks"] == 7
    expected = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.clf, TABLE demo.points)").to_pylist()
    assert ws.sql("SELECT * FROM demo.scored").to_pylist() == expected

    out = tmp_path / "scored.parquet"  # a Path: sent as an absolute path to the server
    job = ws.batch_predict(
        "demo.clf", source="SELECT * FROM demo.points WHERE x > 3", destination=out, version=1
    )
    assert ws.jobs.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    filtered = "(SELECT * FROM demo.points WHERE x > 3)"
    assert (
        pq.read_table(out).to_pylist()
        == ws.sql(f"SELECT * FROM ML.PREDICT(MODEL demo.clf, {filtered})").to_pylist()
    )
    listed = ws.jobs.list(kind="batch_predict").items
    assert [j.id for j in listed][:2] == [job.id, done.id]

    with pytest.raises(sy.FailedPrecondition, match="already succeeded"):
        ws.batch_predict_resume(done.id)
    with pytest.raises(sy.NotFound):
        ws.batch_predict_resume("nope")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "demo.nope"}, sy.NotFound, r"demo\.nope"),
        ({"source": "SELECT x FROM demo.points"}, sy.InvalidArgument, "color"),
        ({"destination": "/tmp/out.xlsx"}, sy.InvalidArgument, "xlsx"),
        ({"chunk_rows": -1}, sy.InvalidArgument, "chunk_rows"),
        ({"write_mode": "empty", "destination": "demo.points"}, sy.AlreadyExists, "holds rows"),
    ],
)
def test_batch_predict_bad_input_keeps_its_error_class(
    ws: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    _setup(ws)
    args: dict[str, Any] = {"model": "demo.clf", "source": "demo.points", "destination": "demo.o"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ws.batch_predict(args.pop("model"), **args)
    assert ws.jobs.list(kind="batch_predict").items == []
