"""Training for CREATE MODEL: label and data preparation, the data split, and the trainers.

Storage-free: Arrow and NumPy in, a fitted model and its ML.TRAINING_INFO rows out.
:class:`~shipyard.sql.modeltypes.ModelTypeSpec` strings these steps together.

How BigQuery ML's semantics are mapped (and where we differ):

* Data split — AUTO_SPLIT: under 500 rows no split; 500 to 50,000 rows a random 20 %; above
  50,000 a random 10,000 rows are the evaluation data. RANDOM splits off
  ``data_split_eval_fraction`` (kept to two decimals) of the rows, or, when that option is not
  given, sizes the split as AUTO_SPLIT does. Random splits are deterministic (a fixed seed over
  the row order; BigQuery ML hashes the row contents, so its rows differ from ours). CUSTOM: a
  BOOL column, TRUE or NULL = evaluation. SEQ: rows whose split value is below the value at the
  ``1 - data_split_eval_fraction`` point (in ascending order) train; the rest, ties at that
  value and NULLs included, evaluate. SEQ accepts INT64, FLOAT64 and DATE columns besides
  BigQuery ML's NUMERIC, BIGNUMERIC, STRING and TIMESTAMP. The split column is never a feature.
  Rows whose label is NULL (or NaN) are dropped before anything else (BigQuery ML's page does
  not say); a ±infinite regression label is an error.
* LINEAR_REG is solved exactly with scikit-learn (the objective is
  ``sum of squared errors + l1_reg·|w|₁ + l2_reg·|w|²``): LinearRegression without
  regularization (solved by :mod:`shipyard.sql.least_squares`: the normal equations on
  well-conditioned data, else scikit-learn's own SVD solve), Ridge(alpha=l2_reg) for L2 only,
  ElasticNet (alpha and l1_ratio derived to keep that objective) when l1_reg > 0;
  ``fit_intercept`` is honoured. ``optimize_strategy``, ``learn_rate_strategy``,
  ``ls_init_learn_rate``, ``learn_rate``, ``max_iterations``, ``early_stop`` and
  ``min_rel_progress`` are validated (see :mod:`shipyard.sql.options`) but
  the exact solvers do not need them; training info has one row.
* ``warm_start=TRUE`` (LINEAR_REG, LOGISTIC_REG, KMEANS) retrains the model's current version
  on the same input columns. The linear solvers are exact, so the result is the optimum for the
  new data whatever the starting point; KMEANS starts from the current centroids.
* LOGISTIC_REG uses LogisticRegression with the objective
  ``sum of log losses + l1_reg·|w|₁ + l2_reg·|w|²`` (so C = 1 / (l1_reg + 2·l2_reg), no penalty
  by default as BigQuery ML), lbfgs (saga with L1), at most ``50 * max_iterations`` solver
  iterations; softmax for multiclass. ``class_weights`` must name every class (BigQuery ML's
  rule); ``auto_class_weights`` weighs a class by rows / (classes · rows of the class), counted
  on the training split.
* BOOSTED_TREE_* use ``xgboost.train``: max_iterations → rounds, learn_rate → eta,
  l1_reg → alpha, l2_reg → lambda, min_split_loss → gamma, min_tree_child_weight →
  min_child_weight, dropout → rate_drop, tree_method AUTO → hist. ``early_stop`` stops after the
  first round whose relative improvement of the evaluation loss is below ``min_rel_progress``
  (only when there is an evaluation split — BigQuery ML's page does not say which loss; the
  trees of that round are kept). Trained with the installed xgboost, not BigQuery ML's
  default 0.9.
* RANDOM_FOREST_* are XGBoost random forests, as BigQuery ML trains them: one boosting round
  (eta 1) of ``num_parallel_tree`` trees (default 100), each on a ``subsample`` (0.8) of the
  rows and ``colsample_bynode`` (0.8) of the features per split, ``max_tree_depth`` 15.
* ``instance_weight_col`` (trees and forests) weighs each training row (multiplied by the
  class weights, if any); the column is not a feature and must be numeric, non-NULL, >= 0.
"""

from __future__ import annotations

