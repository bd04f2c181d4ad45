"""``/api/2.0/mlflow-artifacts/artifacts/...``: MLflow's proxied artifact service.

Runs' ``artifact_uri`` is ``mlflow-artifacts:/<experiment id>/<run id>/artifacts``, so the MLflow
client sends every artifact through these routes (``PUT`` a file, ``GET`` a file, ``GET
?path=`` a listing, ``DELETE``); they read and write Shipyard's run-artifact tree
(:mod:`shipyard.tracking.artifacts`), the same files ``ws.runs.list_artifacts`` shows.

``registry/<dataset.model>/<version>/…`` is the read-only view of a registered version's files,
served from the content-addressed registry (verified while streamed): it is the download URI the
model registry hands out, so ``mlflow.pyfunc.load_model("models:/name@alias")`` reads the
registered, immutable copy rather than the run's scratch folder.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound
from shipyard.registry.service import ModelService
from shipyard.server.routers import get_services
from shipyard.server.routers.mlflow import MlflowRoute
from shipyard.store.artifacts import CHUNK_SIZE
from shipyard.tracking.artifacts import ArtifactTree, check_artifact_path

PREFIX = "/api/2.0/mlflow-artifacts/artifacts"
REGISTRY_ROOT = "registry"
_SPOOL_IN_MEMORY = 8 << 20

router = APIRouter(route_class=MlflowRoute, include_in_schema=False)


def registry_uri(shipyard_name: str, version: int) -> str:
    """The ``mlflow-artifacts:`` URI of a registered version's files."""
    return f"mlflow-artifacts:/{REGISTRY_ROOT}/{shipyard_name}/{version}"


def _tree(request: Request) -> ArtifactTree:
    return ArtifactTree(get_services(request).ctx.artifacts)


def _registry_part(rel: str) -> tuple[str, int, str] | None:
    """``(model, version, path inside the version)`` for a ``registry/…`` path, else None."""
    parts = rel.split("/", 3)
    if parts[0] != REGISTRY_ROOT:
        return None
    if len(parts) < 3 or not parts[2].isdigit():
        raise NotFound(f"artifact {rel!r} not found: expected registry/<dataset.model>/<version>")
    return parts[1], int(parts[2]), parts[3] if len(parts) > 3 else ""


def _registry_files(models: ModelService, name: str, version: int) -> dict[str, str]:
    return models.manifest(name, version).files


async def upload(path: str, request: Request) -> dict[str, Any]:
    rel = check_artifact_path(path)
    if rel.split("/", 1)[0] == REGISTRY_ROOT:
        raise FailedPrecondition(
            "registry/… is the read-only view of registered model versions; register a model "
            "with register_model instead of writing its files"
        )
    tree = _tree(request)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        await run_in_threadpool(tree.write_stream, rel, spool)  # type: ignore[arg-type]
    return {}


async def download(path: str, request: Request) -> Response:
    rel = check_artifact_path(path)
    services = get_services(request)
    reader: IO[bytes]
    registry = _registry_part(rel)
    if registry is not None:
        name, version, inner = registry
        digest = _registry_files(services.models, name, version).get(inner)
        if digest is None:
            raise NotFound(f"model {name} version {version} has no file {inner!r}")
        reader = services.ctx.artifacts.open(digest)
    else:
        reader = _tree(request).open(rel)
    return StreamingResponse(_stream(reader), media_type="application/octet-stream")


def _stream(reader: IO[bytes]) -> Iterator[bytes]:
    with reader:
        while chunk := reader.read(CHUNK_SIZE):
            yield chunk


async def list_artifacts(request: Request) -> dict[str, Any]:
    rel = check_artifact_path(request.query_params.get("path") or "")
    services = get_services(request)
    registry = _registry_part(rel) if rel else None
    if registry is not None:
        name, version, inner = registry
        return {"files": _list_registry(services.models, name, version, inner)}
    entries = _tree(request).list(rel)
    files = []
    for entry in entries:
        item: dict[str, Any] = {"path": posixpath.basename(entry.path), "is_dir": entry.is_dir}
        if entry.size is not None:
            item["file_size"] = entry.size
        files.append(item)
    return {"files": files}


def _list_registry(
    models: ModelService, name: str, version: int, inner: str
) -> list[dict[str, Any]]:
    files = _registry_files(models, name, version)
    prefix = f"{inner}/" if inner else ""
    dirs: set[str] = set()
    out: list[dict[str, Any]] = []
    for fname, digest in sorted(files.items()):
        if not fname.startswith(prefix):
            continue
        head, sep, _ = fname[len(prefix) :].partition("/")
        if sep:
            if head not in dirs:
                dirs.add(head)
                out.append({"path": head, "is_dir": True})
        else:
            size = models.ctx.artifacts.size(digest)
            out.append({"path": head, "is_dir": False, "file_size": size})
    return out


async def delete(path: str, request: Request) -> dict[str, Any]:
    rel = check_artifact_path(path)
    if not rel or rel.split("/", 1)[0] == REGISTRY_ROOT:
        raise InvalidArgument(f"artifact path {path!r} cannot be deleted")
    _tree(request).delete(rel)
    return {}


router.add_api_route(PREFIX, list_artifacts, methods=["GET"])
router.add_api_route(PREFIX + "/{path:path}", upload, methods=["PUT"])
router.add_api_route(PREFIX + "/{path:path}", download, methods=["GET"])
router.add_api_route(PREFIX + "/{path:path}", delete, methods=["DELETE"])
