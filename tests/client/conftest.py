"""The SDK suite runs every test twice: embedded, and over HTTP through the real app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard as sy


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(params=["embedded", "remote"])
def ws(request: pytest.FixtureRequest, home: Path) -> Iterator[Any]:
    local = sy.connect(home)
    if request.param == "embedded":
        yield local
        local.close()
        return
    from starlette.testclient import TestClient

    from shipyard.client.remote import RemoteWorkspace
    from shipyard.server import create_app

    app = create_app(local.services)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        remote = RemoteWorkspace("http://127.0.0.1:8765", client=client)
        yield remote
    local.close()
