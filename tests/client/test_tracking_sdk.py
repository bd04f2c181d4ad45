"""Tracking through the SDK, embedded and over HTTP, and the fluent API on top of it."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy


def test_experiments_and_runs(ws: Any) -> None:
    exp = ws.experiments.create("churn", description="d", tags={"team": "x"})
    assert ws.experiments.get("churn") == exp
    assert [e.name for e in ws.experiments.list().items] == ["churn"]
    run = ws.runs.create("churn", name="first", tags={"stage": "dev"})
    ws.runs.log_batch(
        run.id,
        [("loss", 0.5, 1), ("loss", 0.25, 2), {"key": "auc", "value": 0.9}],
        params={"depth": 6},
        tags={"gpu": "no"},
    )
    ws.runs.log_metric(run.id, "val/loss", 0.3, step=2)
    ws.runs.log_param(run.id, "eta", 0.1)
    ws.runs.set_tag(run.id, "stage", "prod")
    child = ws.runs.create("churn", parent_run_id=run.id)
    ws.runs.update(run.id, notes="baseline")
    got = ws.runs.get(run.id)
    assert got.metrics == {"loss": 0.25, "auc": 0.9, "val/loss": 0.3}
    assert got.params == {"depth": "6", "eta": "0.1"}
    assert got.tags == {"stage": "prod", "gpu": "no"} and got.notes == "baseline"
    history = ws.runs.metric_history(run.id, "loss", page_size=1)
    assert [p.value for p in history.items] == [0.5] and history.next_page_token
    second = ws.runs.metric_history(run.id, "loss", page_token=history.next_page_token)
    assert [p.value for p in second.items] == [0.25]
    assert [p.value for p in ws.runs.metric_history(run.id, "val/loss").items] == [0.3]
    found = ws.runs.list(experiment="churn", filter="metrics.loss < 0.3 and params.depth = '6'")
    assert [r.id for r in found.items] == [run.id]
    ordered = ws.runs.list(experiment=["churn"], order_by=["metrics.loss ASC"])
    assert [r.id for r in ordered.items] == [run.id, child.id]
    assert ws.runs.end(run.id).status.value == "FINISHED"
    with pytest.raises(sy.FailedPrecondition, match="ended"):
        ws.runs.log_metric(run.id, "loss", 0.1)
    ws.experiments.delete("churn")
    with pytest.raises(sy.NotFound):
        ws.runs.get(child.id)


def test_errors_on_every_face(ws: Any) -> None:
    ws.experiments.create("e")
    run = ws.runs.create("e")
    with pytest.raises(sy.InvalidArgument, match="position 14") as info:
        ws.runs.list(filter="metrics.auc >> 1")
    assert info.value.details["position"] == 14
    with pytest.raises(sy.InvalidArgument, match="not finite"):
        ws.runs.log_metric(run.id, "loss", math.nan)
    ws.runs.log_param(run.id, "p", 1)
    with pytest.raises(sy.InvalidArgument, match="written once"):
        ws.runs.log_param(run.id, "p", 2)
    with pytest.raises(sy.NotFound, match="nope"):
        ws.runs.create("nope")
    with pytest.raises(sy.NotFound):
        ws.runs.get("0" * 32)
    with pytest.raises(sy.AlreadyExists):
        ws.experiments.create("e")


def test_parallel_clients_lose_nothing(ws: Any) -> None:
    ws.experiments.create("e")
    shared = ws.runs.create("e")
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for b in range(5):
                ws.runs.log_batch(shared.id, [("m", float(i), b * 100 + j) for j in range(100)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ws.runs.metric_history(shared.id, "m", page_size=5000).items) == 2_000


# -- fluent ------------------------------------------------------------------------------------


@pytest.fixture
def fluent(ws: Any) -> Iterator[Any]:
    sy.set_workspace(ws)
    yield ws
    while sy.active_run() is not None:
        sy.end_run()
    sy.set_workspace(None)


def test_fluent_logs_and_flushes_on_end(fluent: Any) -> None:
    sy.set_experiment("fluent")
    run = sy.start_run(name="r")
    assert sy.active_run() is run
    sy.log_params({"depth": 6})
    sy.log_param("depth", 6)
    with pytest.raises(sy.InvalidArgument, match="written once"):
        sy.log_param("depth", 7)
    with pytest.raises(sy.InvalidArgument, match="not finite"):
        sy.log_metric("loss", math.inf)
    for step in range(2_500):
        sy.log_metric("loss", 1 / (step + 1), step=step)
    sy.log_metrics({"auc": 0.9, "acc": 0.8}, step=3)
    sy.set_tags({"team": "x"})
    ended = sy.end_run()
    assert ended is not None and ended.status.value == "FINISHED"
    assert sy.active_run() is None
    got = fluent.runs.get(run.id)
    assert got.params == {"depth": "6"} and got.tags == {"team": "x"}
    assert got.metrics == {"loss": 1 / 2_500, "auc": 0.9, "acc": 0.8}
    assert len(fluent.runs.metric_history(run.id, "loss", page_size=5000).items) == 2_500


def test_fluent_context_manager_and_nesting(fluent: Any) -> None:
    with pytest.raises(ZeroDivisionError), sy.start_run(name="outer") as outer:
        with sy.start_run(name="inner", nested=True) as inner:
            sy.log_metric("x", 1.0)
        with pytest.raises(sy.FailedPrecondition, match="nested=True"):
            sy.start_run()
        sy.log_metric("y", 2.0)
        1 / 0  # noqa: B018
    assert fluent.runs.get(outer.id).status.value == "FAILED"
    assert fluent.runs.get(outer.id).metrics == {"y": 2.0}
    child = fluent.runs.get(inner.id)
    assert child.status.value == "FINISHED" and child.parent_run_id == outer.id
    assert child.experiment == "default" and child.metrics == {"x": 1.0}
    with pytest.raises(sy.FailedPrecondition, match="no active run"):
        sy.log_metric("z", 1.0)
