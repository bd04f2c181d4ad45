"""Imported models: ``CREATE MODEL … OPTIONS(model_type='ONNX' | 'XGBOOST', model_path=…)``.

BigQuery ML imports a model trained elsewhere from Cloud Storage; Shipyard reads it from

* a local path: ``'/models/iris.onnx'``, ``'file:///models/iris.onnx'``, a path relative to the
  server's working directory, or a folder (``'/models/iris/'`` or ``'/models/iris/*'``) holding
  exactly one file of the model's format;
* the workspace's artifact store: ``'artifacts://<sha256>'`` (e.g. a file logged to a run).

The file is checked before anything is stored: an ONNX file must load in onnxruntime and have
tensor inputs and outputs only (BigQuery ML's rule); an XGBoost file (``.bst``, ``.json``,
``.ubj``) must load in XGBoost and have feature names, from the file or from ``INPUT(…)``.
The ONNX file is stored verbatim (flavor ``onnx``); the XGBoost booster in XGBoost's UBJSON
(flavor ``xgboost``). Imported models support ML.PREDICT (see
:mod:`shipyard.registry.imported` for the columns); other ML functions are refused.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlglot import exp

from shipyard.engine import JobContext
from shipyard.errors import InvalidArgument, NotFound, Unsupported
from shipyard.registry.entities import Lineage
from shipyard.registry.imported import IMPORTED_TASK, ImportedPredictor, onnx_io
from shipyard.registry.service import NewVersion
from shipyard.sql.dialect import ShipyardBigQuery, literal_value, statement_model_type, table_name
from shipyard.sql.entities import QueryResult
from shipyard.warehouse import QualifiedName

if TYPE_CHECKING:
    from shipyard.sql.service import SqlService

__all__ = [
    "IMPORTED_FUNCTIONS",
    "IMPORTED_MODEL_TYPES",
    "create_imported_model",
    "is_imported",
    "refuse_imported",
    "xgboost_feature_importance",
]

#: model_type → the file extensions it reads.
IMPORTED_MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "ONNX": (".onnx",),
    "XGBOOST": (".bst", ".json", ".ubj", ".model"),
}
#: The ML functions BigQuery ML supports on each imported model type.
IMPORTED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "ONNX": ("PREDICT",),
    "XGBOOST": ("PREDICT", "FEATURE_IMPORTANCE"),
}
_OPTIONS = ("model_type", "model_path", "kms_key_name", "description")
_NUMERIC = ("INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC")


def is_imported(statement: exp.Create) -> bool:
    """Whether a CREATE MODEL imports a model. INPUT/OUTPUT on another type is refused here."""
    model_type = statement_model_type(statement)
    if model_type in IMPORTED_MODEL_TYPES:
        return True
    properties = statement.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.InputModelProperty | exp.OutputModelProperty):
            raise InvalidArgument(
                f"INPUT(…)/OUTPUT(…) apply to imported models (model_type='XGBOOST' or 'ONNX'), "
                f"not to model_type {model_type!r}; a trained model's columns come from its "
                "query"
            )
    return False


def _clauses(
    statement: exp.Create,
) -> tuple[dict[str, Any], list[tuple[str, str]] | None, list[tuple[str, str]] | None]:
    options: dict[str, Any] = {}
    inputs = outputs = None
    properties = statement.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.InputModelProperty | exp.OutputModelProperty):
            fields = [
                (c.name, c.args["kind"].sql(dialect=ShipyardBigQuery).upper())
                for c in prop.this.expressions
                if isinstance(c, exp.ColumnDef)
            ]
            if isinstance(prop, exp.InputModelProperty):
                inputs = fields
            else:
                outputs = fields
            continue
        if type(prop) is not exp.Property:
            raise Unsupported(
                f"CREATE MODEL does not support {prop.sql(dialect=ShipyardBigQuery)!r} for "
                "imported models"
            )
        key = prop.name.lower()
        if key in options:
            raise InvalidArgument(f"option {key!r} is given twice")
        options[key] = literal_value(prop.args["value"])
    for side, clause in (("INPUT", inputs), ("OUTPUT", outputs)):
        names = [n.lower() for n, _ in clause or []]
        if clause is not None and not clause:
            raise InvalidArgument(f"{side}(…) lists no columns")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidArgument(f"{side}(…) lists {dup} more than once")
    return options, inputs, outputs


def _resolve_path(service: SqlService, model_type: str, value: Any, tmp: Path) -> Path:
    """The local file ``model_path`` names (an artifact is downloaded into ``tmp``)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(
            f"model_type='{model_type}' needs OPTIONS(model_path='…'): a local file or folder, "
            "'file:///…' or 'artifacts://<sha256>'"
        )
    text = value.strip()
    extensions = IMPORTED_MODEL_TYPES[model_type]
    if text.startswith("artifacts://"):
        digest = text[len("artifacts://") :]
        if not service.ctx.artifacts.exists(digest):
            raise NotFound(f"model_path {text!r}: no artifact with that sha256 in this workspace")
        return service.ctx.artifacts.download(digest, tmp / f"model{extensions[0]}")
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise Unsupported(
            f"model_path {value!r}: Shipyard reads imported models from a local path, "
            "'file:///…' or 'artifacts://<sha256>', not from "
            f"{text.split('://', 1)[0]}:// storage; copy the file first"
        )
    path = Path(text[:-2] if text.endswith("/*") else text).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in extensions)
        if len(found) != 1:
            raise InvalidArgument(
                f"model_path {value!r} is a folder with {len(found)} {'/'.join(extensions)} "
                "files; it must hold exactly one (or name the file)"
            )
        return found[0]
    if not path.is_file():
        raise NotFound(f"model_path {value!r}: no such file")
    return path


