"""ArtifactStore contract: the same behaviour on every fsspec backend.

To add a backend (S3 next), add a case to ``artifact_url`` that yields a fresh root URL and the
storage options; every test below then runs against it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from shipyard.errors import ArtifactCorrupted, InvalidArgument, NotFound
from shipyard.store import ArtifactStore

BACKENDS = ["local", "memory"]


@pytest.fixture(params=BACKENDS)
def artifact_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh, empty artifact root of each backend, and its storage options."""
    if request.param == "local":
        yield str(tmp_path / "artifacts"), {}
    elif request.param == "memory":
        root = f"memory://shipyard-test-{uuid.uuid4().hex}"
        yield root, {}
        fs = fsspec.filesystem("memory")
        if fs.exists(root):
            fs.rm(root, recursive=True)
    else:  # pragma: no cover - a new backend must say how to make a root
        raise AssertionError(request.param)


@pytest.fixture
def store(artifact_url: tuple[str, dict[str, Any]]) -> ArtifactStore:
    url, options = artifact_url
    return ArtifactStore(url, **options)


def _corrupt(store: ArtifactStore, digest: str) -> None:
    """Flip one byte of the stored object behind the store's back."""
    data = bytearray(store.fs.cat_file(store.path(digest)))
    data[len(data) // 2] ^= 0x01
    store.fs.pipe_file(store.path(digest), bytes(data))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- round trips ------------------------------------------------------------------------------


def test_put_bytes_round_trip(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == _sha(b"hello")
    assert store.get_bytes(digest) == b"hello"
    assert store.exists(digest)
    assert store.size(digest) == 5
    assert store.path(digest).endswith(f"/sha256/{digest[:2]}/{digest}")


def test_empty_artifact(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"")
    assert store.get_bytes(digest) == b""
    assert store.size(digest) == 0


def test_put_file_and_stream_give_the_same_digest(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a partial one
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    digest = store.put_file(source)
    assert digest == _sha(data)
    assert store.put_stream(io.BytesIO(data)) == digest
    assert store.get_bytes(digest) == data


def test_same_bytes_are_stored_once(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"same")
    local = isinstance(store.fs, LocalFileSystem)
    mtime = os.stat(store.path(digest)).st_mtime_ns if local else None
    (tmp_path / "same.bin").write_bytes(b"same")
    assert store.put_file(tmp_path / "same.bin") == digest
    assert store.put_stream(io.BytesIO(b"same")) == digest
    assert store.fs.find(f"{store.root}/sha256") == [store.path(digest)]
    if mtime is not None:
        assert os.stat(store.path(digest)).st_mtime_ns == mtime  # not rewritten


def test_no_temporary_files_are_left(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a" * 10)
    store.put_file(tmp_path / "a.bin")
    store.put_file(tmp_path / "a.bin")
    store.put_stream(io.BytesIO(b"b" * 10))
    store.put_bytes(b"c")
    names = [p.rsplit("/", 1)[-1] for p in store.fs.find(store.root)]
    assert sorted(names) == sorted(_sha(x) for x in (b"a" * 10, b"b" * 10, b"c"))


def test_truncated_object_is_rewritten_by_the_next_put(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"0123456789")
    store.fs.pipe_file(store.path(digest), b"01234")  # a torn write from before
    assert store.put_bytes(b"0123456789") == digest
    assert store.get_bytes(digest) == b"0123456789"


def test_open_reads_verified_bytes(store: ArtifactStore) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    digest = store.put_bytes(data)
    with store.open(digest) as reader:
        assert reader.read(10) == data[:10]
        assert reader.read() == data[10:]


def test_download_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = store.put_bytes(data)
    dest = store.download(digest, tmp_path / "out" / "model.bin")
    assert dest.read_bytes() == data
    assert os.listdir(tmp_path / "out") == ["model.bin"]


def test_delete(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"bye")
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(NotFound):
        store.delete(digest)
    store.delete(digest, missing_ok=True)


# -- failures ---------------------------------------------------------------------------------


def test_corruption_is_detected_on_get(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"precious model weights")
    _corrupt(store, digest)
    with pytest.raises(ArtifactCorrupted, match=f"sha256:{digest} is corrupted"):
        store.get_bytes(digest)


def test_corruption_is_detected_on_download_and_leaves_no_file(
    store: ArtifactStore, tmp_path: Path
) -> None:
    digest = store.put_bytes(os.urandom(3 * 1024 * 1024))
    _corrupt(store, digest)
    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(ArtifactCorrupted):
        store.download(digest, dest)
    assert not dest.exists()
    assert os.listdir(tmp_path / "out") == []


def test_corruption_is_detected_at_the_end_of_open(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"x" * 1000)
    _corrupt(store, digest)
    with store.open(digest) as reader, pytest.raises(ArtifactCorrupted):
        reader.read()


def test_download_keeps_an_existing_destination_on_corruption(
    store: ArtifactStore, tmp_path: Path
) -> None:
    digest = store.put_bytes(b"new bytes")
    _corrupt(store, digest)
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ArtifactCorrupted):
        store.download(digest, dest)
    assert dest.read_bytes() == b"old"


def test_missing_object_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    digest = _sha(b"never stored")
    assert not store.exists(digest)
    for call in (store.get_bytes, store.open, store.size):
        with pytest.raises(NotFound, match=f"artifact sha256:{digest} not found in"):
            call(digest)
    with pytest.raises(NotFound):
        store.download(digest, tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize(
    "digest", ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, f"sha256:{'0' * 64}", None, 5]
)
def test_bad_digest_is_invalid_argument(store: ArtifactStore, digest: Any) -> None:
    for call in (store.get_bytes, store.exists, store.size, store.open, store.delete):
        with pytest.raises(InvalidArgument, match="64 lowercase hex"):
            call(digest)


# -- large files ------------------------------------------------------------------------------


def test_large_file_streams_with_bounded_memory(store: ArtifactStore, tmp_path: Path) -> None:
    if not isinstance(store.fs, LocalFileSystem):
        pytest.skip("only a disk-backed store can stream without holding the object in memory")
    size = 20 * 1024 * 1024
    source = tmp_path / "big.bin"
    hasher = hashlib.sha256()
    with open(source, "wb") as out:
        for _ in range(size // (1024 * 1024)):
            block = os.urandom(1024 * 1024)
            hasher.update(block)
            out.write(block)

    tracemalloc.start()
    try:
        digest = store.put_file(source)
        with open(source, "rb") as src:
            assert store.put_stream(src) == digest
        store.download(digest, tmp_path / "copy.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hasher.hexdigest()
    assert (tmp_path / "copy.bin").stat().st_size == size
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while streaming 20 MiB"
