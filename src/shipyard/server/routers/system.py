"""Health, readiness and what this workspace is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shipyard._version import __version__
from shipyard.errors import Unavailable
from shipyard.server.routers import get_services
from shipyard.services import Services

router = APIRouter(tags=["system"])


VERSION = __version__


@router.get("/healthz", summary="The process answers (never needs a token)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The metadata store and the warehouse answer (never needs a token)")
def readyz(services: Services = Depends(get_services)) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (("metadata", _check_metadata), ("warehouse", _check_warehouse)):
        try:
            check(services)
            checks[name] = "ok"
        except Exception as exc:  # a readiness probe reports, it does not fail
            checks[name] = f"error: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    error = Unavailable("the workspace is not ready", checks=checks)
    return JSONResponse(error.to_dict(), status_code=error.http_status)


def _check_metadata(services: Services) -> None:
    with services.ctx.metadata.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_warehouse(services: Services) -> None:
    services.ctx.warehouse.query("SELECT 1")


@router.get("/v1/workspace", summary="This workspace: home folder, version, limits")
def workspace(request: Request, services: Services = Depends(get_services)) -> dict[str, Any]:
    return {
        "home": str(services.ctx.home),
        "version": VERSION,
        "max_request_bytes": request.app.state.max_request_bytes,
        "auth": request.app.state.token is not None,
    }
