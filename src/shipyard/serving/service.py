"""EndpointService: endpoints, deployments and traffic (the control plane) and prediction (the data
plane), for the platform server, the SDK and the standalone ``shipyard serve`` workers alike.

Control plane. An endpoint's state — its deployments, the traffic split and the sticky key — is
one JSON document in the ``endpoints`` row with a revision number. Every change runs in one
transaction that locks the row, checks the new state, bumps the revision and records who did
what, with the state before and after, in ``endpoint_changes``. Rollback restores the state
before the latest change (like ``kubectl rollout undo``: twice goes back and forth), or any
earlier revision.

Data plane. The first request to an endpoint builds its runtime: every deployment's predictor
loaded and verified, its input schema laid out, its micro-batcher, the router. The runtime is
rebuilt when the endpoint's revision moves: at once for changes made through this service, and
within ``refresh_s`` for changes made by another process (a ``shipyard serve`` worker polls the
revision, one indexed read per second at most). Shadow deployments get a copy of each request
on a small background pool; their answers and errors go to the request log only.
"""

from __future__ import annotations

import asyncio
import builtins
import getpass
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError
from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select, update

from shipyard.context import Context
from shipyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ShipyardError,
    Unsupported,
)
from shipyard.metadata.service import MetadataService, model_version_uri
from shipyard.registry.predictor import Predictor
from shipyard.registry.service import ModelService
from shipyard.serving import abtest
from shipyard.serving.accelerate import Acceleration, accelerate
from shipyard.serving.entities import Deployment, Endpoint, EndpointChange, EndpointConfig
from shipyard.serving.logs import (
    DEFER_JSON_ROWS,
    RequestLog,
    drop_log_tables,
    log_table_name,
    record_feedback,
    register_log_tables,
)
from shipyard.serving.routing import Router
from shipyard.serving.runtime import AsyncMicroBatcher, InstanceSchema, MicroBatcher
from shipyard.store import Page
from shipyard.store.schema import endpoint_changes, endpoints, utcnow

__all__ = ["INLINE_MODEL_BUSY_S", "INLINE_MODEL_S", "EndpointService"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_PARAMETERS = ("threshold", "top_k_features", "approx_feature_contrib")
_SHADOW_BACKLOG = 256  # shadow copies waiting beyond this are dropped (and counted), not queued
# Model calls expected to take at most this long run on the event loop; longer ones on a worker
# thread, so that the loop reads the next requests meanwhile. A process that has no spare core
# (``shipyard serve`` with as many workers as cores) gains nothing from the hand-off and pays two
# thread switches a batch — measured 15-20% more CPU a request there — so it passes
# INLINE_MODEL_BUSY_S instead.
INLINE_MODEL_S = 0.002
INLINE_MODEL_BUSY_S = 0.05


def _actor(actor: str | None) -> str:
    if actor:
        return actor[:255]
    try:
        return getpass.getuser()
    except Exception:  # no user name (e.g. a container without a passwd entry)
        return "unknown"


def _snapshot(endpoint: Endpoint) -> dict[str, Any]:
    """The part of an endpoint that changes and that rollback restores."""
    return {
        "description": endpoint.description,
        "deployments": [d.model_dump(mode="json") for d in endpoint.deployments],
        "traffic": dict(endpoint.traffic),
        "sticky_key": endpoint.sticky_key,
        "config": endpoint.config.model_dump(mode="json"),
    }


def _scale(shares: dict[str, int], total: int) -> dict[str, int]:
    """``shares`` rescaled to sum to ``total`` in whole percents (largest remainder)."""
    if not shares:
        return {}
    current = sum(shares.values())
    if current == 0:
        exact = {k: total / len(shares) for k in shares}
    else:
        exact = {k: v * total / current for k, v in shares.items()}
    result = {k: int(v) for k, v in exact.items()}
    left = total - sum(result.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - result[k]), k))[:left]:
        result[k] += 1
    return result


@dataclass
class _Serving:
    """One deployment, ready to answer."""

    deployment: Deployment
    predictor: Predictor  # what predicts: the model, or its ONNX Runtime twin
    explainer: Predictor  # the model itself (attributions need the booster)
    runtime: str
    runtime_reason: str
    schema: InstanceSchema
    batcher: MicroBatcher  # synchronous callers (the SDK, shadows)
    async_batcher: AsyncMicroBatcher  # the HTTP servers' event loop


@dataclass
class _Call:
    """One prediction request, checked and routed."""

    runtime: _Runtime
    endpoint: Endpoint
    serving: _Serving
    params: dict[str, Any]
    request_id: str
    timeout: float


