"""The REST application: ``create_app(services)`` gives the FastAPI app that serves a workspace.

Routes are ``/v1/`` + a resource path (``/v1/tables/demo.t``), custom verbs as ``:verb``
(``POST /v1/models/demo.m:predict``); every list takes ``page_size`` and ``page_token`` and
answers ``{"items": [...], "next_page_token": ...}``; every error is ``{code, message, details}``.
The console (``/``) is static files that call the same API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from shipyard.errors import PayloadTooLarge
from shipyard.server.auth import BearerAuth
from shipyard.server.errors import install_error_handlers
from shipyard.server.predict import PredictFastPath
from shipyard.server.routers import (
    batch,
    endpoints,
    jobs,
    lineage,
    mlflow,
    mlflow_artifacts,
    mlflow_registry,
    models,
    queries,
    system,
    tables,
    tracking,
)
from shipyard.server.routers.system import VERSION
from shipyard.services import Services

CONSOLE_DIR = Path(__file__).parent / "console"
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024

_TAGS = [
    {"name": "queries", "description": "BigQuery ML SQL over the DuckDB warehouse."},
    {"name": "tables", "description": "Warehouse tables: load, describe, preview, versions."},
    {"name": "models", "description": "The model registry: versions, aliases, packages, predict."},
    {"name": "tracking", "description": "Experiments and runs: params, metrics, search."},
    {"name": "jobs", "description": "Work the engine runs: state, progress, logs, cancel."},
    {"name": "batch", "description": "Batch prediction jobs: chunked, parallel, resumable."},
    {"name": "endpoints", "description": "Online serving: deployments, traffic split, predict."},
    {"name": "system", "description": "Health, readiness and the workspace itself."},
]


def create_app(
    services: Services,
    *,
    token: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> FastAPI:
    """The app serving ``services``.

    ``token``: when set, every route but ``/healthz``, ``/readyz`` and the console's static files
    needs ``Authorization: Bearer <token>``. ``max_request_bytes``: larger bodies get 413.
    """
    app = FastAPI(
        title="Shipyard",
        version=VERSION,
        summary="The open ML platform you run on your own machines.",
        description="BigQuery ML's SQL on DuckDB, a model registry and jobs, over REST. "
        "Errors are JSON `{code, message, details}`; lists page with `page_token`.",
        openapi_tags=_TAGS,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN; ours serves it locally
        redoc_url=None,
    )
    app.state.services = services
    app.state.endpoints = services.endpoints
    app.state.token = token
    app.state.max_request_bytes = max_request_bytes

    for module in (system, queries, tables, models, jobs, lineage, batch, endpoints):
        app.include_router(module.router)
    app.include_router(endpoints.metrics_router)
    app.include_router(tracking.experiments_router)
    app.include_router(tracking.runs_router)
    # MLflow's REST APIs, for unmodified clients: artifacts and the registry before the
    # tracking router, whose catch-all answers 501 for what is not implemented.
    app.include_router(mlflow_artifacts.router)
    app.include_router(mlflow_registry.router)
    app.include_router(mlflow.router)

    @app.get("/", include_in_schema=False)
    def console() -> Response:
        return FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")

    # Swagger UI from the installed swagger-ui-bundle package: no CDN, works offline.
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Shipyard API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    # Middleware runs outermost-last-added: auth first (before any body is read), then the
    # body limit, then the catch-all for bugs (added by install_error_handlers), then the
    # prediction hot path, beneath them all but above FastAPI's routing.
    app.add_middleware(PredictFastPath)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    if token:
        app.add_middleware(BearerAuth, token=token)
    return app


class ErrorBody(BaseModel):
    """Every error: a stable code, a message for people, and structured details."""

    code: str = Field(examples=["NOT_FOUND"])
    message: str = Field(examples=["table demo.nope not found"])
    details: dict[str, Any] = Field(default_factory=dict)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with our error shape instead of its 422 and the bodies routes parse."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    template = "#/components/schemas/{model}"
    for model in (ErrorBody, models.PredictRequest):
        schema = model.model_json_schema(ref_template=template)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error = {
        "description": "An error: `{code, message, details}` with the code's HTTP status",
        "content": {"application/json": {"schema": {"$ref": template.format(model="ErrorBody")}}},
    }
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = error
    app.openapi_schema = spec
    return spec


class BodyLimit:
    """Refuses bodies over ``max_bytes``: by Content-Length up front, else as they arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than this server's limit of {_size(self.max_bytes)} "
            "(setting server.max_request_bytes)",
            max_request_bytes=self.max_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                body = json.dumps(self._error().to_dict()).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        await self.app(scope, counting_receive, send)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.4g} {unit}"
        value /= 1024
    return f"{value:.4g} GiB"
