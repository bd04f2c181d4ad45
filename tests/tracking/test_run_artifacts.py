"""Run artifacts and logged models at the service level, on a local folder and on fsspec's
in-memory filesystem (an object store's semantics: no rename, no real folders)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.tracking.artifacts import check_artifact_path
from shipyard.tracking.logged_models import LoggedModels
from shipyard.tracking.service import TrackingService


@pytest.fixture(params=["file", "memory"])
def tracking(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrackingService]:
    artifacts = None if request.param == "file" else f"memory://{uuid.uuid4().hex}"
    ctx = Context.open(Settings(home=tmp_path / "home", artifacts={"url": artifacts}))
    try:
        yield TrackingService(ctx)
    finally:
        ctx.close()


def test_upload_list_open_download(tracking: TrackingService, tmp_path: Path) -> None:
    tracking.create_experiment("e")
    run = tracking.create_run("e")
    arts = tracking.artifacts
    written = arts.upload(run.id, "a/b/c.txt", io.BytesIO(b"deep"))
    assert (written.path, written.size) == ("a/b/c.txt", 4)
    arts.upload(run.id, "top.bin", iter([b"x" * 10, b"y" * 5]))
    assert [(f.path, f.is_dir) for f in arts.list_artifacts(run.id)] == [
        ("a", True),
        ("top.bin", False),
    ]
    assert [f.path for f in arts.list_artifacts(run.id, "a/b")] == ["a/b/c.txt"]
    with arts.open(run.id, "top.bin") as f:
        assert f.read() == b"x" * 10 + b"y" * 5
    got = arts.download_artifacts(run.id, "a", tmp_path / "out")
    assert (got / "b" / "c.txt").read_bytes() == b"deep"
    with pytest.raises(sy.NotFound):
        arts.open(run.id, "a/missing.txt")
    with pytest.raises(sy.InvalidArgument):
        arts.upload(run.id, "", io.BytesIO(b"x"))


def test_logged_models(tracking: TrackingService) -> None:
    exp = tracking.create_experiment("e")
    run = tracking.create_run("e")
    other = tracking.create_run(tracking.create_experiment("f").name)
    models = LoggedModels(tracking)
    first = models.create(exp.id, "model", source_run_id=run.id, params={"lr": 0.1})
    second = models.create(exp.id, "other")
    assert first.status == "PENDING" and first.params == {"lr": "0.1"}
    assert first.artifact_path == f"{exp.id}/models/{first.model_id}/artifacts"
    assert models.finalize(first.model_id, "READY").status == "READY"
    models.set_tags(first.model_id, {"k": "v"})
    assert models.get(first.model_id).tags == {"k": "v"}
    found = models.search([exp.id], name="model", source_run_id=run.id)
    assert [m.model_id for m in found] == [first.model_id]
    assert {m.model_id for m in models.search([])} == {first.model_id, second.model_id}

    with pytest.raises(sy.InvalidArgument):
        models.finalize(first.model_id, "DONE")
    with pytest.raises(sy.InvalidArgument):  # the run belongs to another experiment
        models.create(exp.id, "model", source_run_id=other.id)
    with pytest.raises(sy.InvalidArgument):
        models.create(exp.id, "a/b")
    with pytest.raises(sy.NotFound):
        models.create("nope", "model")
    with pytest.raises(sy.NotFound):
        models.get("../../etc")
    with pytest.raises(sy.NotFound):
        models.delete_tag(first.model_id, "missing")
    models.delete(second.model_id)
    with pytest.raises(sy.NotFound):
        models.get(second.model_id)
    assert models.get(first.model_id).status == "READY"  # the others are left intact


@pytest.mark.parametrize(
    ("path", "expected"),
    [(None, ""), ("", ""), ("a/./b/", "a/b"), ("x.txt", "x.txt"), ("a//b", "a/b")],
)
def test_check_artifact_path(path: str | None, expected: str) -> None:
    assert check_artifact_path(path) == expected


@pytest.mark.parametrize("path", ["..", "a/../b", "/etc/passwd", "C:/x", "a\\b", "a\nb"])
def test_check_artifact_path_refuses(path: str) -> None:
    with pytest.raises(sy.InvalidArgument):
        check_artifact_path(path)
