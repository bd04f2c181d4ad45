"""``shipyard lineage`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import shipyard as sy
from shipyard.cli.main import app

runner = CliRunner()


def test_lineage_tree_and_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(1, 9)))
    ws = sy.connect(home)
    ws.load_table("demo.t", csv)
    ws.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    ws.close()
    shown = runner.invoke(app, ["--home", str(home), "lineage", "models/demo.m"])
    assert shown.exit_code == 0, shown.output
    assert "models/demo.m/versions/1" in shown.output
    assert "CREATE_MODEL" in shown.output and "tables/demo.t/versions/1" in shown.output
    raw = runner.invoke(
        app,
        ["--home", str(home), "lineage", "tables/demo.t", "--direction", "downstream", "--json"],
    )
    assert raw.exit_code == 0, raw.output
    graph = json.loads(raw.output)
    assert "models/demo.m/versions/1" in [a["uri"] for a in graph["artifacts"]]
    missing = runner.invoke(app, ["--home", str(home), "lineage", "models/demo.nope"])
    assert missing.exit_code == 3
