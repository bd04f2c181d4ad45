"""RemoteWorkspace mirrors LocalWorkspace method for method, and behaves like it on the wire."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from starlette.testclient import TestClient

import shipyard as sy
from shipyard.client.local import (
    LocalExperiments,
    LocalJobs,
    LocalModels,
    LocalRuns,
    LocalTables,
    LocalWorkspace,
)
from shipyard.client.remote import (
    RemoteExperiments,
    RemoteJobs,
    RemoteModels,
    RemoteRuns,
    RemoteTables,
    RemoteWorkspace,
)
from shipyard.server import create_app

PAIRS = [
    (LocalWorkspace, RemoteWorkspace),
    (LocalTables, RemoteTables),
    (LocalModels, RemoteModels),
    (LocalJobs, RemoteJobs),
    (LocalExperiments, RemoteExperiments),
    (LocalRuns, RemoteRuns),
]


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def _spelled(function: Any) -> str:
    return str(inspect.signature(function)).replace("builtins.", "")


@pytest.mark.parametrize(("local", "remote"), PAIRS, ids=lambda c: c.__name__)
def test_same_public_methods_and_signatures(local: type, remote: type) -> None:
    mine, theirs = _public(local), _public(remote)
    assert sorted(mine) == sorted(theirs)
    for name, member in mine.items():
        if isinstance(member, property):
            assert isinstance(theirs[name], property), name
            continue
        # The same text: annotations are strings here, and ``builtins.list`` is how a class
        # with a ``list`` method spells the builtin for mypy.
        assert _spelled(member) == _spelled(theirs[name]), name
        assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(theirs[name])


def test_same_collections(embedded: LocalWorkspace) -> None:
    remote = RemoteWorkspace("http://127.0.0.1:1")  # never contacted
    assert LocalWorkspace.remote is False and RemoteWorkspace.remote is True
    for attr in ("tables", "models", "jobs", "experiments", "runs"):
        local_cls, remote_cls = type(getattr(embedded, attr)), type(getattr(remote, attr))
        assert (local_cls, remote_cls) in PAIRS, attr
    remote.close()


# -- behaviour on the wire -------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[LocalWorkspace]:
    ws = sy.connect(tmp_path / "home")
    yield ws
    ws.close()


def _remote(embedded: LocalWorkspace, tmp_path: Path, **app_args: Any) -> Iterator[RemoteWorkspace]:
    token = app_args.pop("client_token", None)
    app = create_app(embedded.services, **app_args)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        yield RemoteWorkspace(
            "http://127.0.0.1:8765", client=client, token=token, cache_dir=tmp_path / "cache"
        )


@pytest.fixture
def remote(embedded: LocalWorkspace, tmp_path: Path) -> Iterator[RemoteWorkspace]:
    yield from _remote(embedded, tmp_path)


def test_unreachable_server_is_unavailable_naming_the_url() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = RemoteWorkspace(f"http://127.0.0.1:{port}")
    with pytest.raises(sy.Unavailable, match=f"127.0.0.1:{port}") as info:
        ws.sql("SELECT 1")
    assert info.value.details["url"] == f"http://127.0.0.1:{port}"
    ws.close()


def test_invalid_url_is_rejected() -> None:
    with pytest.raises(sy.InvalidArgument, match="http"):
        RemoteWorkspace("localhost:8765")


def test_errors_map_back_to_their_classes_with_details(remote: RemoteWorkspace) -> None:
    with pytest.raises(sy.SQLError) as info:
        remote.sql("SELECT *\nFROM t WHERE (x >")
    assert info.value.line == 2 and info.value.details["line"] == 2
    with pytest.raises(sy.NotFound, match=r"demo\.nope") as missing:
        remote.tables.get("demo.nope")
    assert isinstance(missing.value, LookupError)
    with pytest.raises(sy.InvalidArgument):
        remote.tables.list(page_size=0)
    with pytest.raises(sy.InvalidArgument, match="not both"):
        remote.models.get_version("demo.m", 1, alias="default")


def test_tokens(embedded: LocalWorkspace, tmp_path: Path) -> None:
    for ws in _remote(embedded, tmp_path, token="s3cret"):
        with pytest.raises(sy.Unauthenticated):
            ws.tables.list()
    for ws in _remote(embedded, tmp_path, token="s3cret", client_token="wrong"):
        with pytest.raises(sy.PermissionDenied):
            ws.tables.list()
    for ws in _remote(embedded, tmp_path, token="s3cret", client_token="s3cret"):
        assert ws.tables.list().items == []


def test_rows_keep_their_types(remote: RemoteWorkspace, embedded: LocalWorkspace) -> None:
    query = "SELECT 1::TINYINT AS t, DATE '2024-02-29' AS d, [1.5, 2.5] AS l, 'é' AS s"
    here, there = embedded.sql(query), remote.sql(query)
    assert there.to_arrow().equals(here.to_arrow())
    assert there.statement_type == "SELECT" and there.job_id
    assert repr(remote).endswith("(remote)>")
    assert remote.home == embedded.home


def test_load_table_from_path_frame_and_arrow(remote: RemoteWorkspace, tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    assert remote.load_table("demo.f", csv).num_rows == 2
    assert remote.load_table("demo.f", csv, mode="append").num_rows == 4
    assert remote.load_table("demo.a", pa.table({"a": [1, 2, 3]})).num_rows == 3
    with pytest.raises(sy.NotFound, match=r"missing\.csv"):
        remote.load_table("demo.g", tmp_path / "missing.csv")
    with pytest.raises(sy.InvalidArgument, match="cannot load a int"):
        remote.load_table("demo.g", 42)
    with pytest.raises(sy.AlreadyExists):
        remote.load_table("demo.f", csv, mode="fail")
    assert [v.version for v in remote.tables.versions("demo.f")] == [1, 2]
    remote.tables.delete("demo.a")
    with pytest.raises(sy.NotFound):
        remote.tables.get("demo.a")


def test_too_large_upload_is_refused_before_sending(
    embedded: LocalWorkspace, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    big.write_text("a\n" + "1\n" * 4000)
    for ws in _remote(embedded, tmp_path, max_request_bytes=2048):
        with pytest.raises(sy.PayloadTooLarge, match="limit"):
            ws.load_table("demo.big", big)
        with pytest.raises(sy.PayloadTooLarge):
            ws.load_table("demo.big", pa.table({"a": list(range(4000))}))


def test_models_load_downloads_verifies_and_caches(
    remote: RemoteWorkspace, embedded: LocalWorkspace, tmp_path: Path
) -> None:
    rows = pa.table(
        {"x": [float(i % 7) for i in range(60)], "y": [float(2 * (i % 7) + 1) for i in range(60)]}
    )
    embedded.load_table("demo.lin", rows)
    embedded.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT x, y FROM demo.lin"
    )
    predictor = remote.models.load("demo.m")
    assert remote.models.load("demo.m", 1) is predictor  # cached by manifest digest
    data = pa.table({"x": [1.0, 3.0]})
    expected = embedded.models.load("demo.m").predict(data)
    assert predictor.predict(data).equals(expected)
    assert remote.models.predict("demo.m", [{"x": 1.0}, {"x": 3.0}]).equals(expected)
    assert remote.models.predict("demo.m", data, version=1).equals(expected)

    mv = remote.models.get_version("demo.m")
    folder = tmp_path / "cache" / "packages" / mv.manifest_digest
    files = remote.models.manifest("demo.m", 1).files
    assert (folder / ".complete").exists() and all((folder / f).is_file() for f in files)

    # A damaged cache is noticed and fetched again (a fresh client has no predictor cache).
    damaged = folder / next(iter(files))
    damaged.write_bytes(b"garbage")
    for again in _remote(embedded, tmp_path):
        assert again.models.load("demo.m").predict(data).equals(expected)
    assert damaged.read_bytes() != b"garbage"

    with pytest.raises(sy.NotFound):
        remote.models.load("demo.nope")
