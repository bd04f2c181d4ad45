"""``/v1/experiments`` and ``/v1/runs``: experiment tracking — runs, batched logging, search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from shipyard.server.routers import get_services
from shipyard.services import Services
from shipyard.store import Page
from shipyard.tracking.entities import Experiment, MetricPoint, Run

experiments_router = APIRouter(prefix="/v1/experiments", tags=["tracking"])
runs_router = APIRouter(prefix="/v1/runs", tags=["tracking"])


class CreateExperiment(BaseModel):
    name: str
    description: str | None = None
    tags: dict[str, Any] = {}


class CreateRun(BaseModel):
    experiment: str
    name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, Any] = {}
    created_by: str | None = None


class UpdateRun(BaseModel):
    name: str | None = None
    notes: str | None = None


class LogBatch(BaseModel):
    """Points as ``[key, value, step, timestamp]`` arrays or ``{key, value, step, timestamp}``
    objects (``step`` defaults to 0, ``timestamp`` — milliseconds — to now)."""

    metrics: list[Any] = []
    params: dict[str, Any] = {}
    tags: dict[str, Any] = {}


class EndRun(BaseModel):
    status: str = "FINISHED"


# -- experiments ---------------------------------------------------------------------------------


@experiments_router.get("", summary="List experiments", response_model=Page[Experiment])
def list_experiments(
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[Experiment]:
    return services.tracking.list_experiments(page_size=page_size, page_token=page_token)


@experiments_router.post("", summary="Create an experiment", response_model=Experiment)
def create_experiment(
    body: CreateExperiment, services: Services = Depends(get_services)
) -> Experiment:
    return services.tracking.create_experiment(
        body.name, description=body.description, tags=body.tags
    )


@experiments_router.get("/{name}", summary="One experiment", response_model=Experiment)
def get_experiment(name: str, services: Services = Depends(get_services)) -> Experiment:
    return services.tracking.get_experiment(name)


@experiments_router.delete(
    "/{name}", summary="Delete an experiment and all its runs", status_code=204
)
def delete_experiment(name: str, services: Services = Depends(get_services)) -> Response:
    services.tracking.delete_experiment(name)
    return Response(status_code=204)


# -- runs ------------------------------------------------------------------------------------------


@runs_router.get(
    "",
    summary="Search runs: a filter such as `metrics.auc > 0.9 and params.depth = '6'`",
    response_model=Page[Run],
)
def search_runs(
    experiment: list[str] | None = Query(None, description="Only these experiments (repeat)."),
    filter: str | None = None,
    order_by: list[str] | None = Query(None, description="e.g. `metrics.auc DESC` (repeat)."),
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[Run]:
    return services.tracking.search_runs(
        experiment, filter, order_by, page_size=page_size, page_token=page_token
    )


@runs_router.post("", summary="Start a run", response_model=Run)
def create_run(body: CreateRun, services: Services = Depends(get_services)) -> Run:
    return services.tracking.create_run(
        body.experiment,
        name=body.name,
        parent_run_id=body.parent_run_id,
        tags=body.tags,
        created_by=body.created_by,
    )


@runs_router.get("/{run_id}", summary="One run with params, tags and latest metrics")
def get_run(run_id: str, services: Services = Depends(get_services)) -> Run:
    return services.tracking.get_run(run_id)


@runs_router.patch("/{run_id}", summary="Rename a run or set its notes", response_model=Run)
def update_run(run_id: str, body: UpdateRun, services: Services = Depends(get_services)) -> Run:
    return services.tracking.update_run(run_id, name=body.name, notes=body.notes)


@runs_router.post(
    "/{run_id}:logBatch", summary="Log metric points, params and tags at once", status_code=204
)
def log_batch(run_id: str, body: LogBatch, services: Services = Depends(get_services)) -> Response:
    services.tracking.log_batch(run_id, body.metrics, body.params, body.tags)
    return Response(status_code=204)


@runs_router.post("/{run_id}:end", summary="End a run (FINISHED, FAILED or KILLED)")
def end_run(run_id: str, body: EndRun, services: Services = Depends(get_services)) -> Run:
    return services.tracking.end_run(run_id, body.status)


@runs_router.get(
    "/{run_id}/metrics/{key:path}",
    summary="A metric's history in step order",
    response_model=Page[MetricPoint],
)
def metric_history(
    run_id: str,
    key: str,
    page_size: int = 1000,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[MetricPoint]:
    return services.tracking.metric_history(run_id, key, page_size=page_size, page_token=page_token)
