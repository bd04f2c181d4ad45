"""The registry and the engine, on every metadata backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.engine import JobContext, LocalEngine
from shipyard.services import Services

LINEAR = (
    "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
    "AS SELECT * FROM demo.t"
)


@pytest.fixture
def services(tmp_path: Path, metadata_url: str) -> Iterator[Services]:
    settings = Settings(home=tmp_path / "home", metadata={"url": metadata_url})
    built = Services.build(Context.open(settings))
    built.tables.load("demo.t", [{"x": float(i), "y": 2.0 * i + 1.0} for i in range(50)])
    yield built
    built.close()


def test_versions_aliases_and_default(services: Services) -> None:
    services.sql.execute(LINEAR)
    services.sql.execute(LINEAR)
    models = services.models
    assert [v.version for v in models.versions("demo.m").items] == [2, 1]
    assert models.get("demo.m").aliases == {"default": 2}
    models.set_alias("demo.m", "Champion", 1)  # aliases are case-insensitive
    assert models.get_version("demo.m", alias="champion").version == 1
    assert models.get_version("demo.m", 1).aliases == ["champion"]
    models.set_alias("demo.m", "default", 1)
    assert models.load("demo.m").predict(services.tables.preview("demo.t", limit=3)).num_rows == 3
    with pytest.raises(sy.FailedPrecondition, match="default"):
        models.delete_alias("demo.m", "default")
    with pytest.raises(sy.InvalidArgument, match="alias"):
        models.set_alias("demo.m", "has space", 1)
    with pytest.raises(sy.InvalidArgument, match="number"):
        models.set_alias("demo.m", "3", 1)
    with pytest.raises(sy.NotFound, match="version 9"):
        models.set_alias("demo.m", "x", 9)
    with pytest.raises(sy.InvalidArgument, match="not both"):
        models.get_version("demo.m", 1, alias="champion")
    models.delete_alias("demo.m", "champion")
    with pytest.raises(sy.NotFound, match="champion"):
        models.get_version("demo.m", alias="champion")


def test_paging_models(services: Services) -> None:
    for i in range(5):
        services.sql.execute(LINEAR.replace("demo.m", f"demo.m{i}"))
    seen, token = [], None
    while True:
        page = services.models.list(page_size=2, page_token=token)
        seen += [m.name for m in page.items]
        token = page.next_page_token
        if token is None:
            break
    assert seen == [f"demo.m{i}" for i in range(5)]


def test_corrupted_artifact_is_detected_not_loaded(services: Services) -> None:
    services.sql.execute(LINEAR)
    manifest = services.models.manifest("demo.m")
    (_fname, digest), *_ = manifest.files.items()
    stored = Path(services.ctx.artifacts.path(digest))
    stored.write_bytes(stored.read_bytes()[:-8] + b"tampered")
    with pytest.raises(sy.ArtifactCorrupted, match=digest[:12]):
        services.models.load("demo.m")
    with pytest.raises(sy.ArtifactCorrupted):
        services.sql.execute("SELECT * FROM ML.PREDICT(MODEL demo.m, TABLE demo.t)")
    stored.unlink()
    with pytest.raises(sy.ShipyardError):
        services.models.load("demo.m")


def test_corrupted_manifest_is_detected(services: Services) -> None:
    services.sql.execute(LINEAR)
    digest = services.models.get_version("demo.m").manifest_digest
    stored = Path(services.ctx.artifacts.path(digest))
    stored.write_text(stored.read_text().replace('"LINEAR_REG"', '"LOGISTIC_REG"'))
    with pytest.raises(sy.ArtifactCorrupted):
        services.models.manifest("demo.m")


def test_concurrent_replace_gives_distinct_versions(services: Services) -> None:
    errors: list[BaseException] = []

    def train() -> None:
        try:
            services.sql.execute(LINEAR)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=train) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(v.version for v in services.models.versions("demo.m").items) == [1, 2, 3]


def test_engine_jobs_logs_cancel_and_recovery(services: Services, metadata_url: str) -> None:
    engine = services.engine
    started, release = threading.Event(), threading.Event()

    def slow(job: JobContext) -> str:
        job.log("starting")
        started.set()
        while not release.wait(0.01):
            job.progress(0.5, "waiting")
        return "done"

    job = engine.submit("test", slow, description="a slow job")
    assert started.wait(10)
    assert engine.get(job.id).state == "RUNNING"
    engine.cancel(job.id)
    finished = engine.wait(job.id, timeout=10)
    assert finished.state == "CANCELLED"
    assert [line.line for line in engine.logs(job.id)] == ["starting"]

    def boom(job: JobContext) -> None:
        raise sy.InvalidArgument("bad input for the job")

    with pytest.raises(sy.InvalidArgument):
        engine.run("test", boom)
    failed = engine.list(kind="test", state="failed").items[0]
    assert failed.error and failed.error["code"] == "INVALID_ARGUMENT"
    with pytest.raises(sy.InvalidArgument, match="state"):
        engine.list(state="sleeping")

    # A job a dead process left RUNNING is failed by the next engine, with a reason.
    stuck = engine.submit("test", lambda job: release.wait(30))
    other = LocalEngine(services.ctx.metadata)
    try:
        assert other.get(stuck.id).state == "FAILED"
    finally:
        release.set()
        other.shutdown()
