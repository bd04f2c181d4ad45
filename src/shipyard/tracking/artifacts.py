"""Run artifacts: the files a run logs (plots, reports, model folders), addressed by path.

They live in the workspace's artifact store (any fsspec URL: a local folder, ``s3://…``), beside
the content-addressed objects, under one tree::

    <artifact root>/tracking/<experiment id>/<run id>/artifacts/<path>
    <artifact root>/tracking/<experiment id>/models/<model id>/artifacts/<path>   (logged models)

This is the layout MLflow's proxied artifact service uses, so a file that the MLflow client
uploads and one logged with ``ws.runs.log_artifact`` are the same file on every face.

Unlike registry packages (immutable, content-addressed, verified on read), run artifacts are a
scratch area: a path may be written again (the last write wins, as in MLflow). A path is relative
and ``/``-separated; ``..`` segments, absolute paths, backslashes and control characters are
refused with :class:`InvalidArgument`. A write to a local folder lands whole or not at all
(temporary file, then rename); on an object store a PUT is atomic by itself.

Example::

    arts = RunArtifacts(tracking)
    arts.log_artifact(run.id, "confusion.png", artifact_path="plots")
    [f.path for f in arts.list_artifacts(run.id, "plots")]     # ['plots/confusion.png']
    arts.download_artifacts(run.id, "plots", "/tmp/out")        # /tmp/out/plots/confusion.png
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from shipyard.errors import InvalidArgument, NotFound
from shipyard.store.artifacts import CHUNK_SIZE, ArtifactStore

if TYPE_CHECKING:
    from shipyard.tracking.service import TrackingService

__all__ = ["ArtifactFile", "ArtifactTree", "RunArtifacts", "check_artifact_path"]

TREE_PREFIX = "tracking"


class ArtifactFile(BaseModel):
    """One entry of an artifact listing: a file (with its size) or a folder."""

    path: str  # relative to the run's artifact root, '/'-separated
    is_dir: bool
    size: int | None = None


def check_artifact_path(path: str | None, *, what: str = "artifact path") -> str:
    """``path`` normalised ('' for the root); InvalidArgument if it could escape the tree."""
    if path is None:
        return ""
    if not isinstance(path, str):
        raise InvalidArgument(f"{what} must be a string, got {type(path).__name__}")
    if "\\" in path or any(ord(c) < 32 for c in path):
        raise InvalidArgument(
            f"invalid {what} {path!r}: use '/' between folders, without control characters"
        )
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise InvalidArgument(f"invalid {what} {path!r}: it must be relative, not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid {what} {path!r}: '..' is not allowed")
    return "/".join(parts)


class ArtifactTree:
    """Path-addressed files under ``<artifact root>/tracking`` of one :class:`ArtifactStore`."""

    def __init__(self, store: ArtifactStore) -> None:
        self.fs = store.fs
        self.root = f"{store.root.rstrip('/')}/{TREE_PREFIX}"
        self._local = isinstance(self.fs, LocalFileSystem)

    def _full(self, rel: str) -> str:
        rel = check_artifact_path(rel)
        return f"{self.root}/{rel}" if rel else self.root

    # -- writing -------------------------------------------------------------------------------

    def write_stream(self, rel: str, src: IO[bytes] | Iterator[bytes]) -> int:
        """Write everything from ``src`` (a binary file or an iterator of chunks) to ``rel``."""
        if not check_artifact_path(rel):
            raise InvalidArgument("an artifact needs a file path, got the root folder")
        full = self._full(rel)
        chunks = _chunks(src) if hasattr(src, "read") else src
        size = 0
        if self._local:
            folder = os.path.dirname(full)
            if os.path.isdir(full):
                raise InvalidArgument(f"artifact path {rel!r} is a folder, not a file")
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
            try:
                with open(tmp, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, full)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        else:
            with self.fs.open(full, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
        return size

    def write_file(self, rel: str, local: str | os.PathLike[str]) -> int:
        with open(local, "rb") as src:
            return self.write_stream(rel, src)

    # -- reading -------------------------------------------------------------------------------

    def is_file(self, rel: str) -> bool:
        return bool(self.fs.isfile(self._full(rel)))

    def is_dir(self, rel: str) -> bool:
        return bool(self.fs.isdir(self._full(rel)))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self._full(rel)))

    def open(self, rel: str) -> IO[bytes]:
        """A reader of the file at ``rel``; NotFound if there is no such file."""
        full = self._full(rel)
        if not self.fs.isfile(full):
            raise NotFound(f"artifact {rel!r} not found")
        handle: IO[bytes] = self.fs.open(full, "rb")
        return handle

    def list(self, rel: str = "") -> list[ArtifactFile]:
        """The entries directly under folder ``rel`` (paths relative to the tree root), sorted;
        empty for a missing folder or a file, as MLflow answers."""
        rel = check_artifact_path(rel)
        full = self._full(rel)
        try:
            entries = self.fs.ls(full, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for entry in entries:
            name = posixpath.basename(str(entry["name"]).rstrip("/"))
            if not name or name.startswith(".tmp-") or str(entry["name"]).rstrip("/") == full:
                continue  # a file lists itself; temporary files are not artifacts
            is_dir = entry.get("type") == "directory"
            out.append(
                ArtifactFile(
                    path=posixpath.join(rel, name) if rel else name,
                    is_dir=is_dir,
                    size=None if is_dir else int(entry.get("size") or 0),
                )
            )
        return sorted(out, key=lambda f: f.path)

    def walk(self, rel: str = "") -> Iterator[ArtifactFile]:
        """Every file under folder ``rel``, depth first."""
        for entry in self.list(rel):
            if entry.is_dir:
                yield from self.walk(entry.path)
            else:
                yield entry

    def download(self, rel: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex}"
        try:
            with self.open(rel) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK_SIZE)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def delete(self, rel: str) -> None:
        """Remove a file or a folder (recursively); NotFound if absent."""
        if not check_artifact_path(rel):
            raise InvalidArgument("refusing to delete the whole artifact tree")
        full = self._full(rel)
        if not self.fs.exists(full):
            raise NotFound(f"artifact {rel!r} not found")
        self.fs.rm(full, recursive=True)


class RunArtifacts:
    """Log, list and download a run's artifacts (files or whole folders)."""

    def __init__(self, tracking: TrackingService) -> None:
        self.tracking = tracking
        self.tree = ArtifactTree(tracking.ctx.artifacts)

    def run_root(self, run_id: str) -> str:
        """The run's folder in the tree (NotFound for an unknown run)."""
        run = self.tracking.get_run(run_id)
        return f"{run.experiment_id}/{run.id}/artifacts"

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[ArtifactFile]:
        """Upload a file, or a folder with everything in it, under ``artifact_path``.

        A file keeps its name (``plots/roc.png``); a folder's contents land under
        ``artifact_path`` (or the root). Returns the files written.
        """
        source = Path(local_path)
        dest = check_artifact_path(artifact_path)
        root = self.run_root(run_id)
        if source.is_file():
            files = [(source, posixpath.join(dest, source.name) if dest else source.name)]
        elif source.is_dir():
            files = [
                (p, posixpath.join(dest, p.relative_to(source).as_posix()))
                if dest
                else (p, p.relative_to(source).as_posix())
                for p in sorted(source.rglob("*"))
                if p.is_file()
            ]
        else:
            raise NotFound(f"local file or folder {str(source)!r} not found")
        out = []
        for path, rel in files:
            size = self.tree.write_file(f"{root}/{rel}", path)
            out.append(ArtifactFile(path=rel, is_dir=False, size=size))
        return out

    def upload(self, run_id: str, path: str, src: IO[bytes] | Iterator[bytes]) -> ArtifactFile:
        """Write one file at ``path`` from a stream (the REST face)."""
        rel = check_artifact_path(path)
        if not rel:
            raise InvalidArgument("an artifact upload needs a file path, e.g. 'plots/roc.png'")
        size = self.tree.write_stream(f"{self.run_root(run_id)}/{rel}", src)
        return ArtifactFile(path=rel, is_dir=False, size=size)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactFile]:
        """The files and folders directly under ``path`` (the run's root by default)."""
        root = self.run_root(run_id)
        rel = check_artifact_path(path)
        full = f"{root}/{rel}" if rel else root
        return [
            ArtifactFile(path=f.path[len(root) + 1 :], is_dir=f.is_dir, size=f.size)
            for f in self.tree.list(full)
        ]

    def open(self, run_id: str, path: str) -> IO[bytes]:
        rel = check_artifact_path(path)
        try:
            return self.tree.open(f"{self.run_root(run_id)}/{rel}")
        except NotFound:
            raise NotFound(f"run {run_id} has no artifact file {rel!r}") from None

    def download_artifacts(
        self, run_id: str, path: str | None, dst: str | os.PathLike[str]
    ) -> Path:
        """Copy the file or folder at ``path`` ('' or None: everything) into folder ``dst``,
        keeping its relative path; returns the local path of what was downloaded."""
        root = self.run_root(run_id)
        rel = check_artifact_path(path)
        full = f"{root}/{rel}" if rel else root
        dest = Path(dst)
        if rel and self.tree.is_file(full):
            self.tree.download(full, dest / rel)
            return dest / rel
        files = list(self.tree.walk(full))
        if rel and not files and not self.tree.is_dir(full):
            raise NotFound(f"run {run_id} has no artifact {rel!r}")
        for f in files:
            self.tree.download(f.path, dest / f.path[len(root) + 1 :])
        target = dest / rel if rel else dest
        target.mkdir(parents=True, exist_ok=True)
        return target


def _chunks(src: Any) -> Iterator[bytes]:
    while chunk := src.read(CHUNK_SIZE):
        yield chunk
