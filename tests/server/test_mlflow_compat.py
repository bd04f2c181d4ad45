"""The real ``mlflow`` client, unmodified, logging into a real Shipyard server on loopback; what
it logged is then read back through Shipyard's own tracking service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from shipyard.server.app import create_app
from shipyard.server.routers.mlflow import translate_filter
from shipyard.services import Services


@pytest.fixture
def uri(
    services: Services, live_server: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A server for ``services``, with mlflow's global state pointed at it (and reset after)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    server = live_server(create_app(services))
    mlflow.set_tracking_uri(server.url)
    try:
        yield server.url
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.tracking.fluent._active_experiment_id = None
        mlflow.set_tracking_uri("")
        mlflow.tracking._tracking_service.utils._tracking_uri = None


def test_fluent_logging_lands_in_shipyard(uri: str, services: Services) -> None:
    exp_id = mlflow.set_experiment("mnist").experiment_id
    with mlflow.start_run(run_name="baseline") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"depth": 6, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=4)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev"})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.5)
    run_id, child_id = run.info.run_id, child.info.run_id

    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "baseline"
    assert got.info.experiment_id == exp_id and got.info.end_time is not None
    assert got.data.params == {"lr": "0.01", "depth": "6", "optimizer": "adam"}
    assert got.data.metrics == {"loss": 0.2, "acc": 0.9, "f1": 0.8}
    assert got.data.tags["team"] == "vision"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert client.get_experiment_by_name("mnist").experiment_id == exp_id
    assert client.get_experiment_by_name("nope") is None
    assert client.get_experiment(exp_id).name == "mnist"

    # ... and through Shipyard's own service
    tracking = services.tracking
    mine = tracking.get_run(run_id)
    assert mine.experiment == "mnist" and mine.status.value == "FINISHED"
    assert mine.params == {"lr": "0.01", "depth": "6", "optimizer": "adam"}
    assert mine.metrics == {"loss": 0.2, "acc": 0.9, "f1": 0.8}
    assert mine.tags["team"] == "vision" and mine.tags["stage"] == "dev"
    points = tracking.metric_history(run_id, "loss").items
    assert [(p.step, p.value) for p in points] == [(s, 1.0 / (s + 1)) for s in range(5)]
    kid = tracking.get_run(child_id)
    assert kid.parent_run_id == run_id and kid.tags["mlflow.parentRunId"] == run_id
    assert kid.status.value == "FINISHED" and kid.metrics == {"loss": 0.5}


def test_client_log_batch_search_and_errors(uri: str, services: Services) -> None:
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("sweep")
    with pytest.raises(MlflowException) as info:
        client.create_experiment("sweep")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"

    run_ids = []
    for i in range(3):
        run = client.create_run(exp_id, run_name=f"trial-{i}")
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("auc", 0.5 + i / 10 + s / 100, 1_700_000_000_000 + s, s) for s in range(4)
            ],
            params=[Param("depth", str(i + 3))],
            tags=[RunTag("kind", "odd" if i % 2 else "even")],
        )
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)

    found = client.search_runs(
        [exp_id], "metrics.auc > 0.6 and tags.kind = 'even'", order_by=["metrics.auc DESC"]
    )
    assert [r.info.run_id for r in found] == [run_ids[2]]
    ordered = client.search_runs(
        [exp_id], "attributes.status = 'FINISHED'", order_by=["params.depth DESC"]
    )
    assert [r.info.run_id for r in ordered] == run_ids[::-1]
    first = client.search_runs([exp_id], order_by=["attributes.run_name ASC"], max_results=2)
    assert [r.info.run_name for r in first] == ["trial-0", "trial-1"]
    rest = client.search_runs(
        [exp_id], order_by=["attributes.run_name ASC"], max_results=2, page_token=first.token
    )
    assert [r.info.run_name for r in rest] == ["trial-2"] and rest.token is None

    for rid in run_ids:  # every point, through Shipyard's own service
        points = services.tracking.metric_history(rid, "auc").items
        assert [(p.step, p.timestamp) for p in points] == [
            (s, 1_700_000_000_000 + s) for s in range(4)
        ]

    with pytest.raises(MlflowException) as info:
        client.get_run("0123456789abcdef")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as info:  # a finished run takes no more points
        client.log_metric(run_ids[0], "auc", 1.0)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as info:  # params are written once
        run = client.create_run(exp_id)
        client.log_param(run.info.run_id, "p", "1")
        client.log_param(run.info.run_id, "p", "2")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as info:
        client.search_runs([exp_id], "metrics.auc >")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as info:
        client.delete_run(run_ids[0])
    assert info.value.error_code == "NOT_IMPLEMENTED"

    client.rename_experiment(exp_id, "sweep-2")
    assert services.tracking.get_experiment("sweep-2").id == exp_id
    client.delete_experiment(exp_id)
    assert client.get_experiment_by_name("sweep-2") is None


def test_default_experiment_and_unsupported_routes(uri: str, services: Services) -> None:
    with mlflow.start_run() as run:  # no experiment set: MLflow's default, id "0"
        mlflow.log_metric("x", 1.0)
    assert services.tracking.get_run(run.info.run_id).experiment == "Default"

    response = requests.post(
        f"{uri}/api/2.0/mlflow/registered-models/rename", json={"name": "a"}, timeout=10
    )
    assert response.status_code == 501
    assert response.json()["error_code"] == "NOT_IMPLEMENTED"
    response = requests.get(
        f"{uri}/ajax-api/2.0/mlflow/runs/get?run_id={run.info.run_id}", timeout=10
    )
    assert response.json()["run"]["info"]["status"] == "FINISHED"


def test_translate_filter() -> None:
    assert translate_filter("attributes.user_id = 'user_id' and user_id != 'x'") == (
        "attributes.created_by = 'user_id' and created_by != 'x'"
    )
    assert translate_filter("tags.mlflow.parentRunId = 'a'") == "tags.mlflow.parentRunId = 'a'"
    assert translate_filter(None) is None
