"""``/api/2.0/mlflow/...``: the MLflow tracking REST API, so an unmodified MLflow client
(``MLFLOW_TRACKING_URI=http://host:port``) logs into Shipyard.

A translation layer only: every route maps MLflow's JSON onto :class:`TrackingService` and back;
the rules (validation, write-once params, finished runs) are the service's. Shipyard errors leave
as MLflow's ``{"error_code", "message"}`` through the one table :data:`ERROR_CODES`. The same
routes answer under ``/ajax-api/2.0/mlflow/`` (MLflow's UI prefix). Artifacts (MLflow's proxied
artifact service) are in :mod:`.mlflow_artifacts`, logged models and the model registry in
:mod:`.mlflow_registry`; anything else under these prefixes (traces, prompts, datasets, webhooks,
stages, tags on registered models…) is a 501 ``NOT_IMPLEMENTED``, so a client fails loudly.

Mapping: experiment ids are Shipyard's experiment ids (MLflow's default experiment ``"0"`` is the
experiment named ``Default``, created on first use); the ``mlflow.parentRunId`` tag of a new run
also makes it a nested run of that parent; ``user_id`` is ``created_by``. Deleting an experiment
deletes it permanently (Shipyard has no trash); runs cannot be deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from shipyard.errors import AlreadyExists, InvalidArgument, NotFound, ShipyardError, Unsupported
from shipyard.server.routers import get_services
from shipyard.store.metadata import MAX_PAGE_SIZE
from shipyard.tracking.entities import Experiment, Run, RunStatus
from shipyard.tracking.service import MAX_HISTORY_PAGE, TrackingService

log = logging.getLogger("shipyard.server.mlflow")

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

#: Shipyard error code -> (MLflow error_code, HTTP status). The one place errors are mapped;
#: subclasses (SQL_ERROR, ARTIFACT_CORRUPTED...) fall back to their base class's entry.
#: A finished run is INVALID_PARAMETER_VALUE, as MLflow's own server answers.
ERROR_CODES: dict[str, tuple[str, int]] = {
    "INVALID_ARGUMENT": ("INVALID_PARAMETER_VALUE", 400),
    "NOT_FOUND": ("RESOURCE_DOES_NOT_EXIST", 404),
    "ALREADY_EXISTS": ("RESOURCE_ALREADY_EXISTS", 400),
    "FAILED_PRECONDITION": ("INVALID_PARAMETER_VALUE", 400),
    "PAYLOAD_TOO_LARGE": ("INVALID_PARAMETER_VALUE", 413),
    "UNAUTHENTICATED": ("UNAUTHENTICATED", 401),
    "PERMISSION_DENIED": ("PERMISSION_DENIED", 403),
    "UNSUPPORTED": ("NOT_IMPLEMENTED", 501),
    "UNAVAILABLE": ("TEMPORARILY_UNAVAILABLE", 503),
}
INTERNAL = ("INTERNAL_ERROR", 500)


def mlflow_error(error: ShipyardError) -> JSONResponse:
    code, status = INTERNAL
    for cls in type(error).__mro__:
        entry = ERROR_CODES.get(getattr(cls, "code", ""))
        if entry is not None:
            code, status = entry
            break
    return JSONResponse({"error_code": code, "message": error.message}, status_code=status)


class MlflowRoute(APIRoute):
    """Answers errors in MLflow's shape instead of Shipyard's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ShipyardError as exc:
                return mlflow_error(exc)
            except Exception:
                log.exception("internal error in %s %s", request.method, request.url.path)
                code, status = INTERNAL
                message = "internal error: the server could not complete the request"
                return JSONResponse({"error_code": code, "message": message}, status_code=status)

        return route


router = APIRouter(route_class=MlflowRoute, include_in_schema=False)


# -- request parsing -----------------------------------------------------------------------------


