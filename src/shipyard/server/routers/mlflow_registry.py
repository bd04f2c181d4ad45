"""MLflow 3's logged models and model registry, translated onto Shipyard's services.

* **Logged models** (``/api/2.0/mlflow/logged-models…``, what ``mlflow.<flavor>.log_model``
  creates): records of :class:`~shipyard.tracking.logged_models.LoggedModels`; their files are run
  artifacts under ``mlflow-artifacts:/<experiment>/models/<model id>/artifacts``.
* **Registered models ARE Shipyard registry models, versions ARE versions, aliases ARE aliases.**
  Registering (``model-versions/create``) copies the MLflow model folder byte for byte into the
  content-addressed registry as a version of flavor ``mlflow`` (model type ``MLFLOW_SKLEARN``,
  ``MLFLOW_PYFUNC``…, signature from ``MLmodel``, lineage to the source run) and records the edge
  ``runs/<id>`` → ``models/<name>/versions/<n>`` in the lineage graph. Its download URI is the
  registered copy (``mlflow-artifacts:/registry/<dataset.model>/<n>``), not the run's folder.

Names: Shipyard names models ``dataset.model`` in lower case. An MLflow name without a dot lives
in dataset ``mlflow`` (``iris-clf`` is ``mlflow.iris-clf`` in Shipyard); a dotted MLflow name is
the Shipyard name itself (``demo.churn``), so models trained in SQL are visible to MLflow too. The
client always sees back exactly the name it registered: names that Shipyard would change (upper
case, spaces, a ``mlflow.`` prefix, ``project.dataset.model``) are refused with
``INVALID_PARAMETER_VALUE`` and the name to use instead.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Request

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.metadata.service import model_version_uri
from shipyard.registry.entities import MLFLOW_FLAVOR, Lineage, Model, ModelVersion
from shipyard.server.routers import get_services
from shipyard.server.routers.mlflow import PREFIXES, MlflowRoute, _Args, _experiment, _ms
from shipyard.server.routers.mlflow_artifacts import REGISTRY_ROOT, registry_uri
from shipyard.services import Services
from shipyard.store.metadata import MAX_PAGE_SIZE
from shipyard.tracking.artifacts import ArtifactTree, check_artifact_path
from shipyard.tracking.logged_models import LoggedModel, LoggedModels
from shipyard.warehouse import QualifiedName

MLFLOW_DATASET = "mlflow"
MLMODEL = "MLmodel"

router = APIRouter(route_class=MlflowRoute, include_in_schema=False)


# -- names ---------------------------------------------------------------------------------------


def shipyard_name(name: str | None) -> str:
    """The Shipyard model an MLflow registered-model name is (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("missing value for required parameter 'name'")
    wanted = name if "." in name else f"{MLFLOW_DATASET}.{name}"
    try:
        qname = QualifiedName.parse(wanted, kind="model")
    except InvalidArgument:
        raise InvalidArgument(
            f"invalid registered model name {name!r}: use letters, digits, '_' and '-' "
            "(starting with a letter or '_'), optionally as 'dataset.model'"
        ) from None
    if "." in name and qname.dataset == MLFLOW_DATASET:
        raise InvalidArgument(
            f"invalid registered model name {name!r}: dataset '{MLFLOW_DATASET}' holds the "
            f"models registered under plain names; call it {qname.name!r}"
        )
    if str(qname) != wanted:
        suggestion = qname.name if "." not in name else str(qname)
        raise InvalidArgument(
            f"invalid registered model name {name!r}: Shipyard model names are lower case "
            f"and case-insensitive; register it as {suggestion!r}"
        )
    return str(qname)


def mlflow_name(shipyard: str) -> str:
    dataset, _, model = shipyard.partition(".")
    return model if dataset == MLFLOW_DATASET else shipyard


# -- JSON ----------------------------------------------------------------------------------------


def _version_json(mv: ModelVersion, options: dict[str, Any] | None = None) -> dict[str, Any]:
    created = _ms(mv.created_at)
    mlflow_meta = (options or {}).get("mlflow", {})
    out: dict[str, Any] = {
        "name": mlflow_name(mv.model),
        "version": str(mv.version),
        "creation_timestamp": created,
        "last_updated_timestamp": created,
        "current_stage": "None",
        "description": mlflow_meta.get("description") or "",
        "source": mlflow_meta.get("source") or f"shipyard:{mv.resource}",
        "status": "READY",
        "aliases": list(mv.aliases),
        "tags": [{"key": k, "value": v} for k, v in (mlflow_meta.get("tags") or {}).items()],
    }
    if mv.lineage.run_id:
        out["run_id"] = mv.lineage.run_id
    if mlflow_meta.get("model_id"):
        out["model_id"] = mlflow_meta["model_id"]
    return out


def _model_json(services: Services, model: Model) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": mlflow_name(model.name),
        "creation_timestamp": _ms(model.created_at),
        "last_updated_timestamp": _ms(model.updated_at),
        "description": model.description or "",
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model.aliases.items())],
        "tags": [{"key": k, "value": v} for k, v in model.labels.items()],
    }
    if model.latest_version:
        out["latest_versions"] = [_version(services, model.name, model.latest_version)]
    return out


