"""``shipyard batch-predict`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shipyard.cli.main import app

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    csv = tmp_path / "points.csv"
    lines = ["x,color,y"] + [f"{i % 9},{['red', 'blue'][i % 2]},{i % 9 * 2.5}" for i in range(90)]
    csv.write_text("\n".join(lines) + "\n")
    assert run("--home", home, "tables", "load", "demo.t", csv).exit_code == 0
    created = run(
        "--home",
        home,
        "sql",
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t",
    )
    assert created.exit_code == 0, created.output
    return home


def test_batch_predict_to_a_table_and_a_file(home: Path, tmp_path: Path) -> None:
    result = run(
        "--home", home, "batch-predict", "demo.m", "--from", "demo.t", "--to", "demo.out",
        "--chunk-rows", 32, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "SUCCEEDED"
    assert job["result"]["rows"] == 90 and job["result"]["chunks"] == 3
    rows = run("--home", home, "sql", "SELECT count(*) AS n FROM demo.out", "--json")
    assert json.loads(rows.stdout) == [{"n": 90}]

    out = tmp_path / "scored.parquet"
    plain = run("--home", home, "batch-predict", "demo.m", "--from", "demo.t", "--to", out)
    assert plain.exit_code == 0, plain.output
    assert "90 rows predicted with demo.m v1" in plain.stdout
    assert pq.read_table(out).column_names[:2] == ["predicted_y", "x"]


def test_batch_predict_errors_exit_with_their_codes(home: Path) -> None:
    missing = run("--home", home, "batch-predict", "demo.m", "--from", "demo.t")
    assert missing.exit_code == 2 and "--to" in missing.output
    unknown = run("--home", home, "batch-predict", "demo.nope", "--from", "demo.t", "--to", "d.o")
    assert unknown.exit_code == 3 and "demo.nope" in unknown.output
    bad = run(
        "--home", home, "batch-predict", "demo.m", "--from", "SELECT x FROM demo.t", "--to", "d.o"
    )
    assert bad.exit_code == 2 and "color" in bad.output
    resumed = run("--home", home, "batch-predict", "--resume", "nope")
    assert resumed.exit_code == 3
    detached = run(
        "--home", home, "batch-predict", "demo.m", "--from", "demo.t", "--to", "d.o", "--no-wait"
    )
    assert detached.exit_code == 2 and "needs a server" in detached.output
