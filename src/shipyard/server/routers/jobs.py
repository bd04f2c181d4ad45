"""``/v1/jobs``: what the engine runs — list, inspect, logs, cancel, a query job's rows."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from shipyard.engine import Job, LogLine
from shipyard.errors import InvalidArgument
from shipyard.server.routers import MAX_PAGE_SIZE, ROWS_RESPONSES, get_services, result_response
from shipyard.services import Services
from shipyard.store import Page

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", summary="List jobs, newest first", response_model=Page[Job])
def list_jobs(
    state: str | None = None,
    kind: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[Job]:
    return services.engine.list(state=state, kind=kind, page_size=page_size, page_token=page_token)


@router.get("/{job_id}", summary="One job", response_model=Job)
def get_job(job_id: str, services: Services = Depends(get_services)) -> Job:
    return services.engine.get(job_id)


@router.get(
    "/{job_id}/logs", summary="A job's log lines after line `since`", response_model=Page[LogLine]
)
def job_logs(
    job_id: str,
    since: int = 0,
    page_size: int = 1000,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[LogLine]:
    # Lines are numbered, so the token is just the last number sent.
    if not 1 <= page_size <= MAX_PAGE_SIZE * 10:
        raise InvalidArgument(
            f"page_size must be between 1 and {MAX_PAGE_SIZE * 10}, got {page_size}"
        )
    if page_token:
        if not page_token.isdigit():
            raise InvalidArgument("invalid page token")
        since = int(page_token)
    lines: list[LogLine] = [*services.engine.logs(job_id, since=since, limit=page_size + 1)]
    more = len(lines) > page_size
    lines = lines[:page_size]
    return Page(items=lines, next_page_token=str(lines[-1].seq) if more else None)


@router.post("/{job_id}:cancel", summary="Ask a job to stop", response_model=Job)
def cancel_job(job_id: str, services: Services = Depends(get_services)) -> Job:
    return services.engine.cancel(job_id)


@router.get(
    "/{job_id}/result", summary="The rows of a finished query job", responses=ROWS_RESPONSES
)
def job_result(
    job_id: str, request: Request, services: Services = Depends(get_services)
) -> Response:
    return result_response(request, services.sql.result(job_id))
