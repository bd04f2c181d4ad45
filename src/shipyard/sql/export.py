"""``EXPORT MODEL m OPTIONS(uri='/local/folder' [, format='NATIVE' | 'ONNX'])``.

BigQuery ML writes a model's files under a Cloud Storage prefix (``uri``); Shipyard writes them to
a local folder (``'/path'`` or ``'file:///path'``), which must not exist yet or be empty:

* the model's files exactly as the registry stores them (verified by sha256): ``model.ubj``
  (XGBoost, for boosted trees and random forests), ``model.skops`` (scikit-learn), ``model.txt``
  (LightGBM), ``model.onnx`` (an imported ONNX model, byte for byte);
* ``manifest.json``: the version's manifest (preprocessing, label classes, signature, options);
* ``model.onnx`` for models that convert (``format='NATIVE'``, the default, writes it when it can;
  ``format='ONNX'`` fails when it cannot): LINEAR_REG, LOGISTIC_REG, BOOSTED_TREE_*,
  RANDOM_FOREST_*, KMEANS (EUCLIDEAN) and PCA trained on numeric columns only. The graph
  includes the model's preprocessing (NULL/NaN imputation and standardisation), so its one input
  ``input`` (``[batch, features]``, DOUBLE but FLOAT for trees, columns in ``manifest.json``'s
  ``feature_columns`` order; NaN for NULL) gives ML.PREDICT's values: regression ``variable``
  (``[batch, 1]``); classifiers ``label`` (the class, as ML.PREDICT's ``predicted_<label>``)
  and ``probabilities`` (``[batch, classes]``, ascending class order); KMEANS ``label`` (the
  1-based CENTROID_ID) and ``scores`` (the distance to each centroid); PCA ``variable``
  (``[batch, k]``: principal_component_1 … k). Models of those types with STRING, BOOL, DATE,
  TIME or TIMESTAMP features or a TRANSFORM clause convert too, with one input per raw column
  (``[batch, 1]``, an ARRAY column ``[batch, n]``; their encodings and the TRANSFORM's
  arithmetic are in the graph, see :mod:`shipyard.sql.onnx_graph`; text functions in
  :mod:`shipyard.sql.onnx_text`, which raise the graph to opset 20; ML.NORMALIZER and array
  elements in :mod:`shipyard.sql.onnx_arrays`); a TRANSFORM function with no ONNX form
  (ML.HASH_BUCKETIZE, …) is named in the Unsupported message.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sqlglot import exp

from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound, Unsupported
from shipyard.registry.entities import Manifest
from shipyard.sql import onnx_graph
from shipyard.sql.dialect import ExportModel, literal_value, table_name
from shipyard.sql.entities import QueryResult
from shipyard.warehouse import QualifiedName

if TYPE_CHECKING:
    from shipyard.sql.service import SqlService

__all__ = ["EXPORT_FORMATS", "export_model", "to_onnx"]

EXPORT_FORMATS = ("NATIVE", "ONNX")
_OPTIONS = ("uri", "format", "trial_id")
_LINEAR = ("LINEAR_REG", "LOGISTIC_REG")
_UNSUPERVISED = ("KMEANS", "PCA")
_TREES = (
    "BOOSTED_TREE_REGRESSOR",
    "BOOSTED_TREE_CLASSIFIER",
    "RANDOM_FOREST_REGRESSOR",
    "RANDOM_FOREST_CLASSIFIER",
)


def _folder(uri: Any) -> Path:
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument(
            "EXPORT MODEL needs OPTIONS(uri='/local/folder') (or 'file:///local/folder')"
        )
    text = uri.strip()
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise Unsupported(
            f"uri {uri!r}: Shipyard exports models to a local folder ('/path' or "
            f"'file:///path'), not to {text.split('://', 1)[0]}:// storage"
        )
    folder = Path(text[:-2] if text.endswith("/*") else text).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FailedPrecondition(
            f"uri {uri!r} is {'a non-empty folder' if folder.is_dir() else 'a file'}; "
            "EXPORT MODEL writes into a new or empty folder and never overwrites files"
        )
    return folder


def export_model(service: SqlService, statement: ExportModel) -> QueryResult:
    qname = QualifiedName.parse(table_name(statement.this), kind="model")
    options: dict[str, Any] = {}
    properties = statement.args.get("options")
    for prop in properties.expressions if properties is not None else []:
        if isinstance(prop, exp.FileFormatProperty):  # sqlglot reads format=… as its own node
            prop = exp.Property(this=exp.var("format"), value=prop.this)
        key = prop.name.lower()
        if key not in _OPTIONS:
            raise InvalidArgument(
                f"EXPORT MODEL has no option {key!r}; valid options: {', '.join(_OPTIONS)}"
            )
        if key in options:
            raise InvalidArgument(f"option {key!r} is given twice")
        options[key] = literal_value(prop.args["value"])
    if options.get("trial_id") is not None:
        raise Unsupported("EXPORT MODEL … trial_id is not supported yet: it exports the model")
    fmt = options.get("format", "NATIVE")
    if not isinstance(fmt, str) or fmt.upper() not in EXPORT_FORMATS:
        raise InvalidArgument(f"format {fmt!r} is not valid; valid: {', '.join(EXPORT_FORMATS)}")
    fmt = fmt.upper()
    folder = _folder(options.get("uri"))
    if not service.models.exists(str(qname)):
        raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
    version = service.models.get_version(str(qname))
    manifest = service.models.manifest(str(qname), version.version)

    onnx_bytes: bytes | None = None
    reason = ""
    if "model.onnx" not in manifest.files:
        try:
            predictor = service.models.load(str(qname), version.version)
            onnx_bytes = to_onnx(manifest, predictor.model)
        except Unsupported as exc:
            if fmt == "ONNX":
                raise
            reason = str(exc)

    # Write into a sibling temporary folder, then rename: a failed export leaves nothing.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for fname, digest in manifest.files.items():
            dest = tmp / fname
            dest.parent.mkdir(parents=True, exist_ok=True)
            service.ctx.artifacts.download(digest, dest)
        if onnx_bytes is not None:
            (tmp / "model.onnx").write_bytes(onnx_bytes)
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        if folder.exists():
            folder.rmdir()  # empty, checked above
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(p.name for p in folder.iterdir())
    message = f"exported model {qname} version {version.version} to {folder}: {', '.join(files)}"
    if reason:
        message += f" (no ONNX: {reason})"
    return QueryResult(pa.table({}), statement_type="EXPORT_MODEL", message=message)


# -- ONNX conversion ----------------------------------------------------------------------------


def to_onnx(manifest: Manifest, model: Any) -> bytes:
    """The ONNX graph (preprocessing + model) of a trained version; Unsupported if it has none."""
    model_type = manifest.model_type
    if model_type not in _LINEAR + _TREES + _UNSUPERVISED:
        raise Unsupported(
            f"{model_type} models do not convert to ONNX yet; convertible: "
            + ", ".join(_LINEAR + _TREES + _UNSUPERVISED)
        )
    if model_type == "KMEANS" and manifest.predictor_config.get("distance_type") == "COSINE":
        raise Unsupported("a KMEANS model with distance_type='COSINE' does not convert to ONNX")
    transform = manifest.predictor_config.get("transform")
    columns = manifest.preprocessing.get("columns") or []
    # All-numeric models without TRANSFORM keep the one-matrix input ``input``; the others
    # take one input per raw column (shipyard.sql.onnx_graph).
    numeric_only = not transform and all(c.get("kind") == "numeric" for c in columns)
    try:
        import onnx  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise Unsupported("the ONNX export needs onnx: pip install 'shipyard[onnx]'") from None
    classes = (manifest.label_info or {}).get("classes") if manifest.label_info else None
    double = model_type not in _TREES
    n = len(columns) if numeric_only else sum(onnx_graph.feature_width(c) for c in columns)
    if model_type in _LINEAR:
        graph = _sklearn_graph(model, n, classes)
    elif model_type in _UNSUPERVISED:
        graph = _sklearn_graph(model, n, None)
        if model_type == "KMEANS":  # label: the 1-based CENTROID_ID, as ML.PREDICT
            classes = list(range(1, len(model.cluster_centers_) + 1))
    else:
        graph = _xgboost_graph(model, n, classes)
    if numeric_only:
        pre = _preprocessing_graph(columns, double=double)
    else:
        _declare_ml_opset(graph)
        try:
            pre = onnx_graph.preprocessing_graph(
                manifest.preprocessing,
                transform,
                double=double,
                opsets={o.domain: o.version for o in graph.opset_import},
            )
        except onnx_graph.NotConvertible as exc:
            raise Unsupported(
                f"{exc} does not convert to ONNX; EXPORT MODEL … OPTIONS(format='NATIVE') (the "
                "default) still writes the model's own files"
            ) from None
        graph = _raise_opset(graph, _default_opset(pre))
    return _merge(pre, graph, classes).SerializeToString()  # type: ignore[no-any-return]


def _default_opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _raise_opset(model: Any, version: int) -> Any:
    """The model graph at default-domain opset ``version`` at least (the text operators of the
    preprocessing graph — StringSplit, StringConcat — need opset 20): onnx's version converter
    rewrites the nodes whose form changed (axes attributes that became inputs …)."""
    from onnx import helper, version_converter

    current = _default_opset(model)
    if current >= version:
        return model
    if not any(n.domain in ("", "ai.onnx") for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")]
        del model.opset_import[:]
        model.opset_import.extend([*kept, helper.make_opsetid("", version)])
        return model
    try:
        return version_converter.convert_version(model, version)
    except Exception as exc:  # the converter raises several kinds
        raise Unsupported(
            f"the model's ONNX graph (opset {current}) could not be raised to opset {version}, "
            f"which the TRANSFORM's text operators need: {exc}"
        ) from None


def _declare_ml_opset(model: Any) -> None:
    """The model graph imports ai.onnx.ml at a version with LabelEncoder's key/value maps
    (the preprocessing graph's string lookups); its own ml ops exist unchanged there."""
    from onnx import helper

    for entry in model.opset_import:
        if entry.domain == onnx_graph.ML_DOMAIN:
            entry.version = max(entry.version, onnx_graph.ML_OPSET)
            return
    model.opset_import.append(helper.make_opsetid(onnx_graph.ML_DOMAIN, onnx_graph.ML_OPSET))


def _preprocessing_graph(columns: list[dict[str, Any]], *, double: bool) -> Any:
    """input → impute NULL/NaN/±inf → (x - center) / scale → features."""
    from onnx import TensorProto, helper, numpy_helper

    dtype = np.float64 if double else np.float32
    elem = TensorProto.DOUBLE if double else TensorProto.FLOAT
    impute = np.array(
        [np.nan if c.get("impute") is None else c["impute"] for c in columns], dtype=dtype
    )
    center = np.array([c["center"] for c in columns], dtype=dtype)
    inv = np.array([1.0 / c["scale"] for c in columns], dtype=dtype)
    n = len(columns)
    nodes = [
        helper.make_node("IsNaN", ["input"], ["is_nan"]),
        helper.make_node("IsInf", ["input"], ["is_inf"]),
        helper.make_node("Or", ["is_nan", "is_inf"], ["missing"]),
        helper.make_node("Where", ["missing", "impute", "input"], ["imputed"]),
        helper.make_node("Sub", ["imputed", "center"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_scale"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shipyard_preprocessing",
        [helper.make_tensor_value_info("input", elem, [None, n])],
        [helper.make_tensor_value_info("features", elem, [None, n])],
        initializer=[
            numpy_helper.from_array(impute.reshape(1, n), "impute"),
            numpy_helper.from_array(center.reshape(1, n), "center"),
            numpy_helper.from_array(inv.reshape(1, n), "inv_scale"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _sklearn_graph(model: Any, n: int, classes: list[Any] | None) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    options = None
    if classes is not None:
        seen = np.asarray(getattr(model, "classes_", []))
        if not np.array_equal(seen, np.arange(len(classes))):
            raise Unsupported("a class is missing from the training split; no ONNX export")
        options = {id(model): {"zipmap": False}}
    try:
        return convert_sklearn(
            model,
            initial_types=[("features", DoubleTensorType([None, n]))],
            options=options,
            target_opset=17,
        )
    except Exception as exc:
        raise Unsupported(f"skl2onnx cannot convert {type(model).__name__}: {exc}") from None


def _xgboost_graph(booster: Any, n: int, classes: list[Any] | None) -> Any:
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        return convert_xgboost(
            booster, initial_types=[("features", FloatTensorType([None, n]))], target_opset=15
        )
    except Exception as exc:
        raise Unsupported(f"onnxmltools cannot convert this XGBoost model: {exc}") from None


def _merge(pre: Any, model: Any, classes: list[Any] | None) -> Any:
    """preprocessing → model; a classifier's class-index ``label`` becomes the class value."""
    from onnx import compose, helper

    # The preprocessing ops (IsNaN, IsInf, Or, Where, Sub, Mul) exist unchanged since opset 13;
    # the graph takes the model's own opsets so the two merge.
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", 15))  # a pure ai.onnx.ml graph
    pre = helper.make_model(
        pre.graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )
    try:
        merged = compose.merge_models(pre, model, io_map=[("features", "features")])
    except Exception as exc:  # onnx's checker raises several kinds
        raise Unsupported(f"the ONNX graph could not be assembled: {exc}") from None
    if classes is None:
        return merged
    return _class_values(merged, classes)


def _class_values(model: Any, classes: list[Any]) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    label = next(o for o in graph.output if o.name == "label")
    if all(isinstance(c, bool) for c in classes):
        values, elem = np.array([int(c) for c in classes], dtype=np.int64), TensorProto.INT64
    elif all(isinstance(c, int) for c in classes):
        values, elem = np.array(classes, dtype=np.int64), TensorProto.INT64
    elif all(isinstance(c, float) for c in classes):
        values, elem = np.array(classes, dtype=np.float64), TensorProto.DOUBLE
    else:
        values, elem = np.array([str(c) for c in classes], dtype=object), TensorProto.STRING
    label.name = "label_index"
    for node in graph.node:
        node.output[:] = ["label_index" if o == "label" else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(values, "class_values"))
    boolean = all(isinstance(c, bool) for c in classes)
    gathered = "label_value" if boolean else "label"
    graph.node.append(helper.make_node("Gather", ["class_values", "label_index"], [gathered]))
    if boolean:
        graph.node.append(helper.make_node("Cast", ["label_value"], ["label"], to=TensorProto.BOOL))
        elem = TensorProto.BOOL
    graph.output.remove(label)
    graph.output.insert(0, helper.make_tensor_value_info("label", elem, [None]))
    return model
