"""Runs in lineage through the SDK, embedded and over HTTP: ``ws.runs.log_input``,
``sy.log_input``, ``ws.lineage(..., context=)`` and ``ws.lineage_contexts``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

import shipyard as sy

ROWS = pa.table({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})


@pytest.fixture
def loaded(ws: Any) -> Any:
    ws.load_table("demo.t", ROWS)
    ws.load_table("demo.t", ROWS, mode="append")
    ws.experiments.create("exp")
    return ws


def test_log_input_shows_in_the_runs_lineage(loaded: Any) -> None:
    ws = loaded
    run = ws.runs.create("exp", name="trainer")
    assert ws.runs.log_input(run.id, "demo.t") == "tables/demo.t/versions/2"
    assert ws.runs.log_input(run.id, "demo.t", version=1) == "tables/demo.t/versions/1"
    graph = ws.lineage(f"runs/{run.id}", direction="upstream")
    assert {"tables/demo.t/versions/1", "tables/demo.t/versions/2"} <= set(graph.uris)
    (execution,) = (e for e in graph.executions if e.kind == "run")
    assert execution.id == run.id and execution.name == "trainer"
    assert [c.ref for c in graph.contexts_of(run.id)] == ["experiment/exp"]
    with pytest.raises(sy.NotFound, match=r"demo\.nope"):
        ws.runs.log_input(run.id, "demo.nope")
    with pytest.raises(sy.NotFound, match="version 7"):
        ws.runs.log_input(run.id, "demo.t", version=7)
    with pytest.raises(sy.NotFound):
        ws.runs.log_input("nope", "demo.t")
    ws.runs.end(run.id)
    with pytest.raises(sy.FailedPrecondition, match="ended"):
        ws.runs.log_input(run.id, "demo.t")


def test_lineage_within_a_context_and_the_contexts(loaded: Any) -> None:
    ws = loaded
    ws.experiments.create("other")
    mine, theirs = ws.runs.create("exp"), ws.runs.create("other")
    ws.runs.log_input(mine.id, "demo.t")
    ws.runs.log_input(theirs.id, "demo.t")
    narrowed = ws.lineage("tables/demo.t", direction="downstream", context="experiment/exp")
    assert narrowed.context == "experiment/exp"
    assert f"runs/{mine.id}" in narrowed.uris and f"runs/{theirs.id}" not in narrowed.uris
    with pytest.raises(sy.NotFound, match="experiment/nope"):
        ws.lineage("tables/demo.t", context="experiment/nope")
    with pytest.raises(sy.InvalidArgument, match="type/name"):
        ws.lineage("tables/demo.t", context="exp")

    page = ws.lineage_contexts(page_size=1)
    assert [c.ref for c in page.items] == ["experiment/exp"] and page.next_page_token
    rest = ws.lineage_contexts(page_size=1, page_token=page.next_page_token)
    assert [c.ref for c in rest.items] == ["experiment/other"]
    assert [c.name for c in ws.lineage_contexts(type="experiment").items] == ["exp", "other"]
    assert ws.lineage_contexts(type="pipeline").items == []
    with pytest.raises(sy.InvalidArgument, match="context type"):
        ws.lineage_contexts(type="Bad Type")


@pytest.fixture
def fluent(loaded: Any) -> Iterator[Any]:
    sy.set_workspace(loaded)
    yield loaded
    while sy.active_run() is not None:
        sy.end_run()
    sy.set_workspace(None)


def test_fluent_log_input(fluent: Any) -> None:
    with pytest.raises(sy.FailedPrecondition, match="no active run"):
        sy.log_input("demo.t")
    sy.set_experiment("exp")
    with sy.start_run() as run:
        assert sy.log_input("demo.t", 1) == "tables/demo.t/versions/1"
    graph = fluent.lineage(f"runs/{run.id}", direction="upstream")
    assert "tables/demo.t/versions/1" in graph.uris
