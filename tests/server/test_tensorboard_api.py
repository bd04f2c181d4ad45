"""TensorBoard over REST: ``GET /v1/runs/{id}:exportTensorboard`` and ``POST …:importTensorboard``
on a real server, as any HTTP client (not only the SDK) uses them."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.server import create_app
from shipyard.services import Services

pytest.importorskip("tensorboard")

from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


@pytest.fixture
def http(services: Services, live_server: Callable[[Any], Any]) -> Iterator[httpx.Client]:
    server = live_server(create_app(services))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _event_file(folder: Path, tag: str, values: list[float]) -> Path:
    writer = EventFileWriter(str(folder))
    for step, value in enumerate(values):
        summary = scalar_summary.scalar_pb(tag, value)
        writer.add_event(event_pb2.Event(wall_time=1.0 + step, step=step, summary=summary))
    writer.close()
    (path,) = folder.iterdir()
    return path


def test_export_is_a_zip_of_event_files(services: Services, http: httpx.Client) -> None:
    services.tracking.create_experiment("exp")
    run = services.tracking.create_run("exp")
    services.tracking.log_batch(run.id, [("loss", 0.5, 0), ("loss", 0.25, 1)])
    response = http.get(f"/v1/runs/{run.id}:exportTensorboard")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert len(names) == 1 and "tfevents" in names[0] and names[0].endswith(run.id)
    missing = http.get("/v1/runs/nope:exportTensorboard")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_import_takes_one_event_file_or_a_zip(
    services: Services, http: httpx.Client, tmp_path: Path
) -> None:
    services.tracking.create_experiment("exp")
    run = services.tracking.create_run("exp")
    raw = _event_file(tmp_path / "a", "acc", [0.5, 0.75]).read_bytes()
    response = http.post(f"/v1/runs/{run.id}:importTensorboard", content=raw)
    assert response.status_code == 200, response.text
    assert response.json() == {"acc": 2}

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train/events.out.tfevents.1", raw)
    response = http.post(
        f"/v1/runs/{run.id}:importTensorboard",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/zip"},
    )
    assert response.json() == {"train/acc": 2}
    assert services.tracking.get_run(run.id).metrics == {"acc": 0.75, "train/acc": 0.75}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"PK\x03\x04 not really a zip", "not a valid zip"),
        ("escape", "unsafe path"),
    ],
)
def test_import_refuses_bad_uploads(
    services: Services, http: httpx.Client, body: Any, message: str
) -> None:
    services.tracking.create_experiment("exp")
    run = services.tracking.create_run("exp")
    if body == "escape":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../outside/events.out.tfevents.1", b"x")
        body = buffer.getvalue()
    response = http.post(f"/v1/runs/{run.id}:importTensorboard", content=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert message in response.json()["message"]
    assert services.tracking.get_run(run.id).metrics == {}
