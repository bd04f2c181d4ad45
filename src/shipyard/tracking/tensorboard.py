"""TensorBoard both ways: a run's metric series as event files, and event files into a run.

* :func:`export_run` writes one event file with one tag per metric key — every point with its
  step and wall time, as a float32 scalar tensor, which is what ``tf.summary.scalar`` writes and
  what TensorBoard's fast loader reads (it skips float64 scalars) — so TensorBoard shows the
  run's curves. Exporting again replaces the file.
* :func:`import_logdir` reads the scalars of the event files under a folder — ``simple_value``
  summaries (TF1, ``torch.utils.tensorboard``) and rank-0 numeric tensors (``tf.summary`` in
  TF2, Keras) — into the run's metric series, in batches through ``TrackingService.log_batch``.
  A tag in a subfolder ``train/`` becomes the key ``train/<tag>`` (Keras writes ``train`` and
  ``validation`` runs side by side). NaN and infinite values are skipped: the tracking store
  refuses them.
* :func:`pack` and :func:`unpack` carry event files over HTTP as a zip.

The ``tensorboard`` package (``pip install 'shipyard[tensorboard]'``) is imported here, lazily:
``import shipyard`` never pays for it.
"""

from __future__ import annotations

import io
import math
import socket
import time
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound, Unsupported
from shipyard.tracking.entities import check_key

if TYPE_CHECKING:
    from shipyard.tracking.service import TrackingService

INSTALL_HINT = "pip install 'shipyard[tensorboard]'"
EVENT_FILE_MARK = "tfevents"  # TensorBoard reads files whose name contains it
BATCH_POINTS = 10_000  # points per log_batch transaction when importing
MAX_UNPACKED_BYTES = 1 << 30  # a zip may not expand beyond 1 GiB
_SCALAR_PLUGIN = "scalars"


def _suffix(run_id: str) -> str:
    return f".shipyard.{run_id}"


def require_tensorboard() -> Any:
    """The ``tensorboard`` package, or Unsupported saying how to install it."""
    try:
        import tensorboard
    except ImportError:
        raise Unsupported(
            f"TensorBoard support needs the tensorboard package: {INSTALL_HINT}",
            install=INSTALL_HINT,
        ) from None
    return tensorboard


# -- export ---------------------------------------------------------------------------------------


def export_run(service: TrackingService, run_id: str, logdir: Path) -> Path:
    """Write run ``run_id``'s metric series as an event file in ``logdir``; returns the file.

    The file is written under a temporary name and renamed into place, so TensorBoard never
    reads half of it, and an earlier export of the run is replaced in one step.
    """
    require_tensorboard()
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.compat.proto.types_pb2 import DT_FLOAT
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.summary.writer.record_writer import RecordWriter

    run = service.get_run(run_id)
    if logdir.exists() and not logdir.is_dir():
        raise InvalidArgument(f"logdir {str(logdir)!r} is a file, not a folder")
    logdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}{_suffix(run.id)}"
    partial = logdir / f".{uuid.uuid4().hex}.partial"  # no "tfevents": TensorBoard skips it
    scalar = tensor_shape_pb2.TensorShapeProto()
    try:
        with partial.open("wb") as f:
            records = RecordWriter(f)
            header = event_pb2.Event(wall_time=now, file_version="brain.Event:2")
            records.write(header.SerializeToString())
            for key in sorted(run.metrics):
                first = True
                token: str | None = None
                while True:
                    page = service.metric_history(run.id, key, page_size=10_000, page_token=token)
                    for point in page.items:
                        value = summary_pb2.Summary.Value(
                            tag=key,
                            tensor=tensor_pb2.TensorProto(
                                dtype=DT_FLOAT, tensor_shape=scalar, float_val=[point.value]
                            ),
                        )
                        if first:  # as tf.summary does: the plugin metadata rides on the first
                            value.metadata.CopyFrom(
                                scalar_metadata.create_summary_metadata(
                                    display_name=key, description=""
                                )
                            )
                            first = False
                        event = event_pb2.Event(
                            wall_time=point.timestamp / 1000,
                            step=point.step,
                            summary=summary_pb2.Summary(value=[value]),
                        )
                        records.write(event.SerializeToString())
                    token = page.next_page_token
                    if not token:
                        break
        for earlier in logdir.glob(f"*{EVENT_FILE_MARK}*{_suffix(run.id)}"):
            earlier.unlink()
        target = logdir / name
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# -- import ---------------------------------------------------------------------------------------