import contextvars
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.registry.predictor import one_blas_thread
from shipyard.registry.preprocessing import LabelInfo
from shipyard.sql.options import CommonOptions, class_label_text

__all__ = [
    "Fit",
    "PreparedData",
    "Progress",
    "Trainer",
    "UnsupervisedFit",
    "boosting_rounds",
    "check_warm_start",
    "instance_weights",
    "is_random_forest",
    "one_blas_thread",
    "prepare_data",
    "single_class",
    "split_rows",
    "train_linear",
    "train_logistic",
    "train_xgboost",
    "xgb_params",
]

Progress = Callable[[float, str], None]

# The same table always splits the same way (RANDOM / AUTO_SPLIT) and trains the same trees.
_SEED = 20240101
_AUTO_SPLIT_MIN_ROWS = 500
_AUTO_SPLIT_MAX_ROWS = 50_000
_AUTO_SPLIT_FRACTION = 0.2
_AUTO_SPLIT_LARGE_EVAL_ROWS = 10_000


# --------------------------------------------------------------------------------------------
# data preparation and split


@dataclass
class PreparedData:
    """The training input with NULL-label rows dropped, its label encoded as ``y``."""

    table: pa.Table
    label: str
    features: list[str]
    y: np.ndarray
    label_info: LabelInfo | None
    task: str


def _resolve_label(table: pa.Table, options: CommonOptions, label: str | None) -> str:
    name = label or (options.input_label_cols[0] if options.input_label_cols else "label")
    if name not in table.column_names:
        how = "given" if label else ("from input_label_cols" if options.input_label_cols else "")
        hint = (
            ""
            if label or options.input_label_cols
            else " (name it 'label' or set input_label_cols)"
        )
        raise InvalidArgument(
            f"label column {name!r}{' ' + how if how else ''} is not in the training data"
            f"{hint}; its columns are: {list(table.column_names)}",
            label=name,
            columns=list(table.column_names),
        )
    return name


def _drop_null_labels(table: pa.Table, label: str) -> pa.Table:
    col = table.column(label)
    invalid = col.null_count
    is_float = pa.types.is_floating(col.type)
    if is_float:
        nan = pc.is_nan(col)
        invalid += pc.sum(nan).as_py() or 0
    if not invalid:
        return table
    keep = pc.is_valid(col)
    if is_float:
        keep = pc.and_(keep, pc.invert(pc.fill_null(pc.is_nan(col), False)))
    return table.filter(keep)


def _check_option_column(table: pa.Table, option: str, column: str | None, label: str) -> None:
    """An option naming a training column (``data_split_col``, ``instance_weight_col``): the
    column must exist and must not be the label."""
    if column is None:
        return
    if column not in table.column_names:
        raise InvalidArgument(
            f"{option} {column!r} is not in the training data; its columns are: "
            f"{list(table.column_names)}",
            column=column,
        )
    if column == label:
        raise InvalidArgument(f"{option} {column!r} cannot be the label column")


def prepare_data(
    table: pa.Table,
    options: CommonOptions,
    label: str | None,
    *,
    model_type: str,
    task_kind: str,
    max_classes: int | None,
) -> PreparedData:
    """The label resolved and encoded, NULL-label rows dropped, and the feature columns.

    ``task_kind`` is "regression" (a numeric label) or "classification" (at most
    ``max_classes`` classes).
    """
    name = _resolve_label(table, options, label)
    split_col = options.data_split_col
    _check_option_column(table, "data_split_col", split_col, name)
    table = _drop_null_labels(table, name)
    if table.num_rows == 0:
        raise InvalidArgument(
            f"the training data has no rows with a non-NULL label {name!r}; nothing to train on"
        )
    weight_col = getattr(options, "instance_weight_col", None)
    _check_option_column(table, "instance_weight_col", weight_col, name)
    features = [c for c in table.column_names if c not in (name, split_col, weight_col)]
    col = table.column(name)
    label_info: LabelInfo | None = None
    if task_kind == "regression":
        dtype = col.type
        if not (
            pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
        ):
            raise InvalidArgument(
                f"label column {name!r} has type {dtype}; {model_type} needs a numeric label "
                "(INT64, NUMERIC or FLOAT64); for a categorical label use LOGISTIC_REG or "
                "BOOSTED_TREE_CLASSIFIER",
                label=name,
                type=str(dtype),
            )
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if pa.types.is_decimal(dtype):
            arr = arr.cast(pa.float64())
        y = np.asarray(arr.to_numpy(), dtype=np.float64)
        infinite = int(np.isinf(y).sum())
        if infinite:
            raise InvalidArgument(
                f"label column {name!r} is +/-infinity in {infinite} row(s); {model_type} needs "
                "real-valued labels: filter those rows out or replace the values",
                label=name,
                rows=infinite,
            )
        task = "regression"
    else:
        label_info = LabelInfo.fit(col, label=name, max_classes=max_classes)
        y = label_info.encode(col)
        task = "binary_classification" if label_info.n_classes == 2 else "multiclass_classification"
    return PreparedData(table, name, features, y, label_info, task)


