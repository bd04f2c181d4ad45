"""connect(): embedded by default, over HTTP for a URL or when a server owns the home."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard as sy
from shipyard.client.local import LocalWorkspace
from shipyard.client.remote import RemoteWorkspace
from shipyard.config import load_settings
from shipyard.server.run import RunningServer, serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    settings = load_settings(home=tmp_path / "home", server={"port": 0}, token="s3cret")
    ready: list[RunningServer] = []
    thread = threading.Thread(
        target=serve, args=(settings,), kwargs={"demo": False, "ready": ready.append}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not ready:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield ready[0]
    ready[0].stop()
    thread.join(timeout=30)


def test_embedded_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "from-env"))
    with sy.connect() as ws:
        assert isinstance(ws, LocalWorkspace)
        assert ws.home == (tmp_path / "from-env").resolve()
        assert ws.sql("SELECT 41 + 1 AS answer").to_pylist() == [{"answer": 42}]


def test_a_served_home_is_reached_through_its_server(
    served: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_TOKEN", "s3cret")
    ws = sy.connect(served.home)  # DuckDB's lock is the server's: go through it
    assert isinstance(ws, RemoteWorkspace)
    ws.load_table("demo.t", [{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 4.0}])
    assert ws.sql("SELECT sum(y) AS s FROM demo.t").to_pylist() == [{"s": 6.0}]
    same = sy.connect(served.url)
    assert same.tables.get("demo.t").num_rows == 2
    monkeypatch.delenv("SHIPYARD_TOKEN")
    with pytest.raises(sy.Unauthenticated):
        sy.connect(served.url).tables.list()
    with pytest.raises(sy.PermissionDenied):
        sy.connect(served.url, token="wrong").tables.list()
