"""Model inspection table functions: ML.FEATURE_INFO, ML.TRAINING_INFO, ML.WEIGHTS,
ML.CONFUSION_MATRIX and ML.ROC_CURVE, with BigQuery ML's output columns.

ML.CONFUSION_MATRIX and ML.ROC_CURVE without input rows read what CREATE MODEL computed on the
evaluation split (or the training rows when there was none) — :func:`evaluation_curves` — at
the default threshold and with percentile thresholds; a custom ``threshold`` or
``GENERATE_ARRAY`` needs the rows.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import LabelInfo
from shipyard.sql.evaluation import ScoreOrder, merged_quantiles
from shipyard.sql.explanation import not_applicable

if TYPE_CHECKING:
    from shipyard.registry.predictor import Predictor
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "FEATURE_INFO_SCHEMA",
    "ROC_CURVE_SCHEMA",
    "TRAINING_INFO_SCHEMA",
    "confusion_counts",
    "evaluation_curves",
    "ml_confusion_matrix",
    "ml_feature_info",
    "ml_roc_curve",
    "ml_training_info",
    "ml_weights",
    "roc_curve",
    "training_info_schema",
]

FEATURE_INFO_SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("mean", pa.float64()),
        ("median", pa.float64()),
        ("stddev", pa.float64()),
        ("category_count", pa.int64()),
        ("null_count", pa.int64()),
        ("dimension", pa.int64()),
    ]
)
TRAINING_INFO_SCHEMA = pa.schema(
    [
        ("training_run", pa.int64()),
        ("iteration", pa.int64()),
        ("loss", pa.float64()),
        ("eval_loss", pa.float64()),
        ("learning_rate", pa.float64()),
        ("duration_ms", pa.int64()),
    ]
)
# BigQuery ML: k-means models have no eval_loss but a cluster_info column; time series models
# only training_run, iteration and duration_ms (the whole fit).
KMEANS_TRAINING_INFO_SCHEMA = pa.schema(
    [
        *(f for f in TRAINING_INFO_SCHEMA if f.name != "eval_loss"),
        (
            "cluster_info",
            pa.list_(
                pa.struct(
                    [
                        ("centroid_id", pa.int64()),
                        ("cluster_radius", pa.float64()),
                        ("cluster_size", pa.int64()),
                    ]
                )
            ),
        ),
    ]
)
TIME_SERIES_TRAINING_INFO_SCHEMA = pa.schema(
    [f for f in TRAINING_INFO_SCHEMA if f.name in ("training_run", "iteration", "duration_ms")]
)
ROC_CURVE_SCHEMA = pa.schema(
    [
        ("threshold", pa.float64()),
        ("recall", pa.float64()),
        ("false_positive_rate", pa.float64()),
        ("true_positives", pa.int64()),
        ("false_positives", pa.int64()),
        ("true_negatives", pa.int64()),
        ("false_negatives", pa.int64()),
    ]
)
CATEGORY_WEIGHTS_TYPE = pa.list_(pa.struct([("category", pa.string()), ("weight", pa.float64())]))
INTERCEPT = "__INTERCEPT__"
_MAX_THRESHOLDS = 10_000


def _no_input(call: MLCall) -> None:
    if call.input is not None:
        raise InvalidArgument(
            f"ML.{call.function} takes no input rows: ML.{call.function}(MODEL {call.model})"
        )


# --------------------------------------------------------------------------------------------
# ML.FEATURE_INFO, ML.TRAINING_INFO


def ml_feature_info(service: SqlService, call: MLCall) -> pa.Table:
    """ML.FEATURE_INFO: training statistics per input column (stored with the model)."""
    call.check_params({})
    _no_input(call)
    rows = service.models.manifest(call.model).feature_info
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in FEATURE_INFO_SCHEMA.names} for row in rows],
        schema=FEATURE_INFO_SCHEMA,
    )


def training_info_schema(model_type: str) -> pa.Schema:
    """ML.TRAINING_INFO's columns for a model type (BigQuery ML's: they differ for KMEANS and
    the time series types)."""
    if model_type == "KMEANS":
        return KMEANS_TRAINING_INFO_SCHEMA
    if model_type in ("ARIMA_PLUS", "ARIMA_PLUS_XREG"):
        return TIME_SERIES_TRAINING_INFO_SCHEMA
    return TRAINING_INFO_SCHEMA


def ml_training_info(service: SqlService, call: MLCall) -> pa.Table:
    """ML.TRAINING_INFO: one row per training iteration (loss, eval_loss, duration, …)."""
    call.check_params({})
    _no_input(call)
    schema = training_info_schema(service.models.get_version(call.model).model_type)
    rows = service.models.manifest(call.model).training_info
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in rows], schema=schema
    )


# --------------------------------------------------------------------------------------------
# ML.WEIGHTS


def weights_rows(predictor: Predictor, *, standardize: bool) -> list[dict[str, Any]]:
    """ML.WEIGHTS rows of a linear model: processed_input, weight, category_weights[, class].

    ``standardize=False`` (BigQuery ML's default) gives the weights of the raw numeric inputs
    (the standardisation folded into weight and intercept); TRUE the weights of the
    standardised features the model was fitted on.
    """
    model = predictor.model
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
    if intercept.shape[0] != coef.shape[0]:
        intercept = np.resize(intercept, coef.shape[0])
    specs = list(getattr(predictor.preprocessor, "_specs"))  # noqa: B009 - registry-internal
    offsets = list(getattr(predictor.preprocessor, "_offsets"))  # noqa: B009
    labels: list[Any] = [None]
    if predictor.task == "multiclass_classification" and predictor.label_info is not None:
        seen = np.asarray(getattr(model, "classes_", np.arange(coef.shape[0]))).astype(np.int64)
        values = predictor.label_info.values()
        labels = [_text(values[i]) for i in seen] if coef.shape[0] > 1 else [None]
    rows: list[dict[str, Any]] = []
    for row, label in enumerate(labels):
        w_all = coef[row]
        bias = float(intercept[row])
        for spec, offset in zip(specs, offsets, strict=True):
            width = spec.width
            w = w_all[offset : offset + width]
            entry: dict[str, Any] = {"processed_input": spec.name}
            if hasattr(spec, "scale"):  # numeric or timestamp: one column
                weight = float(w[0])
                if not standardize:
                    weight /= spec.scale
                    bias -= weight * spec.center
                entry["weight"], entry["category_weights"] = weight, None
            elif spec.encoding == "label":
                entry["weight"], entry["category_weights"] = float(w[0]), None
            else:
                prefix = len(spec.name) + 1
                # BigQuery ML lists DUMMY_ENCODING's dropped category too, with weight 0.0
                # (first here; ``_dropped`` tells ML.ADVANCED_WEIGHTS it has no statistics)
                dropped = [n[prefix:] for n in spec.dropped_names()]
                names = [n[prefix:] for n in spec.names_out()]
                entry["weight"] = None
                entry["category_weights"] = [{"category": n, "weight": 0.0} for n in dropped] + [
                    {"category": n, "weight": float(v)} for n, v in zip(names, w, strict=True)
                ]
                entry["_dropped"] = len(dropped)
            if label is not None:
                entry["class_label"] = label
            rows.append(entry)
        tail: dict[str, Any] = {
            "processed_input": INTERCEPT,
            "weight": bias,
            "category_weights": None,
        }
        if label is not None:
            tail["class_label"] = label
        rows.append(tail)
    return rows


def ml_weights(service: SqlService, call: MLCall) -> pa.Table:
    """ML.WEIGHTS (linear and logistic regression)."""
    call.check_params({"standardize": bool})
    _no_input(call)
    predictor = service.models.load(call.model)
    if not hasattr(predictor.model, "coef_"):
        version = service.models.get_version(call.model)
        raise not_applicable(
            "WEIGHTS", call.model, version.model_type, "linear models (LINEAR_REG, LOGISTIC_REG)"
        )
    rows = weights_rows(predictor, standardize=bool(call.params.get("standardize")))
    fields = [
        ("processed_input", pa.string()),
        ("weight", pa.float64()),
        ("category_weights", CATEGORY_WEIGHTS_TYPE),
    ]
    if rows and "class_label" in rows[0]:
        fields.append(("class_label", pa.string()))
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


# --------------------------------------------------------------------------------------------
# ML.CONFUSION_MATRIX, ML.ROC_CURVE


def confusion_counts(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: row = expected class, column = predicted class."""
    flat = np.bincount(truth * k + predicted, minlength=k * k)
    return flat.reshape(k, k).astype(np.int64)  # type: ignore[no-any-return]


def default_thresholds(positive: np.ndarray, order: ScoreOrder | None = None) -> np.ndarray:
    """Percentiles 0, 1, …, 100 of the positive-class probabilities (distinct values).

    ``order``: the same probabilities sorted per class (:class:`ScoreOrder`); their merge is
    the sorted column, whose quantiles are the same values (the same order statistics),
    found without a selection over the unsorted rows (or a merge:
    :func:`~shipyard.sql.evaluation.merged_quantiles`).
    """
    if len(positive) == 0:
        return np.array([0.5])
    if (
        order is not None
        and order.positives is not None
        and order.negatives is not None
        and len(order.positives) + len(order.negatives) == len(positive)
    ):
        # the order statistics of the two sorted halves: no merge, no partition (6 ms at
        # 300k rows); None when a zero is in range (zeros of both signs sort as equals and
        # could swap places): the rows decide then
        found = merged_quantiles(order, 101)
        if found is not None:
            return np.unique(found)
    return np.unique(np.quantile(positive, np.linspace(0.0, 1.0, 101)))


def roc_curve(
    truth: np.ndarray,
    positive: np.ndarray,
    thresholds: np.ndarray,
    order: ScoreOrder | None = None,
) -> dict[str, Any]:
    """ROC columns (as lists) for binary ``truth`` (0/1) and positive-class probabilities.

    A row is predicted positive when its probability is above the threshold (ML.PREDICT's rule).
    ``order``: the probabilities already sorted per class
    (:func:`~shipyard.sql.evaluation.evaluate` keeps them).
    """
    if order is not None and order.positives is not None and order.negatives is not None:
        pos, neg = order.positives, order.negatives
    else:
        pos = np.sort(positive[truth == 1])
        neg = np.sort(positive[truth == 0])
    t = np.asarray(thresholds, dtype=np.float64)
    tp = len(pos) - np.searchsorted(pos, t, side="right")
    fp = len(neg) - np.searchsorted(neg, t, side="right")
    fn = len(pos) - tp
    tn = len(neg) - fp
    recall = [float(x) / len(pos) if len(pos) else None for x in tp]
    fpr = [float(x) / len(neg) if len(neg) else None for x in fp]
    return {
        "threshold": t.tolist(),
        "recall": recall,
        "false_positive_rate": fpr,
        "true_positives": tp.tolist(),
        "false_positives": fp.tolist(),
        "true_negatives": tn.tolist(),
        "false_negatives": fn.tolist(),
    }


def evaluation_curves(
    task: str,
    truth: np.ndarray,
    codes: np.ndarray,
    probabilities: np.ndarray | None,
    order: ScoreOrder | None = None,
) -> dict[str, Any] | None:
    """What ML.CONFUSION_MATRIX / ML.ROC_CURVE return without input rows (classifiers only).

    ``order``: what :func:`~shipyard.sql.evaluation.evaluate` sorted for roc_auc on the same
    rows, reused for the ROC curve.
    """
    if task == "regression" or probabilities is None:
        return None
    k = probabilities.shape[1]
    truth = np.asarray(truth, dtype=np.int64)
    out: dict[str, Any] = {
        "confusion_matrix": confusion_counts(truth, np.asarray(codes, np.int64), k).tolist()
    }
    if task == "binary_classification":
        positive = probabilities[:, 1]
        out["roc_curve"] = roc_curve(truth, positive, default_thresholds(positive, order), order)
    return out


def _labelled_rows(service: SqlService, call: MLCall) -> tuple[Predictor, np.ndarray, np.ndarray]:
    """(predictor, matrix, class codes) of the input rows that have a label."""
    predictor = service.models.load(call.model)
    rows = call.require_input()
    label = predictor.label
    if label not in rows.column_names:
        raise InvalidArgument(
            f"ML.{call.function} needs the label column {label!r} in its input; "
            f"the input has: {', '.join(rows.column_names)}"
        )
    rows = rows.filter(pc.is_valid(rows[label]))
    assert predictor.label_info is not None
    truth = predictor.label_info.encode(rows[label])
    matrix = predictor.matrix(rows)
    return predictor, matrix, truth


def _classifier(service: SqlService, call: MLCall, *, binary: bool) -> Any:
    version = service.models.get_version(call.model)
    ok = version.task == "binary_classification" or (
        not binary and version.task == "multiclass_classification"
    )
    if not ok:
        applies = (
            "binary classification models (LOGISTIC_REG, BOOSTED_TREE_CLASSIFIER with 2 classes)"
            if binary
            else "classification models (LOGISTIC_REG, BOOSTED_TREE_CLASSIFIER)"
        )
        raise not_applicable(
            call.function, call.model, f"{version.model_type} ({version.task})", applies
        )
    return version


def _column_names(classes: list[str]) -> list[str]:
    """BigQuery-style column names for class values: invalid characters become ``_`` and a
    name that does not start with a letter or ``_`` gets a leading ``_``."""
    names: list[str] = []
    for value in classes:
        name = re.sub(r"[^0-9A-Za-z_]", "_", value) or "_"
        if not re.match(r"[A-Za-z_]", name):
            name = "_" + name
        base, n = name, 1
        while name in names or name == "expected_label":
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def ml_confusion_matrix(service: SqlService, call: MLCall) -> pa.Table:
    """ML.CONFUSION_MATRIX: ``expected_label`` and one INT64 count column per predicted class."""
    call.check_params({"threshold": (int, float)})
    version = _classifier(service, call, binary=False)
    threshold = call.params.get("threshold")
    if call.input is None:
        if threshold is not None:
            raise InvalidArgument(
                "ML.CONFUSION_MATRIX with a threshold needs the evaluation rows: "
                f"ML.CONFUSION_MATRIX(MODEL {call.model}, TABLE …, STRUCT(0.6 AS threshold))"
            )
        manifest = service.models.manifest(call.model)
        stored = (manifest.evaluation_curves or {}).get("confusion_matrix")
        if stored is None:
            raise InvalidArgument(
                f"model {call.model} has no stored evaluation; pass the evaluation rows: "
                f"ML.CONFUSION_MATRIX(MODEL {call.model}, TABLE …)"
            )
        counts = np.asarray(stored, dtype=np.int64)
        label_info = LabelInfo.from_dict(manifest.label_info or {})
    else:
        predictor, matrix, truth = _labelled_rows(service, call)
        codes, _ = predictor.predict_raw(matrix, threshold=threshold)
        assert predictor.label_info is not None
        k = predictor.label_info.n_classes
        counts = confusion_counts(truth, codes, k)
        label_info = predictor.label_info
    del version
    # BigQuery ML: expected_label has the label column's values and type; the count columns are
    # named after the classes' text.
    classes = [_text(v) for v in label_info.values()]
    columns: dict[str, Any] = {"expected_label": label_info.classes}
    for j, name in enumerate(_column_names(classes)):
        columns[name] = pa.array(counts[:, j], type=pa.int64())
    return pa.table(columns)


def _thresholds(spec: Any) -> np.ndarray:
    """Thresholds from GENERATE_ARRAY(start, end, step): start, start+step, …, ≤ end."""
    if not isinstance(spec, list) or len(spec) not in (2, 3):
        raise InvalidArgument("ML.ROC_CURVE thresholds must be GENERATE_ARRAY(start, end, step)")
    start, end = spec[0], spec[1]
    step = spec[2] if len(spec) == 3 and spec[2] is not None else 1
    for name, value in (("start", start), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(f"GENERATE_ARRAY {name} must be a number, got {value!r}")
    if step <= 0:
        raise InvalidArgument(f"GENERATE_ARRAY step must be positive, got {step}")
    if start > end:
        raise InvalidArgument(f"GENERATE_ARRAY start {start} is greater than end {end}")
    count = math.floor((end - start) / step + 1e-9) + 1
    if count > _MAX_THRESHOLDS:
        raise InvalidArgument(
            f"GENERATE_ARRAY({start}, {end}, {step}) gives {count} thresholds; at most "
            f"{_MAX_THRESHOLDS} are allowed"
        )
    values = np.round(start + step * np.arange(count), 12)
    if values.min() < 0.0 or values.max() > 1.0:
        raise InvalidArgument(f"ML.ROC_CURVE thresholds must be in [0, 1], got {start}..{end}")
    return values  # type: ignore[no-any-return]


def ml_roc_curve(service: SqlService, call: MLCall) -> pa.Table:
    """ML.ROC_CURVE (binary classifiers): counts and rates per threshold."""
    call.check_params({"generate_array": list})
    _classifier(service, call, binary=True)
    spec = call.params.get("generate_array")
    if call.input is None:
        if spec is not None:
            raise InvalidArgument(
                "ML.ROC_CURVE with GENERATE_ARRAY thresholds needs the evaluation rows: "
                f"ML.ROC_CURVE(MODEL {call.model}, TABLE …, GENERATE_ARRAY(0.1, 0.9, 0.1))"
            )
        manifest = service.models.manifest(call.model)
        curve = (manifest.evaluation_curves or {}).get("roc_curve")
        if curve is None:
            raise InvalidArgument(
                f"model {call.model} has no stored evaluation; pass the evaluation rows: "
                f"ML.ROC_CURVE(MODEL {call.model}, TABLE …)"
            )
    else:
        predictor, matrix, truth = _labelled_rows(service, call)
        _, probabilities = predictor.predict_raw(matrix)
        assert probabilities is not None
        positive = probabilities[:, 1]
        thresholds = default_thresholds(positive) if spec is None else _thresholds(spec)
        curve = roc_curve(truth, positive, thresholds)
    return pa.table({name: curve[name] for name in ROC_CURVE_SCHEMA.names}, schema=ROC_CURVE_SCHEMA)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
