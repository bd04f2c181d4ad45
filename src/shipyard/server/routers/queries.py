"""``/v1/queries``: BigQuery ML SQL, run now or as a background job."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from shipyard.engine import Job
from shipyard.server.routers import ROWS_RESPONSES, get_services, result_response
from shipyard.services import Services

router = APIRouter(prefix="/v1", tags=["queries"])


class QueryRequest(BaseModel):
    query: str = Field(description="One or more statements (BigQuery ML dialect).")


@router.post(
    "/queries", summary="Run SQL and return the last statement's rows", responses=ROWS_RESPONSES
)
def run_query(
    body: QueryRequest, request: Request, services: Services = Depends(get_services)
) -> Response:
    return result_response(request, services.sql.execute(body.query))


@router.post(
    "/queries:submit",
    summary="Start SQL as a background job",
    status_code=202,
    response_model=Job,
)
def submit_query(body: QueryRequest, services: Services = Depends(get_services)) -> Job:
    return services.sql.submit(body.query)