def instance_weights(table: pa.Table, options: Any) -> np.ndarray | None:
    """The ``instance_weight_col`` values as float64 (None without that option).

    The column must be numeric, non-NULL, finite and >= 0 (BigQuery ML's page does not say what
    a NULL weight means, so it is refused).
    """
    name = getattr(options, "instance_weight_col", None)
    if name is None:
        return None
    col = table.column(name)
    if not (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_decimal(col.type)
    ):
        raise InvalidArgument(
            f"instance_weight_col {name!r} has type {col.type}; it must be numeric (INT64, "
            "NUMERIC or FLOAT64)",
            column=name,
        )
    if col.null_count:
        raise InvalidArgument(
            f"instance_weight_col {name!r} is NULL in {col.null_count} row(s); every row "
            "needs a weight (use IFNULL(weight, 1) in the training query)",
            column=name,
        )
    weights = np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    bad = int((~np.isfinite(weights) | (weights < 0)).sum())
    if bad:
        raise InvalidArgument(
            f"instance_weight_col {name!r} has {bad} negative or non-finite weight(s); "
            "weights must be finite and >= 0",
            column=name,
        )
    return weights


def check_warm_start(model_type: str, previous: Any, table: pa.Table, features: list[str]) -> None:
    """warm_start=TRUE: the training input columns (names and types) must be the previous
    version's (BigQuery ML: the training data schema must stay the same)."""
    before = [(c["name"], c["type"]) for c in previous.preprocessor.input_schema]
    now = [(name, str(table.schema.field(name).type)) for name in features]
    if before != now:
        raise InvalidArgument(
            f"warm_start=TRUE retrains {model_type} on the same input columns as its current "
            f"version: {[f'{n} {t}' for n, t in before]}; this query has "
            f"{[f'{n} {t}' for n, t in now]}",
            previous=[n for n, _ in before],
            given=[n for n, _ in now],
        )