def event_files(logdir: Path) -> list[Path]:
    """The event files under ``logdir`` (any depth), in a stable order."""
    if not logdir.exists():
        raise NotFound(f"logdir {str(logdir)!r} does not exist")
    if logdir.is_file():
        return [logdir] if EVENT_FILE_MARK in logdir.name else []
    return sorted(p for p in logdir.rglob(f"*{EVENT_FILE_MARK}*") if p.is_file())


def read_scalars(path: Path, prefix: str = "") -> list[tuple[str, float, int, int]]:
    """``(key, value, step, timestamp_ms)`` of every finite scalar in one event file."""
    require_tensorboard()
    from google.protobuf.message import DecodeError
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    points: list[tuple[str, float, int, int]] = []
    plugins: dict[str, str] = {}  # tag -> plugin, from the first value that names it
    events = 0
    try:
        # EventFileLoader migrates TF1 simple_value summaries to scalar tensors on the way.
        for event in EventFileLoader(str(path)).Load():
            events += 1
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin:
                    plugins.setdefault(value.tag, plugin)
                if plugins.get(value.tag, _SCALAR_PLUGIN) != _SCALAR_PLUGIN:
                    continue
                if not value.HasField("tensor") or value.tensor.tensor_shape.dim:
                    continue
                array = tensor_util.make_ndarray(value.tensor)
                if array.dtype.kind not in "biuf":
                    continue
                number = float(array.item())
                if not math.isfinite(number):
                    continue
                key = f"{prefix}{value.tag}"
                points.append((key, number, int(event.step), round(event.wall_time * 1000)))
    except (DecodeError, ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"{path.name} is not a readable TensorBoard event file: {exc}"
        ) from None
    if events == 0:  # every event file starts with a version event
        raise InvalidArgument(f"{path.name} is not a TensorBoard event file (no events in it)")
    return points


def import_logdir(service: TrackingService, run_id: str, logdir: Path) -> dict[str, int]:
    """Log the scalars of the event files under ``logdir`` to run ``run_id``; returns the
    number of points per key."""
    require_tensorboard()
    run = service.get_run(run_id)
    if run.status.done:
        raise FailedPrecondition(
            f"run {run_id} has ended ({run.status.value}); import into a running run",
            resource=f"runs/{run_id}",
        )
    files = event_files(logdir)
    if not files:
        raise InvalidArgument(
            f"no TensorBoard event files (events.out.tfevents.*) under {str(logdir)!r}"
        )
    root = logdir if logdir.is_dir() else logdir.parent
    counts: dict[str, int] = {}
    batch: list[tuple[str, float, int, int]] = []
    # Read everything first: a broken file refuses the import before a point is written.
    per_file = []
    for path in files:
        folder = path.parent.relative_to(root).as_posix()
        per_file.append(read_scalars(path, "" if folder == "." else f"{folder}/"))
    for key in {point[0] for points in per_file for point in points}:
        check_key(key, "metric")  # before writing: a long tag must not leave half an import
    for points in per_file:
        for point in points:
            batch.append(point)
            counts[point[0]] = counts.get(point[0], 0) + 1
            if len(batch) >= BATCH_POINTS:
                service.log_batch(run.id, batch)
                batch = []
    if batch:
        service.log_batch(run.id, batch)
    return dict(sorted(counts.items()))


# -- over HTTP ------------------------------------------------------------------------------------


def pack(folder: Path, *, only_events: bool = False) -> bytes:
    """A zip of the files under ``folder`` (paths relative to it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        files = event_files(folder) if only_events else sorted(folder.rglob("*"))
        for path in files:
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def unpack(data: bytes, dest: Path) -> list[Path]:
    """Files from a zip made by :func:`pack` (or one raw event file) written under ``dest``.

    Member names must stay inside ``dest``; the whole may not expand beyond 1 GiB.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if not data.startswith(b"PK"):
        target = dest / "events.out.tfevents.upload"
        target.write_bytes(data)
        return [target]
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidArgument(f"the upload is not a valid zip archive: {exc}") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise InvalidArgument(f"the zip expands beyond {MAX_UNPACKED_BYTES} bytes")
        written = []
        for member in members:
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts or not name.parts:
                raise InvalidArgument(f"unsafe path {member.filename!r} in the zip")
            target = dest.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
            written.append(target)
    return written
