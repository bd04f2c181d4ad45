"""TensorBoard both ways, checked with TensorBoard's own reader and writer."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.services import Services
from shipyard.tracking.service import TrackingService

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import summary_v2 as histogram_summary
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

T0 = 1_700_000_000_000  # ms


@pytest.fixture
def t(tmp_path: Path) -> Iterator[TrackingService]:
    services = Services.build(Context.open(Settings(home=tmp_path / "home")))
    services.tracking.create_experiment("exp")
    yield services.tracking
    services.close()


def _history(t: TrackingService, run_id: str, key: str) -> list[tuple[int, int, float]]:
    points, token = [], None
    while True:
        page = t.metric_history(run_id, key, page_size=10_000, page_token=token)
        points += [(p.step, p.timestamp, p.value) for p in page.items]
        token = page.next_page_token
        if not token:
            return points


def _read_back(logdir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """(step, wall time, value) per tag, as TensorBoard's own loader sees the folder."""
    acc = plugin_event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    return {
        tag: [
            (e.step, e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto).item()))
            for e in acc.Tensors(tag)
        ]
        for tag in acc.Tags()["tensors"]
    }


@pytest.mark.slow  # ~6 s: 12,000 points through TensorBoard's Python reader
def test_export_writes_every_point_of_every_metric(t: TrackingService, tmp_path: Path) -> None:
    run = t.create_run("exp")
    loss = [("loss", 1 / (i + 1), i, T0 + 1000 * i) for i in range(12_000)]  # > one page
    acc = [("val acc", 0.25 * i, 10 * i, T0 + 7 * i) for i in range(4)]
    repeated = [("lr", 0.1, 0, T0), ("lr", 0.05, 0, T0 + 1)]  # the same step twice
    t.log_batch(run.id, loss + acc + repeated)
    logdir = tmp_path / "tb"
    written = t.export_tensorboard(run.id, logdir)
    assert written.parent == logdir and "tfevents" in written.name
    seen = _read_back(logdir)
    assert sorted(seen) == ["loss", "lr", "val acc"]
    for key, points in (("loss", loss), ("val acc", acc), ("lr", repeated)):
        # TensorBoard keeps scalars as float32, as tf.summary.scalar writes them.
        expected = [(s, ts / 1000, float(np.float32(v))) for _, v, s, ts in points]
        assert seen[key] == expected, key
    # Exporting again replaces the earlier file instead of doubling the points.
    t.log_metric(run.id, "loss", 0.0, step=12_000, timestamp=T0)
    again = t.export_tensorboard(run.id, logdir)
    assert [p.name for p in logdir.iterdir()] == [again.name]
    assert len(_read_back(logdir)["loss"]) == 12_001


def test_export_refuses_bad_input(t: TrackingService, tmp_path: Path) -> None:
    with pytest.raises(sy.NotFound, match="nope"):
        t.export_tensorboard("nope", tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
    afile = tmp_path / "file"
    afile.write_text("x")
    run = t.create_run("exp")
    with pytest.raises(sy.InvalidArgument, match="not a folder"):
        t.export_tensorboard(run.id, afile)


def _write_training_logs(logdir: Path) -> dict[str, list[tuple[int, int, float]]]:
    """Event files as training code writes them: TF1/PyTorch ``simple_value`` summaries in
    ``train/``, TF2 ``tf.summary.scalar`` tensors in ``validation/``, plus things that are not
    scalars. Returns what an import should log: key -> (step, timestamp ms, value)."""
    expected: dict[str, list[tuple[int, int, float]]] = {}
    train = EventFileWriter(str(logdir / "train"))
    for step in range(50):
        wall = (T0 + 500 * step) / 1000
        value = float(np.float32(2.0 / (step + 1)))
        train.add_event(
            event_pb2.Event(
                wall_time=wall,
                step=step,
                summary=summary_pb2.Summary(
                    value=[summary_pb2.Summary.Value(tag="epoch_loss", simple_value=value)]
                ),
            )
        )
        expected.setdefault("train/epoch_loss", []).append((step, T0 + 500 * step, value))
    train.add_event(  # a diverged step: NaN is skipped, the tracking store refuses it
        event_pb2.Event(
            wall_time=T0 / 1000,
            step=50,
            summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="epoch_loss", simple_value=float("nan"))]
            ),
        )
    )
    train.close()
    validation = EventFileWriter(str(logdir / "validation"))
    for step in range(0, 50, 10):
        wall = (T0 + 500 * step + 250) / 1000
        value = float(np.float32(0.5 + step / 100))
        for summary in (
            scalar_summary.scalar_pb("epoch_accuracy", value),
            histogram_summary.histogram_pb("weights", np.arange(10.0)),
            text_summary.text_pb("note", "not a number"),
        ):
            validation.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary))
        expected.setdefault("validation/epoch_accuracy", []).append(
            (step, T0 + 500 * step + 250, value)
        )
    validation.close()
    top = EventFileWriter(str(logdir))
    top.add_event(
        event_pb2.Event(wall_time=T0 / 1000, step=3, summary=scalar_summary.scalar_pb("lr", 3))
    )
    top.close()
    expected["lr"] = [(3, T0, 3.0)]
    return expected


