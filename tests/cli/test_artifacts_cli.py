"""``shipyard runs log-artifact`` and ``shipyard runs artifacts`` as a user runs them."""

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


def test_log_list_and_download(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with sy.connect(home) as ws:
        ws.experiments.create("e")
        run_id = ws.runs.create("e").id
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "roc.png").write_bytes(b"\x89PNG" * 100)
    result = run("--home", home, "runs", "log-artifact", run_id, folder, "--artifact-path", "eval")
    assert result.exit_code == 0, result.output
    assert "1 file(s), 400 bytes" in result.output

    listed = run("--home", home, "runs", "artifacts", run_id, "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [{"path": "eval", "is_dir": True, "size": None}]
    table = run("--home", home, "runs", "artifacts", run_id, "eval")
    assert "eval/roc.png" in table.output and "400" in table.output

    got = run("--home", home, "runs", "artifacts", run_id, "--download", tmp_path / "out")
    assert got.exit_code == 0, got.output
    assert (tmp_path / "out" / "eval" / "roc.png").read_bytes() == b"\x89PNG" * 100

    bad = run("--home", home, "runs", "artifacts", run_id, "../up")
    assert bad.exit_code != 0 and "'..' is not allowed" in bad.output
    missing = run("--home", home, "runs", "artifacts", "0" * 32)
    assert missing.exit_code != 0 and "not found" in missing.output
