"""ArtifactStore: immutable, content-addressed blobs on any fsspec filesystem.

An object lives at ``<root>/sha256/<first 2 hex>/<64 hex>``; its name is the sha256 of its bytes,
so storing the same bytes twice stores them once, and every read is checked against the name::

    store = ArtifactStore("/tmp/demo/artifacts")          # or "s3://bucket/prefix", "memory://x"
    digest = store.put_bytes(b"hello")
    assert store.get_bytes(digest) == b"hello"

How writes stay atomic (a crash never leaves a half-written object under its final name):

* local files: written to a temporary name on the same filesystem, flushed to disk (fsync), then
  renamed with :func:`os.replace`;
* any other filesystem (S3 and other object stores, ``memory://``): written straight to the final
  key. An object-store PUT (or multipart upload) becomes visible whole or not at all, and a
  server-side "rename" would be a second full copy. Bytes of unknown digest (``put_stream``) are
  spooled to a local temporary file first, so the key is known before the upload starts.

An object that is already present with the right size is never rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeAlias

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from shipyard.errors import ArtifactCorrupted, FailedPrecondition, InvalidArgument, NotFound

__all__ = ["CHUNK_SIZE", "ArtifactStore", "Digest"]

Digest: TypeAlias = str
"""The hex sha256 of an artifact's bytes: 64 lowercase hexadecimal characters."""

CHUNK_SIZE = 1 << 20  # bytes read or written at a time: memory use stays bounded
_SPOOL_IN_MEMORY = 8 << 20  # put_stream keeps this much in memory before spilling to disk
_DIGEST = re.compile(r"[0-9a-f]{64}")