class _Args:
    """A request's fields: the JSON body of a POST, the query string of a GET."""

    def __init__(self, data: dict[str, Any], lists: dict[str, list[Any]]) -> None:
        self.data = data
        self.lists = lists

    @classmethod
    async def of(cls, request: Request) -> _Args:
        if request.method == "GET":
            q = request.query_params
            return cls({k: q[k] for k in q}, {k: q.getlist(k) for k in q})
        raw = await request.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise InvalidArgument(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return cls(data, {})

    def get_str(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise InvalidArgument(f"missing value for required parameter {name!r}")
            return None
        return str(value)

    def run_id(self) -> str:
        run_id = self.get_str("run_id") or self.get_str("run_uuid")
        if run_id is None:
            raise InvalidArgument("missing value for required parameter 'run_id'")
        return run_id

    def get_int(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidArgument(f"parameter {name!r} must be an integer, got {value!r}") from None

    def get_list(self, name: str) -> list[Any]:
        if name in self.lists:
            return self.lists[name]
        value = self.data.get(name)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    def key_values(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in self.get_list(name):
            if not isinstance(item, dict) or "key" not in item:
                raise InvalidArgument(f"each of {name!r} must be an object with 'key' and 'value'")
            out[item["key"]] = item.get("value", "")
        return out


def _tracking(request: Request) -> TrackingService:
    return get_services(request).tracking


# -- entities to MLflow's JSON -------------------------------------------------------------------


def _ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _experiment_json(exp: Experiment) -> dict[str, Any]:
    created = _ms(exp.created_at)
    tags = [{"key": str(k), "value": str(v)} for k, v in exp.tags.items()]
    if exp.description:
        tags.append({"key": "mlflow.note.content", "value": exp.description})
    return {
        "experiment_id": exp.id,
        "name": exp.name,
        "artifact_location": f"mlflow-artifacts:/{exp.id}",
        "lifecycle_stage": "active" if exp.lifecycle == "active" else "deleted",
        "creation_time": created,
        "last_update_time": created,
        "tags": tags,
    }


def _run_info(run: Run) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": run.experiment_id,
        "user_id": run.created_by or "",
        "status": run.status.value,
        "start_time": _ms(run.start_time),
        "artifact_uri": f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts",
        "lifecycle_stage": "active",
    }
    if run.end_time is not None:
        info["end_time"] = _ms(run.end_time)
    return info


def _run_json(run: Run) -> dict[str, Any]:
    tags = dict(run.tags)
    tags.setdefault(RUN_NAME_TAG, run.name)
    if run.parent_run_id is not None:
        tags.setdefault(PARENT_RUN_TAG, run.parent_run_id)
    return {
        "info": _run_info(run),
        "data": {
            # Runs carry each metric's latest value; its step and time are in get-history.
            "metrics": [{"key": k, "value": v} for k, v in run.metrics.items()],
            "params": [{"key": k, "value": v} for k, v in run.params.items()],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
        "inputs": {},
        "outputs": {},
    }


def _experiment(tracking: TrackingService, experiment_id: str) -> Experiment:
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        try:
            return tracking.get_experiment(DEFAULT_EXPERIMENT_NAME)
        except NotFound:
            try:
                return tracking.create_experiment(DEFAULT_EXPERIMENT_NAME)
            except AlreadyExists:  # created meanwhile by another request
                return tracking.get_experiment(DEFAULT_EXPERIMENT_NAME)
    return tracking.get_experiment_by_id(experiment_id)


# -- experiments ---------------------------------------------------------------------------------


async def create_experiment(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tags = args.key_values("tags")
    description = tags.pop("mlflow.note.content", None)
    exp = _tracking(request).create_experiment(
        args.get_str("name", required=True) or "", description=description, tags=tags
    )
    return {"experiment_id": exp.id}


async def get_experiment(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    exp = _experiment(_tracking(request), args.get_str("experiment_id", required=True) or "")
    return {"experiment": _experiment_json(exp)}


async def get_experiment_by_name(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    exp = _tracking(request).get_experiment(args.get_str("experiment_name", required=True) or "")
    return {"experiment": _experiment_json(exp)}


async def search_experiments(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    if args.get_str("filter") or args.get_list("order_by"):
        raise Unsupported(
            "searching experiments with a filter or order_by is not supported by Shipyard yet: "
            "list them all, or get one by name"
        )
    view = str(args.data.get("view_type") or "ACTIVE_ONLY")
    if view in ("DELETED_ONLY", "2"):  # deleting is permanent: nothing is ever in the trash
        return {"experiments": []}
    page = _tracking(request).list_experiments(
        page_size=min(args.get_int("max_results") or MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        page_token=args.get_str("page_token"),
    )
    out: dict[str, Any] = {"experiments": [_experiment_json(e) for e in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


async def delete_experiment(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tracking = _tracking(request)
    exp = _experiment(tracking, args.get_str("experiment_id", required=True) or "")
    tracking.delete_experiment(exp.name)
    return {}


async def update_experiment(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tracking = _tracking(request)
    exp = _experiment(tracking, args.get_str("experiment_id", required=True) or "")
    new_name = args.get_str("new_name")
    if new_name is not None:
        tracking.rename_experiment(exp.name, new_name)
    return {}


# -- runs ----------------------------------------------------------------------------------------


async def create_run(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tracking = _tracking(request)
    exp = _experiment(tracking, args.get_str("experiment_id") or DEFAULT_EXPERIMENT_ID)
    tags = args.key_values("tags")
    run = tracking.create_run(
        exp.name,
        name=args.get_str("run_name") or tags.get(RUN_NAME_TAG) or None,
        parent_run_id=tags.get(PARENT_RUN_TAG) or None,
        tags=tags,
        created_by=args.get_str("user_id"),
    )
    return {"run": _run_json(run)}


async def get_run(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    return {"run": _run_json(_tracking(request).get_run(args.run_id()))}


async def update_run(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tracking = _tracking(request)
    run_id = args.run_id()
    name = args.get_str("run_name")
    run = tracking.update_run(run_id, name=name) if name else tracking.get_run(run_id)
    status = args.get_str("status")
    if status is not None and status != RunStatus.RUNNING.value:
        run = tracking.end_run(run_id, status)
    elif status is not None and run.status.done:
        raise InvalidArgument(f"run {run_id} has ended ({run.status.value}): it cannot run again")
    return {"run_info": _run_info(run)}


async def delete_run(request: Request) -> dict[str, Any]:
    raise Unsupported("deleting runs is not supported by Shipyard: delete the experiment instead")


async def search_runs(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tracking = _tracking(request)
    view = str(args.data.get("run_view_type") or "ACTIVE_ONLY")
    if view in ("DELETED_ONLY", "2"):  # runs are never deleted
        return {"runs": []}
    names = [_experiment(tracking, str(i)).name for i in args.get_list("experiment_ids")]
    page = tracking.search_runs(
        names,
        translate_filter(args.get_str("filter")),
        [translate_filter(o) or "" for o in args.get_list("order_by")] or None,
        page_size=min(args.get_int("max_results") or MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        page_token=args.get_str("page_token"),
    )
    out: dict[str, Any] = {"runs": [_run_json(r) for r in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


# MLflow attribute names that Shipyard spells differently (MLflow's run_id, run_name, status,
# start_time and end_time are Shipyard's too).
_ATTRIBUTE_NAMES = {"user_id": "created_by"}


def translate_filter(text: str | None) -> str | None:
    """An MLflow filter or order-by clause in Shipyard's dialect (outside quoted strings)."""
    if not text:
        return None
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "'\"`":
            end = i + 1
            while end < len(text):
                if text[end] == ch:
                    if end + 1 < len(text) and text[end + 1] == ch:  # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            out.append(text[i : end + 1])
            i = end + 1
            continue
        if ch.isalpha() or ch == "_":
            end = i
            while end < len(text) and (text[end].isalnum() or text[end] in "_."):
                end += 1
            out.append(_translate_identifier(text[i:end]))
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _translate_identifier(word: str) -> str:
    entity, dot, name = word.partition(".")
    if not dot:
        return _ATTRIBUTE_NAMES.get(word, word)
    if entity.lower() in ("attribute", "attributes", "attr", "run"):
        return f"{entity}.{_ATTRIBUTE_NAMES.get(name, name)}"
    return word


# -- logging -------------------------------------------------------------------------------------


def _metric(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidArgument(f"invalid metric {item!r}: expected {{key, value, timestamp, step}}")
    step, ts = item.get("step"), item.get("timestamp")
    try:
        return {
            "key": item.get("key"),
            "value": item.get("value"),
            "step": int(step) if step not in (None, "") else 0,
            "timestamp": int(ts) if ts not in (None, "") else None,
        }
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid step or timestamp in metric {item!r}") from None


async def log_metric(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    _tracking(request).log_batch(args.run_id(), metrics=[_metric(args.data)])
    return {}


async def log_param(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    key = args.get_str("key", required=True) or ""
    _tracking(request).log_batch(args.run_id(), params={key: args.data.get("value", "")})
    return {}


async def set_tag(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    key = args.get_str("key", required=True) or ""
    tracking = _tracking(request)
    run_id = args.run_id()
    value = args.data.get("value", "")
    tracking.log_batch(run_id, tags={key: value})
    if key == RUN_NAME_TAG and value:  # MLflow renames a run through this tag
        tracking.update_run(run_id, name=str(value))
    return {}


async def log_batch(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    _tracking(request).log_batch(
        args.run_id(),
        metrics=[_metric(m) for m in args.get_list("metrics")],
        params=args.key_values("params"),
        tags=args.key_values("tags"),
    )
    return {}


async def get_metric_history(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    tracking = _tracking(request)
    run_id = args.run_id()
    key = args.get_str("metric_key", required=True) or ""
    max_results = args.get_int("max_results")
    token = args.get_str("page_token")
    points: list[dict[str, Any]] = []
    while True:  # MLflow's client expects every point unless it asks for a page
        size = min(max_results - len(points), MAX_HISTORY_PAGE) if max_results else MAX_HISTORY_PAGE
        page = tracking.metric_history(run_id, key, page_size=size, page_token=token)
        points += [p.model_dump() for p in page.items]
        token = page.next_page_token
        if token is None or (max_results and len(points) >= max_results):
            break
    out: dict[str, Any] = {"metrics": points}
    if token:
        out["next_page_token"] = token
    return out


async def not_implemented(request: Request) -> dict[str, Any]:
    raise Unsupported(
        f"{request.method} {request.url.path} is not implemented by Shipyard's MLflow-compatible "
        "API: it serves experiments, runs, params, metrics, tags, artifacts, logged models, "
        "registered models, versions and aliases (no traces, prompts, datasets, webhooks, "
        "stages or registered-model tags)"
    )


_ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[dict[str, Any]]]]] = [
    ("POST", "/experiments/create", create_experiment),
    ("GET", "/experiments/get", get_experiment),
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("POST", "/experiments/search", search_experiments),
    ("GET", "/experiments/search", search_experiments),
    ("POST", "/experiments/delete", delete_experiment),
    ("POST", "/experiments/update", update_experiment),
    ("POST", "/runs/create", create_run),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/update", update_run),
    ("POST", "/runs/delete", delete_run),
    ("POST", "/runs/search", search_runs),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/log-batch", log_batch),
    ("GET", "/metrics/get-history", get_metric_history),
]
_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]

for _prefix in PREFIXES:
    for _method, _path, _endpoint in _ROUTES:
        router.add_api_route(_prefix + _path, _endpoint, methods=[_method])
for _prefix in (*PREFIXES, "/api/2.0/mlflow-artifacts", "/api/3.0/mlflow", "/ajax-api/3.0/mlflow"):
    router.add_api_route(_prefix + "/{rest:path}", not_implemented, methods=_ANY)
