"""``/v1/experiments`` and ``/v1/runs``: experiment tracking — runs, batched logging, search."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from shipyard.errors import InvalidArgument
from shipyard.server.routers import get_services
from shipyard.services import Services
from shipyard.store import Page
from shipyard.tracking import tensorboard
from shipyard.tracking.artifacts import ArtifactFile
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


class LogInput(BaseModel):
    table: str
    version: int | None = None


class LoggedInput(BaseModel):
    resource: str  # tables/<dataset.table>/versions/<n>


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


# Declared before GET /{run_id}, which would otherwise take "ID:exportTensorboard" as a run id.
@runs_router.get(
    "/{run_id}:exportTensorboard",
    summary="The run's metric series as TensorBoard event files (a zip)",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_tensorboard(run_id: str, services: Services = Depends(get_services)) -> Response:
    with tempfile.TemporaryDirectory(prefix="shipyard-tb-") as tmp:
        services.tracking.export_tensorboard(run_id, Path(tmp))
        data = tensorboard.pack(Path(tmp))
    return Response(data, media_type="application/zip")


@runs_router.post(
    "/{run_id}:importTensorboard",
    summary="Read TensorBoard event files (a zip of a logdir, or one event file) into the "
    "run's metric series; answers the points per metric key",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def import_tensorboard(
    run_id: str, request: Request, services: Services = Depends(get_services)
) -> dict[str, int]:
    data = await request.body()  # the app's body limit applies
    if not data:
        raise InvalidArgument(f"nothing to import into run {run_id}: the request body is empty")

    def work() -> dict[str, int]:
        with tempfile.TemporaryDirectory(prefix="shipyard-tb-") as tmp:
            tensorboard.unpack(data, Path(tmp))
            return services.tracking.import_tensorboard(run_id, Path(tmp))

    result: dict[str, int] = await run_in_threadpool(work)
    return result


@runs_router.post(
    "/{run_id}:logInput",
    summary="Record that the run read a table version (lineage)",
    response_model=LoggedInput,
)
def log_input(
    run_id: str, body: LogInput, services: Services = Depends(get_services)
) -> LoggedInput:
    return LoggedInput(resource=services.tracking.log_input(run_id, body.table, body.version))


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


# -- run artifacts ---------------------------------------------------------------------------------


@runs_router.get(
    "/{run_id}/artifacts",
    summary="The run's artifact files and folders directly under `path` (the root by default)",
    response_model=list[ArtifactFile],
)
def list_artifacts(
    run_id: str, path: str | None = None, services: Services = Depends(get_services)
) -> list[ArtifactFile]:
    return services.tracking.artifacts.list_artifacts(run_id, path)


@runs_router.get(
    "/{run_id}/artifacts/{path:path}",
    summary="Download one artifact file",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    run_id: str, path: str, services: Services = Depends(get_services)
) -> StreamingResponse:
    reader = services.tracking.artifacts.open(run_id, path)

    def chunks() -> Iterator[bytes]:
        with reader:
            while chunk := reader.read(1 << 20):
                yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@runs_router.put(
    "/{run_id}/artifacts/{path:path}",
    summary="Upload one artifact file (the body is its bytes; an existing file is replaced)",
    response_model=ArtifactFile,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        }
    },
)
async def upload_artifact(
    run_id: str, path: str, request: Request, services: Services = Depends(get_services)
) -> ArtifactFile:
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        async for chunk in request.stream():  # the app's body limit applies
            spool.write(chunk)
        spool.seek(0)
        result: ArtifactFile = await run_in_threadpool(
            services.tracking.artifacts.upload,
            run_id,
            path,
            spool,  # type: ignore[arg-type]
        )
    return result
