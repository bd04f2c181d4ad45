"""Feature attributions: ML.EXPLAIN_PREDICT and ML.GLOBAL_EXPLAIN for a :class:`Predictor`.

The tree and linear methods are exact and vectorised (the model runs once on the whole
matrix); networks use integrated gradients:

* boosted trees (XGBoost): TreeSHAP from the booster itself (``pred_contribs``; with
  ``approx_feature_contrib`` the faster Saabas approximation, ``approx_contribs``); LightGBM
  boosters: ``pred_contrib``;
* linear models (scikit-learn ``coef_``/``intercept_``): ``coef * x`` in the preprocessed
  space, and the baseline is the intercept (BigQuery ML's rule for linear models). Numeric
  features are centred on their training mean, so theirs is Shapley's value against the training
  mean; a one-hot column's is the weight of the row's category;
* neural networks (DNN_* and DNN_LINEAR_COMBINED_*, flavor ``torch``): integrated gradients
  (Sundararajan et al., 2017; BigQuery ML's method for these types) in NumPy on the stored
  weights — the gradient of the explained output is back-propagated through the network
  (:meth:`NeuralNet.input_gradient`) at ``integrated_gradients_num_steps`` points of the straight
  path from the baseline to the row (Gauss-Legendre nodes on [0, 1], default
  :data:`DEFAULT_INTEGRATED_GRADIENTS_STEPS`), and a column's attribution is its distance from
  the baseline times the path's mean gradient. The baseline is the all-zeros preprocessed row:
  every numeric feature at its training mean and no category of a categorical one. The
  attributions add up to ``prediction - baseline`` up to the quadrature error, which
  ``approximation_error`` reports (about 1e-10 relative for smooth activations such as TANH at
  the default steps; ReLU's kinks leave more — raise the steps to shrink it).

What is explained (BigQuery ML's reference): regression models explain the predicted value;
classifiers explain the *logit* (the raw margin) of the predicted class — for a binary model the
positive class's log-odds, negated when the negative class is predicted; for a multiclass model
that class's softmax logit. ``baseline_prediction_value`` is the explained output with no
feature information (intercept / the trees' expected value), ``prediction_value`` the model's own
output for the row, and ``approximation_error`` ``|baseline + sum(attributions) - prediction|``:
float rounding only (≈1e-6 for float32 trees, 0 up to 1e-12 for linear models).

Attributions are per *input* column: the matrix columns of a one-hot encoded column are summed
back into that column. ``top_feature_attributions`` lists them by ``|attribution|``, largest
first (ties: input column order), cut to ``top_k_features`` (default 5).

Example::

    >>> import pyarrow as pa
    >>> from shipyard.sql.modeltypes import MODEL_TYPES
    >>> t = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "label": [2.0, 4.0, 6.0, 8.0]})
    >>> p = MODEL_TYPES["LINEAR_REG"].train(t, {"model_type": "LINEAR_REG"}).predictor()
    >>> out = explain(p, t, top_k_features=1)
    >>> out.column_names[:5]
    ['predicted_label', 'top_feature_attributions', 'baseline_prediction_value', \
'prediction_value', 'approximation_error']
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shipyard.errors import InvalidArgument

if TYPE_CHECKING:
    from shipyard.registry.predictor import Predictor

__all__ = [
    "ATTRIBUTION_TYPE",
    "DEFAULT_INTEGRATED_GRADIENTS_STEPS",
    "DEFAULT_TOP_K_FEATURES",
    "EXPLAIN_COLUMNS",
    "Explanation",
    "check_explainable",
    "explain",
    "explain_matrix",
    "global_explanation",
    "input_feature_groups",
]

#: BigQuery ML's default number of attributions per row.
DEFAULT_TOP_K_FEATURES = 5
#: Integrated gradients: gradient evaluations per row when neither the model
#: (OPTIONS(integrated_gradients_num_steps=…)) nor the call says: BigQuery ML's default.
DEFAULT_INTEGRATED_GRADIENTS_STEPS = 15
MAX_INTEGRATED_GRADIENTS_STEPS = 1000
# Integrated gradients: path points (rows x steps) times layer width held at once.
_GRADIENT_CHUNK_VALUES = 4 << 20
#: BigQuery ML: at most this many features per class with class_level_explain.
CLASS_LEVEL_TOP_FEATURES = 10
# ML.GLOBAL_EXPLAIN: contributions held at once (rows x classes x columns), ~128 MiB of float64.
_GLOBAL_CHUNK_VALUES = 16 << 20
ATTRIBUTION_TYPE = pa.list_(pa.struct([("feature", pa.string()), ("attribution", pa.float64())]))
EXPLAIN_COLUMNS = (
    "top_feature_attributions",
    "baseline_prediction_value",
    "prediction_value",
    "approximation_error",
)


class Explanation:
    """Attributions of one explained output per row, per input feature.

    ``values`` (rows, input features), ``baseline`` and ``prediction`` (rows,), all float64;
    ``codes`` / ``probabilities``: the predictions, as :meth:`Predictor.predict_raw`.
    """

    def __init__(
        self,
        values: np.ndarray,
        baseline: np.ndarray,
        prediction: np.ndarray,
        codes: np.ndarray,
        probabilities: np.ndarray | None,
    ) -> None:
        self.values = values
        self.baseline = baseline
        self.prediction = prediction
        self.codes = codes
        self.probabilities = probabilities

    @property
    def approximation_error(self) -> np.ndarray:
        return np.abs(self.baseline + self.values.sum(axis=1) - self.prediction)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# matrix columns → input features


def input_feature_groups(predictor: Predictor) -> tuple[list[str], np.ndarray]:
    """(input feature names, first matrix column of each) — a feature's columns are contiguous.

    A feature may have no matrix column (DUMMY_ENCODING of a single category): its start equals
    the next one's.
    """
    pre = predictor.preprocessor
    # The preprocessor lays each input column's matrix columns out contiguously, in input order
    # (a timestamp's components, _TS_DOM_<col> …, right after its Unix seconds).
    return pre.features, np.asarray(pre.input_offsets, dtype=np.int64)


def _by_input_feature(contribs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum matrix-column attributions (rows, matrix columns) into (rows, input features)."""
    n, width = contribs.shape
    out = np.zeros((n, len(starts)), dtype=np.float64)
    nonempty = np.flatnonzero(np.diff(np.append(starts, width)) > 0)
    if len(nonempty) and width:
        out[:, nonempty] = np.add.reduceat(contribs, starts[nonempty], axis=1)
    return out