def _version(services: Services, name: str, version: int) -> dict[str, Any]:
    mv = services.models.get_version(name, version)
    manifest = services.models.manifest(name, version)
    return _version_json(mv, manifest.options)


def _logged_model_json(model: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "creation_timestamp_ms": model.created_ms,
        "last_updated_timestamp_ms": model.updated_ms,
        "artifact_uri": f"mlflow-artifacts:/{model.artifact_path}",
        "status": f"LOGGED_MODEL_{'UPLOAD_FAILED' if model.status == 'FAILED' else model.status}",
        "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
    }
    if model.model_type:
        info["model_type"] = model.model_type
    if model.source_run_id:
        info["source_run_id"] = model.source_run_id
    if model.status_message:
        info["status_message"] = model.status_message
    params = [{"key": k, "value": v} for k, v in model.params.items()]
    return {"info": info, "data": {"params": params, "metrics": []}}


def _version_number(args: _Args) -> int:
    text = args.get_str("version", required=True) or ""
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgument(f"invalid model version {text!r}: expected an integer >= 1")
    return int(text)


def _logged_models(services: Services) -> LoggedModels:
    return LoggedModels(services.tracking)


# -- logged models -------------------------------------------------------------------------------


async def create_logged_model(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    exp = _experiment(services.tracking, args.get_str("experiment_id") or "0")
    model = _logged_models(services).create(
        exp.id,
        args.get_str("name") or "model",
        source_run_id=args.get_str("source_run_id"),
        model_type=args.get_str("model_type"),
        params=args.key_values("params"),
        tags=args.key_values("tags"),
    )
    return {"model": _logged_model_json(model)}


async def get_logged_model(model_id: str, request: Request) -> dict[str, Any]:
    model = _logged_models(get_services(request)).get(model_id)
    return {"model": _logged_model_json(model)}


async def finalize_logged_model(model_id: str, request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    status = (args.get_str("status") or "LOGGED_MODEL_READY").removeprefix("LOGGED_MODEL_")
    status = {"UPLOAD_FAILED": "FAILED", "2": "READY", "3": "FAILED", "1": "PENDING"}.get(
        status, status
    )
    model = _logged_models(get_services(request)).finalize(model_id, status)
    return {"model": _logged_model_json(model)}


async def delete_logged_model(model_id: str, request: Request) -> dict[str, Any]:
    _logged_models(get_services(request)).delete(model_id)
    return {}


async def set_logged_model_tags(model_id: str, request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    _logged_models(get_services(request)).set_tags(model_id, args.key_values("tags"))
    return {}


async def delete_logged_model_tag(model_id: str, tag_key: str, request: Request) -> dict[str, Any]:
    _logged_models(get_services(request)).delete_tag(model_id, tag_key)
    return {}


async def log_logged_model_params(model_id: str, request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    _logged_models(get_services(request)).log_params(model_id, args.key_values("params"))
    return {}


_CLAUSE = re.compile(r"^\s*(name|source_run_id)\s*=\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE)


def _logged_model_filter(text: str | None) -> dict[str, str]:
    """``name = '…' AND source_run_id = '…'``: the filters MLflow's own client sends."""
    found: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", text or "", flags=re.IGNORECASE):
        if not clause.strip():
            continue
        match = _CLAUSE.match(clause)
        if match is None:
            raise Unsupported(
                f"logged model filter {text!r} is not supported: Shipyard filters logged models "
                "by name = '…' and source_run_id = '…' only"
            )
        found[match.group(1).lower()] = match.group(2).replace("''", "'")
    return found


async def search_logged_models(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    ids = [_experiment(services.tracking, str(i)).id for i in args.get_list("experiment_ids")]
    where = _logged_model_filter(args.get_str("filter"))
    found = _logged_models(services).search(
        ids, name=where.get("name"), source_run_id=where.get("source_run_id")
    )
    start, size = _offset(args), min(args.get_int("max_results") or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    out: dict[str, Any] = {"models": [_logged_model_json(m) for m in found[start : start + size]]}
    if start + size < len(found):
        out["next_page_token"] = str(start + size)
    return out


async def log_outputs(request: Request) -> dict[str, Any]:
    """A run's output models: the run must exist; the link is the logged model's
    ``source_run_id`` (and, once registered, the lineage edge)."""
    args = await _Args.of(request)
    services = get_services(request)
    services.tracking.get_run(args.run_id())
    for item in args.get_list("models"):
        model_id = item.get("model_id") if isinstance(item, dict) else None
        _logged_models(services).get(str(model_id))
    return {}


# -- registered models ---------------------------------------------------------------------------


async def create_registered_model(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    if args.key_values("tags"):
        raise Unsupported("registered model tags are not supported by Shipyard yet")
    name = shipyard_name(args.get_str("name"))
    model = services.models.create(name, description=args.get_str("description"))
    return {"registered_model": _model_json(services, model)}


async def get_registered_model(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    model = services.models.get(shipyard_name(args.get_str("name")))
    return {"registered_model": _model_json(services, model)}


async def delete_registered_model(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    services.models.delete(shipyard_name(args.get_str("name")))
    return {}


_MODEL_CLAUSE = re.compile(
    r"^\s*(name|tags?\.(?:`[^`]+`|\"[^\"]+\"|[\w.]+))\s*(!=|=|\blike\b|\bilike\b)\s*'((?:[^']|'')*)'\s*$",
    re.IGNORECASE,
)


def _model_matcher(text: str | None) -> Callable[[Model], bool]:
    """Clauses ``name|tag.<key> (= | != | LIKE | ILIKE) '…'`` joined by AND (MLflow's client adds
    ``tag.`mlflow.prompt.is_prompt` != 'true'`` itself). A missing tag is unequal to any value."""
    tests: list[Callable[[Model], bool]] = []
    for clause in re.split(r"\s+and\s+", text or "", flags=re.IGNORECASE):
        if not clause.strip():
            continue
        match = _MODEL_CLAUSE.match(clause)
        if match is None:
            raise Unsupported(
                f"registered model filter {text!r} is not supported: use clauses name or "
                "tag.<key> with =, !=, LIKE or ILIKE and a quoted value, joined by AND"
            )
        tests.append(_clause_test(match.group(1), match.group(2).lower(), match.group(3)))
    return lambda model: all(test(model) for test in tests)


def _clause_test(field: str, op: str, raw: str) -> Callable[[Model], bool]:
    value = raw.replace("''", "'")
    if field.lower() == "name":

        def get(model: Model) -> str | None:
            return mlflow_name(model.name)
    else:
        key = field.split(".", 1)[1].strip('`"')

        def get(model: Model) -> str | None:
            return model.labels.get(key)

    if op in ("=", "!="):
        equal = op == "="
        return lambda model: (get(model) == value) == equal
    pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in value)
    regex = re.compile(f"^{pattern}$", re.IGNORECASE if op == "ilike" else 0)
    return lambda model: (v := get(model)) is not None and regex.match(v) is not None


async def search_registered_models(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    if args.get_list("order_by"):
        raise Unsupported("ordering registered models is not supported: they come sorted by name")
    matches = _model_matcher(args.get_str("filter"))
    models: list[Model] = []
    token: str | None = None
    while True:  # registries are small: filter them all, then page by offset
        page = services.models.list(page_size=MAX_PAGE_SIZE, page_token=token)
        models += [m for m in page.items if matches(m)]
        token = page.next_page_token
        if token is None:
            break
    start, size = _offset(args), min(args.get_int("max_results") or 100, MAX_PAGE_SIZE)
    out: dict[str, Any] = {
        "registered_models": [_model_json(services, m) for m in models[start : start + size]]
    }
    if start + size < len(models):
        out["next_page_token"] = str(start + size)
    return out


def _offset(args: _Args) -> int:
    token = args.get_str("page_token")
    if token is None:
        return 0
    if not token.isdigit():
        raise InvalidArgument(f"invalid page_token {token!r}")
    return int(token)


async def get_latest_versions(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    model = services.models.get(shipyard_name(args.get_str("name")))
    stages = [str(s).lower() for s in args.get_list("stages")]
    if not model.latest_version or (stages and "none" not in stages):
        return {"model_versions": []}  # versions have no stage but "None"
    return {"model_versions": [_version(services, model.name, model.latest_version)]}


async def set_alias(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    name = shipyard_name(args.get_str("name"))
    services.models.set_alias(
        name, args.get_str("alias", required=True) or "", _version_number(args)
    )
    return {}


async def delete_alias(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    services.models.delete_alias(
        shipyard_name(args.get_str("name")), args.get_str("alias", required=True) or ""
    )
    return {}


async def get_version_by_alias(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    name = shipyard_name(args.get_str("name"))
    mv = services.models.get_version(name, alias=args.get_str("alias", required=True))
    return {"model_version": _version(services, name, mv.version)}


# -- model versions ------------------------------------------------------------------------------


async def create_model_version(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    mv = register_mlflow_model(
        services,
        shipyard_name(args.get_str("name")),
        args.get_str("source", required=True) or "",
        run_id=args.get_str("run_id"),
        model_id=args.get_str("model_id"),
        description=args.get_str("description"),
        tags=args.key_values("tags"),
    )
    return {"model_version": _version(services, mv.model, mv.version)}


async def get_model_version(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    name = shipyard_name(args.get_str("name"))
    return {"model_version": _version(services, name, _version_number(args))}


async def get_download_uri(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    name = shipyard_name(args.get_str("name"))
    mv = services.models.get_version(name, _version_number(args))
    if mv.flavor != MLFLOW_FLAVOR:
        raise Unsupported(
            f"model {mv.model} version {mv.version} was trained by Shipyard (flavor "
            f"{mv.flavor!r}), not logged with MLflow: load it with ws.models.load"
        )
    return {"artifact_uri": registry_uri(mv.model, mv.version)}


async def search_model_versions(request: Request) -> dict[str, Any]:
    args = await _Args.of(request)
    services = get_services(request)
    text = args.get_str("filter") or ""
    match = re.match(r"^\s*name\s*=\s*'((?:[^']|'')*)'\s*$", text, re.IGNORECASE)
    if match is None:
        raise Unsupported(
            f"model version filter {text!r} is not supported: use name = '<registered model>'"
        )
    name = shipyard_name(match.group(1).replace("''", "'"))
    page = services.models.versions(
        name,
        page_size=min(args.get_int("max_results") or 100, MAX_PAGE_SIZE),
        page_token=args.get_str("page_token"),
    )
    out: dict[str, Any] = {
        "model_versions": [_version(services, name, v.version) for v in page.items]
    }
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


# -- registering ---------------------------------------------------------------------------------


def register_mlflow_model(
    services: Services,
    name: str,
    source: str,
    *,
    run_id: str | None = None,
    model_id: str | None = None,
    description: str | None = None,
    tags: dict[str, Any] | None = None,
) -> ModelVersion:
    """Copy the MLflow model at ``source`` into the registry as the next version of ``name``
    and record the lineage edge from its run."""
    tree = ArtifactTree(services.ctx.artifacts)
    folder, source_run = _source_folder(services, source, model_id)
    run_id = run_id or source_run
    if run_id:
        services.tracking.get_run(run_id)  # NotFound for a run that does not exist
    if not tree.is_file(f"{folder}/{MLMODEL}"):
        raise InvalidArgument(f"source {source!r} is not an MLflow model: it has no {MLMODEL} file")
    mlmodel_text = _read_text(tree, f"{folder}/{MLMODEL}")
    with tempfile.TemporaryDirectory(prefix="shipyard-mlflow-") as tmp:
        local = Path(tmp)
        for f in tree.walk(folder):
            tree.download(f.path, local / f.path[len(folder) + 1 :])
        manifest = _manifest_fields(mlmodel_text)
        manifest["lineage"] = Lineage(run_id=run_id).model_dump()
        manifest["options"] = {
            "mlflow": {
                "source": source,
                "model_id": model_id or _mlmodel_field(mlmodel_text, "model_id"),
                "description": description,
                "tags": {str(k): str(v) for k, v in (tags or {}).items()},
            }
        }
        mv = services.models.register_files(name, local, flavor=MLFLOW_FLAVOR, manifest=manifest)
    if run_id:
        output = model_version_uri(mv.model, mv.version)
        services.metadata.record_execution(
            "mlflow_register_model",
            "REGISTER_MODEL",
            {"source": source, "model_id": model_id},
            inputs=[f"runs/{run_id}"],
            outputs=[output],
            artifact_properties={output: {"model_type": mv.model_type}},
        )
    return mv


def _source_folder(services: Services, source: str, model_id: str | None) -> tuple[str, str | None]:
    """The artifact-tree folder holding the model at ``source``, and the run it came from."""
    parsed = urlparse(source)
    if parsed.scheme == "models" and model_id is None:
        model_id = parsed.path.lstrip("/") or parsed.netloc
    if parsed.scheme == "models" or (model_id and not parsed.scheme.startswith("mlflow")):
        logged = LoggedModels(services.tracking).get(model_id or "")
        return logged.artifact_path, logged.source_run_id
    if parsed.scheme == "runs":
        run_id, _, path = parsed.path.lstrip("/").partition("/")
        root = services.tracking.artifacts.run_root(run_id or parsed.netloc)
        rel = check_artifact_path(path)
        return (f"{root}/{rel}" if rel else root), run_id
    if parsed.scheme == "mlflow-artifacts":
        rel = check_artifact_path(parsed.path.lstrip("/"))
        if not rel or rel.split("/", 1)[0] == REGISTRY_ROOT:
            raise InvalidArgument(f"source {source!r} is not a run's or a logged model's folder")
        parts = rel.split("/")
        run = parts[1] if len(parts) > 2 and parts[2] == "artifacts" else None
        return rel, run
    raise Unsupported(
        f"model source {source!r} is not supported: register from runs:/<run id>/<path>, "
        "models:/<model id>, or an mlflow-artifacts:/ URI of this server"
    )


def _read_text(tree: ArtifactTree, rel: str) -> str:
    with tree.open(rel) as f:
        return f.read().decode("utf-8", errors="replace")


def _mlmodel(text: str) -> dict[str, Any]:
    try:
        import yaml  # MLflow's clients write MLmodel as YAML; PyYAML comes with them
    except ImportError:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"the {MLMODEL} file is not valid YAML: {exc}") from None
    return data if isinstance(data, dict) else {}


def _mlmodel_field(text: str, key: str) -> str | None:
    value = _mlmodel(text).get(key)
    return str(value) if value else None


_MLFLOW_TYPES = {
    "double": "double",
    "float": "float",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "binary": "binary",
    "datetime": "timestamp[ms]",
}


def _columns(spec: Any, default: str) -> list[dict[str, str]]:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return []
    out = []
    for i, col in enumerate(spec if isinstance(spec, list) else []):
        if not isinstance(col, dict):
            continue
        name = str(col.get("name") or (default if i == 0 else f"{default}_{i}"))
        if col.get("type") == "tensor":
            tensor = col.get("tensor-spec") or {}
            kind = f"tensor<{tensor.get('dtype')}>{tensor.get('shape')}"
        else:
            kind = _MLFLOW_TYPES.get(str(col.get("type")), str(col.get("type")))
        out.append({"name": name, "type": kind})
    return out


def _manifest_fields(mlmodel_text: str) -> dict[str, Any]:
    data = _mlmodel(mlmodel_text)
    raw_flavors = data.get("flavors")
    flavors: dict[str, Any] = raw_flavors if isinstance(raw_flavors, dict) else {}
    if not flavors:  # PyYAML missing: read the flavor names from the indented block
        block = re.search(r"^flavors:\n((?:[ \t]+.*\n?)+)", mlmodel_text, re.MULTILINE)
        names = re.findall(r"^  (\w+):", block.group(1), re.MULTILINE) if block else []
        flavors = {n: {} for n in names}
    native = [f for f in flavors if f != "python_function"]
    model_type = f"MLFLOW_{(native[0] if native else 'pyfunc').upper()}"
    raw_signature = data.get("signature")
    signature: dict[str, Any] = raw_signature if isinstance(raw_signature, dict) else {}
    if not data:  # PyYAML missing: the signature's JSON strings, single-quoted in YAML
        for key in ("inputs", "outputs"):
            found = re.search(rf"^  {key}: '((?:[^']|'')*)'$", mlmodel_text, re.MULTILINE)
            if found:
                signature[key] = found.group(1).replace("''", "'")
    return {
        "model_type": model_type,
        "task": "",
        "signature": {
            "inputs": _columns(signature.get("inputs"), "input"),
            "outputs": _columns(signature.get("outputs"), "output"),
        },
        "preprocessing": {},
        "flavor_meta": {
            "flavors": sorted(flavors),
            "mlflow_version": data.get("mlflow_version"),
            "files": [MLMODEL],
        },
    }


_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/logged-models", create_logged_model),
    ("POST", "/logged-models/search", search_logged_models),
    ("GET", "/logged-models/{model_id}", get_logged_model),
    ("PATCH", "/logged-models/{model_id}", finalize_logged_model),
    ("DELETE", "/logged-models/{model_id}", delete_logged_model),
    ("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag),
    ("POST", "/logged-models/{model_id}/params", log_logged_model_params),
    ("POST", "/runs/outputs", log_outputs),
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("DELETE", "/registered-models/delete", delete_registered_model),
    ("GET", "/registered-models/search", search_registered_models),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/registered-models/alias", set_alias),
    ("DELETE", "/registered-models/alias", delete_alias),
    ("GET", "/registered-models/alias", get_version_by_alias),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("GET", "/model-versions/get-download-uri", get_download_uri),
    ("GET", "/model-versions/search", search_model_versions),
]

for _prefix in PREFIXES:
    for _method, _path, _endpoint in _ROUTES:
        router.add_api_route(_prefix + _path, _endpoint, methods=[_method])
