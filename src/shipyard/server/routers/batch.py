"""``/v1/batchPredictionJobs``: a registered model over a table, a query or files, as a job."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from shipyard.engine import Job
from shipyard.server.routers import get_services
from shipyard.services import Services
from shipyard.serving.batch import JOB_KIND
from shipyard.store import Page

router = APIRouter(prefix="/v1", tags=["batch"])


class BatchPredictionRequest(BaseModel):
    """A batch prediction job; paths are on the server's machine."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="`dataset.model`", examples=["demo.cancer_diagnosis"])
    source: str | list[str] = Field(
        description="`dataset.table`, a SELECT query, or file paths/globs/folders "
        "(.csv, .json/.jsonl, .parquet)",
        examples=["demo.breast_cancer"],
    )
    destination: str = Field(
        description="`dataset.table`, a .parquet/.csv/.jsonl file, or a folder (ends in `/`)",
        examples=["demo.scored"],
    )
    version: int | None = None
    alias: str | None = None
    source_format: str | None = Field(None, description="csv, json, jsonl or parquet")
    chunk_rows: int = 100_000
    parallelism: int | None = None
    threshold: float | None = None
    keep_original_columns: bool = True
    write_mode: str = Field("truncate", description="truncate, append or empty")


@router.post(
    "/batchPredictionJobs",
    summary="Start a batch prediction job",
    status_code=202,
    response_model=Job,
)
def create_batch_prediction_job(
    body: BatchPredictionRequest, services: Services = Depends(get_services)
) -> Job:
    return services.batch.submit(
        body.model,
        source=body.source,
        destination=body.destination,
        version=body.version,
        alias=body.alias,
        source_format=body.source_format,
        chunk_rows=body.chunk_rows,
        parallelism=body.parallelism,
        threshold=body.threshold,
        keep_original_columns=body.keep_original_columns,
        write_mode=body.write_mode,
    )


@router.get(
    "/batchPredictionJobs",
    summary="List batch prediction jobs, newest first",
    response_model=Page[Job],
)
def list_batch_prediction_jobs(
    state: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[Job]:
    return services.engine.list(
        state=state, kind=JOB_KIND, page_size=page_size, page_token=page_token
    )


@router.post(
    "/batchPredictionJobs/{job_id}:resume",
    summary="Continue a failed or cancelled batch prediction job in a new job",
    status_code=202,
    response_model=Job,
)
def resume_batch_prediction_job(job_id: str, services: Services = Depends(get_services)) -> Job:
    return services.batch.resume(job_id)