def split_rows(
    table: pa.Table, options: CommonOptions
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """(train rows, eval rows, description); (None, None, …) when all rows train."""
    n = table.num_rows
    method = options.data_split_method
    eval_mask: np.ndarray | None = None
    effective = method
    # BigQuery ML: RANDOM without data_split_eval_fraction sizes the split as AUTO_SPLIT does.
    auto = method == "AUTO_SPLIT" or (
        method == "RANDOM" and "data_split_eval_fraction" not in options.model_fields_set
    )
    if auto:
        n_eval = _auto_split_eval_rows(n)
        if n_eval is None:
            effective = "NO_SPLIT"
        else:
            effective = "RANDOM"
            eval_mask = _random_mask(n, n_eval)
    elif method == "RANDOM":
        eval_mask = _random_mask(n, round(n * options.data_split_eval_fraction))
    elif method == "CUSTOM":
        assert options.data_split_col is not None
        col = table.column(options.data_split_col)
        if not pa.types.is_boolean(col.type):
            raise InvalidArgument(
                f"data_split_col {options.data_split_col!r} has type {col.type}; "
                "data_split_method CUSTOM needs a BOOL column (TRUE or NULL = evaluation row)",
                column=options.data_split_col,
            )
        eval_mask = np.asarray(pc.fill_null(col, True).to_numpy(), dtype=bool)
    elif method == "SEQ":
        eval_mask = _seq_mask(table, options.data_split_col or "", options.data_split_eval_fraction)
    info: dict[str, Any] = {"method": method, "effective_method": effective}
    if eval_mask is None or not eval_mask.any():
        info.update(train_rows=n, eval_rows=0)
        return None, None, info
    train_idx = np.flatnonzero(~eval_mask)
    eval_idx = np.flatnonzero(eval_mask)
    if len(train_idx) == 0:
        raise InvalidArgument(
            f"data split {method} leaves no training rows out of {n}; adjust "
            "data_split_eval_fraction or the split column",
            method=method,
        )
    info.update(train_rows=len(train_idx), eval_rows=len(eval_idx))
    return train_idx, eval_idx, info


def _auto_split_eval_rows(n: int) -> int | None:
    """AUTO_SPLIT's evaluation size for ``n`` rows; None: too few rows to split."""
    if n < _AUTO_SPLIT_MIN_ROWS:
        return None
    if n <= _AUTO_SPLIT_MAX_ROWS:
        return round(n * _AUTO_SPLIT_FRACTION)
    return _AUTO_SPLIT_LARGE_EVAL_ROWS


def _random_mask(n: int, n_eval: int) -> np.ndarray:
    n_eval = min(max(n_eval, 1), n - 1) if n > 1 else 0
    mask = np.zeros(n, dtype=bool)
    if n_eval:
        rng = np.random.default_rng(_SEED)
        mask[rng.choice(n, size=n_eval, replace=False)] = True
    return mask


def _seq_mask(table: pa.Table, name: str, fraction: float) -> np.ndarray:
    col = table.column(name)
    dtype = col.type
    if not (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_timestamp(dtype)
        or pa.types.is_date(dtype)
    ):
        raise InvalidArgument(
            f"data_split_col {name!r} has type {dtype}; data_split_method SEQ needs a numeric, "
            "string, date or timestamp column to order the rows by",
            column=name,
        )
    n = table.num_rows
    n_eval = min(max(round(n * fraction), 1), n)
    order = pc.array_sort_indices(col, order="ascending", null_placement="at_end")
    cut = col.take(order.slice(n - n_eval, 1))[0]
    if not cut.is_valid:
        # The cut falls among the NULLs: every non-NULL row trains.
        return np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    train = pc.fill_null(pc.less(col, cut), False)
    return ~np.asarray(train.to_numpy(zero_copy_only=False), dtype=bool)


# --------------------------------------------------------------------------------------------
# trainers


@dataclass
class Fit:
    """What a trainer returns: the fitted model and its ML.TRAINING_INFO rows."""

    model: Any
    training_info: list[dict[str, Any]]
    # Raw scores on the metric rows (evaluation split, else training data), when the trainer
    # has them for free; otherwise the predictor computes them.
    metric_scores: np.ndarray | None = None


@dataclass
class UnsupervisedFit:
    """What an unsupervised trainer (KMEANS, PCA) returns: model, preprocessing and records."""

    task: str  # "clustering" | "dimensionality_reduction"
    model: Any
    preprocessor: Any  # FeaturePreprocessor
    features: list[str]
    training_info: list[dict[str, Any]]
    metrics: dict[str, float | None]
    predictor_config: dict[str, Any]


def _class_weight_vector(options: Any, label_info: LabelInfo, y: np.ndarray) -> np.ndarray | None:
    """Per-class weights (indexed by class) from auto_class_weights / class_weights."""
    k = label_info.n_classes
    if getattr(options, "auto_class_weights", False):
        counts = np.bincount(y, minlength=k).astype(np.float64)
        with np.errstate(divide="ignore"):
            weights = np.where(counts > 0, len(y) / (k * counts), 0.0)
        return weights  # type: ignore[no-any-return]
    given = getattr(options, "class_weights", None)
    if not given:
        return None
    names = [class_label_text(v) for v in label_info.values()]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidArgument(
            f"option 'class_weights' names classes {unknown} that are not in the label; "
            f"classes: {names}",
            unknown=unknown,
        )
    missing = [name for name in names if name not in given]
    if missing:
        raise InvalidArgument(
            f"option 'class_weights' has no weight for classes {missing}; give a weight for "
            f"every class: {names}",
            missing=missing,
        )
    return np.array([float(given[name]) for name in names])


def _info_row(
    iteration: int, loss: float, eval_loss: float | None, lr: float | None, ms: float
) -> dict[str, Any]:
    return {
        "training_run": 0,
        "iteration": iteration,
        "loss": float(loss),
        "eval_loss": None if eval_loss is None else float(eval_loss),
        "learning_rate": lr,
        "duration_ms": round(ms),
    }


def single_class(y: np.ndarray) -> bool:
    """Whether the class codes ``y`` hold fewer than two classes (one comparison pass, not
    the sort of ``np.unique``)."""
    return len(y) == 0 or bool((y == y[0]).all())


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    picked = proba[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))


