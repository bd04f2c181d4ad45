"""The CLI as a user runs it: an embedded home via --home, and a real server via --url."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import shipyard as sy
from shipyard.cli.common import exit_code
from shipyard.cli.main import app
from shipyard.config import load_settings, read_server_info
from shipyard.server import RunningServer, serve

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def loaded(home: Path, tmp_path: Path) -> Path:
    csv = tmp_path / "points.csv"
    lines = ["x,z,color,y"] + [
        f"{i % 9},{(i * 7) % 5 - 2},{['red', 'blue', 'green'][i % 3]},{int(i % 9 > 4)}"
        for i in range(90)
    ]
    csv.write_text("\n".join(lines) + "\n")
    result = run("--home", home, "tables", "load", "demo.t", csv)
    assert result.exit_code == 0, result.output
    assert "90 rows" in result.stdout
    return home


# -- embedded --------------------------------------------------------------------------------------


def test_sql_json_and_table(home: Path) -> None:
    result = run("--home", home, "sql", "SELECT 1 AS x, 'a' AS s", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"x": 1, "s": "a"}]
    table = run("--home", home, "sql", "SELECT range AS n FROM range(250)")
    assert table.exit_code == 0
    assert "showing 100 of 250 rows" in table.stdout
    few = run("--home", home, "sql", "SELECT range AS n FROM range(250)", "--json", "--max-rows", 3)
    assert json.loads(few.stdout) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_bad_sql_exits_2_with_position(home: Path) -> None:
    result = run("--home", home, "sql", "SELECT *\nFROM demo.t WHERE (x >")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "line 2, column" in result.stderr and "^" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_table_exits_3(home: Path) -> None:
    result = run("--home", home, "tables", "show", "demo.nope")
    assert result.exit_code == 3
    assert "error:" in result.stderr and "demo.nope" in result.stderr
    assert run("--home", home, "sql", "SELECT * FROM demo.nope").exit_code == 3
    assert run("--home", home, "jobs", "show", "no-such-job").exit_code == 3


def test_usage_errors_exit_2(home: Path) -> None:
    assert run("--home", home, "tables", "load").exit_code == 2
    assert run("--home", home, "tables", "list", "--bogus").exit_code == 2
    bad = run("--home", home, "tables", "show", "not a name")
    assert bad.exit_code == 2 and "invalid table name" in bad.stderr


def test_tables_commands(loaded: Path, tmp_path: Path) -> None:
    listed = run("--home", loaded, "tables", "list", "--json")
    assert [t["name"] for t in json.loads(listed.stdout)] == ["demo.t"]
    assert "demo.t" in run("--home", loaded, "tables", "list").stdout
    shown = json.loads(run("--home", loaded, "tables", "show", "demo.t", "--json").stdout)
    assert shown["num_rows"] == 90 and [v["version"] for v in shown["versions"]] == [1]
    assert "color" in run("--home", loaded, "tables", "show", "demo.t").stdout
    preview = run("--home", loaded, "tables", "preview", "demo.t", "--limit", 2, "--json")
    assert len(json.loads(preview.stdout)) == 2
    csv = tmp_path / "points.csv"
    again = run("--home", loaded, "tables", "load", "demo.t", csv, "--mode", "fail")
    assert again.exit_code == 4
    odd = tmp_path / "points.data"
    odd.write_text(csv.read_text())
    assert run("--home", loaded, "tables", "load", "demo.u", odd).exit_code == 2
    ok = run("--home", loaded, "tables", "load", "demo.u", odd, "--format", "csv")
    assert ok.exit_code == 0, ok.output


def test_models_and_jobs_commands(loaded: Path) -> None:
    created = run(
        "--home", loaded, "sql",
        "CREATE MODEL demo.m OPTIONS(model_type='logistic_reg', input_label_cols=['y']) "
        "AS SELECT x, z, color, y FROM demo.t",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    models = json.loads(run("--home", loaded, "models", "list", "--json").stdout)
    assert [m["name"] for m in models] == ["demo.m"]
    assert "demo.m" in run("--home", loaded, "models", "list").stdout
    shown = json.loads(run("--home", loaded, "models", "show", "demo.m", "--json").stdout)
    assert shown["version"]["version"] == 1 and shown["version"]["metrics"]
    text = run("--home", loaded, "models", "show", "demo.m").stdout
    assert "default" in text and "accuracy" in text
    alias = run("--home", loaded, "models", "alias", "demo.m", "champion", 1)
    assert alias.exit_code == 0 and "champion" in alias.stdout
    by_alias = run("--home", loaded, "models", "show", "demo.m", "--alias", "champion", "--json")
    assert json.loads(by_alias.stdout)["version"]["aliases"] == ["champion", "default"]
    assert run("--home", loaded, "models", "show", "demo.m", "--version", 9).exit_code == 3
    assert run("--home", loaded, "models", "alias", "demo.m", "x", 9).exit_code == 3

    jobs = json.loads(run("--home", loaded, "jobs", "list", "--json").stdout)
    assert jobs and jobs[0]["state"] == "SUCCEEDED"
    assert "CREATE MODEL" in jobs[0]["description"]
    job_id = jobs[0]["id"]
    assert "SUCCEEDED" in run("--home", loaded, "jobs", "show", job_id).stdout
    assert (
        json.loads(run("--home", loaded, "jobs", "show", job_id, "--json").stdout)["id"] == job_id
    )
    assert run("--home", loaded, "jobs", "logs", job_id).exit_code == 0
    assert "SUCCEEDED" in run("--home", loaded, "jobs", "cancel", job_id).stdout
    assert run("--home", loaded, "jobs", "list", "--state", "FAILED", "--json").exit_code == 0
    assert run("--home", loaded, "jobs", "list", "--state", "ASLEEP").exit_code == 2


def test_exit_code_table() -> None:
    assert exit_code(sy.SQLError("x")) == 2
    assert exit_code(sy.InvalidArgument("x")) == 2
    assert exit_code(sy.NotFound("x")) == 3
    assert exit_code(sy.AlreadyExists("x")) == 4
    assert exit_code(sy.FailedPrecondition("x")) == 4
    assert exit_code(sy.Unauthenticated("x")) == 5
    assert exit_code(sy.PermissionDenied("x")) == 5
    assert exit_code(sy.Unavailable("x")) == 6
    assert exit_code(sy.Internal("x")) == 1


# -- a real server ---------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    """``serve()`` on a free port in a background thread, as ``shipyard up`` runs it."""
    settings = load_settings(home=tmp_path / "served", server={"port": 0}, token="t0k")
    ready: list[RunningServer] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            serve(settings, demo=False, ready=ready.append)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready:
        assert not errors, errors
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield ready[0]
    ready[0].stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert read_server_info(settings.home_path) is None  # server.json removed


def test_remote_sql_over_real_http(served: RunningServer) -> None:
    result = run("--url", served.url, "--token", "t0k", "sql", "SELECT 1 AS x", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"x": 1}]
    bad = run("--url", served.url, "--token", "t0k", "sql", "SELECT (1 +")
    assert bad.exit_code == 2 and "error:" in bad.stderr
    missing = run("--url", served.url, "--token", "t0k", "tables", "show", "demo.nope")
    assert missing.exit_code == 3
    assert run("--url", served.url, "sql", "SELECT 1").exit_code == 5
    assert run("--url", served.url, "--token", "nope", "sql", "SELECT 1").exit_code == 5


def test_home_owned_by_a_server_goes_through_it(served: RunningServer) -> None:
    info = read_server_info(Path(served.home))
    assert info is not None and info.url == served.url
    # --home of a served workspace talks to the server instead of fighting over DuckDB's lock.
    result = run("--home", served.home, "--token", "t0k", "sql", "SELECT 2 AS y", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"y": 2}]
    with pytest.raises(sy.Unavailable, match="already serves"):
        serve(load_settings(home=served.home, server={"port": 0}), demo=False)


def test_unreachable_server_exits_6() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("--url", f"http://127.0.0.1:{port}", "tables", "list")
    assert result.exit_code == 6
    assert f"127.0.0.1:{port}" in result.stderr


def test_up_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("up", "--home", tmp_path / "h", "--port", port, "--no-demo")
    assert result.exit_code == 6
    assert "cannot listen" in result.stderr
