"""`shipyard models show` prints a model's expiration time (OPTIONS(expiration_timestamp=…))."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import shipyard as sy
from shipyard.cli.main import app

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_models_show_prints_the_expiration(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = sy.connect(home)
    ws.load_table("demo.t", [{"x": float(i), "y": 2.0 * i} for i in range(12)])
    ws.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "expiration_timestamp=TIMESTAMP '2041-02-03 04:05:06+00') AS SELECT * FROM demo.t"
    )
    ws.sql("CREATE MODEL demo.keep OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
           "AS SELECT * FROM demo.t")  # fmt: skip
    ws.close()
    text = run("--home", home, "models", "show", "demo.m").stdout
    assert "expires: 2041-02-03T04:05:06+00:00" in text
    shown = json.loads(run("--home", home, "models", "show", "demo.m", "--json").stdout)
    assert shown["model"]["expiration_time"].startswith("2041-02-03T04:05:06")
    assert "expires:" not in run("--home", home, "models", "show", "demo.keep").stdout