def _model_failed(d: Deployment, exc: Exception) -> Internal:
    return Internal(
        f"deployment {d.id} ({d.model_resource}) failed to predict: {type(exc).__name__}: {exc}",
        deployment=d.id,
        model=d.model,
        version=d.version,
    )


@dataclass
class _Runtime:
    endpoint: Endpoint
    router: Router
    serving: dict[str, _Serving]
    shadows: list[_Serving]
    checked_at: float


class RequestLogs:
    """One :class:`RequestLog` per endpoint in this process, at the endpoint's sample rate."""

    def __init__(self, root: Path, *, flush_interval_s: float = 1.0) -> None:
        self.root = root
        self.flush_interval_s = flush_interval_s
        self._logs: dict[str, RequestLog] = {}
        self._lock = threading.Lock()

    def __call__(self, endpoint: Endpoint) -> RequestLog:
        log = self._logs.get(endpoint.name)
        rate = endpoint.config.log_sample_rate
        if log is not None and log.sample_rate == rate:
            return log
        with self._lock:
            log = self._logs.get(endpoint.name)
            if log is None or log.sample_rate != rate:
                if log is not None:
                    log.close()
                log = RequestLog(
                    self.root,
                    endpoint.name,
                    sample_rate=rate,
                    flush_interval_s=self.flush_interval_s,
                )
                self._logs[endpoint.name] = log
            return log

    def flush(self, endpoint: str | None = None) -> None:
        for name, log in list(self._logs.items()):
            if endpoint is None or name == endpoint:
                log.flush()

    def close(self) -> None:
        with self._lock:
            logs, self._logs = list(self._logs.values()), {}
        for log in logs:
            log.close()


