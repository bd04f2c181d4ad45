"""``/v1/endpoints``: endpoints, deployments, traffic — and Vertex AI's ``:predict``/``:explain``.

The prediction routes skip FastAPI's body models on purpose: the body is parsed once with orjson
and handed to the service, which validates the instances against the model's signature (a 400
names the instance and the field); ``:predict`` itself is answered beneath FastAPI by
server/predict.py. Everything else is ordinary REST.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shipyard.server import predict as fast
from shipyard.serving.abtest import ABComparison
from shipyard.serving.entities import Endpoint, EndpointChange
from shipyard.serving.service import EndpointService
from shipyard.store import Page

router = APIRouter(prefix="/v1/endpoints", tags=["endpoints"])

ACTOR_HEADER = "X-Shipyard-Actor"
REQUEST_ID_HEADER = "X-Request-Id"


def get_endpoints(request: Request) -> EndpointService:
    """The EndpointService of this app (the workspace's, or a ``shipyard serve`` worker's)."""
    service: EndpointService = request.app.state.endpoints
    return service


def _actor(request: Request) -> str | None:
    return request.headers.get(ACTOR_HEADER)


class CreateEndpoint(BaseModel):
    name: str
    description: str | None = None
    config: dict[str, Any] | None = Field(
        None, description="timeout_s, max_instances, log_sample_rate, max_batch_rows, model_threads"
    )


class UpdateEndpoint(BaseModel):
    description: str | None = None
    config: dict[str, Any] | None = None
    sticky_key: str | None = None
    clear_sticky_key: bool = False


class Deploy(BaseModel):
    model: str = Field(description="dataset.model")
    version: int | None = None
    alias: str | None = Field(None, description="Resolved now and recorded; default: 'default'.")
    traffic: int | None = Field(None, description="Percent for the new deployment (default 100).")
    shadow: bool = False
    sticky_key: str | None = None


class Undeploy(BaseModel):
    deployment_id: str


class Split(BaseModel):
    traffic: dict[str, int] = Field(description="deployment id → whole percent; sums to 100")


class Rollback(BaseModel):
    to_revision: int | None = None


class Compare(BaseModel):
    metric: str
    deployments: list[str] | None = None
    include_shadow: bool = False
    confidence_level: float = 0.95


@router.get("", summary="List endpoints", response_model=Page[Endpoint])
def list_endpoints(
    page_size: int = 100,
    page_token: str | None = None,
    endpoints: EndpointService = Depends(get_endpoints),
) -> Page[Endpoint]:
    return endpoints.list(page_size=page_size, page_token=page_token)


@router.post("", summary="Create an endpoint", response_model=Endpoint, status_code=201)
def create_endpoint(
    body: CreateEndpoint, request: Request, endpoints: EndpointService = Depends(get_endpoints)
) -> Endpoint:
    return endpoints.create(
        body.name, description=body.description, config=body.config, actor=_actor(request)
    )


@router.get("/{name}", summary="Describe an endpoint", response_model=Endpoint)
def get_endpoint(name: str, endpoints: EndpointService = Depends(get_endpoints)) -> Endpoint:
    return endpoints.get(name)


@router.patch(
    "/{name}", summary="Change description, config or sticky key", response_model=Endpoint
)
def update_endpoint(
    name: str,
    body: UpdateEndpoint,
    request: Request,
    endpoints: EndpointService = Depends(get_endpoints),
) -> Endpoint:
    return endpoints.update(
        name,
        description=body.description,
        config=body.config,
        sticky_key=body.sticky_key,
        clear_sticky_key=body.clear_sticky_key,
        actor=_actor(request),
    )


@router.delete("/{name}", summary="Delete an endpoint", status_code=204)
def delete_endpoint(
    name: str,
    request: Request,
    force: bool = False,
    endpoints: EndpointService = Depends(get_endpoints),
) -> Response:
    endpoints.delete(name, force=force, actor=_actor(request))
    return Response(status_code=204)


@router.get(
    "/{name}/history", summary="Every change, newest first", response_model=Page[EndpointChange]
)
def endpoint_history(
    name: str,
    page_size: int = 100,
    page_token: str | None = None,
    endpoints: EndpointService = Depends(get_endpoints),
) -> Page[EndpointChange]:
    return endpoints.history(name, page_size=page_size, page_token=page_token)


@router.post("/{name}:deploy", summary="Deploy a model version", response_model=Endpoint)
def deploy(
    name: str, body: Deploy, request: Request, endpoints: EndpointService = Depends(get_endpoints)
) -> Endpoint:
    return endpoints.deploy(
        name,
        body.model,
        version=body.version,
        alias=body.alias,
        traffic=body.traffic,
        shadow=body.shadow,
        sticky_key=body.sticky_key,
        actor=_actor(request),
    )


@router.post("/{name}:undeploy", summary="Remove a deployment", response_model=Endpoint)
def undeploy(
    name: str, body: Undeploy, request: Request, endpoints: EndpointService = Depends(get_endpoints)
) -> Endpoint:
    return endpoints.undeploy(name, body.deployment_id, actor=_actor(request))


@router.post("/{name}:split", summary="Set the traffic split", response_model=Endpoint)
def split(
    name: str, body: Split, request: Request, endpoints: EndpointService = Depends(get_endpoints)
) -> Endpoint:
    return endpoints.split(name, body.traffic, actor=_actor(request))


@router.post("/{name}:rollback", summary="Undo the latest change", response_model=Endpoint)
def rollback(
    name: str,
    request: Request,
    body: Rollback | None = None,
    endpoints: EndpointService = Depends(get_endpoints),
) -> Endpoint:
    to_revision = body.to_revision if body else None
    return endpoints.rollback(name, to_revision=to_revision, actor=_actor(request))


# -- prediction ----------------------------------------------------------------------------------


_PREDICT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {"type": "array", "items": {"type": "object"}},
                        "parameters": {"type": "object"},
                    },
                },
                "example": {"instances": [{"x1": 1.0, "x2": "a"}], "parameters": {}},
            }
        },
    }
}


@router.post(
    "/{name}:predict", summary="Online prediction (Vertex AI's shape)", openapi_extra=_PREDICT_DOC
)
async def predict(name: str, request: Request) -> Response:
    """`{"instances": [{…}], "parameters": {"threshold": …}}` →
    `{"predictions": [...], "deployedModelId", "model", "modelVersion", "requestId"}`.

    Served apps answer this route beneath FastAPI (server/predict.py), with the same functions."""
    body = await fast.predict(
        get_endpoints(request), name, await request.body(), request.headers.get(REQUEST_ID_HEADER)
    )
    return Response(body, media_type="application/json")


@router.post(
    "/{name}:explain", summary="Prediction with feature attributions", openapi_extra=_PREDICT_DOC
)
async def explain(name: str, request: Request) -> Response:
    """As `:predict`, plus `explanations`: per instance, the top feature attributions
    (`parameters.top_k_features`), the baseline and the prediction value."""
    body = fast.parse_body(await request.body(), fast.PREDICT_FIELDS)
    result = await run_in_threadpool(
        get_endpoints(request).predict,
        name,
        body["instances"],
        body.get("parameters"),
        explain=True,
        request_id=request.headers.get(REQUEST_ID_HEADER),
    )
    return Response(fast.dump(result), media_type="application/json")


@router.post("/{name}:feedback", summary="Attach ground truth to logged predictions")
async def feedback(name: str, request: Request) -> dict[str, int]:
    """`{"feedback": [{"request_id", "instance_index", "ground_truth"}]}` → `{"stored": n}`."""
    body = fast.parse_body(await request.body(), ("feedback",))
    endpoints: EndpointService = request.app.state.endpoints
    stored = await run_in_threadpool(endpoints.feedback, name, body["feedback"])
    return {"stored": stored}


@router.get("/{name}/stats", summary="Requests, errors and latency per deployment")
def stats(
    name: str, endpoints: EndpointService = Depends(get_endpoints)
) -> dict[str, dict[str, Any]]:
    return endpoints.stats(name)


@router.post(
    "/{name}:compare",
    summary="A/B comparison with a significance test",
    response_model=ABComparison,
)
def compare(
    name: str, body: Compare, endpoints: EndpointService = Depends(get_endpoints)
) -> ABComparison:
    return endpoints.compare(
        name,
        metric=body.metric,
        deployments=body.deployments,
        include_shadow=body.include_shadow,
        confidence_level=body.confidence_level,
    )


metrics_router = APIRouter(tags=["system"])


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Requests, errors, instances and latency histograms per endpoint and deployment."""
    endpoints: EndpointService = request.app.state.endpoints
    if endpoints.metrics is None:
        return Response(b"", media_type="text/plain; version=0.0.4")
    body, content_type = endpoints.metrics.render()
    return Response(body, media_type=content_type)
