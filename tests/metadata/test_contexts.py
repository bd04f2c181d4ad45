"""Lineage contexts and runs on every metadata backend: experiments are contexts, runs are
executions in them that read table versions and write model versions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.client.local import LocalWorkspace
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.metadata.service import MetadataService, model_version_uri
from shipyard.tracking.service import TrackingService


@pytest.fixture
def ws(tmp_path: Path, metadata_url: str) -> Iterator[LocalWorkspace]:
    local = LocalWorkspace(
        Context.open(Settings(home=tmp_path / "home", metadata={"url": metadata_url}))
    )
    rows = pa.table({"x": [float(i) for i in range(1, 9)], "y": [2.0 * i for i in range(1, 9)]})
    local.load_table("demo.t", rows)
    local.load_table("demo.t", rows, mode="append")  # version 2
    local.experiments.create("exp")
    yield local
    local.close()


@pytest.fixture
def md(ws: LocalWorkspace) -> MetadataService:
    return ws.services.metadata


@pytest.fixture
def t(ws: LocalWorkspace) -> TrackingService:
    return ws.services.tracking


def test_experiment_context_follows_the_experiment(md: MetadataService, t: TrackingService) -> None:
    exp = md.get_context("experiment/exp")
    assert (exp.type, exp.name, exp.ref) == ("experiment", "exp", "experiment/exp")
    t.rename_experiment("exp", "renamed")
    assert md.get_context("experiment/renamed").id == exp.id
    with pytest.raises(sy.NotFound, match="experiment/exp"):
        md.get_context("experiment/exp")
    t.delete_experiment("renamed")
    with pytest.raises(sy.NotFound):
        md.get_context("experiment/renamed")
    t.create_experiment("renamed")  # the name is free again
    assert md.get_context("experiment/renamed").id != exp.id


def test_a_run_is_an_execution_in_its_experiment(md: MetadataService, t: TrackingService) -> None:
    run = t.create_run("exp", name="first")
    graph = md.lineage(f"runs/{run.id}")
    (execution,) = graph.executions
    assert (execution.id, execution.kind, execution.name, execution.state) == (
        run.id,
        "run",
        "first",
        "RUNNING",
    )
    assert execution.properties == {"run_id": run.id, "experiment": "exp"}
    assert [c.ref for c in graph.contexts] == ["experiment/exp"]
    assert [c.ref for c in graph.contexts_of(run.id)] == ["experiment/exp"]
    root = graph.artifact(f"runs/{run.id}")
    assert root is not None and [c.ref for c in graph.contexts_of(root.id)] == ["experiment/exp"]
    t.end_run(run.id, "FAILED")
    assert md.lineage(f"runs/{run.id}").executions[0].state == "FAILED"
    killed = t.create_run("exp")
    t.end_run(killed.id, "KILLED")
    done = t.create_run("exp")
    t.end_run(done.id)
    assert md.lineage(f"runs/{killed.id}").executions[0].state == "CANCELED"
    assert md.lineage(f"runs/{done.id}").executions[0].state == "COMPLETE"


def test_log_input_and_a_model_version_from_the_run(
    ws: LocalWorkspace, md: MetadataService, t: TrackingService
) -> None:
    run = t.create_run("exp")
    assert t.log_input(run.id, "demo.t") == "tables/demo.t/versions/2"  # the latest
    assert t.log_input(run.id, "demo.t", 1) == "tables/demo.t/versions/1"
    assert t.log_input(run.id, "demo.t", 1) == "tables/demo.t/versions/1"  # idempotent
    ws.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    # What the registry records for a version whose Lineage.run_id is set:
    md.record_run_io(run.id, outputs=[model_version_uri("demo.m", 1)])
    md.record_run_io(run.id, outputs=[model_version_uri("demo.m", 1)])  # idempotent

    up = md.lineage(f"runs/{run.id}", "upstream", depth=1)
    assert set(up.uris) == {
        f"runs/{run.id}",
        "tables/demo.t/versions/1",
        "tables/demo.t/versions/2",
    }
    assert up.artifact("tables/demo.t/versions/2").properties["fingerprint"]  # type: ignore[union-attr]
    down = md.lineage(f"runs/{run.id}", "downstream")
    assert down.uris == [f"runs/{run.id}", "models/demo.m/versions/1"]
    assert [(e.type.value, e.execution_id) for e in down.edges] == [
        ("OUTPUT", run.id),
        ("OUTPUT", run.id),
    ]
    model_up = md.lineage("models/demo.m", "upstream", depth=1)
    assert {e.kind for e in model_up.executions} == {"run", "sql_statement"}
    # Inputs and outputs are attributed to the run's experiment.
    both = md.lineage(f"runs/{run.id}")
    exp = md.get_context("experiment/exp")
    attributed = {a.uri for a in both.artifacts if exp in both.contexts_of(a.id)}
    assert attributed == {
        f"runs/{run.id}",
        "tables/demo.t/versions/1",
        "tables/demo.t/versions/2",
        "models/demo.m/versions/1",
    }


def test_log_input_refuses_bad_input_and_records_nothing(
    md: MetadataService, t: TrackingService
) -> None:
    run = t.create_run("exp")
    before = md.lineage(f"runs/{run.id}")
    with pytest.raises(sy.NotFound, match=r"demo\.nope"):
        t.log_input(run.id, "demo.nope")
    with pytest.raises(sy.NotFound, match="version 9"):
        t.log_input(run.id, "demo.t", 9)
    for bad in (0, "2", True):
        with pytest.raises(sy.InvalidArgument, match="version"):
            t.log_input(run.id, "demo.t", bad)  # type: ignore[arg-type]
    with pytest.raises(sy.NotFound, match="nope"):
        t.log_input("nope", "demo.t")
    assert md.lineage(f"runs/{run.id}") == before
    t.end_run(run.id)
    with pytest.raises(sy.FailedPrecondition, match="ended"):
        t.log_input(run.id, "demo.t")
    assert md.lineage(f"runs/{run.id}").edges == before.edges


def test_lineage_narrowed_to_a_context(md: MetadataService, t: TrackingService) -> None:
    t.create_experiment("other")
    mine, theirs = t.create_run("exp"), t.create_run("other")
    t.log_input(mine.id, "demo.t")
    t.log_input(theirs.id, "demo.t")
    everything = md.lineage("tables/demo.t", "downstream")
    assert {f"runs/{mine.id}", f"runs/{theirs.id}"} <= set(everything.uris)
    narrowed = md.lineage("tables/demo.t", "downstream", context="experiment/exp")
    assert narrowed.context == "experiment/exp"
    assert narrowed.uris == ["tables/demo.t/versions/2", f"runs/{mine.id}"]
    assert [e.id for e in narrowed.executions] == [mine.id]
    # Upstream of the table, the load is in no experiment: narrowed away.
    assert md.lineage("tables/demo.t", "upstream", context="experiment/exp").executions == []
    with pytest.raises(sy.NotFound, match="experiment/nope"):
        md.lineage("tables/demo.t", context="experiment/nope")
    for bad in ("exp", "", "Bad Type/x", "experiment/"):
        with pytest.raises(sy.InvalidArgument, match="context"):
            md.lineage("tables/demo.t", context=bad)


def test_contexts_attributions_and_associations(md: MetadataService) -> None:
    nightly = md.create_context("pipeline", "nightly", description="d", properties={"k": 1})
    assert md.get_context("pipeline/nightly") == nightly
    with pytest.raises(sy.AlreadyExists, match="pipeline/nightly"):
        md.create_context("pipeline", "nightly")
    with pytest.raises(sy.InvalidArgument, match="follow experiments"):
        md.create_context("experiment", "sneaky")
    for bad_type in ("", "Pipeline", "a b", "x" * 33, None):
        with pytest.raises(sy.InvalidArgument, match="context type"):
            md.create_context(bad_type, "n")  # type: ignore[arg-type]
    with pytest.raises(sy.InvalidArgument, match="context name"):
        md.create_context("pipeline", " ")
    md.attribute("tables/demo.t/versions/1", "pipeline/nightly")
    md.attribute("tables/demo.t", "pipeline/nightly")  # latest version; twice is fine
    md.attribute("tables/demo.t/versions/2", "pipeline/nightly")
    load = md.lineage("tables/demo.t", "upstream").executions[0]
    md.associate(load.id, "pipeline/nightly")
    md.associate(load.id, "pipeline/nightly")
    graph = md.lineage("tables/demo.t", "upstream")
    assert [c.ref for c in graph.contexts_of(load.id)] == ["pipeline/nightly"]
    assert [c.ref for c in graph.contexts_of(graph.artifacts[0].id)] == ["pipeline/nightly"]
    assert md.lineage("tables/demo.t", "upstream", context="pipeline/nightly").executions == [load]
    with pytest.raises(sy.NotFound, match="execution"):
        md.associate("nope", "pipeline/nightly")
    with pytest.raises(sy.NotFound, match="pipeline/weekly"):
        md.attribute("tables/demo.t", "pipeline/weekly")
    with pytest.raises(sy.NotFound, match=r"demo\.nope"):
        md.attribute("tables/demo.nope", "pipeline/nightly")

    md.create_context("pipeline", "hourly")
    refs, token = [], None
    while True:
        page = md.list_contexts(page_size=1, page_token=token)
        refs += [c.ref for c in page.items]
        token = page.next_page_token
        if not token:
            break
    assert refs == ["experiment/exp", "pipeline/hourly", "pipeline/nightly"]
    assert [c.ref for c in md.list_contexts(type="experiment").items] == ["experiment/exp"]
    with pytest.raises(sy.InvalidArgument, match="context type"):
        md.list_contexts(type="Not A Type")


def test_runs_and_experiments_from_before_contexts_get_them_on_use(
    ws: LocalWorkspace, md: MetadataService, t: TrackingService
) -> None:
    """A database migrated from before contexts has experiments without a context and runs
    without an execution: they get them the first time lineage needs them."""
    import sqlalchemy as sa

    from shipyard.store.schema import md_artifacts, md_contexts, md_executions

    old_run = t.create_run("exp")
    with ws.ctx.metadata.transaction() as conn:  # as the migration leaves an older database
        conn.execute(sa.delete(md_executions).where(md_executions.c.id == old_run.id))
        conn.execute(sa.delete(md_artifacts).where(md_artifacts.c.uri == f"runs/{old_run.id}"))
        conn.execute(sa.delete(md_contexts))
    assert md.lineage(f"runs/{old_run.id}").executions == []
    new_run = t.create_run("exp")  # the experiment's context comes back
    assert md.get_context("experiment/exp").id == t.get_experiment("exp").id
    t.log_input(old_run.id, "demo.t")
    graph = md.lineage(f"runs/{old_run.id}")
    assert [e.id for e in graph.executions if e.kind == "run"] == [old_run.id]
    assert "tables/demo.t/versions/2" in graph.uris
    assert [c.ref for c in graph.contexts_of(old_run.id)] == ["experiment/exp"]
    assert [c.ref for c in md.lineage(f"runs/{new_run.id}").contexts] == ["experiment/exp"]