# --------------------------------------------------------------------------------------------
# per-flavor contributions of one output per row


def _positive_rows(codes: np.ndarray) -> np.ndarray:
    """+1 where the positive class (1) is explained, -1 where the negative class is."""
    return np.where(codes == 1, 1.0, -1.0)


def _tree_raw(
    predictor: Predictor, matrix: np.ndarray, approx: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(contributions, margins) of every output of a tree booster: (rows[, K], columns + 1)."""
    if len(matrix) == 0:  # boosters return shapeless arrays for no rows
        k = predictor.label_info.n_classes if predictor.label_info else 1
        groups = (k,) if predictor.task == "multiclass_classification" else ()
        return np.zeros((0, *groups, matrix.shape[1] + 1)), np.zeros((0, *groups))
    if predictor.flavor == "xgboost":
        import xgboost as xgb

        booster = predictor.model
        dmatrix = xgb.DMatrix(matrix, nthread=os.cpu_count() or 1)
        contribs = booster.predict(dmatrix, pred_contribs=True, approx_contribs=approx)
        margin = booster.inplace_predict(matrix, predict_type="margin")
    else:  # lightgbm
        model = predictor.model
        contribs = model.predict(matrix, pred_contrib=True)
        margin = model.predict(matrix, raw_score=True)
    contribs = np.asarray(contribs, dtype=np.float64)
    if predictor.task == "multiclass_classification" and contribs.ndim == 2:
        k = predictor.label_info.n_classes if predictor.label_info else 1
        contribs = contribs.reshape(len(matrix), k, -1)  # lightgbm: classes side by side
    return contribs, np.asarray(margin, dtype=np.float64)


def _select(
    predictor: Predictor, contribs: np.ndarray, margin: np.ndarray, classes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(contributions with the bias last, model output) of the explained output per row."""
    n = len(contribs)
    if predictor.task == "multiclass_classification":
        assert classes is not None
        rows = np.arange(n)
        margin = margin.reshape(n, contribs.shape[1])
        return contribs[rows, classes], margin[rows, classes]
    if contribs.ndim == 3:  # one output group
        contribs = contribs[:, 0, :]
    margin = margin.reshape(-1)
    if predictor.task == "binary_classification":
        assert classes is not None
        sign = _positive_rows(classes)
        return contribs * sign[:, None], margin * sign
    return contribs, margin


def _linear(
    predictor: Predictor, matrix: np.ndarray, classes: np.ndarray | None, approx: bool
) -> tuple[np.ndarray, np.ndarray]:
    model = predictor.model
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
    x = np.asarray(matrix, dtype=np.float64)
    n = len(x)
    if predictor.task == "regression":
        w = coef.reshape(-1)
        contribs = np.empty((n, len(w) + 1))
        np.multiply(x, w, out=contribs[:, :-1])
        contribs[:, -1] = intercept[0]
        return contribs, np.asarray(model.predict(x), dtype=np.float64).reshape(-1)
    assert classes is not None and predictor.label_info is not None
    # Per class: its weights and intercept. scikit-learn only has rows for the classes the
    # training split held; a 2-class fit has one row, for its second class (the other is -row).
    k = predictor.label_info.n_classes
    seen = np.asarray(getattr(model, "classes_", np.arange(k))).astype(np.int64)
    weights = np.zeros((k, coef.shape[1]))
    bias = np.full(k, -np.inf)
    if coef.shape[0] == 1:
        weights[seen[1]], bias[seen[1]] = coef[0], intercept[0]
        weights[seen[0]], bias[seen[0]] = -coef[0], -intercept[0]
    else:
        weights[seen], bias[seen] = coef, intercept
    w = weights[classes]
    contribs = np.empty((n, coef.shape[1] + 1))
    np.multiply(x, w, out=contribs[:, :-1])
    contribs[:, -1] = bias[classes]
    # The model's own logit of the class, computed independently of the attributions.
    logits = np.asarray(model.decision_function(x), dtype=np.float64)
    if logits.ndim == 1:
        logits = np.column_stack([-logits, logits])
        full = np.zeros((n, k))
        full[:, seen[:2]] = logits
    else:
        full = np.full((n, k), -np.inf)
        full[:, seen] = logits
    return contribs, full[np.arange(n), classes]


def _is_network(predictor: Predictor) -> bool:
    from shipyard.registry.neural import NeuralNet

    model = predictor.model
    return isinstance(model, NeuralNet) and model.kind in ("mlp", "wide_deep")


def integrated_gradients_steps(predictor: Predictor, steps: int | None) -> int:
    """The steps of a call, else the model's own option, else the default; checked."""
    if steps is None:
        architecture = getattr(predictor.model, "architecture", {}) or {}
        steps = architecture.get("integrated_gradients_num_steps")
        if steps is None:
            return DEFAULT_INTEGRATED_GRADIENTS_STEPS
    if (
        isinstance(steps, bool)
        or not isinstance(steps, int)
        or not 1 <= steps <= MAX_INTEGRATED_GRADIENTS_STEPS
    ):
        raise InvalidArgument(
            f"integrated_gradients_num_steps must be an INT64 from 1 to "
            f"{MAX_INTEGRATED_GRADIENTS_STEPS}, got {steps!r}",
            parameter="integrated_gradients_num_steps",
        )
    return steps


def _network(
    predictor: Predictor, matrix: np.ndarray, classes: np.ndarray | None, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Integrated gradients of a network's explained output (see the module docstring)."""
    net = predictor.model
    x = np.asarray(matrix, dtype=np.float64)
    n, d = x.shape
    widths = list(net.architecture["widths"])
    outputs = int(widths[-1])
    # The explained output as a combination of the raw outputs, per row.
    seed = np.zeros((n, outputs))
    offset = 0.0
    if predictor.task == "regression":
        seed[:, 0] = float(net.architecture.get("label_std", 1.0))
        offset = float(net.architecture.get("label_mean", 0.0))
    elif predictor.task == "binary_classification":
        assert classes is not None
        sign = _positive_rows(classes)
        seed[:, 0], seed[:, 1] = -sign, sign  # ± the log-odds, logit(1) - logit(0)
    else:
        assert classes is not None
        seed[np.arange(n), classes] = 1.0  # the class's softmax logit
    prediction, _ = net.input_gradient(x, seed)
    baseline, _ = net.input_gradient(np.zeros_like(x), seed)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1.0) / 2.0, weights / 2.0
    mean_gradient = np.zeros((n, d))
    width = max(widths) * (2 if net.architecture["activation"] == "CRELU" else 1)
    chunk = max(1, _GRADIENT_CHUNK_VALUES // (steps * max(width, d)))
    for lo in range(0, n, chunk):
        part, part_seed = x[lo : lo + chunk], seed[lo : lo + chunk]
        m = len(part)
        path = (alphas[:, None, None] * part[None, :, :]).reshape(steps * m, d)
        _, grad = net.input_gradient(path, np.tile(part_seed, (steps, 1)))
        mean_gradient[lo : lo + m] = np.tensordot(weights, grad.reshape(steps, m, d), axes=1)
    contribs = np.empty((n, d + 1))
    np.multiply(x, mean_gradient, out=contribs[:, :-1])  # (x - baseline) · mean gradient
    contribs[:, -1] = baseline + offset
    return contribs, prediction + offset


_EXPLAINABLE_TASKS = ("regression", "binary_classification", "multiclass_classification")


def check_explainable(predictor: Predictor) -> None:
    """InvalidArgument unless the predictor is a supervised tree or linear model."""
    linear = hasattr(predictor.model, "coef_") and hasattr(predictor.model, "intercept_")
    if predictor.task in _EXPLAINABLE_TASKS and (
        predictor.flavor in ("xgboost", "lightgbm") or linear or _is_network(predictor)
    ):
        return
    model_type = predictor.config.get("model_type") or type(predictor.model).__name__
    raise InvalidArgument(
        f"feature attributions (ML.EXPLAIN_PREDICT, ML.GLOBAL_EXPLAIN) do not apply to "
        f"{model_type} models; they apply to linear models (LINEAR_REG, LOGISTIC_REG), boosted "
        "tree, random forest and DNN models (DNN_*, DNN_LINEAR_COMBINED_*)",
        model_type=model_type,
    )


def _contributions(
    predictor: Predictor,
    matrix: np.ndarray,
    classes: np.ndarray | None,
    approx: bool,
    steps: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    if predictor.flavor in ("xgboost", "lightgbm"):
        contribs, margin = _tree_raw(predictor, matrix, approx)
        return _select(predictor, contribs, margin, classes)
    check_explainable(predictor)
    if _is_network(predictor):
        return _network(predictor, matrix, classes, integrated_gradients_steps(predictor, steps))
    return _linear(predictor, matrix, classes, approx)


# --------------------------------------------------------------------------------------------
# entry points


def explain_matrix(
    predictor: Predictor,
    matrix: np.ndarray,
    *,
    threshold: float | None = None,
    approx: bool = False,
    classes: np.ndarray | None = None,
    integrated_gradients_num_steps: int | None = None,
) -> Explanation:
    """Attributions of a preprocessed matrix: the predicted class, or ``classes`` per row."""
    check_explainable(predictor)
    codes, probabilities = predictor.predict_raw(matrix, threshold=threshold)
    explained = None
    if predictor.label_info is not None:
        explained = codes if classes is None else np.asarray(classes, dtype=np.int64)
    contribs, prediction = _contributions(
        predictor, matrix, explained, approx, integrated_gradients_num_steps
    )
    _, starts = input_feature_groups(predictor)
    values = _by_input_feature(contribs[:, :-1], starts)
    return Explanation(values, contribs[:, -1].copy(), prediction, codes, probabilities)


def _top_k(k: int | None, n_features: int) -> int:
    if k is None:
        return min(DEFAULT_TOP_K_FEATURES, n_features)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidArgument(f"top_k_features must be a positive integer, got {k!r}")
    return min(k, n_features)


def attribution_column(values: np.ndarray, names: list[str], k: int) -> pa.Array:
    """``ARRAY<STRUCT<feature, attribution>>``: per row the ``k`` largest ``|values|``."""
    n = len(values)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(values, order, axis=1)
    features = pa.array(names, type=pa.string()).take(pa.array(order.reshape(-1)))
    struct = pa.StructArray.from_arrays(
        [features, pa.array(picked.reshape(-1), type=pa.float64())],
        names=["feature", "attribution"],
    )
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, struct)


def explain(
    predictor: Predictor,
    table: pa.Table,
    *,
    top_k_features: int | None = None,
    threshold: float | None = None,
    approx_feature_contrib: bool = False,
    keep_original_columns: bool = True,
    integrated_gradients_num_steps: int | None = None,
) -> pa.Table:
    """ML.EXPLAIN_PREDICT of ``table``: ML.PREDICT's columns, the attributions, the inputs
    (left out with ``keep_original_columns=False``). ``integrated_gradients_num_steps``
    applies to networks only."""
    from shipyard.registry.predictor import _probs_column

    names = predictor.output_names + list(EXPLAIN_COLUMNS)
    clash = [c for c in names if c in table.column_names]
    if clash and keep_original_columns:
        raise InvalidArgument(
            f"input already has columns {clash}, which ML.EXPLAIN_PREDICT outputs; rename or "
            "drop them",
            columns=clash,
        )
    check_explainable(predictor)
    features, _ = input_feature_groups(predictor)
    k = _top_k(top_k_features, len(features))
    if integrated_gradients_num_steps is not None:
        integrated_gradients_steps(predictor, integrated_gradients_num_steps)  # checked first
    matrix = predictor.preprocessor.transform(table, dtype=predictor._dtype)
    result = explain_matrix(
        predictor,
        matrix,
        threshold=threshold,
        approx=approx_feature_contrib,
        integrated_gradients_num_steps=integrated_gradients_num_steps,
    )
    columns: list[Any]
    if predictor.label_info is None:
        columns = [pa.array(result.codes, type=pa.float64())]
    else:
        assert result.probabilities is not None
        columns = [
            predictor.label_info.decode(result.codes),
            _probs_column(predictor.label_info.classes, result.probabilities),
        ]
    columns += [
        attribution_column(result.values, features, k),
        pa.array(result.baseline, type=pa.float64()),
        pa.array(result.prediction, type=pa.float64()),
        pa.array(result.approximation_error, type=pa.float64()),
    ]
    if not keep_original_columns:
        return pa.Table.from_arrays(columns, names=names)
    return pa.Table.from_arrays(columns + table.columns, names=names + table.column_names)


def global_explanation(predictor: Predictor, matrix: np.ndarray) -> dict[str, Any]:
    """ML.GLOBAL_EXPLAIN's numbers: mean ``|attribution|`` per input feature over ``matrix``.

    ``{"attributions": {feature: value}, "class_attributions": {class: {feature: value}} | None}``
    — the model-level value explains each row's predicted class; per class, that class's logit
    on every row. Computed at CREATE MODEL time (``enable_global_explain=TRUE``) on the
    evaluation rows, or the training rows when there is no split (BigQuery ML's rule). Rows go
    in chunks, so a many-class tree model's per-class contributions stay within bounded memory.
    """
    check_explainable(predictor)
    features, starts = input_feature_groups(predictor)
    n = len(matrix)
    classes = predictor.label_info.n_classes if predictor.label_info is not None else 0
    trees = predictor.flavor in ("xgboost", "lightgbm")
    overall = np.zeros(len(features))
    per_class = np.zeros((classes, len(features)))
    chunk = max(1, _GLOBAL_CHUNK_VALUES // (max(classes, 1) * (matrix.shape[1] + 1)))
    for first in range(0, n, chunk):
        part = matrix[first : first + chunk]
        if not trees:
            overall += np.abs(explain_matrix(predictor, part).values).sum(axis=0)
            for code in range(classes):
                rows = np.full(len(part), code, dtype=np.int64)
                contribs, _ = _contributions(predictor, part, rows, False)
                per_class[code] += np.abs(_by_input_feature(contribs[:, :-1], starts)).sum(axis=0)
            continue
        raw = _tree_raw(predictor, part, False)  # once for every class
        codes = predictor.predict_raw(part)[0] if classes else None
        contribs, _ = _select(predictor, raw[0], raw[1], codes)
        overall += np.abs(_by_input_feature(contribs[:, :-1], starts)).sum(axis=0)
        for code in range(classes):
            rows = np.full(len(part), code, dtype=np.int64)
            contribs, _ = _select(predictor, raw[0], raw[1], rows)
            per_class[code] += np.abs(_by_input_feature(contribs[:, :-1], starts)).sum(axis=0)
    count = max(n, 1)

    def by_feature(sums: np.ndarray) -> dict[str, float]:
        return dict(zip(features, (sums / count).tolist(), strict=True))

    out: dict[str, Any] = {"attributions": by_feature(overall), "class_attributions": None}
    if predictor.label_info is not None:
        out["class_attributions"] = {
            _class_text(value): by_feature(per_class[code])
            for code, value in enumerate(predictor.label_info.values())
        }
    return out


def _class_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