def create_imported_model(
    service: SqlService, job: JobContext, statement: exp.Create, text: str
) -> QueryResult:
    """CREATE MODEL for model_type 'ONNX' or 'XGBOOST' (no training query)."""
    target = statement.this
    qname = QualifiedName.parse(table_name(target), kind="model")
    replace = bool(statement.args.get("replace"))
    if_not_exists = bool(statement.args.get("exists"))
    options, inputs, outputs = _clauses(statement)
    model_type = str(options["model_type"]).upper()
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidArgument(
            f"model_type='{model_type}' has no option {unknown[0]!r}; valid options: "
            + ", ".join(_OPTIONS)
        )
    if options.get("kms_key_name") is not None:
        raise Unsupported("kms_key_name: Shipyard does not encrypt models with Cloud KMS keys")
    if statement.expression is not None:
        raise InvalidArgument(
            f"CREATE MODEL {qname} imports a trained {model_type} model: it takes no "
            "AS SELECT … training query"
        )
    from shipyard.sql.create_model import (  # it imports this module
        existing_model,
        register_created,
    )

    existing = existing_model(service, qname, replace=replace, if_not_exists=if_not_exists)
    if existing is not None:
        return existing
    with tempfile.TemporaryDirectory(prefix="shipyard-import-") as tmp:
        path = _resolve_path(service, model_type, options.get("model_path"), Path(tmp))
        job.log(f"importing {model_type} model from {path}")
        source_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        if model_type == "ONNX":
            model, flavor, config = _read_onnx(path, inputs, outputs)
        else:
            model, flavor, config = _read_xgboost(path, inputs, outputs)
    predictor = ImportedPredictor(None, flavor, config)
    manifest = {
        "model_type": model_type,
        "task": IMPORTED_TASK,
        "label": None,
        "feature_columns": [s["name"] for s in predictor.input_schema],
        "signature": predictor.signature,
        "preprocessing": {},
        "predictor_config": config,
        "options": {k: v for k, v in options.items() if v is not None},
        "lineage": Lineage(statement=text, job_id=job.job_id),
    }
    return register_created(
        service,
        qname,
        NewVersion(model=model, flavor=flavor, manifest=manifest),
        replace=replace,
        if_not_exists=if_not_exists,
        job=job,
        text=text,
        inputs=[],
        properties={
            "model_type": model_type,
            "model_path": str(options.get("model_path")),
            "source_sha256": source_sha256,
        },
        description=options.get("description"),
        what=f" (imported {model_type})",
    )


# -- ONNX ---------------------------------------------------------------------------------------


def _compatible(sql_type: str, bq_type: str) -> bool:
    if bq_type == "FLOAT64":
        return sql_type in _NUMERIC
    if bq_type == "INT64":
        return sql_type in ("INT64", "BOOL")
    return sql_type == bq_type