class EndpointService:
    """Endpoints (control plane) and online prediction (data plane); see the module docstring.

    ``request_logs`` writes each endpoint's requests under ``<home>/endpoint_logs`` (None: no
    logging); ``metrics`` is a ``ServingMetrics`` (serving/metrics.py) or None. With
    ``warehouse_tables`` (the process that owns the warehouse), creating an endpoint also
    creates its ``endpoint_logs.<endpoint>`` tables.
    """

    def __init__(
        self,
        ctx: Context,
        models: ModelService,
        *,
        refresh_s: float = 1.0,
        request_logs: RequestLogs | None = None,
        metrics: Any = None,
        warehouse_tables: bool = True,
        metadata: MetadataService | None = None,
        inline_model_s: float = INLINE_MODEL_S,
    ) -> None:
        """``inline_model_s``: the longest model call (rows times the measured cost per row)
        that the asyncio path runs on the event loop; longer ones go to a worker thread, which
        pays off when the process has a core to itself for it (see :data:`INLINE_MODEL_S`)."""
        self.ctx = ctx
        self.inline_model_s = inline_model_s
        self.models = models
        self.metadata = metadata
        self.refresh_s = refresh_s
        self.metrics = metrics
        self.request_logs = request_logs
        self.warehouse_tables = warehouse_tables
        self._runtimes: dict[str, _Runtime] = {}
        self._accelerated: dict[tuple[str, int, int, str], tuple[Predictor, Acceleration]] = {}
        self._lock = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._shadow_pending = 0
        self._shadows_done = threading.Condition(self._lock)
        self.shadow_dropped = 0

    # -- reading ---------------------------------------------------------------------------

    def get(self, name: str) -> Endpoint:
        with self.ctx.metadata.connect() as conn:
            row = conn.execute(select(endpoints).where(endpoints.c.name == name)).first()
        if row is None:
            raise NotFound(f"endpoint {name!r} not found", resource=f"endpoints/{name}")
        return self._endpoint(row._mapping)

    def list(self, *, page_size: int = 100, page_token: str | None = None) -> Page[Endpoint]:
        with self.ctx.metadata.connect() as conn:
            return self.ctx.metadata.page(
                conn,
                select(endpoints),
                order_by=[endpoints.c.name],
                page_size=page_size,
                page_token=page_token,
                row_to_item=lambda r: self._endpoint(r._mapping),
            )

    def history(
        self, name: str, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[EndpointChange]:
        """The endpoint's changes, newest first."""
        self.get(name)
        stmt = select(endpoint_changes).where(endpoint_changes.c.endpoint == name)
        with self.ctx.metadata.connect() as conn:
            return self.ctx.metadata.page(
                conn,
                stmt,
                order_by=[endpoint_changes.c.revision.desc()],
                page_size=page_size,
                page_token=page_token,
                row_to_item=lambda r: EndpointChange(**r._mapping),
            )

    @staticmethod
    def _endpoint(row: Any) -> Endpoint:
        state = row["state"]
        return Endpoint(
            name=row["name"],
            description=row["description"],
            deployments=[Deployment(**d) for d in state.get("deployments", [])],
            traffic=state.get("traffic", {}),
            sticky_key=state.get("sticky_key"),
            config=EndpointConfig(**(row["config"] or {})),
            revision=row["revision"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    # -- changing --------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        description: str | None = None,
        config: dict[str, Any] | EndpointConfig | None = None,
        actor: str | None = None,
    ) -> Endpoint:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgument(
                f"endpoint name {name!r} is not valid: use 1-63 lower-case letters, digits, "
                "'_' or '-', starting with a letter"
            )
        if name.endswith(("_feedback", "-feedback")):
            raise InvalidArgument(
                f"endpoint name {name!r} ends in 'feedback', which would clash with another "
                "endpoint's endpoint_logs.<endpoint>_feedback table"
            )
        cfg = self._config(config)
        now = utcnow()
        state: dict[str, Any] = {
            "deployments": [],
            "traffic": {},
            "sticky_key": None,
            "next_id": 1,
        }
        endpoint = Endpoint(
            name=name,
            description=description,
            config=cfg,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        with self.ctx.metadata.translate_errors(), self.ctx.metadata.transaction() as conn:
            table = log_table_name(name)
            clash = [
                n
                for (n,) in conn.execute(select(endpoints.c.name))
                if log_table_name(n) == table and n != name
            ]
            if clash:
                raise AlreadyExists(
                    f"endpoint {name!r} would share the log table endpoint_logs.{table} with "
                    f"endpoint {clash[0]!r}; choose a name that differs in more than '-' and '_'"
                )
            if conn.execute(select(endpoints.c.name).where(endpoints.c.name == name)).first():
                raise AlreadyExists(
                    f"endpoint {name!r} already exists", resource=f"endpoints/{name}"
                )
            conn.execute(
                insert(endpoints).values(
                    name=name,
                    description=description,
                    state=state,
                    config=cfg.model_dump(mode="json"),
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(endpoint_changes).values(
                    endpoint=name,
                    revision=1,
                    action="create",
                    actor=_actor(actor),
                    before=None,
                    after=_snapshot(endpoint),
                    created_at=now,
                )
            )
        if self.warehouse_tables:
            register_log_tables(self.ctx.warehouse, self.ctx.home, name)
        return endpoint

    def update(
        self,
        name: str,
        *,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        sticky_key: str | None = None,
        clear_sticky_key: bool = False,
        actor: str | None = None,
    ) -> Endpoint:
        """Change the description, config fields (merged) or sticky key."""

        def change(e: Endpoint, state: dict[str, Any]) -> str:
            if description is not None:
                e.description = description
            if config:
                e.config = self._config({**e.config.model_dump(), **config})
            if clear_sticky_key:
                e.sticky_key = None
            elif sticky_key is not None:
                e.sticky_key = self._sticky_key(sticky_key)
            return "update"

        return self._change(name, change, actor)

    def delete(self, name: str, *, force: bool = False, actor: str | None = None) -> None:
        """Delete an endpoint; one with deployments needs ``force=True``."""
        endpoint = self.get(name)
        if endpoint.deployments and not force:
            raise FailedPrecondition(
                f"endpoint {name!r} still has {len(endpoint.deployments)} deployment(s); "
                "undeploy them first or delete with force=True",
                resource=endpoint.resource,
            )
        with self.ctx.metadata.transaction() as conn:
            conn.execute(sql_delete(endpoints).where(endpoints.c.name == name))
        self._forget(name)
        if self.warehouse_tables:  # the Parquet files stay: they are data
            drop_log_tables(self.ctx.warehouse, name)

    def deploy(
        self,
        name: str,
        model: str,
        *,
        version: int | None = None,
        alias: str | None = None,
        traffic: int | None = None,
        shadow: bool = False,
        sticky_key: str | None = None,
        actor: str | None = None,
    ) -> Endpoint:
        """Deploy a model version (or the version an alias points at now).

        The new deployment takes ``traffic`` percent (default 100) and the others are scaled
        in proportion to share the rest, as Vertex AI does. A ``shadow`` deployment takes no
        share: it gets a copy of every request. The predictor is loaded and verified here, so
        a version that cannot serve fails the deploy, not the first request.
        """
        if version is not None and alias is not None:
            raise InvalidArgument("give a version or an alias, not both")
        if traffic is not None and (isinstance(traffic, bool) or not isinstance(traffic, int)):
            raise InvalidArgument(f"traffic must be a whole percent, got {traffic!r}")
        if shadow and traffic:
            raise InvalidArgument(
                f"a shadow deployment takes no traffic share (got traffic={traffic}); it "
                "receives a copy of every request"
            )
        pct = 0 if shadow else (100 if traffic is None else traffic)
        if not 0 <= pct <= 100:
            raise InvalidArgument(f"traffic must be between 0 and 100, got {pct}")
        found = self.models.get_version(
            model, version, alias=alias if alias or version is not None else "default"
        )
        self.models.load(found.model, found.version)  # verify it loads, and warm the cache
        resolved_alias = alias if alias else (None if version is not None else "default")

        def change(e: Endpoint, state: dict[str, Any]) -> str:
            deployment = Deployment(
                id=f"d{state.get('next_id', 1)}",
                model=found.model,
                version=found.version,
                alias=resolved_alias,
                shadow=shadow,
                created_at=utcnow(),
                created_by=_actor(actor),
            )
            state["next_id"] = state.get("next_id", 1) + 1
            live = {d.id: e.traffic.get(d.id, 0) for d in e.deployments if not d.shadow}
            if not shadow:
                if not live and pct != 100:
                    raise InvalidArgument(
                        f"the first deployment of endpoint {name!r} must take 100% of the "
                        f"traffic, got {pct}"
                    )
                e.traffic = {**_scale(live, 100 - pct), deployment.id: pct}
            e.deployments.append(deployment)
            if sticky_key is not None:
                e.sticky_key = self._sticky_key(sticky_key)
            return "deploy"

        endpoint = self._change(name, change, actor)
        if self.metadata is not None:  # lineage: this version now serves the endpoint
            d = endpoint.deployments[-1]
            self.metadata.record_execution(
                "deploy",
                f"deploy {d.model}@{d.version} to {name} as {d.id}",
                {"endpoint": name, "deployment": d.id, "shadow": d.shadow, "alias": d.alias},
                inputs=[model_version_uri(d.model, d.version)],
                outputs=[endpoint.resource],
            )
        return endpoint

    def undeploy(self, name: str, deployment_id: str, *, actor: str | None = None) -> Endpoint:
        """Remove a deployment; the others' shares are scaled up to fill its share."""

        def change(e: Endpoint, state: dict[str, Any]) -> str:
            self._require_deployment(e, deployment_id)
            e.deployments = [d for d in e.deployments if d.id != deployment_id]
            live = {d.id: e.traffic.get(d.id, 0) for d in e.deployments if not d.shadow}
            e.traffic = _scale(live, 100)
            return "undeploy"

        return self._change(name, change, actor)

    def split(self, name: str, traffic: dict[str, int], *, actor: str | None = None) -> Endpoint:
        """Set the traffic split: whole percents per deployment id, summing to 100.

        Deployments left out get 0 %; shadow deployments cannot take a share.
        """
        if not isinstance(traffic, dict) or not traffic:
            raise InvalidArgument(
                "a traffic split maps deployment ids to percents, e.g. {'d1': 90, 'd2': 10}"
            )

        def change(e: Endpoint, state: dict[str, Any]) -> str:
            for deployment_id, pct in traffic.items():
                d = self._require_deployment(e, deployment_id)
                if d.shadow:
                    raise InvalidArgument(
                        f"deployment {deployment_id} is a shadow: it receives a copy of the "
                        "traffic and cannot take a share"
                    )
                if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
                    raise InvalidArgument(
                        f"traffic for {deployment_id} must be a whole percent in [0, 100], "
                        f"got {pct!r}"
                    )
            total = sum(traffic.values())
            if total != 100:
                raise InvalidArgument(
                    f"the traffic split must sum to 100, got {total} "
                    f"({', '.join(f'{k}={v}' for k, v in traffic.items())})"
                )
            e.traffic = {d.id: traffic.get(d.id, 0) for d in e.deployments if not d.shadow}
            return "split"

        return self._change(name, change, actor)

    def rollback(
        self, name: str, *, to_revision: int | None = None, actor: str | None = None
    ) -> Endpoint:
        """Restore the state before the latest change, or the state of ``to_revision``."""
        self.get(name)  # NotFound for an unknown endpoint
        target: dict[str, Any] | None
        with self.ctx.metadata.connect() as conn:
            if to_revision is None:
                row = conn.execute(
                    select(endpoint_changes.c.before)
                    .where(endpoint_changes.c.endpoint == name)
                    .order_by(endpoint_changes.c.revision.desc())
                    .limit(1)
                ).first()
                target = row[0] if row is not None else None
                if target is None:
                    raise FailedPrecondition(
                        f"endpoint {name!r} has no earlier state to roll back to",
                        resource=f"endpoints/{name}",
                    )
            else:
                row = conn.execute(
                    select(endpoint_changes.c.after).where(
                        endpoint_changes.c.endpoint == name,
                        endpoint_changes.c.revision == to_revision,
                    )
                ).first()
                if row is None:
                    raise NotFound(
                        f"endpoint {name!r} has no revision {to_revision!r}",
                        resource=f"endpoints/{name}",
                    )
                target = row[0]
        assert target is not None
        for d in target["deployments"]:  # the versions must still exist to serve them again
            self.models.get_version(d["model"], d["version"])

        def change(e: Endpoint, state: dict[str, Any]) -> str:
            e.description = target["description"]
            e.deployments = [Deployment(**d) for d in target["deployments"]]
            e.traffic = dict(target["traffic"])
            e.sticky_key = target["sticky_key"]
            e.config = EndpointConfig(**target["config"])
            return "rollback"

        return self._change(name, change, actor)

    def _change(
        self, name: str, change: Callable[[Endpoint, dict[str, Any]], str], actor: str | None
    ) -> Endpoint:
        with self.ctx.metadata.translate_errors(), self.ctx.metadata.transaction() as conn:
            row = conn.execute(
                select(endpoints).where(endpoints.c.name == name).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"endpoint {name!r} not found", resource=f"endpoints/{name}")
            endpoint = self._endpoint(row._mapping)
            before = _snapshot(endpoint)
            state = dict(row._mapping["state"])
            action = change(endpoint, state)
            live = [d for d in endpoint.deployments if not d.shadow]
            if live and sum(endpoint.traffic.values()) != 100:  # a bug if it ever happens
                raise Internal(f"endpoint {name!r}: traffic {endpoint.traffic} does not sum to 100")
            after = _snapshot(endpoint)
            now = utcnow()
            revision = endpoint.revision + 1
            state.update(
                deployments=after["deployments"],
                traffic=after["traffic"],
                sticky_key=after["sticky_key"],
            )
            conn.execute(
                update(endpoints)
                .where(endpoints.c.name == name)
                .values(
                    description=endpoint.description,
                    state=state,
                    config=after["config"],
                    revision=revision,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(endpoint_changes).values(
                    endpoint=name,
                    revision=revision,
                    action=action,
                    actor=_actor(actor),
                    before=before,
                    after=after,
                    created_at=now,
                )
            )
        self._forget(name)
        endpoint.revision = revision
        endpoint.updated_at = now
        return endpoint

    @staticmethod
    def _config(config: dict[str, Any] | EndpointConfig | None) -> EndpointConfig:
        if isinstance(config, EndpointConfig):
            return config
        try:
            return EndpointConfig(**(config or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidArgument(
                f"invalid endpoint config: {problems}; valid fields: "
                f"{', '.join(EndpointConfig.model_fields)}"
            ) from None

    @staticmethod
    def _sticky_key(key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > 128:
            raise InvalidArgument(f"sticky key must be a field name, got {key!r}")
        return key

    @staticmethod
    def _require_deployment(endpoint: Endpoint, deployment_id: str) -> Deployment:
        found = endpoint.deployment(deployment_id)
        if found is None:
            ids = [d.id for d in endpoint.deployments] or ["none"]
            raise NotFound(
                f"endpoint {endpoint.name!r} has no deployment {deployment_id!r}; its "
                f"deployments: {', '.join(ids)}",
                resource=f"{endpoint.resource}/deployments/{deployment_id}",
            )
        return found

    # -- serving ---------------------------------------------------------------------------

    def predict(
        self,
        name: str,
        instances: Any,
        parameters: dict[str, Any] | None = None,
        *,
        explain: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Vertex AI's ``:predict`` (and ``:explain``): one deployment answers the request.

        Returns ``{"predictions": [...], "deployedModelId", "model", "modelVersion",
        "requestId"}`` (and ``"explanations"`` for explain). Each prediction holds ML.PREDICT's
        output columns for its instance.
        """
        started = time.perf_counter()
        call = self._call(self._runtime(name), instances, parameters, request_id, explain=explain)
        try:
            table = call.serving.schema.to_table(instances)
            if explain:
                output = self._explain(call.serving, table, call.params)
            else:
                output = self._model_call(
                    call.serving,
                    lambda: call.serving.batcher(
                        table, call.params.get("threshold"), timeout=call.timeout
                    ),
                )
        except ShipyardError as exc:
            self._observe(
                call.endpoint, call.serving, call.request_id, instances, None, started, exc
            )
            raise
        return self._respond(call, instances, table, output, started, explain=explain)

    async def predict_async(
        self,
        name: str,
        instances: Any,
        parameters: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """``predict`` for an asyncio server: the same answer, batched on the event loop.

        Concurrent requests to a deployment share model calls (``AsyncMicroBatcher``); loading
        a changed endpoint, and model calls over a few rows, run on worker threads.
        """
        started = time.perf_counter()
        runtime = self._runtimes.get(name)
        if runtime is None or time.monotonic() - runtime.checked_at >= self.refresh_s:
            runtime = await asyncio.to_thread(self._runtime, name)
        call = self._call(runtime, instances, parameters, request_id, explain=False)
        try:
            table = call.serving.schema.to_table(instances)
            pending = call.serving.async_batcher(
                table, call.params.get("threshold"), timeout=call.timeout
            )
            output = await self._model_call_async(call.serving, pending)
        except ShipyardError as exc:
            self._observe(
                call.endpoint, call.serving, call.request_id, instances, None, started, exc
            )
            raise
        return self._respond(call, instances, table, output, started, explain=False)

    def _call(
        self,
        runtime: _Runtime,
        instances: Any,
        parameters: Any,
        request_id: str | None,
        *,
        explain: bool,
    ) -> _Call:
        """Checks the request and picks the deployment that answers it."""
        endpoint = runtime.endpoint
        params = self._parameters(parameters, explain=explain)
        self._check_instances(endpoint, instances)
        if runtime.router.empty:
            raise FailedPrecondition(
                f"endpoint {endpoint.name!r} has no deployment receiving traffic; deploy a model "
                "first",
                resource=endpoint.resource,
            )
        key = instances[0].get(endpoint.sticky_key) if endpoint.sticky_key else None
        return _Call(
            runtime=runtime,
            endpoint=endpoint,
            serving=runtime.serving[runtime.router.pick(key)],
            params=params,
            request_id=request_id or uuid.uuid4().hex,
            timeout=endpoint.config.timeout_s,
        )

    def _respond(
        self,
        call: _Call,
        instances: builtins.list[dict[str, Any]],
        table: pa.Table,
        output: pa.Table,
        started: float,
        *,
        explain: bool,
    ) -> dict[str, Any]:
        """The response body for the model's output; logs the request and copies it to shadows."""
        d = call.serving.deployment
        response: dict[str, Any] = {}
        logged: builtins.list[dict[str, Any]] | pa.Table = output
        if explain:
            predicted = call.serving.predictor.output_names
            rows = output.to_pylist()
            response["predictions"] = [{k: r[k] for k in predicted} for r in rows]
            response["explanations"] = [
                {
                    "attributions": r.get("top_feature_attributions"),
                    "baseline_prediction_value": r.get("baseline_prediction_value"),
                    "prediction_value": r.get("prediction_value"),
                    "approximation_error": r.get("approximation_error"),
                }
                for r in rows
            ]
            logged = response["predictions"]
        else:
            response["predictions"] = output.to_pylist()
            if output.num_rows < DEFER_JSON_ROWS:
                logged = response["predictions"]
        response.update(
            deployedModelId=d.id,
            model=d.model,
            modelVersion=str(d.version),
            requestId=call.request_id,
        )
        self._observe(
            call.endpoint,
            call.serving,
            call.request_id,
            call.serving.schema.logged(instances, table),
            logged,
            started,
        )
        if call.runtime.shadows:
            self._shadow(
                call.endpoint, call.runtime.shadows, call.request_id, instances, call.params
            )
        return response

    @staticmethod
    def _explain(serving: _Serving, table: pa.Table, params: dict[str, Any]) -> pa.Table:
        explainer = getattr(serving.explainer, "explain", None)
        if explainer is None:
            d = serving.deployment
            raise Unsupported(f"{d.model_resource} cannot explain its predictions yet")
        return EndpointService._model_call(
            serving,
            lambda: explainer(
                table,
                top_k_features=params.get("top_k_features"),
                threshold=params.get("threshold"),
                approx_feature_contrib=bool(params.get("approx_feature_contrib", False)),
                keep_original_columns=False,
            ),
        )

    @staticmethod
    def _model_call(serving: _Serving, run: Callable[[], pa.Table]) -> pa.Table:
        try:
            return run()
        except ShipyardError:
            raise
        except Exception as exc:
            raise _model_failed(serving.deployment, exc) from exc

    @staticmethod
    async def _model_call_async(serving: _Serving, pending: Awaitable[pa.Table]) -> pa.Table:
        try:
            return await pending
        except ShipyardError:
            raise
        except Exception as exc:
            raise _model_failed(serving.deployment, exc) from exc

    def _predict_batch(self, predictor: Predictor) -> Callable[[pa.Table, Any], pa.Table]:
        def run(table: pa.Table, threshold: Any) -> pa.Table:
            return predictor.predict(table, threshold=threshold, keep_original_columns=False)

        return run

    @staticmethod
    def _parameters(parameters: Any, *, explain: bool) -> dict[str, Any]:
        if parameters is None:
            return {}
        if not isinstance(parameters, dict):
            raise InvalidArgument(f"parameters must be an object, got {type(parameters).__name__}")
        valid = _PARAMETERS if explain else _PARAMETERS[:1]
        unknown = [k for k in parameters if k not in valid]
        if unknown:
            raise InvalidArgument(
                f"unknown parameter {unknown[0]!r}; valid parameters: {', '.join(valid)}",
                field=f"parameters.{unknown[0]}",
            )
        top_k = parameters.get("top_k_features")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise InvalidArgument(f"top_k_features must be a positive integer, got {top_k!r}")
        return parameters

    @staticmethod
    def _check_instances(endpoint: Endpoint, instances: Any) -> None:
        if not isinstance(instances, list):
            raise InvalidArgument(
                f"instances must be a list of objects, got {type(instances).__name__}",
                field="instances",
            )
        if not instances:
            raise InvalidArgument(
                "instances is empty: send at least one instance", field="instances"
            )
        limit = endpoint.config.max_instances
        if len(instances) > limit:
            raise InvalidArgument(
                f"{len(instances)} instances in one request; endpoint {endpoint.name!r} takes at "
                f"most {limit} (config max_instances)",
                field="instances",
            )
        if not isinstance(instances[0], dict):
            raise InvalidArgument(
                f"instances[0] must be an object of feature values, got "
                f"{type(instances[0]).__name__}",
                field="instances[0]",
            )

    # -- runtime ---------------------------------------------------------------------------

    def warm(self, name: str) -> None:
        """Load the endpoint's deployments now, so that the first request does not wait."""
        self._runtime(name)

    def _runtime(self, name: str) -> _Runtime:
        runtime = self._runtimes.get(name)
        now = time.monotonic()
        if runtime is not None and now - runtime.checked_at < self.refresh_s:
            return runtime
        if runtime is not None:
            with self.ctx.metadata.connect() as conn:
                revision = conn.execute(
                    select(endpoints.c.revision).where(endpoints.c.name == name)
                ).scalar()
            if revision == runtime.endpoint.revision:
                runtime.checked_at = now
                return runtime
        with self._lock:
            build_lock = self._build_locks.setdefault(name, threading.Lock())
        with build_lock:  # one build per endpoint at a time; others wait for it
            current = self._runtimes.get(name)
            if current is not None and current is not runtime:
                return current
            built = self._build(self.get(name))
            self._runtimes[name] = built
            return built

    def _build(self, endpoint: Endpoint) -> _Runtime:
        serving: dict[str, _Serving] = {}
        extra = [endpoint.sticky_key] if endpoint.sticky_key else []
        for d in endpoint.deployments:
            native, fast = self._predictors(d, endpoint.config)
            serving[d.id] = _Serving(
                deployment=d,
                predictor=fast.predictor,
                explainer=native,
                runtime=fast.runtime,
                runtime_reason=fast.reason,
                schema=InstanceSchema(native.signature["inputs"], allowed_extra=extra),
                batcher=MicroBatcher(
                    self._predict_batch(fast.predictor), max_rows=endpoint.config.max_batch_rows
                ),
                async_batcher=AsyncMicroBatcher(
                    self._predict_batch(fast.predictor),
                    max_rows=endpoint.config.max_batch_rows,
                    inline_s=self.inline_model_s,
                ),
            )
        return _Runtime(
            endpoint=endpoint,
            router=Router(endpoint.traffic),
            serving=serving,
            shadows=[s for s in serving.values() if s.deployment.shadow],
            checked_at=time.monotonic(),
        )

    def _predictors(self, d: Deployment, config: EndpointConfig) -> tuple[Predictor, Acceleration]:
        """The deployment's predictor and the one to serve with, built once per process for
        each (version, threads, runtime): changing a split does not convert models again."""
        key = (d.model, d.version, config.model_threads, config.runtime)
        found = self._accelerated.get(key)
        if found is None:
            native = self.models.load(d.model, d.version).with_threads(config.model_threads)
            found = (native, accelerate(native, mode=config.runtime))
            self._accelerated[key] = found
        return found

    def _forget(self, name: str) -> None:
        self._runtimes.pop(name, None)

    # -- shadows, logs and metrics ----------------------------------------------------------

    def _shadow(
        self,
        endpoint: Endpoint,
        shadows: builtins.list[_Serving],
        request_id: str,
        instances: builtins.list[dict[str, Any]],
        params: dict[str, Any],
    ) -> None:
        with self._lock:
            if self._shadow_pool is None:
                self._shadow_pool = ThreadPoolExecutor(2, thread_name_prefix="shipyard-shadow")
            pool = self._shadow_pool
        for serving in shadows:
            with self._lock:
                if self._shadow_pending >= _SHADOW_BACKLOG:
                    self.shadow_dropped += 1
                    continue
                self._shadow_pending += 1
            pool.submit(self._run_shadow, endpoint, serving, request_id, instances, params)

    def _run_shadow(
        self,
        endpoint: Endpoint,
        serving: _Serving,
        request_id: str,
        instances: builtins.list[dict[str, Any]],
        params: dict[str, Any],
    ) -> None:
        started = time.perf_counter()
        try:
            table = serving.schema.to_table(instances)
            output = self._model_call(
                serving,
                lambda: serving.batcher(
                    table, params.get("threshold"), timeout=endpoint.config.timeout_s
                ),
            )
            logged = serving.schema.logged(instances, table)
            predictions = output if output.num_rows >= DEFER_JSON_ROWS else output.to_pylist()
            self._observe(endpoint, serving, request_id, logged, predictions, started)
        except ShipyardError as exc:
            self._observe(endpoint, serving, request_id, instances, None, started, exc)
        except Exception as exc:  # never let a shadow take the pool down
            self._observe(
                endpoint, serving, request_id, instances, None, started, Internal(str(exc))
            )
        finally:
            with self._shadows_done:
                self._shadow_pending -= 1
                self._shadows_done.notify_all()

    def _observe(
        self,
        endpoint: Endpoint,
        serving: _Serving,
        request_id: str,
        instances: builtins.list[dict[str, Any]] | pa.Table,
        predictions: builtins.list[dict[str, Any]] | pa.Table | None,
        started: float,
        error: ShipyardError | None = None,
    ) -> None:
        """Counts the request in the metrics and logs it (instances and predictions: the
        request's objects, or Arrow tables that the log writes as JSON off the serving thread)."""
        latency = time.perf_counter() - started
        status = 200 if error is None else error.http_status
        d = serving.deployment
        if self.metrics is not None:
            rows = instances.num_rows if isinstance(instances, pa.Table) else len(instances)
            self.metrics.observe(endpoint.name, d.id, status, latency, rows)
        if self.request_logs is None or endpoint.config.log_sample_rate <= 0:
            return
        self.request_logs(endpoint).record(
            request_id=request_id,
            deployment_id=d.id,
            model=d.model,
            model_version=d.version,
            shadow=d.shadow,
            instances=instances,
            predictions=[] if predictions is None else predictions,
            latency_ms=latency * 1000.0,
            status=status,
            error=None if error is None else error.message,
        )

    # -- feedback and A/B figures ----------------------------------------------------------

    def feedback(self, name: str, items: Any) -> int:
        """Attach ground truth to logged predictions (by ``requestId`` and instance index)."""
        self.get(name)
        return record_feedback(self.ctx.home, name, items)

    def stats(self, name: str) -> dict[str, dict[str, Any]]:
        """Per deployment: requests, errors and latency percentiles (ms) since this process
        started, counted across ``shipyard serve`` workers where they share a metrics folder."""
        self.get(name)
        figures = {} if self.metrics is None else dict(self.metrics.summary(name))
        runtime = self._runtimes.get(name)
        for deployment_id, serving in (runtime.serving if runtime else {}).items():
            entry = figures.setdefault(deployment_id, {"requests": 0, "errors": 0})
            entry["runtime"] = serving.runtime
            entry["runtime_reason"] = serving.runtime_reason
        return figures

    def compare(
        self,
        name: str,
        *,
        metric: str,
        deployments: builtins.list[str] | None = None,
        include_shadow: bool = False,
        confidence_level: float = 0.95,
    ) -> abtest.ABComparison:
        """Compare deployments on ``metric`` from the request logs joined with the feedback."""
        self.get(name)
        if self.request_logs is not None:
            self.request_logs.flush(name)
        return abtest.compare(
            self.ctx.warehouse,
            name,
            metric=metric,
            deployments=deployments,
            include_shadow=include_shadow,
            confidence_level=confidence_level,
        )

    def wait_for_shadows(self, timeout: float = 10.0) -> bool:
        """Wait until the shadow copies sent so far have been answered; False on timeout."""
        with self._shadows_done:
            return self._shadows_done.wait_for(lambda: self._shadow_pending == 0, timeout)

    def flush_logs(self, name: str | None = None) -> None:
        """Write buffered request logs now, shadows' answers included (they are written every
        second anyway)."""
        self.wait_for_shadows()
        if self.request_logs is not None:
            self.request_logs.flush(name)

    def close(self) -> None:
        with self._lock:
            pool, self._shadow_pool = self._shadow_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self.request_logs is not None:
            self.request_logs.close()
        self._runtimes.clear()
