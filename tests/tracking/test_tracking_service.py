"""Experiment tracking on every metadata backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.services import Services
from shipyard.tracking.service import TrackingService


@pytest.fixture
def services(tmp_path: Path, metadata_url: str) -> Iterator[Services]:
    built = Services.build(
        Context.open(Settings(home=tmp_path / "home", metadata={"url": metadata_url}))
    )
    yield built
    built.close()


@pytest.fixture
def t(services: Services) -> TrackingService:
    services.tracking.create_experiment("exp", description="d", tags={"team": "x"})
    return services.tracking


def _all(call, **kwargs):  # type: ignore[no-untyped-def]
    items, token = [], None
    while True:
        page = call(page_token=token, **kwargs)
        items += page.items
        token = page.next_page_token
        if not token:
            return items


def test_experiments_lifecycle(t: TrackingService) -> None:
    exp = t.get_experiment("exp")
    assert (exp.name, exp.description, exp.tags) == ("exp", "d", {"team": "x"})
    with pytest.raises(sy.AlreadyExists, match="exp"):
        t.create_experiment("exp")
    for name in ("", "a/b"):
        with pytest.raises(sy.InvalidArgument):
            t.create_experiment(name)
    t.create_experiment("b")
    assert [e.name for e in _all(t.list_experiments, page_size=1)] == ["b", "exp"]
    t.rename_experiment("b", "c")
    run = t.create_run("c")
    t.log_metric(run.id, "m", 1.0)
    t.delete_experiment("c")
    with pytest.raises(sy.NotFound, match="'c'"):
        t.get_experiment("c")
    with pytest.raises(sy.NotFound):
        t.get_run(run.id)
    with pytest.raises(sy.NotFound, match="nope"):
        t.create_run("nope")


def test_run_lifecycle_and_nesting(t: TrackingService) -> None:
    parent = t.create_run("exp", name="parent", tags={"stage": "dev"}, created_by="me")
    assert parent.status is sy_status("RUNNING") and parent.tags == {"stage": "dev"}
    child = t.create_run("exp", parent_run_id=parent.id)
    assert child.parent_run_id == parent.id and child.name.startswith("run-")
    t.update_run(child.id, name="child", notes="why")
    assert (t.get_run(child.id).name, t.get_run(child.id).notes) == ("child", "why")
    ended = t.end_run(child.id, "failed")
    assert ended.status.value == "FAILED" and ended.end_time is not None
    assert t.end_run(child.id, "FAILED").status.value == "FAILED"  # idempotent
    with pytest.raises(sy.FailedPrecondition, match="already ended"):
        t.end_run(child.id, "FINISHED")
    with pytest.raises(sy.FailedPrecondition, match="ended"):
        t.log_metric(child.id, "m", 1.0)
    with pytest.raises(sy.InvalidArgument, match="FINISHED"):
        t.end_run(parent.id, "RUNNING")
    with pytest.raises(sy.NotFound):
        t.create_run("exp", parent_run_id="0" * 32)
    with pytest.raises(sy.NotFound):
        t.log_metric("0" * 32, "m", 1.0)
    children = t.search_runs("exp", f"attributes.parent_run_id = '{parent.id}'").items
    assert [r.id for r in children] == [child.id]


def sy_status(value: str):  # type: ignore[no-untyped-def]
    from shipyard.tracking.entities import RunStatus

    return RunStatus(value)


def test_batch_logging_counts_every_point_and_keeps_latest(t: TrackingService) -> None:
    run = t.create_run("exp")
    points = [("loss", 1.0 / (i + 1), i, 1_000 + i) for i in range(5_000)]
    points += [{"key": "acc", "value": 0.5, "step": 3}, ("acc", 0.7, 2)]
    t.log_batch(run.id, points, params={"depth": 6, "eta": 0.1}, tags={"t": "v"})
    t.log_batch(run.id, [("loss", 9.0, 10, 1)])  # older step: history only
    got = t.get_run(run.id)
    assert got.params == {"depth": "6", "eta": "0.1"} and got.tags == {"t": "v"}
    assert got.metrics == {"loss": 1.0 / 5_000, "acc": 0.5}
    history = _all(t.metric_history, run_id=run.id, key="loss", page_size=700)
    assert len(history) == 5_001
    assert [p.step for p in history] == sorted(p.step for p in history)
    assert (
        history[10].value == 9.0 and history[10].step == 10
    )  # duplicates of a step survive paging
    acc = t.metric_history(run.id, "acc").items
    assert [(p.step, p.value) for p in acc] == [(2, 0.7), (3, 0.5)]


def test_logging_rules(t: TrackingService) -> None:
    run = t.create_run("exp")
    t.log_param(run.id, "depth", 6)
    t.log_param(run.id, "depth", "6")  # same value: fine
    with pytest.raises(sy.InvalidArgument, match="already '6'"):
        t.log_param(run.id, "depth", 7)
    with pytest.raises(sy.InvalidArgument, match="6000"):
        t.log_param(run.id, "big", "x" * 6001)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(sy.InvalidArgument, match="not finite"):
            t.log_metric(run.id, "loss", bad)
    with pytest.raises(sy.InvalidArgument, match="not a number"):
        t.log_metric(run.id, "loss", "high")  # type: ignore[arg-type]
    with pytest.raises(sy.InvalidArgument, match="key"):
        t.log_metric(run.id, "", 1.0)
    # A refused batch writes nothing, not even its valid parts.
    with pytest.raises(sy.InvalidArgument):
        t.log_batch(run.id, [("ok", 1.0), ("bad", math.nan)], params={"p": 1})
    got = t.get_run(run.id)
    assert got.metrics == {} and got.params == {"depth": "6"}
    t.set_tag(run.id, "k", "a")
    t.set_tag(run.id, "k", "b")  # tags may change
    assert t.get_run(run.id).tags == {"k": "b"}


def test_concurrent_writers_lose_nothing(t: TrackingService) -> None:
    shared = t.create_run("exp")
    own = [t.create_run("exp") for _ in range(4)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for b in range(10):
                batch = [("m", float(i), b * 50 + j) for j in range(50)]
                t.log_batch(shared.id, batch, tags={f"w{i}": "1"})
                t.log_batch(own[i].id, batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_all(t.metric_history, run_id=shared.id, key="m", page_size=1000)) == 2_000
    for run in own:
        assert len(_all(t.metric_history, run_id=run.id, key="m", page_size=1000)) == 500
    assert len(t.get_run(shared.id).tags) == 4


@pytest.fixture
def grid(t: TrackingService) -> list[str]:
    t.create_experiment("other")
    ids = []
    for i in range(12):
        run = t.create_run("exp" if i < 10 else "other", name=f"r{i:02d}")
        t.log_batch(
            run.id,
            [("auc", i / 10, 0), ("my metric", float(i), 0)],
            params={"max_depth": str(i % 3), "lr": "0.1"},
            tags={"team": "x" if i % 2 else "Y"},
        )
        if i % 4 == 0:
            t.end_run(run.id)
        ids.append(run.id)
    return ids


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("metrics.auc > 0.65", [7, 8, 9]),
        ("metrics.auc >= 0.5 and params.max_depth = '0'", [6, 9]),
        ("tags.team = 'x' and metrics.`my metric` < 4", [1, 3]),
        ("attributes.status = 'FINISHED'", [0, 4, 8]),
        ("status != 'FINISHED' and metric.auc <= 0.2", [1, 2]),
        ("name LIKE 'r0%' and tags.team LIKE 'y'", []),  # LIKE is case-sensitive
        ("name ILIKE 'R0%' and tags.team ILIKE 'y'", [0, 2, 4, 6, 8]),
        ("params.max_depth IN ('1', '2') and metrics.auc < 0.3", [1, 2]),
        ("params.missing = '1'", []),
        ("", list(range(10))),
        # or, parentheses, precedence (and binds tighter), case-insensitive keywords
        ("metrics.auc > 0.85 or metrics.auc < 0.15", [0, 1, 9]),
        ("params.max_depth = '0' or params.max_depth = '1' and tags.team = 'Y'", [0, 3, 4, 6, 9]),
        ("(params.max_depth = '0' or params.max_depth = '1') and tags.team = 'Y'", [0, 4, 6]),
        (
            "status = 'FINISHED' OR (metrics.auc >= 0.7 AND (tags.team = 'x' Or name = 'r08'))",
            [0, 4, 7, 8, 9],
        ),
        ("((name = 'r03'))", [3]),
        ("end_time > 0 or name = 'r01'", [0, 1, 4, 8]),  # NULL end_time: only the other side
        ("name = 'r10' or name = 'r01'", [1]),  # r10 is in another experiment: or stays inside
        ("params.missing = '1' or tags.missing = 'x'", []),
    ],
)
def test_search_filters(
    t: TrackingService, grid: list[str], expression: str, expected: list[int]
) -> None:
    found = t.search_runs("exp", expression, ["name"]).items
    assert [r.id for r in found] == [grid[i] for i in expected]


@pytest.mark.parametrize(
    ("expression", "position", "problem"),
    [
        ("metrics.auc >", 14, "a number"),
        ("metrics.auc > 0.9 and", 22, "an identifier"),
        ("metrics.auc ~ 1", 13, "unexpected character"),
        ("metrics.auc = 'x'", 15, "a number"),
        ("params.depth = 6", 16, "quoted string"),
        ("foo.bar = '1'", 1, "unknown entity"),
        ("attributes.colour = 'red'", 1, "unknown attribute"),
        ("metrics.auc > 0.9 metrics.auc < 0.1", 19, "'and', 'or'"),
        ("(metrics.auc > 0.9", 19, r"'\)' to close the '\(' at position 1"),
        ("name = 'a' or (name = 'b' and (name = 'c')", 43, "close the '\\(' at position 15"),
        ("metrics.auc > 0.9)", 18, r"unbalanced '\)'"),
        ("metrics.auc > 0.9 or", 21, "an identifier.*found the end"),
        ("metrics.auc > 0.9 or or name = 'x'", 22, "an identifier.*found 'or'"),
        ("and name = 'x'", 1, "an identifier"),
        ("()", 2, "an identifier.*found '\\)'"),
        ("(name = 'a') (name = 'b')", 14, "'or'"),
        ("(" * 51 + "name = 'x'" + ")" * 51, 51, "nest more than 50"),
        ("metrics.auc LIKE '%'", 13, "metrics compare"),
        ("tags.t IN ('a' 'b')", 16, "',' or '\\)'"),
        ("metrics.`` > 1", 9, "key name"),
    ],
)
def test_malformed_filters_name_the_position(
    t: TrackingService, expression: str, position: int, problem: str
) -> None:
    with pytest.raises(sy.InvalidArgument, match=f"position {position}: .*{problem}") as info:
        t.search_runs(filter=expression)
    assert info.value.details["position"] == position


def test_search_order_and_experiments(t: TrackingService, grid: list[str]) -> None:
    by_auc = t.search_runs(None, "", ["metrics.auc DESC"]).items
    assert [r.id for r in by_auc] == grid[::-1]  # every experiment
    assert [r.id for r in t.search_runs("other").items] == grid[11:9:-1]  # newest first
    assert len(t.search_runs(["exp", "other"]).items) == 12
    with pytest.raises(sy.NotFound, match="nope"):
        t.search_runs(["exp", "nope"])
    # A run without the ordered key comes last, in both directions.
    bare = t.create_run("exp", name="bare")
    for direction in ("ASC", "DESC"):
        assert (
            t.search_runs("exp", order_by=[f"params.max_depth {direction}"]).items[-1].id == bare.id
        )
    depth_then_auc = t.search_runs(
        "exp", "params.max_depth = '1'", ["params.max_depth", "metrics.auc DESC"]
    )
    assert [r.id for r in depth_then_auc.items] == [grid[7], grid[4], grid[1]]
    with pytest.raises(sy.InvalidArgument, match="ASC, DESC"):
        t.search_runs(order_by=["metrics.auc sideways"])


def test_paging_over_many_runs(services: Services) -> None:
    t = services.tracking
    t.create_experiment("many")
    created = [t.create_run("many", name=f"r{i:04d}") for i in range(1_200)]
    for run in created[::100]:
        t.log_metric(run.id, "auc", 0.5)
    newest_first = _all(t.search_runs, experiment_names="many", page_size=500)
    assert [r.id for r in newest_first] == [r.id for r in reversed(created)]
    by_metric = _all(
        t.search_runs, experiment_names="many", order_by=["metrics.auc DESC"], page_size=7
    )
    assert len(by_metric) == 1_200 and len({r.id for r in by_metric}) == 1_200
    assert {r.id for r in by_metric[:12]} == {r.id for r in created[::100]}
    with pytest.raises(sy.InvalidArgument, match="page token"):
        t.search_runs(page_token="garbage")
