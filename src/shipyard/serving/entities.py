"""Serving's objects: endpoints, their deployments and traffic split, and the history of changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EndpointConfig(BaseModel):
    """How an endpoint serves. Every limit is here, none hidden in the code.

    ``timeout_s``: how long a request may wait for its prediction before it fails with
    ``DEADLINE_EXCEEDED`` (504). ``max_instances``: instances per request (more → 400).
    ``log_sample_rate``: the share of requests written to ``endpoint_logs.<endpoint>`` (0 turns
    logging off). ``max_batch_rows``: the most rows that concurrent requests are batched into
    for one model call. ``model_threads``: threads per model call (0: the library's default,
    every core); 1 gives the lowest latency for small requests, and worker processes
    (``shipyard serve --workers``) use the other cores. ``runtime``: "auto" serves tree
    ensembles with ONNX Runtime when it agrees with the model and is faster (see
    serving/accelerate.py); "native" always calls the model's own library.
    """

    model_config = ConfigDict(extra="forbid")

    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_instances: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    log_sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    max_batch_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 4096
    model_threads: Annotated[int, Field(ge=0, le=256)] = 1
    runtime: Literal["auto", "native"] = "auto"


class Deployment(BaseModel):
    """One model version deployed to an endpoint.

    ``alias`` is the alias the version was resolved from at deploy time (recorded, never
    re-resolved: moving the alias later does not change what this deployment serves).
    A ``shadow`` deployment receives a copy of the traffic; its answers are logged, never
    returned.
    """

    id: str
    model: str
    version: int
    alias: str | None = None
    shadow: bool = False
    created_at: datetime
    created_by: str

    @property
    def model_resource(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


class Endpoint(BaseModel):
    """A named endpoint: deployments, the traffic split between them, and its config."""

    name: str
    description: str | None = None
    deployments: list[Deployment] = []
    traffic: dict[str, int] = {}  # deployment id -> whole percent; sums to 100 when non-empty
    sticky_key: str | None = None
    config: EndpointConfig = Field(default_factory=lambda: EndpointConfig())
    revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def resource(self) -> str:
        return f"endpoints/{self.name}"

    def deployment(self, deployment_id: str) -> Deployment | None:
        return next((d for d in self.deployments if d.id == deployment_id), None)

    @property
    def shadows(self) -> list[Deployment]:
        return [d for d in self.deployments if d.shadow]


class EndpointChange(BaseModel):
    """One recorded change: who did what, when, and the endpoint's state before and after."""

    endpoint: str
    revision: int
    action: str
    actor: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    created_at: datetime
