"""``shipyard serve ENDPOINT``: one endpoint, served by its own worker processes.

Each worker opens the workspace's metadata and artifact stores only — never the warehouse (whose
single-writer lock belongs to the platform server) and never the engine — loads the endpoint's
deployments, and answers ``:predict``, ``:explain`` and ``:feedback`` for that endpoint. Changes
made elsewhere (a new split, a deploy, a rollback) reach every worker within ``refresh_s``.
Request logs go to the same Parquet folders the platform reads as ``endpoint_logs.<endpoint>``,
one file series per process. ``/metrics`` adds up all workers (Prometheus' multiprocess mode).
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.config import load_settings
from shipyard.context import Context
from shipyard.errors import NotFound, Unavailable
from shipyard.registry.service import ModelService
from shipyard.server.auth import BearerAuth
from shipyard.server.errors import error_response, install_error_handlers
from shipyard.server.predict import PredictFastPath
from shipyard.server.routers import endpoints as endpoint_routes
from shipyard.server.routers.system import VERSION
from shipyard.server.run import listen
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.service import (
    INLINE_MODEL_BUSY_S,
    INLINE_MODEL_S,
    EndpointService,
    RequestLogs,
)

__all__ = ["create_serving_app", "inline_model_s", "serve_endpoint"]

_ENV = "SHIPYARD_SERVE_CONFIG"


def create_serving_app(
    endpoint: str,
    *,
    home: str | Path | None = None,
    token: str | None = None,
    max_request_bytes: int = 64 * 1024 * 1024,
    refresh_s: float = 1.0,
    metrics_dir: str | Path | None = None,
    inline_model_s: float = INLINE_MODEL_S,
) -> FastAPI:
    """The app a ``shipyard serve`` worker runs; fails with NotFound for an unknown endpoint."""
    from shipyard.server.app import BodyLimit  # the platform app's body limit, reused

    settings = load_settings(home=str(home)) if home is not None else load_settings()
    ctx = Context.open(settings, lazy=True)
    try:
        models = ModelService(ctx)
        service = EndpointService(
            ctx,
            models,
            refresh_s=refresh_s,
            request_logs=RequestLogs(ctx.home),
            metrics=ServingMetrics(multiprocess_dir=metrics_dir),
            warehouse_tables=False,
            inline_model_s=inline_model_s,
        )
        service.get(endpoint)  # NotFound now, not at the first request
        service.warm(endpoint)
    except BaseException:
        ctx.close()
        raise

    app = FastAPI(
        title=f"Shipyard endpoint {endpoint}",
        version=VERSION,
        docs_url=None,
        redoc_url=None,
        on_shutdown=[service.close, ctx.close],
    )
    app.state.endpoints = service
    app.state.only_endpoint = endpoint

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            with ctx.metadata.connect() as conn:
                conn.execute(text("SELECT 1"))
            service.warm(endpoint)
        except Exception as exc:  # a readiness probe reports, it does not fail
            error = Unavailable(f"endpoint {endpoint!r} is not ready: {exc}")
            return JSONResponse(error.to_dict(), status_code=error.http_status)
        return JSONResponse({"status": "ready", "endpoint": endpoint})

    @app.get("/v1/endpoints/{name}", include_in_schema=False)
    def get_endpoint(name: str) -> Any:
        return service.get(name)

    for route in endpoint_routes.router.routes:
        path = getattr(route, "path", "")
        if path.endswith((":predict", ":explain", ":feedback", "/stats")):
            app.router.routes.append(route)
    app.include_router(endpoint_routes.metrics_router)

    app.add_middleware(PredictFastPath)
    app.add_middleware(OnlyEndpoint, endpoint=endpoint)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    if token:
        app.add_middleware(BearerAuth, token=token)
    return app


class OnlyEndpoint:
    """ASGI layer: ``/v1/endpoints/<other>…`` is 404 on a server of one endpoint."""

    def __init__(self, app: ASGIApp, endpoint: str) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        prefix = "/v1/endpoints/"
        if scope["type"] == "http" and path.startswith(prefix):
            name = path[len(prefix) :].split("/", 1)[0].split(":", 1)[0]
            if name != self.endpoint:
                error = NotFound(
                    f"this server serves endpoint {self.endpoint!r} only, not {name!r}",
                    resource=f"endpoints/{name}",
                )
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process: the arguments travel in one variable."""
    app = create_serving_app(**json.loads(os.environ[_ENV]))
    # Everything so far (imports, the loaded models) lives as long as the worker: keep it out
    # of the collector's full passes, whose pauses would land on some request's latency.
    gc.freeze()
    return app


def inline_model_s(workers: int) -> float:
    """Workers that fill the cores run their model calls on the event loop: no core is left
    for a worker thread to use, and handing the call over costs two thread switches."""
    return INLINE_MODEL_BUSY_S if workers >= (os.cpu_count() or 1) else INLINE_MODEL_S


def serve_endpoint(
    endpoint: str,
    *,
    home: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    token: str | None = None,
    refresh_s: float = 1.0,
    timeout_keep_alive: int = 5,
) -> None:
    """Serve ``endpoint`` until stopped (Ctrl+C); blocks."""
    settings = load_settings(home=str(home)) if home is not None else load_settings()
    # Check the endpoint before starting workers: a typo fails here, with one clear message.
    ctx = Context.open(settings, lazy=True)
    try:
        EndpointService(ctx, ModelService(ctx), warehouse_tables=False).get(endpoint)
    finally:
        ctx.close()
    metrics_dir = None
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="shipyard-metrics-")
        ServingMetrics.prepare_multiprocess_dir(metrics_dir)
    os.environ[_ENV] = json.dumps(
        {
            "endpoint": endpoint,
            "home": str(settings.home_path),
            "token": token or settings.server_token,
            "max_request_bytes": settings.server.max_request_bytes,
            "refresh_s": refresh_s,
            "metrics_dir": metrics_dir,
            "inline_model_s": inline_model_s(workers),
        }
    )
    print(
        f"Shipyard serves endpoint {endpoint!r} at http://{host}:{port}/v1/endpoints/"
        f"{endpoint}:predict with {workers} worker(s). Stop with Ctrl+C.",
        flush=True,
    )
    config = uvicorn.Config(
        "shipyard.server.standalone:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=timeout_keep_alive,
    )
    # Our own socket rather than uvicorn's: it is made with IPPROTO_TCP, so every worker's
    # connections get TCP_NODELAY (see server.run.listen); the workers share it.
    sock = listen(host, port)
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    finally:
        sock.close()