def train_linear(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
    sample_weight: np.ndarray | None = None,
) -> Fit:
    from sklearn.linear_model import ElasticNet, LinearRegression, Ridge

    start = time.perf_counter()
    l1, l2 = options.l1_reg, options.l2_reg
    intercept = options.fit_intercept
    model: Any
    if l1 == 0.0 and l2 == 0.0:
        model = LinearRegression(fit_intercept=intercept)
    elif l1 == 0.0:
        model = Ridge(alpha=l2, fit_intercept=intercept)  # ||y - Xw||² + alpha·||w||²
    else:
        # ElasticNet minimises 1/(2n)·||y - Xw||² + a·r·|w|₁ + a·(1-r)/2·||w||²; times 2n this
        # is ||y - Xw||² + l1·|w|₁ + l2·||w||² with a·r = l1/(2n) and a·(1-r) = l2/n.
        n = len(y)
        alpha = l1 / (2 * n) + l2 / n
        model = ElasticNet(
            alpha=alpha,
            l1_ratio=(l1 / (2 * n)) / alpha,
            fit_intercept=intercept,
            max_iter=10_000,
        )
    report(0.0, f"fitting {type(model).__name__}")
    if type(model) is LinearRegression and sample_weight is None:
        # The same estimator in fewer passes over the rows (see sql/least_squares.py).
        from shipyard.sql.least_squares import fit_linear_regression

        model = fit_linear_regression(x, y, fit_intercept=intercept)
    else:
        model.fit(x, y, sample_weight=sample_weight)
    # One pass over the rows, with ML.PREDICT's arithmetic: the training loss, and the metric
    # rows' scores (the evaluation split, else these same training rows).
    scores = _linear_model_scores(model, x, 0)
    loss = float(np.mean((scores - y) ** 2))
    eval_scores = eval_loss = None
    if x_eval is not None and y_eval is not None:
        eval_scores = _linear_model_scores(model, x_eval, 0)
        eval_loss = float(np.mean((eval_scores - y_eval) ** 2))
    ms = (time.perf_counter() - start) * 1000
    report(1.0, f"fitted {type(model).__name__}: loss {loss:.6g}")
    metric_scores = eval_scores if eval_scores is not None else scores
    return Fit(model, [_info_row(0, loss, eval_loss, None, ms)], metric_scores)