class ArtifactStore:
    """Content-addressed artifacts under one fsspec root (a local path or any fsspec URL).

    ``storage_options`` go to the filesystem (e.g. ``endpoint_url``, ``key``, ``secret`` for S3).
    """

    def __init__(self, url: str | os.PathLike[str], **storage_options: Any) -> None:
        self.url = os.fspath(url)
        fs, root = url_to_fs(self.url, **storage_options)
        self.fs: AbstractFileSystem = fs
        self.root: str = root.rstrip("/") or "/"
        self._local = isinstance(fs, LocalFileSystem)
        if self._local:
            os.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # -- names ---------------------------------------------------------------------------------

    def path(self, digest: Digest) -> str:
        """Where the object lives inside :attr:`fs` (no protocol)."""
        _check_digest(digest)
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def uri(self, digest: Digest) -> str:
        """The object's full fsspec URL (``file:///…``, ``s3://…``), e.g. for a remote worker."""
        return str(self.fs.unstrip_protocol(self.path(digest)))

    # -- writing -------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Digest:
        """Store ``data``; returns its digest."""
        digest = hashlib.sha256(data).hexdigest()
        if self._present(digest, len(data)):
            return digest
        if self._local:
            final = self.path(digest)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with self._local_temp(os.path.dirname(final)) as (tmp, out):
                out.write(data)
                _sync(out)
                os.replace(tmp, final)
        else:
            self.fs.pipe_file(self.path(digest), data)
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> Digest:
        """Store the file at local ``path``, streaming it in chunks; returns its digest."""
        if self._local:
            with open(path, "rb") as src:
                return self._put_local_stream(src)
        digest, size = _hash_file(path)
        if not self._present(digest, size):
            with open(path, "rb") as src:
                self._upload(src, digest, what=f"file {os.fspath(path)!r}")
        return digest

    def put_stream(self, fileobj: IO[bytes]) -> Digest:
        """Store everything readable from ``fileobj`` (read in chunks); returns its digest."""
        if self._local:
            return self._put_local_stream(fileobj)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            hasher, size = hashlib.sha256(), 0
            for chunk in _chunks(fileobj):
                hasher.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            digest = hasher.hexdigest()
            if not self._present(digest, size):
                spool.seek(0)
                self._upload(spool, digest, what="stream")
        return digest

    def _put_local_stream(self, src: IO[bytes]) -> Digest:
        staging = os.path.join(self.root, "tmp")
        os.makedirs(staging, exist_ok=True)
        with self._local_temp(staging) as (tmp, out):
            hasher, size = hashlib.sha256(), 0
            for chunk in _chunks(src):
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
            digest = hasher.hexdigest()
            if not self._present(digest, size):
                _sync(out)
                final = self.path(digest)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
        return digest

    def _upload(self, src: IO[bytes], digest: Digest, *, what: str) -> None:
        """Copy ``src`` to the final key, checking it still hashes to ``digest``."""
        final = self.path(digest)
        hasher = hashlib.sha256()
        with self.fs.open(final, "wb") as out:
            for chunk in _chunks(src):
                hasher.update(chunk)
                out.write(chunk)
        if hasher.hexdigest() != digest:
            self.fs.rm_file(final)
            raise FailedPrecondition(f"{what} changed while it was being stored; try again")

    @contextlib.contextmanager
    def _local_temp(self, folder: str) -> Iterator[tuple[str, IO[bytes]]]:
        """A temporary file in ``folder``, removed afterwards unless it was renamed away."""
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as out:
                yield tmp, out
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _present(self, digest: Digest, size: int) -> bool:
        # A wrong size means a torn write from before: store the object again.
        try:
            return int(self.fs.size(self.path(digest))) == size
        except FileNotFoundError:
            return False

    # -- reading -------------------------------------------------------------------------------

    def get_bytes(self, digest: Digest) -> bytes:
        """The object's bytes, verified against ``digest``."""
        try:
            data = bytes(self.fs.cat_file(self.path(digest)))
        except FileNotFoundError:
            raise self._not_found(digest) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise _corrupted(digest, actual)
        return data

    def open(self, digest: Digest) -> io.BufferedReader:
        """A reader of the object that verifies as it goes.

        Reaching the end raises :class:`ArtifactCorrupted` if the bytes read do not match, so
        only trust the content once the reader has returned ``b""``. Use :meth:`download` or
        :meth:`get_bytes` when nothing unverified may be used at all.
        """
        try:
            raw = self.fs.open(self.path(digest), "rb")
        except FileNotFoundError:
            raise self._not_found(digest) from None
        return io.BufferedReader(_VerifyingReader(raw, digest), CHUNK_SIZE)

    def download(self, digest: Digest, dest: str | os.PathLike[str]) -> Path:
        """Copy the object to local ``dest``, verifying while copying; returns ``dest``.

        ``dest`` appears only once verified: on a mismatch the partial copy is removed and
        :class:`ArtifactCorrupted` raised; an existing ``dest`` is left as it was.
        """
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.partial-{uuid.uuid4().hex}"
        try:
            with self.open(digest) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK_SIZE)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return target

    def exists(self, digest: Digest) -> bool:
        """Whether an object named ``digest`` is stored (its bytes are not checked)."""
        return bool(self.fs.exists(self.path(digest)))

    def size(self, digest: Digest) -> int:
        """The object's size in bytes."""
        try:
            return int(self.fs.size(self.path(digest)))
        except FileNotFoundError:
            raise self._not_found(digest) from None

    def delete(self, digest: Digest, *, missing_ok: bool = False) -> None:
        """Remove the object; :class:`NotFound` if absent unless ``missing_ok``."""
        try:
            self.fs.rm_file(self.path(digest))
        except FileNotFoundError:
            if not missing_ok:
                raise self._not_found(digest) from None

    def _not_found(self, digest: Digest) -> NotFound:
        return NotFound(f"artifact sha256:{digest} not found in {self.url}", digest=digest)


class _VerifyingReader(io.RawIOBase):
    """Hashes what passes through; raises ArtifactCorrupted at the end on a mismatch."""

    def __init__(self, raw: IO[bytes], digest: Digest) -> None:
        self._raw = raw
        self._digest = digest
        self._hasher = hashlib.sha256()
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        if not data:
            if not self._checked:
                actual = self._hasher.hexdigest()
                if actual != self._digest:
                    raise _corrupted(self._digest, actual)
                self._checked = True
            return 0
        view[: len(data)] = data
        self._hasher.update(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _check_digest(digest: object) -> None:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidArgument(
            f"invalid artifact digest {digest!r}: expected 64 lowercase hex characters (sha256)"
        )


def _corrupted(digest: Digest, actual: str) -> ArtifactCorrupted:
    return ArtifactCorrupted(
        f"artifact sha256:{digest} is corrupted: expected sha256 {digest}, got {actual}",
        digest=digest,
        actual=actual,
    )


def _chunks(src: IO[bytes]) -> Iterator[bytes]:
    while chunk := src.read(CHUNK_SIZE):
        yield chunk


def _hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as src:
        for chunk in _chunks(src):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _sync(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())
