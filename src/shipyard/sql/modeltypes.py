"""BigQuery ML model types for ``CREATE MODEL``: options, data split and training.

Storage-free: an Arrow table and an options dict in, a :class:`TrainedModel` out. The SQL layer
parses the statement and stores the result; this module only knows about ML.

Supported ``model_type`` values: LINEAR_REG, LOGISTIC_REG, BOOSTED_TREE_CLASSIFIER,
BOOSTED_TREE_REGRESSOR. Option names and string enum values are case-insensitive, defaults are
BigQuery ML's.

How BigQuery ML's semantics are mapped (and where we differ):

* Data split — AUTO_SPLIT: under 500 rows no split; 500 to 50,000 rows a random 20 %; above
  50,000 a random 10,000 rows are the evaluation data. RANDOM is deterministic (a fixed seed): the
  same table always splits the same way. CUSTOM: a BOOL column, TRUE or NULL = evaluation.
  SEQ: rows whose split value is below the value at the ``1 - data_split_eval_fraction`` point
  (in ascending order) train; the rest, NULLs included, evaluate. The split column is never a
  feature. Rows whose label is NULL (or NaN) are dropped before anything else.
* LINEAR_REG is solved exactly with scikit-learn (the objective is
  ``sum of squared errors + l1_reg·|w|₁ + l2_reg·|w|²``): LinearRegression without
  regularization, Ridge(alpha=l2_reg) for L2 only, ElasticNet (alpha and l1_ratio derived to
  keep that objective) when l1_reg > 0. ``optimize_strategy``, ``learn_rate``,
  ``learn_rate_strategy``, ``ls_init_learn_rate``, ``max_iterations``, ``early_stop`` and
  ``min_rel_progress`` are accepted but the exact solvers do not need them; training info has
  one row.
* LOGISTIC_REG uses LogisticRegression with the objective
  ``sum of log losses + l1_reg·|w|₁ + l2_reg·|w|²`` (so C = 1 / (l1_reg + 2·l2_reg), no penalty
  by default as BigQuery ML), lbfgs (saga with L1), at most ``50 * max_iterations`` solver
  iterations; softmax for multiclass. At most 50 classes (BigQuery ML's limit).
* BOOSTED_TREE_* use ``xgboost.train``: max_iterations → rounds, learn_rate → eta,
  l1_reg → alpha, l2_reg → lambda, min_split_loss → gamma, min_tree_child_weight →
  min_child_weight, dropout → rate_drop, tree_method AUTO → hist. ``early_stop`` stops after the
  first round whose relative improvement of the evaluation loss is below ``min_rel_progress``
  (only when there is an evaluation split; the trees of that round are kept). No class limit is
  enforced for BOOSTED_TREE_CLASSIFIER (BigQuery ML documents none).
* Accepted without effect: ``enable_global_explain``. Refused with Unsupported:
  ``warm_start=TRUE``, ``calculate_p_values=TRUE``, ``category_encoding_method='TARGET_ENCODING'``.
* Evaluation metrics are computed on the evaluation split, or on the training data when there is
  none (ML.EVALUATE's rule).
"""

from __future__ import annotations

import math
import os
import time
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import MAX_LOGISTIC_CLASSES, FeaturePreprocessor, LabelInfo
from shipyard.sql.evaluation import evaluate

__all__ = [
    "MODEL_TYPES",
    "BoostedTreeClassifierOptions",
    "BoostedTreeRegressorOptions",
    "LinearRegOptions",
    "LogisticRegOptions",
    "ModelOptions",
    "ModelTypeSpec",
    "Progress",
    "TrainedModel",
    "parse_options",
]

Progress = Callable[[float, str], None]

# The same table always splits the same way (RANDOM / AUTO_SPLIT) and trains the same trees.
_SEED = 20240101
_AUTO_SPLIT_MIN_ROWS = 500
_AUTO_SPLIT_MAX_ROWS = 50_000
_AUTO_SPLIT_FRACTION = 0.2
_AUTO_SPLIT_LARGE_EVAL_ROWS = 10_000


