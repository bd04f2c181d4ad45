"""Run artifacts through the SDK, embedded and over HTTP, and the fluent ``log_artifact``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import shipyard as sy
from shipyard.client import fluent


def _folder(root: Path) -> Path:
    (root / "report" / "img").mkdir(parents=True)
    (root / "report" / "index.html").write_text("<h1>run</h1>")
    (root / "report" / "img" / "roc.png").write_bytes(bytes(range(256)) * 50)
    return root / "report"


def test_log_list_and_download(ws: Any, tmp_path: Path) -> None:
    ws.experiments.create("arts")
    run = ws.runs.create("arts")
    odd = tmp_path / "naïve plot #1?.txt"
    odd.write_text("odd")
    ws.runs.log_artifact(run.id, odd, artifact_path="odd names")
    got = ws.runs.download_artifacts(run.id, "odd names/naïve plot #1?.txt", tmp_path / "o")
    assert got.read_text() == "odd"
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00\x01weights" * 1000)
    written = ws.runs.log_artifact(run.id, model)
    assert [(f.path, f.size) for f in written] == [("model.bin", 9000)]
    written = ws.runs.log_artifact(run.id, _folder(tmp_path), artifact_path="eval/report")
    assert sorted(f.path for f in written) == [
        "eval/report/img/roc.png",
        "eval/report/index.html",
    ]

    top = ws.runs.list_artifacts(run.id)
    assert [(f.path, f.is_dir, f.size) for f in top] == [
        ("eval", True, None),
        ("model.bin", False, 9000),
        ("odd names", True, None),
    ]
    inner = ws.runs.list_artifacts(run.id, "eval/report")
    assert [(f.path, f.is_dir) for f in inner] == [
        ("eval/report/img", True),
        ("eval/report/index.html", False),
    ]
    assert ws.runs.list_artifacts(run.id, "model.bin") == []  # a file lists nothing
    assert ws.runs.list_artifacts(run.id, "nowhere") == []

    one = ws.runs.download_artifacts(run.id, "model.bin", tmp_path / "one")
    assert one == tmp_path / "one" / "model.bin" and one.read_bytes() == model.read_bytes()
    everything = ws.runs.download_artifacts(run.id, None, tmp_path / "all")
    assert everything == tmp_path / "all"
    assert (everything / "eval/report/img/roc.png").read_bytes() == bytes(range(256)) * 50
    assert (everything / "model.bin").read_bytes() == model.read_bytes()
    sub = ws.runs.download_artifacts(run.id, "eval/report/img", tmp_path / "sub")
    assert sorted(p.name for p in sub.iterdir()) == ["roc.png"]

    # Writing the same path again replaces the file (the last write wins, as in MLflow).
    model.write_bytes(b"v2")
    ws.runs.log_artifact(run.id, model)
    again = ws.runs.download_artifacts(run.id, "model.bin", tmp_path / "again")
    assert again.read_bytes() == b"v2"

    # Deleting the experiment deletes its runs' artifact files too.
    ws.experiments.delete("arts")
    ws.experiments.create("arts")
    fresh = ws.runs.create("arts")
    assert ws.runs.list_artifacts(fresh.id) == []
    assert not list((Path(ws.home) / "artifacts" / "tracking").glob(f"*/{run.id}"))


def test_bad_artifact_input(ws: Any, tmp_path: Path) -> None:
    ws.experiments.create("arts")
    run = ws.runs.create("arts")
    f = tmp_path / "a.txt"
    f.write_text("a")
    for bad in ("../escape", "/abs", "a/../../b", "a\\b"):
        with pytest.raises(sy.InvalidArgument):
            ws.runs.log_artifact(run.id, f, artifact_path=bad)
        with pytest.raises(sy.InvalidArgument):
            ws.runs.list_artifacts(run.id, bad)
    with pytest.raises(sy.NotFound):
        ws.runs.log_artifact("0" * 32, f)
    with pytest.raises(sy.NotFound):
        ws.runs.log_artifact(run.id, tmp_path / "missing.txt")
    with pytest.raises(sy.NotFound):
        ws.runs.download_artifacts(run.id, "missing.txt", tmp_path / "out")
    with pytest.raises(sy.NotFound):
        ws.runs.list_artifacts("0" * 32)
    assert ws.runs.list_artifacts(run.id) == []  # nothing was written
    assert not (tmp_path / "out" / "missing.txt").exists()


def test_fluent_log_artifact(ws: Any, tmp_path: Path) -> None:
    fluent.set_workspace(ws)
    try:
        with pytest.raises(sy.FailedPrecondition):
            fluent.log_artifact(tmp_path)
        f = tmp_path / "notes.txt"
        f.write_text("fluent")
        with sy.start_run() as run:
            written = fluent.log_artifact(f, artifact_path="docs")
        assert [w.path for w in written] == ["docs/notes.txt"]
        got = ws.runs.download_artifacts(run.id, "docs/notes.txt", tmp_path / "d")
        assert got.read_text() == "fluent"
    finally:
        fluent.set_workspace(None)


class _Figure:
    """A figure as plotting libraries have them: ``savefig(path)`` writes the image."""

    def savefig(self, path: str) -> None:
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n-fake-image-")


def test_fluent_log_table_and_figure(ws: Any, tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq

    fluent.set_workspace(ws)
    try:
        rows = [{"label": "a", "n": 1}, {"label": "b", "n": 2}]
        with sy.start_run() as run:
            sy.log_table(rows, "eval/confusion.parquet")
            sy.log_table({"label": ["a"], "n": [1]}, "eval/one.jsonl")
            sy.log_table(rows, "eval/rows.json")
            sy.log_figure(_Figure(), "plots/roc.png")
            with pytest.raises(sy.InvalidArgument, match=".parquet"):
                sy.log_table(rows, "eval/x.xlsx")
            with pytest.raises(sy.InvalidArgument, match="pyarrow Table"):
                sy.log_table(42, "eval/x.csv")
            with pytest.raises(sy.InvalidArgument, match="savefig"):
                sy.log_figure(object(), "plots/x.png")
        paths = sorted(f.path for f in ws.runs.list_artifacts(run.id, "eval"))
        assert paths == ["eval/confusion.parquet", "eval/one.jsonl", "eval/rows.json"]
        table = pq.read_table(
            ws.runs.download_artifacts(run.id, "eval/confusion.parquet", tmp_path)
        )
        assert table.to_pylist() == rows
        got = ws.runs.download_artifacts(run.id, "eval/rows.json", tmp_path / "j")
        assert json.loads(got.read_text()) == rows
        png = ws.runs.download_artifacts(run.id, "plots/roc.png", tmp_path / "p")
        assert png.read_bytes().startswith(b"\x89PNG")
    finally:
        fluent.set_workspace(None)
