"""``/v1/models``: the model registry — versions, manifests, package files, aliases, predict."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from shipyard.errors import InvalidArgument, NotFound
from shipyard.registry.entities import Manifest, Model, ModelVersion
from shipyard.registry.estimators import load_model_file
from shipyard.server.routers import (
    ARROW_STREAM,
    arrow_bytes,
    get_services,
    json_rows,
    read_arrow,
    wants_arrow,
)
from shipyard.services import Services
from shipyard.store import Page

router = APIRouter(prefix="/v1/models", tags=["models"])

MODEL_VERSION_HEADER = "X-Shipyard-Model-Version"
SHA256_HEADER = "X-Shipyard-Sha256"


@router.get("", summary="List models", response_model=Page[Model])
def list_models(
    dataset: str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[Model]:
    return services.models.list(dataset=dataset, page_size=page_size, page_token=page_token)


@router.get("/{name}", summary="Describe a model", response_model=Model)
def get_model(name: str, services: Services = Depends(get_services)) -> Model:
    return services.models.get(name)


@router.delete("/{name}", summary="Delete a model and all its versions", status_code=204)
def delete_model(name: str, services: Services = Depends(get_services)) -> Response:
    services.models.delete(name)
    return Response(status_code=204)


@router.get(
    "/{name}/versions",
    summary="A model's versions, newest first",
    response_model=Page[ModelVersion],
)
def list_versions(
    name: str,
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[ModelVersion]:
    return services.models.versions(name, page_size=page_size, page_token=page_token)


@router.get("/{name}/versions/{version}", summary="One version", response_model=ModelVersion)
def get_version(
    name: str, version: int, services: Services = Depends(get_services)
) -> ModelVersion:
    return services.models.get_version(name, version)


@router.get(
    "/{name}/versions/{version}/manifest",
    summary="A version's package manifest",
    responses={200: {"model": Manifest, "description": "manifest.json, byte for byte"}},
)
def get_manifest(name: str, version: int, services: Services = Depends(get_services)) -> Response:
    # The stored bytes themselves, so a client can check them against the version's
    # manifest_digest (sha256) before trusting the file list in them.
    mv = services.models.get_version(name, version)
    data = services.ctx.artifacts.get_bytes(mv.manifest_digest)
    return Response(
        data, media_type="application/json", headers={SHA256_HEADER: mv.manifest_digest}
    )


@router.get(
    "/{name}/versions/{version}/files/{file_path:path}",
    summary="One file of a version's package (verified against its sha256)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_package_file(
    name: str, version: int, file_path: str, services: Services = Depends(get_services)
) -> Response:
    manifest = services.models.manifest(name, version)
    digest = manifest.files.get(file_path)
    if digest is None:
        listed = ", ".join(sorted(manifest.files)) or "none"
        raise NotFound(
            f"model {name} version {version} has no file {file_path!r}; files: {listed}",
            resource=f"models/{name}/versions/{version}/files/{file_path}",
        )
    data = services.ctx.artifacts.get_bytes(digest)
    return Response(data, media_type="application/octet-stream", headers={SHA256_HEADER: digest})


# -- registering a model trained in Python ------------------------------------------------------


class ModelUpload(BaseModel):
    """The ``description`` part of ``versions:upload``: ModelService.register_model_object's
    keyword arguments (the SDK's ``ws.models.register_object`` fills them in)."""

    model_config = ConfigDict(extra="forbid")

    flavor: str = Field(description="sklearn (a skops file), xgboost (UBJ) or lightgbm (text).")
    feature_names: list[str] | None = None
    feature_types: list[str] | None = None
    task: str | None = None
    classes: list[Any] | None = None
    label: str | None = None
    run_id: str | None = None
    metrics: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    description: str | None = None


@router.post(
    "/{name}/versions:upload",
    summary="Register a model trained in Python (its file and a JSON description)",
    response_model=ModelVersion,
    status_code=201,
)
def upload_version(
    name: str,
    model: UploadFile = File(description="The model file in its flavor's own format."),
    description: str = Form(description="JSON: a ModelUpload."),
    services: Services = Depends(get_services),
) -> ModelVersion:
    try:
        fields = ModelUpload.model_validate_json(description)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "description"
        raise InvalidArgument(f"invalid model description: {where}: {err['msg']}") from None
    data = model.file.read()
    with tempfile.TemporaryDirectory(prefix="shipyard-upload-") as tmp:
        # The flavor's safe loader: a skops file loads only allow-listed types.
        loaded = load_model_file(fields.flavor, data, Path(tmp))
    args = fields.model_dump(exclude={"description"})
    return services.models.register_model_object(
        name, loaded, **args, description=fields.description
    )


# -- aliases -------------------------------------------------------------------------------------


class AliasTarget(BaseModel):
    version: int = Field(description="The version the alias points at.")


@router.get(
    "/{name}/aliases/{alias}", summary="The version an alias points at", response_model=ModelVersion
)
def get_alias(name: str, alias: str, services: Services = Depends(get_services)) -> ModelVersion:
    return services.models.get_version(name, alias=alias)


@router.put(
    "/{name}/aliases/{alias}", summary="Point an alias at a version", response_model=ModelVersion
)
def set_alias(
    name: str, alias: str, body: AliasTarget, services: Services = Depends(get_services)
) -> ModelVersion:
    return services.models.set_alias(name, alias, body.version)


@router.delete("/{name}/aliases/{alias}", summary="Remove an alias", status_code=204)
def delete_alias(name: str, alias: str, services: Services = Depends(get_services)) -> Response:
    services.models.delete_alias(name, alias)
    return Response(status_code=204)


# -- predict -------------------------------------------------------------------------------------


class PredictParameters(BaseModel):
    threshold: float | None = Field(None, description="Binary classifiers: the positive cut-off.")


class PredictRequest(BaseModel):
    instances: list[dict[str, Any]] = Field(description="One object per row: column → value.")
    parameters: PredictParameters = Field(default_factory=lambda: PredictParameters(threshold=None))
    version: int | None = Field(None, description="A version number; default: the 'default' alias.")
    alias: str | None = Field(None, description="An alias instead of a version.")


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]]
    modelVersion: str


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "JSON (`PredictRequest`, Vertex AI's shape), or an Arrow IPC stream of "
        "the rows with `version`, `alias` and `threshold` as query parameters; the answer "
        "comes as Arrow when the request accepts it.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/{name}:predict",
    summary="Predict with a registered version",
    response_model=PredictResponse,
    openapi_extra=_PREDICT_BODY,
)
async def predict(
    name: str,
    request: Request,
    version: int | None = Query(None, description="Arrow requests: the version"),
    alias: str | None = Query(None, description="Arrow requests: the alias"),
    threshold: float | None = Query(None, description="Arrow requests: the threshold"),
    services: Services = Depends(get_services),
) -> Response:
    # One route, two bodies: JSON for people and other languages, Arrow for the SDK (exact
    # types both ways). The body is read here, so FastAPI does not parse it.
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type == ARROW_STREAM:
        rows = read_arrow(body)
    else:
        parsed = _parse_predict_request(body)
        rows = pa.Table.from_pylist(parsed.instances)
        version, alias = parsed.version, parsed.alias
        threshold = parsed.parameters.threshold
    number, out = await run_in_threadpool(_predict, services, name, rows, version, alias, threshold)
    if wants_arrow(request):
        return Response(
            arrow_bytes(out), media_type=ARROW_STREAM, headers={MODEL_VERSION_HEADER: str(number)}
        )
    return JSONResponse({"predictions": json_rows(out), "modelVersion": str(number)})


def _parse_predict_request(body: bytes) -> PredictRequest:
    try:
        return PredictRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidArgument(
            f"invalid predict request: {where}: {err['msg']}", field=where
        ) from None
    except json.JSONDecodeError as exc:  # pragma: no cover - pydantic reports these itself
        raise InvalidArgument(f"invalid predict request: {exc}") from None


def _predict(
    services: Services,
    name: str,
    rows: pa.Table,
    version: int | None,
    alias: str | None,
    threshold: float | None,
) -> tuple[int, pa.Table]:
    # Resolve the alias once, then load by number: the answer names the version that ran.
    mv = services.models.get_version(name, version, alias=alias)
    predictor = services.models.load(mv.model, mv.version)
    return mv.version, predictor.predict(rows, threshold=threshold)
