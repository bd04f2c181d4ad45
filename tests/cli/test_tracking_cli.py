"""``shipyard experiments`` and ``shipyard runs`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import shipyard as sy
from shipyard.cli.main import app

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tracked(tmp_path: Path) -> tuple[Path, list[str]]:
    home = tmp_path / "home"
    ws = sy.connect(home)
    ids = []
    for exp in ("a", "b"):
        ws.experiments.create(exp)
        for depth in (3, 6):
            r = ws.runs.create(exp, name=f"{exp}-{depth}")
            ws.runs.log_batch(r.id, [("auc", depth / 10 + (exp == "b"))], params={"depth": depth})
            ids.append(r.id)
    ws.runs.end(ids[0])
    ws.close()
    return home, ids


def test_experiments_and_runs_list(tracked: tuple[Path, list[str]]) -> None:
    home, ids = tracked
    exps = run("--home", home, "experiments", "list", "--json")
    assert exps.exit_code == 0, exps.output
    assert [e["name"] for e in json.loads(exps.stdout)] == ["a", "b"]
    every = run("--home", home, "runs", "list", "--json")
    assert {r["id"] for r in json.loads(every.stdout)} == set(ids)
    narrowed = run(
        "--home",
        home,
        "runs",
        "list",
        "--experiment",
        "a",
        "--filter",
        "params.depth = '6'",
        "--json",
    )
    assert [r["id"] for r in json.loads(narrowed.stdout)] == [ids[1]]
    table = run("--home", home, "runs", "list", "--order-by", "metrics.auc DESC")
    assert table.exit_code == 0, table.output
    order = [table.stdout.index(i) for i in (ids[3], ids[2], ids[1], ids[0])]
    assert order == sorted(order)  # ids are never cut; highest auc first
    bad = run("--home", home, "runs", "list", "--filter", "metrics.auc >")
    assert bad.exit_code == 2 and "position 14" in bad.stderr
    missing = run("--home", home, "runs", "list", "--experiment", "nope")
    assert missing.exit_code == 3


def test_runs_show_and_compare(tracked: tuple[Path, list[str]]) -> None:
    home, ids = tracked
    shown = run("--home", home, "runs", "show", ids[0], "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["status"] == "FINISHED"
    text = run("--home", home, "runs", "show", ids[0])
    assert "a-3" in text.stdout and "depth" in text.stdout and "FINISHED" in text.stdout
    compared = run("--home", home, "runs", "compare", ids[0], ids[3], "--json")
    assert json.loads(compared.stdout) == {
        "runs": [ids[0], ids[3]],
        "params": {"depth": ["3", "6"]},
        "metrics": {"auc": [0.3, 1.6]},
    }
    table = run("--home", home, "runs", "compare", ids[0], ids[3])
    assert table.exit_code == 0 and ids[0][:8] in table.stdout and "auc" in table.stdout
    assert run("--home", home, "runs", "show", "0" * 32).exit_code == 3
