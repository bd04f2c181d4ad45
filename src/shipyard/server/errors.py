"""Every error leaves the server as JSON ``{code, message, details}`` with the code's HTTP status.

* :class:`~shipyard.errors.ShipyardError` → its own ``code`` and ``http_status``;
* a request FastAPI cannot validate → 400 ``INVALID_ARGUMENT`` naming the field;
* an unknown route or method → 404 ``NOT_FOUND`` / 405 ``INVALID_ARGUMENT``;
* anything else is a bug → 500 ``INTERNAL`` with a generic message; the traceback goes to the
  server log only, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ShipyardError,
    Unauthenticated,
    Unavailable,
    Unsupported,
)

log = logging.getLogger("shipyard.server")

_BY_STATUS: dict[int, type[ShipyardError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    405: InvalidArgument,
    409: FailedPrecondition,
    413: PayloadTooLarge,
    422: InvalidArgument,
    501: Unsupported,
    503: Unavailable,
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers, and the last-resort middleware for bugs."""
    app.add_exception_handler(ShipyardError, _shipyard_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(InternalErrors)


def error_response(error: ShipyardError, *, status_code: int | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSONResponse(
        _safe(error.to_dict()), status_code=status_code or error.http_status, headers=headers
    )


async def _shipyard_error(request: Request, exc: ShipyardError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ())]
    where = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else None
    field = ".".join(loc[1:] if where else loc)
    if where == "body":
        prefix = f"invalid request body field {field!r}" if field else "invalid request body"
    elif where:
        prefix = f"invalid {where} parameter {field!r}"
    else:
        prefix = f"invalid value {field!r}" if field else "invalid request"
    message = f"{prefix}: {first.get('msg', 'invalid value')}"
    return error_response(InvalidArgument(message, field=field or None, location=where))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # FastAPI wraps a failure while reading a body (e.g. our size limit) in a 400: unwrap it.
    if isinstance(exc.__cause__, ShipyardError):
        return error_response(exc.__cause__)
    cls = _BY_STATUS.get(exc.status_code, Internal)
    if exc.status_code == 404:
        message = f"no such resource: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(cls(message), status_code=exc.status_code)


class InternalErrors:
    """Turns an unexpected exception into a generic 500, logging the traceback here only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("internal error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for a clean answer; the server drops the connection
                raise
            response = error_response(
                Internal(
                    "internal error: the server could not complete the request; "
                    "its log has the details"
                )
            )
            await response(scope, receive, send)


def _safe(value: Any) -> Any:
    """Details are arbitrary: keep them JSON-encodable."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_safe(v) for v in value]
    return str(value)