# --------------------------------------------------------------------------------------------
# options


def _literal_fields(cls: type[BaseModel]) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    names = set()
    for name in cls.model_fields:
        ann = hints.get(name)
        if typing.get_origin(ann) is Literal:
            names.add(name)
    return frozenset(names)


class _CommonOptions(BaseModel):
    """Options every supported model type accepts (BigQuery ML names and defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model_type: str
    input_label_cols: list[str] | None = None
    data_split_method: Literal["AUTO_SPLIT", "RANDOM", "CUSTOM", "SEQ", "NO_SPLIT"] = "AUTO_SPLIT"
    data_split_eval_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    data_split_col: str | None = None
    max_iterations: int = Field(20, ge=1)
    l1_reg: float = Field(0.0, ge=0.0)
    l2_reg: float = Field(0.0, ge=0.0)
    learn_rate: float = Field(0.1, gt=0.0)
    early_stop: bool = True
    min_rel_progress: float = Field(0.01, ge=0.0)
    enable_global_explain: bool = False

    _enum_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._enum_fields = _literal_fields(cls)

    @field_validator("*", mode="before")
    @classmethod
    def _upper_enums(cls, value: Any, info: Any) -> Any:
        # BigQuery ML's string enum values are case-insensitive.
        if isinstance(value, str) and info.field_name in cls._enum_fields:
            return value.upper()
        return value

    @field_validator("model_type", mode="before")
    @classmethod
    def _upper_model_type(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_common(self) -> _CommonOptions:
        if self.input_label_cols is not None and len(self.input_label_cols) != 1:
            raise ValueError(
                f"option 'input_label_cols' must list exactly one column, got "
                f"{self.input_label_cols!r}"
            )
        needs_col = self.data_split_method in ("CUSTOM", "SEQ")
        if needs_col and not self.data_split_col:
            raise ValueError(
                f"data_split_method {self.data_split_method} needs option 'data_split_col' "
                "(the column that decides the split)"
            )
        if self.data_split_col is not None and not needs_col:
            raise ValueError(
                f"option 'data_split_col' is only valid with data_split_method CUSTOM or SEQ, "
                f"not {self.data_split_method}"
            )
        return self


class _GlmOptions(_CommonOptions):
    optimize_strategy: Literal["AUTO_STRATEGY", "BATCH_GRADIENT_DESCENT", "NORMAL_EQUATION"] = (
        "AUTO_STRATEGY"
    )
    learn_rate_strategy: Literal["LINE_SEARCH", "CONSTANT"] = "LINE_SEARCH"
    ls_init_learn_rate: float = Field(0.1, gt=0.0)
    warm_start: bool = False
    calculate_p_values: bool = False
    category_encoding_method: Literal["ONE_HOT_ENCODING", "DUMMY_ENCODING"] = "ONE_HOT_ENCODING"


class LinearRegOptions(_GlmOptions):
    model_type: Literal["LINEAR_REG"] = "LINEAR_REG"


def _class_weights_dict(value: Any) -> Any:
    """CLASS_WEIGHTS as {label text: weight}: from a dict or a list of (label, weight) pairs."""
    if value is None or isinstance(value, dict):
        items = list(value.items()) if isinstance(value, dict) else None
    elif isinstance(value, list | tuple):
        items = []
        for entry in value:
            pair = list(entry.values()) if isinstance(entry, dict) else entry
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                return value  # let validation report the type
            items.append((pair[0], pair[1]))
    else:
        return value
    if items is None:
        return None
    return {_label_text(k): v for k, v in items}


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _ClassifierMixin(BaseModel):
    auto_class_weights: bool = False
    class_weights: dict[str, float] | None = None

    @field_validator("class_weights", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return _class_weights_dict(value)

    @model_validator(mode="after")
    def _check_weights(self) -> _ClassifierMixin:
        if self.auto_class_weights and self.class_weights:
            raise ValueError("options 'auto_class_weights' and 'class_weights' cannot both be set")
        for label, weight in (self.class_weights or {}).items():
            if weight < 0 or not math.isfinite(weight):
                raise ValueError(
                    f"option 'class_weights' has weight {weight} for class {label!r}; weights "
                    "must be finite and >= 0"
                )
        return self


class LogisticRegOptions(_GlmOptions, _ClassifierMixin):
    model_type: Literal["LOGISTIC_REG"] = "LOGISTIC_REG"


class _BoostedTreeOptions(_CommonOptions):
    booster_type: Literal["GBTREE", "DART"] = "GBTREE"
    dart_normalize_type: Literal["TREE", "FOREST"] = "TREE"
    dropout: float = Field(0.0, ge=0.0, le=1.0)
    tree_method: Literal["AUTO", "EXACT", "APPROX", "HIST"] = "AUTO"
    max_tree_depth: int = Field(6, ge=1)
    subsample: float = Field(1.0, gt=0.0, le=1.0)
    colsample_bytree: float = Field(1.0, gt=0.0, le=1.0)
    colsample_bylevel: float = Field(1.0, gt=0.0, le=1.0)
    colsample_bynode: float = Field(1.0, gt=0.0, le=1.0)
    min_split_loss: float = Field(0.0, ge=0.0)
    min_tree_child_weight: float = Field(1.0, ge=0.0)
    num_parallel_tree: int = Field(1, ge=1)
    l2_reg: float = Field(1.0, ge=0.0)
    learn_rate: float = Field(0.3, gt=0.0)
    category_encoding_method: Literal["ONE_HOT_ENCODING", "LABEL_ENCODING", "TARGET_ENCODING"] = (
        "LABEL_ENCODING"
    )


class BoostedTreeRegressorOptions(_BoostedTreeOptions):
    model_type: Literal["BOOSTED_TREE_REGRESSOR"] = "BOOSTED_TREE_REGRESSOR"


class BoostedTreeClassifierOptions(_BoostedTreeOptions, _ClassifierMixin):
    model_type: Literal["BOOSTED_TREE_CLASSIFIER"] = "BOOSTED_TREE_CLASSIFIER"


ModelOptions = (
    LinearRegOptions
    | LogisticRegOptions
    | BoostedTreeRegressorOptions
    | BoostedTreeClassifierOptions
)

_SQL_TYPES = {int: "INT64", float: "FLOAT64", bool: "BOOL", str: "STRING"}


def _expected(cls: type[BaseModel], name: str) -> str:
    ann = typing.get_type_hints(cls).get(name)
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if ann in _SQL_TYPES:
        return _SQL_TYPES[ann]
    if args and typing.get_origin(args[0]) is list:
        return "ARRAY<STRING> (one column name)"
    if args and typing.get_origin(args[0]) is dict:
        return "ARRAY<STRUCT<STRING, FLOAT64>> of (class, weight) pairs"
    if args and args[0] in _SQL_TYPES:
        return _SQL_TYPES[args[0]]
    return str(ann)


def _bound_text(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{words[k]} {v}" for k, v in ctx.items() if k in words)


def _validation_error(
    cls: type[BaseModel], model_type: str, exc: ValidationError, given: Mapping[str, Any]
) -> InvalidArgument:
    errors = exc.errors(include_url=False)
    first = errors[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    value = given.get(name, first.get("input"))  # as the user wrote it, not upper-cased
    kind = first["type"]
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        message = (
            f"option '{name}' for model_type {model_type} must be {_bound_text(first)}, "
            f"got {value!r}"
        )
    elif kind == "literal_error":
        message = (
            f"option '{name}' for model_type {model_type} has invalid value {value!r}; "
            f"valid values: {_expected(cls, name).removeprefix('one of ')}"
        )
    elif kind == "value_error":
        message = str(first.get("ctx", {}).get("error", first["msg"]))
        message = f"invalid options for model_type {model_type}: {message}"
    elif name:
        message = (
            f"option '{name}' for model_type {model_type} must be {_expected(cls, name)}, "
            f"got {value!r} ({type(value).__name__})"
        )
    else:
        message = f"invalid options for model_type {model_type}: {first['msg']}"
    return InvalidArgument(message, option=name or None, errors=len(errors))


# --------------------------------------------------------------------------------------------
# the trained model


@dataclass
class TrainedModel:
    """What CREATE MODEL produced: the model, its preprocessing and its training record."""

    model_type: str
    task: str  # "regression" | "binary_classification" | "multiclass_classification"
    flavor: str
    model: Any
    preprocessor: FeaturePreprocessor
    label_info: LabelInfo | None
    label: str
    feature_names: list[str]
    options: dict[str, Any]
    training_info: list[dict[str, Any]]
    eval_metrics: dict[str, float | None]
    data_split: dict[str, Any] = field(default_factory=dict)
    predictor_config: dict[str, Any] = field(default_factory=dict)

    def predictor(self) -> Predictor:
        return Predictor(
            self.task,
            self.model,
            self.flavor,
            self.preprocessor,
            self.label_info,
            self.label,
            dict(self.predictor_config),
        )


# --------------------------------------------------------------------------------------------
# data preparation and split


@dataclass
class _Data:
    table: pa.Table
    label: str
    features: list[str]
    y: np.ndarray
    label_info: LabelInfo | None
    task: str


def _resolve_label(table: pa.Table, options: _CommonOptions, label: str | None) -> str:
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


def _prepare(
    spec: ModelTypeSpec, table: pa.Table, options: _CommonOptions, label: str | None
) -> _Data:
    name = _resolve_label(table, options, label)
    split_col = options.data_split_col
    if split_col is not None:
        if split_col not in table.column_names:
            raise InvalidArgument(
                f"data_split_col {split_col!r} is not in the training data; its columns are: "
                f"{list(table.column_names)}",
                column=split_col,
            )
        if split_col == name:
            raise InvalidArgument(f"data_split_col {split_col!r} cannot be the label column")
    table = _drop_null_labels(table, name)
    if table.num_rows == 0:
        raise InvalidArgument(
            f"the training data has no rows with a non-NULL label {name!r}; nothing to train on"
        )
    features = [c for c in table.column_names if c not in (name, split_col)]
    col = table.column(name)
    label_info: LabelInfo | None = None
    if spec.task_kind == "regression":
        dtype = col.type
        if not (
            pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
        ):
            raise InvalidArgument(
                f"label column {name!r} has type {dtype}; {spec.name} needs a numeric label "
                "(INT64, NUMERIC or FLOAT64); for a categorical label use LOGISTIC_REG or "
                "BOOSTED_TREE_CLASSIFIER",
                label=name,
                type=str(dtype),
            )
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if pa.types.is_decimal(dtype):
            arr = arr.cast(pa.float64())
        y = np.asarray(arr.to_numpy(), dtype=np.float64)
        task = "regression"
    else:
        label_info = LabelInfo.fit(col, label=name, max_classes=spec.max_classes)
        y = label_info.encode(col)
        task = "binary_classification" if label_info.n_classes == 2 else "multiclass_classification"
    return _Data(table, name, features, y, label_info, task)


def _split(
    table: pa.Table, options: _CommonOptions
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """(train rows, eval rows, description); (None, None, …) when all rows train."""
    n = table.num_rows
    method = options.data_split_method
    eval_mask: np.ndarray | None = None
    effective = method
    if method == "AUTO_SPLIT":
        if n < _AUTO_SPLIT_MIN_ROWS:
            effective = "NO_SPLIT"
        else:
            effective = "RANDOM"
            n_eval = (
                round(n * _AUTO_SPLIT_FRACTION)
                if n <= _AUTO_SPLIT_MAX_ROWS
                else _AUTO_SPLIT_LARGE_EVAL_ROWS
            )
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
class _Fit:
    model: Any
    training_info: list[dict[str, Any]]
    # Raw scores on the metric rows (evaluation split, else training data), when the trainer
    # has them for free; otherwise the predictor computes them.
    metric_scores: np.ndarray | None = None


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
    names = [_label_text(v) for v in label_info.values()]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidArgument(
            f"option 'class_weights' names classes {unknown} that are not in the label; "
            f"classes: {names}",
            unknown=unknown,
        )
    return np.array([float(given.get(name, 1.0)) for name in names])


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


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    picked = proba[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))


def _train_linear(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
) -> _Fit:
    from sklearn.linear_model import ElasticNet, LinearRegression, Ridge

    start = time.perf_counter()
    l1, l2 = options.l1_reg, options.l2_reg
    model: Any
    if l1 == 0.0 and l2 == 0.0:
        model = LinearRegression()
    elif l1 == 0.0:
        model = Ridge(alpha=l2)  # ||y - Xw||² + alpha·||w||²
    else:
        # ElasticNet minimises 1/(2n)·||y - Xw||² + a·r·|w|₁ + a·(1-r)/2·||w||²; times 2n this
        # is ||y - Xw||² + l1·|w|₁ + l2·||w||² with a·r = l1/(2n) and a·(1-r) = l2/n.
        n = len(y)
        alpha = l1 / (2 * n) + l2 / n
        model = ElasticNet(alpha=alpha, l1_ratio=(l1 / (2 * n)) / alpha, max_iter=10_000)
    report(0.0, f"fitting {type(model).__name__}")
    model.fit(x, y)
    loss = float(np.mean((model.predict(x) - y) ** 2))
    eval_scores = model.predict(x_eval) if x_eval is not None else None
    eval_loss = float(np.mean((eval_scores - y_eval) ** 2)) if eval_scores is not None else None
    ms = (time.perf_counter() - start) * 1000
    report(1.0, f"fitted {type(model).__name__}: loss {loss:.6g}")
    return _Fit(model, [_info_row(0, loss, eval_loss, None, ms)], eval_scores)


def _train_logistic(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
) -> _Fit:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    assert label_info is not None
    if len(np.unique(y)) < 2:
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
        class_weight=None if weights is None else dict(enumerate(weights.tolist())),
    )
    report(0.0, "fitting LogisticRegression")
    with warnings.catch_warnings():
        # An unregularised fit on separable data never "converges"; the result is still usable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    predictor_like = _proba_full(model, x, label_info.n_classes)
    loss = _log_loss(y, predictor_like)
    eval_scores = None
    eval_loss = None
    if x_eval is not None and y_eval is not None:
        eval_scores = _proba_full(model, x_eval, label_info.n_classes)
        eval_loss = _log_loss(y_eval, eval_scores)
    ms = (time.perf_counter() - start) * 1000
    report(1.0, f"fitted LogisticRegression: loss {loss:.6g}")
    return _Fit(model, [_info_row(0, loss, eval_loss, None, ms)], eval_scores)


def _proba_full(model: Any, x: np.ndarray, k: int) -> np.ndarray:
    proba = model.predict_proba(x)
    if proba.shape[1] == k:
        return proba  # type: ignore[no-any-return]
    full = np.zeros((len(x), k))
    full[:, model.classes_.astype(np.int64)] = proba
    return full


_TREE_METHODS = {"AUTO": "hist", "EXACT": "exact", "APPROX": "approx", "HIST": "hist"}


def _xgb_params(options: Any, task: str, n_classes: int) -> dict[str, Any]:
    objective, metric = {
        "regression": ("reg:squarederror", "rmse"),
        "binary_classification": ("binary:logistic", "logloss"),
        "multiclass_classification": ("multi:softprob", "mlogloss"),
    }[task]
    params: dict[str, Any] = {
        "objective": objective,
        "eval_metric": metric,
        "eta": options.learn_rate,
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
        "booster": options.booster_type.lower(),
        "tree_method": _TREE_METHODS[options.tree_method],
        "nthread": os.cpu_count() or 1,
        "seed": _SEED % (2**31),
        "verbosity": 0,
    }
    if options.booster_type == "DART":
        params["rate_drop"] = options.dropout
        params["normalize_type"] = options.dart_normalize_type.lower()
    if task == "multiclass_classification":
        params["num_class"] = n_classes
    return params


def _train_xgboost(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
) -> _Fit:
    import xgboost as xgb

    if label_info is None:
        task = "regression"
    else:
        task = "binary_classification" if label_info.n_classes == 2 else "multiclass_classification"
    params = _xgb_params(options, task, label_info.n_classes if label_info else 0)
    weight = None
    if label_info is not None:
        per_class = _class_weight_vector(options, label_info, y)
        if per_class is not None:
            weight = per_class[y]
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
        rounds=options.max_iterations,
        learn_rate=options.learn_rate,
        early_stop=options.early_stop and deval is not None,
        min_rel_progress=options.min_rel_progress,
        report=report,
    )
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=options.max_iterations,
        evals=evals,
        verbose_eval=False,
        callbacks=[recorder],
    )
    scores = recorder.scores
    if scores is None:
        scores = booster.predict(deval if deval is not None else dtrain)
    return _Fit(booster, recorder.rows, np.asarray(scores))


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


# --------------------------------------------------------------------------------------------
# model types

_Trainer = Callable[
    [np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, Any, LabelInfo | None, Progress],
    _Fit,
]


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass(frozen=True)
class ModelTypeSpec:
    """One ``model_type``: its options class, task kind, flavor and trainer."""

    name: str
    options_class: type[_CommonOptions]
    task_kind: Literal["regression", "classification"]
    flavor: str
    trainer: _Trainer
    standardize: bool
    max_classes: int | None = None

    @property
    def option_names(self) -> list[str]:
        return sorted(self.options_class.model_fields)

    def parse_options(self, raw: Mapping[str, Any]) -> Any:
        """Validate CREATE MODEL options (names case-insensitive) into this type's options."""
        values = {str(k).lower(): v for k, v in raw.items()}
        values.setdefault("model_type", self.name)
        valid = self.option_names
        for key in values:
            if key not in self.options_class.model_fields:
                raise InvalidArgument(
                    f"unknown option {key!r} for model_type {self.name}; valid options: "
                    f"{', '.join(valid)}",
                    option=key,
                    valid=valid,
                )
        model_type = values["model_type"]
        if not isinstance(model_type, str) or model_type.upper() != self.name:
            raise InvalidArgument(
                f"option 'model_type' is {model_type!r} but these options are for {self.name}"
            )
        try:
            options = self.options_class.model_validate(values)
        except ValidationError as exc:
            raise _validation_error(self.options_class, self.name, exc, values) from None
        self._check_supported(options)
        return options

    def _check_supported(self, options: Any) -> None:
        if getattr(options, "warm_start", False):
            raise Unsupported(
                f"warm_start=TRUE is not supported for {self.name} yet; retrain from scratch"
            )
        if getattr(options, "calculate_p_values", False):
            raise Unsupported(f"calculate_p_values=TRUE is not supported for {self.name} yet")
        if getattr(options, "category_encoding_method", None) == "TARGET_ENCODING":
            raise Unsupported(
                f"category_encoding_method 'TARGET_ENCODING' is not supported for {self.name}; "
                "valid: ONE_HOT_ENCODING, LABEL_ENCODING"
            )

    def _encoding(self, options: Any) -> str:
        return {
            "ONE_HOT_ENCODING": "one_hot",
            "DUMMY_ENCODING": "dummy",
            "LABEL_ENCODING": "label",
        }[options.category_encoding_method]

    def train(
        self,
        table: pa.Table,
        options: Any,
        *,
        label: str | None = None,
        progress: Progress | None = None,
    ) -> TrainedModel:
        """Train on ``table``: label = ``label``, else input_label_cols, else column 'label'.

        Every other column (but a CUSTOM/SEQ ``data_split_col``) is a feature.
        """
        if not isinstance(options, self.options_class):
            if isinstance(options, BaseModel):
                options = options.model_dump()
            options = self.parse_options(options)
        report = progress or _no_progress
        report(0.0, "preparing data")
        data = _prepare(self, table, options, label)
        train_idx, eval_idx, split_info = _split(data.table, options)
        matrix_dtype = np.float32 if self.flavor == "xgboost" else np.float64
        preprocessor = FeaturePreprocessor.fit(
            data.table,
            data.features,
            standardize=self.standardize,
            categorical_encoding=self._encoding(options),
        )
        matrix = preprocessor.transform(data.table, dtype=matrix_dtype)
        if train_idx is None:
            x, y, x_eval, y_eval = matrix, data.y, None, None
        else:
            x, y = matrix[train_idx], data.y[train_idx]
            x_eval, y_eval = matrix[eval_idx], data.y[eval_idx]
        del matrix
        fit = self.trainer(x, y, x_eval, y_eval, options, data.label_info, report)
        predictor = Predictor(
            data.task,
            fit.model,
            self.flavor,
            preprocessor,
            data.label_info,
            data.label,
            {
                "matrix_dtype": "float32" if matrix_dtype is np.float32 else "float64",
                "threshold": 0.5,
                "model_type": self.name,
            },
        )
        metric_x, metric_y = (x_eval, y_eval) if x_eval is not None else (x, y)
        assert metric_y is not None and metric_x is not None
        if fit.metric_scores is not None:
            predictions, probabilities = predictor.interpret_scores(fit.metric_scores)
        else:
            predictions, probabilities = predictor.predict_raw(metric_x)
        metrics = evaluate(
            data.task,
            metric_y,
            predictions,
            probabilities,
            data.label_info.values() if data.label_info else None,
        )
        report(1.0, "trained")
        return TrainedModel(
            model_type=self.name,
            task=data.task,
            flavor=self.flavor,
            model=fit.model,
            preprocessor=preprocessor,
            label_info=data.label_info,
            label=data.label,
            feature_names=list(data.features),
            options=options.model_dump(mode="json"),
            training_info=fit.training_info,
            eval_metrics=metrics,
            data_split=split_info,
            predictor_config=dict(predictor.config),
        )