def train_logistic(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
    sample_weight: np.ndarray | None = None,
) -> Fit:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    assert label_info is not None
    if single_class(y):
        raise InvalidArgument(
            "the training split holds a single class; classification needs at least 2 "
            "(use more data or another data_split_method)"
        )
    start = time.perf_counter()
    l1, l2 = options.l1_reg, options.l2_reg
    # sklearn: C·Σloss + r·|w|₁ + (1-r)/2·||w||²  ≡  Σloss + l1·|w|₁ + l2·||w||²
    penalty = l1 + 2.0 * l2
    c = math.inf if penalty == 0.0 else 1.0 / penalty
    l1_ratio = 0.0 if penalty == 0.0 else l1 / penalty
    weights = _class_weight_vector(options, label_info, y)
    model = LogisticRegression(
        C=c,
        l1_ratio=l1_ratio,
        solver="saga" if l1 > 0.0 else "lbfgs",
        max_iter=50 * options.max_iterations,
        fit_intercept=options.fit_intercept,
        class_weight=None if weights is None else dict(enumerate(weights.tolist())),
    )
    report(0.0, "fitting LogisticRegression")
    # One BLAS thread (see one_blas_thread): each lbfgs step is a product X·w and a gradient
    # Xᵀ·g over all rows. On two threads OpenBLAS splits Xᵀ·g's sum over the rows and the
    # threads wait on each other (300k x 20: 12-36 ms a product against 1.5 ms on one thread,
    # X·w 9-16 ms against 2.4 ms). The split also rounds the gradient differently: on one
    # thread the coefficients no longer depend on the machine's core count (against a
    # two-thread fit they move by ~1e-16).
    with one_blas_thread(), warnings.catch_warnings():
        # An unregularised fit on separable data never "converges"; the result is still usable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sample_weight=sample_weight)
    # One pass over the rows, as train_linear: the training loss and the metric rows' scores.
    proba = _linear_model_scores(model, x, label_info.n_classes)
    loss = _log_loss(y, proba)
    eval_scores = eval_loss = None
    if x_eval is not None and y_eval is not None:
        eval_scores = _linear_model_scores(model, x_eval, label_info.n_classes)
        eval_loss = _log_loss(y_eval, eval_scores)
    ms = (time.perf_counter() - start) * 1000
    report(1.0, f"fitted LogisticRegression: loss {loss:.6g}")
    metric_scores = eval_scores if eval_scores is not None else proba
    return Fit(model, [_info_row(0, loss, eval_loss, None, ms)], metric_scores)


def _linear_model_scores(model: Any, x: np.ndarray, k: int) -> np.ndarray:
    """A fitted linear model's output on ``x`` as ML.PREDICT computes it (row by row, see
    :func:`shipyard.registry.predictor._linear_scores`): values for a regression (``k`` 0),
    else the probabilities of the ``k`` classes in class order."""
    from shipyard.registry.predictor import _linear_scores

    scores = _linear_scores(model, x, classifier=k > 0)
    assert scores is not None  # scikit-learn linear models have coef_ and intercept_
    if k == 0 or scores.shape[1] == k:
        return scores
    full = np.zeros((len(x), k))  # a class absent from the training split: place by index
    full[:, model.classes_.astype(np.int64)] = scores
    return full


#: Threads of one XGBoost training; hyperparameter tuning sets it per trial (cores // parallel).
XGB_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "xgb_threads", default=None
)

_TREE_METHODS = {"AUTO": "hist", "EXACT": "exact", "APPROX": "approx", "HIST": "hist"}


def xgb_params(options: Any, task: str, n_classes: int) -> dict[str, Any]:
    objective, metric = {
        "regression": ("reg:squarederror", "rmse"),
        "binary_classification": ("binary:logistic", "logloss"),
        "multiclass_classification": ("multi:softprob", "mlogloss"),
    }[task]
    forest = is_random_forest(options)
    params: dict[str, Any] = {
        "objective": objective,
        "eval_metric": metric,
        # A random forest is one boosting round of num_parallel_tree trees, not shrunk.
        "eta": 1.0 if forest else options.learn_rate,
        "lambda": options.l2_reg,
        "alpha": options.l1_reg,
        "max_depth": options.max_tree_depth,
        "subsample": options.subsample,
        "colsample_bytree": options.colsample_bytree,
        "colsample_bylevel": options.colsample_bylevel,
        "colsample_bynode": options.colsample_bynode,
        "gamma": options.min_split_loss,
        "min_child_weight": options.min_tree_child_weight,
        "num_parallel_tree": options.num_parallel_tree,
        "booster": getattr(options, "booster_type", "GBTREE").lower(),
        "tree_method": _TREE_METHODS[options.tree_method],
        "nthread": XGB_THREADS.get() or os.cpu_count() or 1,
        "seed": _SEED % (2**31),
        "verbosity": 0,
    }
    if getattr(options, "booster_type", "GBTREE") == "DART":
        params["rate_drop"] = options.dropout
        params["normalize_type"] = options.dart_normalize_type.lower()
    if task == "multiclass_classification":
        params["num_class"] = n_classes
    return params


def is_random_forest(options: Any) -> bool:
    """RANDOM_FOREST_* options: one round, no learn_rate/max_iterations."""
    return str(getattr(options, "model_type", "")).startswith("RANDOM_FOREST_")


