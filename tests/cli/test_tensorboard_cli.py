"""``shipyard tensorboard``, ``shipyard runs import-tensorboard`` and ``shipyard lineage runs/…``
as a user runs them — including a real TensorBoard launched and queried over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import shipyard as sy
from shipyard.cli.main import app
from shipyard.metadata.service import model_version_uri

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tracked(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "home"
    ws = sy.connect(home)
    ws.experiments.create("exp")
    r = ws.runs.create("exp", name="xgb depth:6")
    ws.runs.log_batch(r.id, [("loss", 1 / (i + 1), i, 1_700_000_000_000 + i) for i in range(5)])
    ws.close()
    return home, r.id


def test_export_only_writes_a_folder_per_run(tracked: tuple[Path, str], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    home, run_id = tracked
    logdir = tmp_path / "tb"
    done = run("--home", home, "tensorboard", run_id, run_id, "--export-only", "--logdir", logdir)
    assert done.exit_code == 0, done.output
    (folder,) = logdir.iterdir()
    assert folder.name == f"xgb_depth_6-{run_id[:8]}"
    assert len([p for p in folder.iterdir() if "tfevents" in p.name]) == 1
    assert str(logdir) in done.output
    missing = run("--home", home, "tensorboard", "nope", "--export-only", "--logdir", logdir)
    assert missing.exit_code == 3 and "nope" in missing.output
    bad_port = run("--home", home, "tensorboard", run_id, "--port", 0)
    assert bad_port.exit_code == 2 and "port" in bad_port.output


def test_missing_tensorboard_says_how_to_install(
    tracked: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    home, run_id = tracked
    done = run("--home", home, "tensorboard", run_id)
    assert done.exit_code != 0
    assert "pip install 'shipyard[tensorboard]'" in done.output


def test_runs_import_tensorboard(tracked: tuple[Path, str], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    home, run_id = tracked
    assert run("--home", home, "tensorboard", run_id, "--export-only", "--logdir", tmp_path / "tb")
    ws = sy.connect(home)
    target = ws.runs.create("exp").id
    ws.close()
    done = run("--home", home, "runs", "import-tensorboard", target, tmp_path / "tb")
    assert done.exit_code == 0, done.output
    assert "5 points imported" in done.output
    (folder,) = (tmp_path / "tb").iterdir()
    again = run("--home", home, "runs", "import-tensorboard", target, tmp_path / "tb", "--json")
    assert json.loads(again.output) == {f"{folder.name}/loss": 5}
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = run("--home", home, "runs", "import-tensorboard", target, empty)
    assert refused.exit_code == 2 and "no TensorBoard event files" in refused.output


def test_lineage_of_a_run_shows_datasets_in_and_models_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = sy.connect(home)
    ws.load_table("demo.t", pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 8.0]}))
    ws.experiments.create("exp")
    r = ws.runs.create("exp", name="trainer")
    ws.runs.log_input(r.id, "demo.t")
    # What the registry records for a version registered from the run (Lineage.run_id):
    ws.services.metadata.record_run_io(r.id, outputs=[model_version_uri("demo.m", 1)])
    ws.close()
    shown = run("--home", home, "lineage", f"runs/{r.id}")
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "in experiment/exp" in text
    upstream, downstream = text.split("downstream")
    assert "tables/demo.t/versions/1" in upstream and "trainer (run)" in upstream
    assert "models/demo.m/versions/1" in downstream and "trainer (run)" in downstream
    narrowed = run(
        "--home", home, "lineage", "tables/demo.t", "-d", "downstream",
        "--context", "experiment/exp", "--json",
    )  # fmt: skip
    graph = json.loads(narrowed.output)
    assert graph["context"] == "experiment/exp"
    assert {e["kind"] for e in graph["executions"]} == {"run"}
    unknown = run("--home", home, "lineage", "tables/demo.t", "--context", "experiment/nope")
    assert unknown.exit_code == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # TensorBoard takes 5-20 s to start and load on a small machine
def test_tensorboard_launches_and_serves_the_runs_scalars(
    tracked: tuple[Path, str], tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    home, run_id = tracked
    port = _free_port()
    script = Path(sys.executable).with_name("shipyard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "shipyard.cli.main"]
    log = (tmp_path / "cli.log").open("wb")
    process = subprocess.Popen(
        [*command, "--home", str(home), "tensorboard", run_id, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the cleanup below reaches TensorBoard
    )
    base = f"http://127.0.0.1:{port}"
    folder = f"xgb_depth_6-{run_id[:8]}"
    try:
        tags: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while folder not in tags and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "cli.log").read_text()
            time.sleep(0.5)
            try:
                tags = httpx.get(f"{base}/data/plugin/scalars/tags", timeout=5).json()
            except httpx.HTTPError:
                continue
        assert tags == {folder: {"loss": {"displayName": "loss", "description": ""}}}
        page = httpx.get(f"{base}/", timeout=5)
        assert page.status_code == 200 and "TensorBoard" in page.text
        scalars = httpx.get(
            f"{base}/data/plugin/scalars/scalars", params={"run": folder, "tag": "loss"}
        ).json()
        assert [(step, value) for _, step, value in scalars] == [
            (i, float(np.float32(1 / (i + 1)))) for i in range(5)
        ]
        assert [wall for wall, _, _ in scalars] == pytest.approx(
            [1_700_000_000 + i / 1000 for i in range(5)]
        )
        process.send_signal(signal.SIGTERM)  # stopping the CLI stops TensorBoard
        assert process.wait(timeout=30) == 130
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/", timeout=5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