MODEL_TYPES: dict[str, ModelTypeSpec] = {
    "LINEAR_REG": ModelTypeSpec(
        "LINEAR_REG", LinearRegOptions, "regression", "sklearn", _train_linear, True
    ),
    "LOGISTIC_REG": ModelTypeSpec(
        "LOGISTIC_REG",
        LogisticRegOptions,
        "classification",
        "sklearn",
        _train_logistic,
        True,
        MAX_LOGISTIC_CLASSES,
    ),
    "BOOSTED_TREE_CLASSIFIER": ModelTypeSpec(
        "BOOSTED_TREE_CLASSIFIER",
        BoostedTreeClassifierOptions,
        "classification",
        "xgboost",
        _train_xgboost,
        False,
    ),
    "BOOSTED_TREE_REGRESSOR": ModelTypeSpec(
        "BOOSTED_TREE_REGRESSOR",
        BoostedTreeRegressorOptions,
        "regression",
        "xgboost",
        _train_xgboost,
        False,
    ),
}


def model_type_spec(model_type: Any) -> ModelTypeSpec:
    """The spec of a ``model_type`` value (case-insensitive)."""
    key = model_type.upper() if isinstance(model_type, str) else model_type
    spec = MODEL_TYPES.get(key) if isinstance(key, str) else None
    if spec is None:
        raise Unsupported(
            f"model_type {model_type!r} is not supported; supported model types: "
            f"{', '.join(MODEL_TYPES)}",
            model_type=model_type,
        )
    return spec


def parse_options(raw: Mapping[str, Any]) -> Any:
    """Validate a CREATE MODEL OPTIONS dict (any model type) into its options model."""
    values = {str(k).lower(): v for k, v in raw.items()}
    if "model_type" not in values:
        raise InvalidArgument(
            f"option 'model_type' is required; supported model types: {', '.join(MODEL_TYPES)}"
        )
    return model_type_spec(values["model_type"]).parse_options(values)