def test_import_reads_training_logs_into_metric_series(t: TrackingService, tmp_path: Path) -> None:
    expected = _write_training_logs(tmp_path / "logs")
    run = t.create_run("exp")
    counts = t.import_tensorboard(run.id, tmp_path / "logs")
    assert counts == {key: len(points) for key, points in sorted(expected.items())}
    for key, points in expected.items():
        assert _history(t, run.id, key) == points, key
    assert t.get_run(run.id).metrics == {
        "train/epoch_loss": expected["train/epoch_loss"][-1][2],
        "validation/epoch_accuracy": expected["validation/epoch_accuracy"][-1][2],
        "lr": 3.0,
    }
    # One event file alone works too.
    alone = t.create_run("exp")
    (event_file,) = (tmp_path / "logs" / "validation").iterdir()
    assert t.import_tensorboard(alone.id, event_file) == {"epoch_accuracy": 5}


def test_round_trip_through_tensorboard(t: TrackingService, tmp_path: Path) -> None:
    source = t.create_run("exp")
    points = [("loss", float(np.float32(1 / (i + 1))), i, T0 + 10 * i) for i in range(300)]
    t.log_batch(source.id, points)
    t.export_tensorboard(source.id, tmp_path / "tb")
    copy = t.create_run("exp")
    assert t.import_tensorboard(copy.id, tmp_path / "tb") == {"loss": 300}
    assert _history(t, copy.id, "loss") == _history(t, source.id, "loss")


def test_import_refuses_bad_input_and_writes_nothing(t: TrackingService, tmp_path: Path) -> None:
    run = t.create_run("exp")
    with pytest.raises(sy.NotFound, match="does not exist"):
        t.import_tensorboard(run.id, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sy.InvalidArgument, match=r"no TensorBoard event files"):
        t.import_tensorboard(run.id, tmp_path / "empty")
    # A good file and a broken one: the import is refused as a whole.
    _write_training_logs(tmp_path / "mixed")
    (tmp_path / "mixed" / "events.out.tfevents.broken").write_bytes(b"not an event file" * 10)
    with pytest.raises(sy.InvalidArgument, match="events.out.tfevents.broken"):
        t.import_tensorboard(run.id, tmp_path / "mixed")
    writer = EventFileWriter(str(tmp_path / "long"))
    writer.add_event(event_pb2.Event(step=0, summary=scalar_summary.scalar_pb("k" * 300, 1.0)))
    writer.close()
    with pytest.raises(sy.InvalidArgument, match="metric key"):
        t.import_tensorboard(run.id, tmp_path / "long")
    assert t.get_run(run.id).metrics == {}
    with pytest.raises(sy.NotFound, match="nope"):
        t.import_tensorboard("nope", tmp_path / "mixed")
    t.end_run(run.id)
    with pytest.raises(sy.FailedPrecondition, match="ended"):
        t.import_tensorboard(run.id, tmp_path / "long")


def test_without_the_tensorboard_package_says_how_to_install(
    t: TrackingService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = t.create_run("exp")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    for call in (t.export_tensorboard, t.import_tensorboard):
        with pytest.raises(sy.Unsupported, match=r"pip install 'shipyard\[tensorboard\]'"):
            call(run.id, tmp_path)