def _read_onnx(
    path: Path,
    inputs: list[tuple[str, str]] | None,
    outputs: list[tuple[str, str]] | None,
) -> tuple[bytes, str, dict[str, Any]]:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - depends on the environment
        raise Unsupported(
            "model_type='ONNX' needs onnxruntime: pip install 'shipyard[onnx]'"
        ) from None
    data = path.read_bytes()
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidArgument(
            f"model_path {str(path)!r} is not an ONNX model onnxruntime can load: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
    graph_inputs, graph_outputs = onnx_io(session)
    config: dict[str, Any] = {"kind": "onnx", "inputs": graph_inputs, "outputs": graph_outputs}
    if inputs is not None:
        config.update(_onnx_input_clause(graph_inputs, inputs))
    if outputs is not None:
        by_name = {o["name"].lower(): o for o in graph_outputs}
        kept = []
        for name, sql_type in outputs:
            spec = by_name.get(name.lower())
            if spec is None:
                raise InvalidArgument(
                    f"OUTPUT column {name!r} is not an output of the ONNX graph; its outputs: "
                    + ", ".join(f"{o['name']} {_sql_type(o)}" for o in graph_outputs)
                )
            if sql_type != _sql_type(spec):
                raise InvalidArgument(
                    f"OUTPUT column {name!r} is {sql_type}, but the ONNX graph's output "
                    f"{spec['name']!r} is {_sql_type(spec)} ({spec['element']}, shape "
                    f"{spec['shape']})"
                )
            kept.append(spec)
        config["outputs"] = kept
    return data, "onnx", config


def _sql_type(spec: dict[str, Any]) -> str:
    return spec["bq_type"] if spec["kind"] != "array" else f"ARRAY<{spec['bq_type']}>"


def _onnx_input_clause(
    graph_inputs: list[dict[str, Any]], fields: list[tuple[str, str]]
) -> dict[str, Any]:
    """INPUT(…) for an ONNX graph: per-input columns, or the columns of one stacked tensor."""
    described = ", ".join(f"{i['name']} {_sql_type(i)} (shape {i['shape']})" for i in graph_inputs)
    if len(graph_inputs) == 1 and graph_inputs[0]["kind"] == "array" and len(fields) > 1:
        spec = graph_inputs[0]
        if spec["width"] is not None and spec["width"] != len(fields):
            raise InvalidArgument(
                f"INPUT(…) lists {len(fields)} columns, but the ONNX graph's input "
                f"{spec['name']!r} takes {spec['width']} values per row (shape {spec['shape']})"
            )
        for name, sql_type in fields:
            if not _compatible(sql_type, spec["bq_type"]):
                raise InvalidArgument(
                    f"INPUT column {name!r} is {sql_type}, but the ONNX graph's input "
                    f"{spec['name']!r} is a tensor of {spec['element']} ({spec['bq_type']})"
                )
        return {
            "features": [n for n, _ in fields],
            "feature_types": [t for _, t in fields],
        }
    by_name = {i["name"].lower(): i for i in graph_inputs}
    names = {n.lower() for n, _ in fields}
    if names != set(by_name):
        raise InvalidArgument(
            f"INPUT(…) must name the ONNX graph's inputs ({described}); got "
            + ", ".join(n for n, _ in fields)
        )
    for name, sql_type in fields:
        spec = by_name[name.lower()]
        wanted = _sql_type(spec)
        base = sql_type[6:-1] if sql_type.startswith("ARRAY<") else sql_type
        array_ok = (spec["kind"] == "array") == sql_type.startswith("ARRAY<")
        if not array_ok or not _compatible(base, spec["bq_type"]):
            raise InvalidArgument(
                f"INPUT column {name!r} is {sql_type}, but the ONNX graph's input "
                f"{spec['name']!r} takes {wanted} ({spec['element']}, shape {spec['shape']})"
            )
    return {}


# -- XGBoost ------------------------------------------------------------------------------------


def _read_xgboost(
    path: Path,
    inputs: list[tuple[str, str]] | None,
    outputs: list[tuple[str, str]] | None,
) -> tuple[Any, str, dict[str, Any]]:
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise InvalidArgument(
            f"model_path {str(path)!r} is not an XGBoost model file XGBoost can load "
            f"(BST, JSON or UBJSON): {str(exc).strip().splitlines()[-1][:300]}"
        ) from None
    n = booster.num_features()
    file_names = list(booster.feature_names or [])
    file_types = list(booster.feature_types or [])
    if inputs is None:
        if not file_names or not file_types:
            raise InvalidArgument(
                "this XGBoost model file has no feature_names and feature_types; give the "
                f"{n} input columns with INPUT(f1 FLOAT64, …) OUTPUT(predicted_label FLOAT64)"
            )
        features = file_names
        types = ["INT64" if t in ("int", "i", "c") else "FLOAT64" for t in file_types]
    else:
        if len(inputs) != n:
            raise InvalidArgument(
                f"INPUT(…) lists {len(inputs)} columns, but the XGBoost model takes {n} features"
            )
        bad = [(name, t) for name, t in inputs if t not in _NUMERIC]
        if bad:
            raise InvalidArgument(
                f"INPUT column {bad[0][0]!r} is {bad[0][1]}; XGBoost model inputs must be "
                f"numeric ({', '.join(_NUMERIC)})"
            )
        features = [name for name, _ in inputs]
        types = [t for _, t in inputs]
        if file_names and features != file_names:
            raise InvalidArgument(
                "INPUT(…) column names must be the model file's feature_names, in order: "
                + ", ".join(file_names)
            )
    probe = np.asarray(booster.inplace_predict(np.zeros((1, n), dtype=np.float32)))
    width = int(probe.size)
    output = "predicted_label"
    if outputs is not None:
        if len(outputs) != 1:
            raise InvalidArgument(
                "an imported XGBoost model has a single output: OUTPUT(predicted_label FLOAT64)"
            )
        output, sql_type = outputs[0]
        wanted = "FLOAT64" if width == 1 else "ARRAY<FLOAT64>"
        if sql_type != wanted:
            raise InvalidArgument(
                f"OUTPUT column {output!r} is {sql_type}, but this XGBoost model outputs "
                f"{width} value(s) per row: {wanted}"
            )
    config = {
        "kind": "xgboost",
        "features": features,
        "feature_types": [_ARROW_NAMES.get(t, "double") for t in types],
        "output": output,
        "output_width": width,
    }
    return booster, "xgboost", config


_ARROW_NAMES = {
    "INT64": "int64",
    "FLOAT64": "double",
    "NUMERIC": "decimal128(38, 9)",
    "BIGNUMERIC": "decimal256(76, 38)",
}


# -- ML functions -------------------------------------------------------------------------------


def refuse_imported(service: SqlService, function: str, model: str) -> None:
    """InvalidArgument when ``function`` does not apply to an imported model (as BigQuery ML)."""
    try:
        version = service.models.get_version(model)
    except (NotFound, InvalidArgument):
        return  # the handler reports it
    if version.task != IMPORTED_TASK:
        return
    allowed = IMPORTED_FUNCTIONS.get(version.model_type, ("PREDICT",))
    if function not in allowed:
        raise InvalidArgument(
            f"ML.{function} does not apply to model {model}: it is an imported "
            f"{version.model_type} model, which supports only "
            + ", ".join(f"ML.{f}" for f in allowed),
            model_type=version.model_type,
        )


def xgboost_feature_importance(predictor: Any) -> dict[str, dict[str, float]]:
    """ML.FEATURE_IMPORTANCE of an imported XGBoost model: per INPUT column, XGBoost's split
    count (importance_weight) and average gain and cover of its splits."""
    booster = predictor.model
    features = list(predictor.config["features"])
    names = booster.feature_names or [f"f{i}" for i in range(len(features))]
    weight = booster.get_score(importance_type="weight")
    gain = booster.get_score(importance_type="total_gain")
    cover = booster.get_score(importance_type="total_cover")
    out = {}
    for feature, name in zip(features, names, strict=True):
        w = float(weight.get(name, 0.0))
        out[feature] = {
            "importance_weight": w,
            "importance_gain": float(gain.get(name, 0.0)) / w if w else 0.0,
            "importance_cover": float(cover.get(name, 0.0)) / w if w else 0.0,
        }
    return out