def boosting_rounds(options: Any) -> int:
    return 1 if is_random_forest(options) else int(options.max_iterations)


def train_xgboost(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
    sample_weight: np.ndarray | None = None,
) -> Fit:
    import xgboost as xgb

    if label_info is None:
        task = "regression"
    else:
        task = "binary_classification" if label_info.n_classes == 2 else "multiclass_classification"
    params = xgb_params(options, task, label_info.n_classes if label_info else 0)
    weight = sample_weight
    if label_info is not None:
        per_class = _class_weight_vector(options, label_info, y)
        if per_class is not None:
            weight = per_class[y] if weight is None else weight * per_class[y]
    threads = params["nthread"]
    dtrain = xgb.DMatrix(x, label=y, weight=weight, nthread=threads)
    evals = [(dtrain, "train")]
    deval = None
    if x_eval is not None:
        deval = xgb.DMatrix(x_eval, label=y_eval, nthread=threads)
        evals.append((deval, "eval"))
    recorder = _round_recorder(
        metric_set=deval if deval is not None else dtrain,
        metric=params["eval_metric"],
        squared=task == "regression",
        rounds=boosting_rounds(options),
        learn_rate=params["eta"],
        early_stop=options.early_stop and deval is not None,
        min_rel_progress=options.min_rel_progress,
        report=report,
    )
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=boosting_rounds(options),
        evals=evals,
        verbose_eval=False,
        callbacks=[recorder],
    )
    scores = recorder.scores
    if scores is None:
        scores = booster.predict(deval if deval is not None else dtrain)
    return Fit(booster, recorder.rows, np.asarray(scores))


def _round_recorder(
    *,
    metric_set: Any,
    metric: str,
    squared: bool,
    rounds: int,
    learn_rate: float,
    early_stop: bool,
    min_rel_progress: float,
    report: Progress,
) -> Any:
    """An XGBoost callback: ML.TRAINING_INFO rows, progress and min_rel_progress early stop."""
    import xgboost as xgb

    class RoundRecorder(xgb.callback.TrainingCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict[str, Any]] = []
            self.scores: np.ndarray | None = None
            self._last = time.perf_counter()

        def before_training(self, model: Any) -> Any:
            self._last = time.perf_counter()
            return model

        def after_training(self, model: Any) -> Any:
            # Before xgboost.train drops its caches: the metric rows' predictions come from the
            # training prediction cache (milliseconds instead of a full pass for ML.EVALUATE).
            self.scores = np.asarray(model.predict(metric_set))
            return model

        def _loss(self, evals_log: Any, name: str) -> float | None:
            series = evals_log.get(name, {}).get(metric)
            if not series:
                return None
            value = float(series[-1])
            return value * value if squared else value  # rmse → mean squared error

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            now = time.perf_counter()
            ms = (now - self._last) * 1000
            self._last = now
            loss = self._loss(evals_log, "train") or 0.0
            eval_loss = self._loss(evals_log, "eval")
            self.rows.append(_info_row(epoch, loss, eval_loss, learn_rate, ms))
            message = f"iteration {epoch + 1}/{rounds}: loss {loss:.6g}"
            if eval_loss is not None:
                message += f", eval loss {eval_loss:.6g}"
            report((epoch + 1) / rounds, message)
            if early_stop and eval_loss is not None and len(self.rows) >= 2:
                previous = self.rows[-2]["eval_loss"]
                if previous is None or previous <= 0.0:
                    return True
                # BigQuery ML: stop after the first iteration whose relative loss improvement
                # is below min_rel_progress (a worse loss is a negative improvement).
                return bool((previous - eval_loss) / previous < min_rel_progress)
            return False

    return RoundRecorder()


class Trainer(Protocol):
    """A supervised trainer: the matrices, options, classes and progress in, a Fit out.

    ``sample_weight`` holds the training rows' ``instance_weight_col`` values, if any.
    """

    def __call__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_eval: np.ndarray | None,
        y_eval: np.ndarray | None,
        options: Any,
        label_info: LabelInfo | None,
        report: Progress,
        sample_weight: np.ndarray | None = None,
    ) -> Fit: ...
