"""``ws.runs.export_tensorboard`` / ``import_tensorboard``, embedded and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import shipyard as sy

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

T0 = 1_700_000_000_000


def test_export_then_import_round_trip(ws: Any, tmp_path: Path) -> None:
    ws.experiments.create("exp")
    run = ws.runs.create("exp")
    ws.runs.log_batch(run.id, [("loss", 1 / 2**i, i, T0 + i) for i in range(20)])
    logdir = tmp_path / "tb"
    written = ws.runs.export_tensorboard(run.id, logdir)
    assert written.is_file() and written.parent == logdir
    acc = plugin_event_accumulator.EventAccumulator(str(logdir))
    acc.Reload()
    assert [
        (e.step, e.wall_time, tensor_util.make_ndarray(e.tensor_proto).item())
        for e in acc.Tensors("loss")
    ] == [(i, (T0 + i) / 1000, 1 / 2**i) for i in range(20)]
    assert ws.runs.export_tensorboard(run.id, logdir).is_file()
    assert len(list(logdir.iterdir())) == 1  # replaced, not added

    copy = ws.runs.create("exp")
    assert ws.runs.import_tensorboard(copy.id, logdir) == {"loss": 20}
    assert (
        ws.runs.metric_history(copy.id, "loss").items
        == ws.runs.metric_history(run.id, "loss").items
    )


def test_import_keeps_subfolders_as_key_prefixes(ws: Any, tmp_path: Path) -> None:
    for folder, value in (("train", 0.5), ("validation", 0.25)):
        writer = EventFileWriter(str(tmp_path / "logs" / folder))
        for step in range(3):
            summary = scalar_summary.scalar_pb("epoch_loss", value * step)
            writer.add_event(event_pb2.Event(wall_time=T0 / 1000, step=step, summary=summary))
        writer.close()
    ws.experiments.create("exp")
    run = ws.runs.create("exp")
    counts = ws.runs.import_tensorboard(run.id, tmp_path / "logs")
    assert counts == {"train/epoch_loss": 3, "validation/epoch_loss": 3}
    assert ws.runs.get(run.id).metrics == {"train/epoch_loss": 1.0, "validation/epoch_loss": 0.5}


def test_bad_input(ws: Any, tmp_path: Path) -> None:
    ws.experiments.create("exp")
    run = ws.runs.create("exp")
    with pytest.raises(sy.NotFound, match="nope"):
        ws.runs.export_tensorboard("nope", tmp_path / "tb")
    with pytest.raises(sy.NotFound, match="does not exist"):
        ws.runs.import_tensorboard(run.id, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sy.InvalidArgument, match="no TensorBoard event files"):
        ws.runs.import_tensorboard(run.id, tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "events.out.tfevents.1").write_bytes(b"\x00" * 64)
    with pytest.raises(sy.InvalidArgument, match="events.out.tfevents.1"):
        ws.runs.import_tensorboard(run.id, tmp_path / "bad")
    assert ws.runs.get(run.id).metrics == {}
