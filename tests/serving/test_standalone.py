"""``shipyard serve ENDPOINT`` with worker processes, and the ``shipyard endpoints`` commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import shipyard as sy
from shipyard.cli.main import app
from tests.serving.conftest import instances


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"shipyard serve exited: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("shipyard serve did not become ready")


@pytest.mark.slow
def test_serve_with_workers_follows_changes_and_logs(home: Path) -> None:
    with sy.connect(home) as ws:
        ws.endpoints.create("e1")
        ws.endpoints.deploy("e1", "d.tree")
        ws.endpoints.deploy("e1", "d.logit", traffic=50)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "shipyard.cli.main", "--home", str(home), "serve", "e1"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2", "--refresh", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SHIPYARD_TOKEN": ""},
    )
    try:
        _wait_ready(url, proc)
        with httpx.Client(base_url=url) as client:
            served = Counter(
                client.post("/v1/endpoints/e1:predict", json={"instances": instances(1)}).json()[
                    "deployedModelId"
                ]
                for _ in range(200)
            )
            assert served["d1"] > 50 and served["d2"] > 50, served
            other = client.post("/v1/endpoints/e2:predict", json={"instances": instances(1)})
            assert other.status_code == 404 and "serves endpoint 'e1' only" in other.text
            bad = client.post("/v1/endpoints/e1:predict", json={"instances": [{"x": 1}]})
            assert bad.status_code == 400
            # A change made elsewhere reaches every worker within the refresh interval.
            with sy.connect(home) as ws:
                ws.endpoints.split("e1", {"d1": 0, "d2": 100})
            time.sleep(0.6)
            after = Counter(
                client.post("/v1/endpoints/e1:predict", json={"instances": instances(1)}).json()[
                    "deployedModelId"
                ]
                for _ in range(50)
            )
            assert after == Counter({"d2": 50})
            metrics = client.get("/metrics").text
            assert 'shipyard_predict_requests_total{code="200",deployment="d2",endpoint="e1"}' in (
                metrics
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    with sy.connect(home) as ws:
        counts = (
            ws.sql(
                "SELECT status, count(*) AS n FROM endpoint_logs.e1 GROUP BY status ORDER BY status"
            )
            .to_arrow()
            .to_pylist()
        )
    assert counts == [{"status": 200, "n": 250}, {"status": 400, "n": 1}]


def test_serve_refuses_an_unknown_endpoint(home: Path) -> None:
    result = CliRunner().invoke(app, ["--home", str(home), "serve", "nope", "--port", "0"])
    assert result.exit_code == 3, result.output
    assert "endpoint 'nope' not found" in result.output


def _cli(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--home", str(home), *args], env={"COLUMNS": "200"})
    return result


def test_endpoints_cli(home: Path, tmp_path: Path) -> None:
    assert _cli(home, "endpoints", "create", "e1", "--timeout", "5").exit_code == 0
    deployed = _cli(home, "endpoints", "deploy", "e1", "d.tree")
    assert deployed.exit_code == 0 and "100%" in deployed.output
    deployed = _cli(home, "endpoints", "deploy", "e1", "d.logit", "--traffic", "10", "--json")
    assert json.loads(deployed.output)["traffic"] == {"d1": 90, "d2": 10}
    split = _cli(home, "endpoints", "split", "e1", "d1=50", "d2=50", "--json")
    assert json.loads(split.output)["traffic"] == {"d1": 50, "d2": 50}
    bad = _cli(home, "endpoints", "split", "e1", "d1=50", "d2=40")
    assert bad.exit_code == 2 and "sum to 100" in bad.output
    bad = _cli(home, "endpoints", "split", "e1", "d1:50")
    assert bad.exit_code == 2 and "ID=PERCENT" in bad.output
    file = tmp_path / "rows.jsonl"
    file.write_text("\n".join(json.dumps(i) for i in instances(3)) + "\n")
    predicted = _cli(home, "endpoints", "predict", "e1", str(file))
    assert predicted.exit_code == 0, predicted.output
    assert len(json.loads(predicted.output)["predictions"]) == 3
    file.write_text('{"x": 1\n')
    broken = _cli(home, "endpoints", "predict", "e1", str(file))
    assert broken.exit_code == 2 and "line 1" in broken.output
    shown = _cli(home, "endpoints", "show", "e1")
    assert shown.exit_code == 0 and "d.logit" in shown.output and "50%" in shown.output
    rolled = _cli(home, "endpoints", "rollback", "e1", "--json")
    assert json.loads(rolled.output)["traffic"] == {"d1": 90, "d2": 10}
    history = _cli(home, "endpoints", "history", "e1", "--json")
    assert [c["action"] for c in json.loads(history.output)][:2] == ["rollback", "split"]
    assert _cli(home, "endpoints", "undeploy", "e1", "d9").exit_code == 3
    assert _cli(home, "endpoints", "delete", "e1").exit_code == 4
    assert _cli(home, "endpoints", "delete", "e1", "--force").exit_code == 0
    listed = _cli(home, "endpoints", "list", "--json")
    assert json.loads(listed.output) == []


def test_workers_that_fill_the_cores_run_model_calls_on_the_loop(home: Path) -> None:
    from shipyard.server.standalone import create_serving_app, inline_model_s
    from shipyard.serving.service import INLINE_MODEL_BUSY_S, INLINE_MODEL_S

    cores = os.cpu_count() or 1
    assert inline_model_s(cores) == inline_model_s(cores + 3) == INLINE_MODEL_BUSY_S
    if cores > 1:
        assert inline_model_s(cores - 1) == INLINE_MODEL_S
    assert INLINE_MODEL_BUSY_S > INLINE_MODEL_S
    with sy.connect(home) as ws:
        ws.endpoints.create("e1")
        ws.endpoints.deploy("e1", "d.reg")
    app = create_serving_app("e1", home=home, inline_model_s=INLINE_MODEL_BUSY_S)
    service = app.state.endpoints
    try:
        serving = next(iter(service._runtime("e1").serving.values()))
        assert serving.async_batcher._inline_s == INLINE_MODEL_BUSY_S
    finally:
        service.close()
