"""CREATE MODEL options: one pydantic model per ``model_type``, with BigQuery ML's names,
defaults and rules, and error messages that name the option, the value and what was expected.

Option names and string enum values are case-insensitive. Rules checked here, as BigQuery ML
states them: ``input_label_cols`` lists one column; CUSTOM and SEQ need ``data_split_col`` (and
only they take it); ``data_split_eval_fraction`` is kept to two decimal places;
``learn_rate`` needs ``learn_rate_strategy='CONSTANT'``; ``optimize_strategy='NORMAL_EQUATION'``
refuses ``l1_reg``; ``auto_class_weights`` and ``class_weights`` exclude each other;
``kmeans_init_method='CUSTOM'`` needs ``kmeans_init_col`` (and only it takes it); PCA takes
exactly one of ``num_principal_components`` and ``pca_explained_variance_ratio``. Shipyard adds:
``dropout`` and ``dart_normalize_type`` need ``booster_type='DART'`` (they would do nothing
otherwise). Random forests have no ``max_iterations``, ``learn_rate`` or ``booster_type``
(one round, eta 1); KMEANS and PCA have no label or data split options.

BigQuery ML options that Shipyard knows but does not implement (``xgboost_version``, …) are
refused with Unsupported; an option BigQuery ML does not have either is an InvalidArgument that
lists the valid ones. Hyperparameter tuning (``num_trials``, ``HPARAM_RANGE`` …) is CREATE
MODEL's: :mod:`shipyard.sql.tuning` takes those options out before these models see them, so
here they are still refused.

Example::

    >>> opts = validate_options(LinearRegOptions, "LINEAR_REG", {"L2_REG": 0.5}, {})
    >>> (opts.l2_reg, opts.data_split_method)
    (0.5, 'AUTO_SPLIT')
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.errors import InvalidArgument, Unsupported

__all__ = [
    "BOOSTED_TREE_UNSUPPORTED_OPTIONS",
    "CATEGORY_ENCODINGS",
    "GLM_UNSUPPORTED_OPTIONS",
    "KMEANS_UNSUPPORTED_OPTIONS",
    "PCA_UNSUPPORTED_OPTIONS",
    "BaseOptions",
    "BoostedTreeClassifierOptions",
    "BoostedTreeRegressorOptions",
    "CommonOptions",
    "KMeansOptions",
    "LinearRegOptions",
    "LogisticRegOptions",
    "ModelOptions",
    "PcaOptions",
    "RandomForestClassifierOptions",
    "RandomForestRegressorOptions",
    "class_label_text",
    "option_names",
    "validate_options",
]


def _literal_fields(cls: type[BaseModel]) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    names = set()
    for name in cls.model_fields:
        ann = hints.get(name)
        if typing.get_origin(ann) is Literal:
            names.add(name)
    return frozenset(names)


class BaseOptions(BaseModel):
    """What every options model shares: strict types, case-insensitive enum values."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model_type: str

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


class CommonOptions(BaseOptions):
    """Options every supervised model type accepts (BigQuery ML names and defaults)."""

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

    @field_validator("data_split_eval_fraction", mode="after")
    @classmethod
    def _two_decimals(cls, value: float) -> float:
        # BigQuery ML keeps the fraction to two decimal places.
        rounded = round(value, 2)
        if not 0.0 < rounded < 1.0:
            raise ValueError(
                f"option 'data_split_eval_fraction' must be between 0.01 and 0.99 (two decimal "
                f"places are kept), got {value!r}"
            )
        return rounded

    @model_validator(mode="after")
    def _check_common(self) -> CommonOptions:
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


class _GlmOptions(CommonOptions):
    optimize_strategy: Literal["AUTO_STRATEGY", "BATCH_GRADIENT_DESCENT", "NORMAL_EQUATION"] = (
        "AUTO_STRATEGY"
    )
    learn_rate_strategy: Literal["LINE_SEARCH", "CONSTANT"] = "LINE_SEARCH"
    ls_init_learn_rate: float = Field(0.1, gt=0.0)
    warm_start: bool = False
    calculate_p_values: bool = False
    fit_intercept: bool = True
    category_encoding_method: Literal["ONE_HOT_ENCODING", "DUMMY_ENCODING"] = "ONE_HOT_ENCODING"

    @model_validator(mode="after")
    def _check_glm(self) -> _GlmOptions:
        given = self.model_fields_set
        if "learn_rate" in given and self.learn_rate_strategy == "LINE_SEARCH":
            raise ValueError(
                "option 'learn_rate' applies only with learn_rate_strategy 'CONSTANT'; with "
                "'LINE_SEARCH' (the default) set 'ls_init_learn_rate' instead"
            )
        if "l1_reg" in given and self.optimize_strategy == "NORMAL_EQUATION":
            raise ValueError(
                "optimize_strategy 'NORMAL_EQUATION' cannot be used with option 'l1_reg'; use "
                "'AUTO_STRATEGY' or 'BATCH_GRADIENT_DESCENT'"
            )
        return self


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
    return {class_label_text(k): v for k, v in items}


def class_label_text(value: Any) -> str:
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


class _BoostedTreeOptions(CommonOptions):
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
    min_tree_child_weight: int = Field(1, ge=0)
    num_parallel_tree: int = Field(1, ge=1)
    l2_reg: float = Field(1.0, ge=0.0)
    learn_rate: float = Field(0.3, gt=0.0)
    category_encoding_method: Literal["ONE_HOT_ENCODING", "LABEL_ENCODING", "TARGET_ENCODING"] = (
        "LABEL_ENCODING"
    )
    instance_weight_col: str | None = None

    @model_validator(mode="after")
    def _check_trees(self) -> _BoostedTreeOptions:
        given = self.model_fields_set
        if self.booster_type != "DART":
            for name in ("dart_normalize_type", "dropout"):
                if name in given:
                    raise ValueError(
                        f"option '{name}' applies only with booster_type 'DART', not "
                        f"{self.booster_type!r}"
                    )
        if self.instance_weight_col is not None and self.instance_weight_col in (
            self.input_label_cols or []
        ):
            raise ValueError(
                f"option 'instance_weight_col' ({self.instance_weight_col!r}) cannot be the "
                "label column"
            )
        return self


class BoostedTreeRegressorOptions(_BoostedTreeOptions):
    model_type: Literal["BOOSTED_TREE_REGRESSOR"] = "BOOSTED_TREE_REGRESSOR"


class BoostedTreeClassifierOptions(_BoostedTreeOptions, _ClassifierMixin):
    model_type: Literal["BOOSTED_TREE_CLASSIFIER"] = "BOOSTED_TREE_CLASSIFIER"


class _RandomForestOptions(CommonOptions):
    """BigQuery ML's random forest: XGBoost, one round of ``num_parallel_tree`` trees."""

    # Options of CommonOptions that random forests do not have (one boosting round, eta 1).
    _not_options: ClassVar[frozenset[str]] = frozenset({"max_iterations", "learn_rate"})

    num_parallel_tree: int = Field(100, ge=2)
    max_tree_depth: int = Field(15, ge=1)
    tree_method: Literal["AUTO", "EXACT", "APPROX", "HIST"] = "AUTO"
    subsample: float = Field(0.8, gt=0.0, lt=1.0)
    colsample_bytree: float = Field(1.0, gt=0.0, le=1.0)
    colsample_bylevel: float = Field(1.0, gt=0.0, le=1.0)
    colsample_bynode: float = Field(0.8, gt=0.0, le=1.0)
    min_split_loss: float = Field(0.0, ge=0.0)
    min_tree_child_weight: int = Field(1, ge=0)
    l2_reg: float = Field(1.0, ge=0.0)
    category_encoding_method: Literal["ONE_HOT_ENCODING", "LABEL_ENCODING", "TARGET_ENCODING"] = (
        "LABEL_ENCODING"
    )
    instance_weight_col: str | None = None


class RandomForestRegressorOptions(_RandomForestOptions):
    model_type: Literal["RANDOM_FOREST_REGRESSOR"] = "RANDOM_FOREST_REGRESSOR"


class RandomForestClassifierOptions(_RandomForestOptions, _ClassifierMixin):
    model_type: Literal["RANDOM_FOREST_CLASSIFIER"] = "RANDOM_FOREST_CLASSIFIER"


class KMeansOptions(BaseOptions):
    """KMEANS: no label, no data split; metrics are computed on the training data."""

    model_type: Literal["KMEANS"] = "KMEANS"
    num_clusters: int | None = Field(None, ge=2, le=100)
    kmeans_init_method: Literal["RANDOM", "KMEANS++", "CUSTOM"] = "RANDOM"
    kmeans_init_col: str | None = None
    distance_type: Literal["EUCLIDEAN", "COSINE"] = "EUCLIDEAN"
    standardize_features: bool = True
    max_iterations: int = Field(20, ge=1)
    early_stop: bool = True
    min_rel_progress: float = Field(0.01, ge=0.0)
    warm_start: bool = False

    @model_validator(mode="after")
    def _check_init(self) -> KMeansOptions:
        if self.kmeans_init_method == "CUSTOM" and not self.kmeans_init_col:
            raise ValueError(
                "kmeans_init_method 'CUSTOM' needs option 'kmeans_init_col' (a BOOL column "
                "whose TRUE rows are the initial centroids)"
            )
        if self.kmeans_init_col is not None and self.kmeans_init_method != "CUSTOM":
            raise ValueError(
                "option 'kmeans_init_col' is only valid with kmeans_init_method 'CUSTOM', not "
                f"{self.kmeans_init_method!r}"
            )
        return self


class PcaOptions(BaseOptions):
    """PCA: exactly one of num_principal_components and pca_explained_variance_ratio."""

    model_type: Literal["PCA"] = "PCA"
    num_principal_components: int | None = Field(None, ge=1)
    pca_explained_variance_ratio: float | None = Field(None, gt=0.0, lt=1.0)
    scale_features: bool = True
    pca_solver: Literal["FULL", "RANDOMIZED", "AUTO"] = "AUTO"

    @model_validator(mode="after")
    def _check_components(self) -> PcaOptions:
        given = [
            n
            for n in ("num_principal_components", "pca_explained_variance_ratio")
            if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "PCA needs exactly one of options 'num_principal_components' (INT64) and "
                f"'pca_explained_variance_ratio' (FLOAT64 in (0, 1)); got {given or 'neither'}"
            )
        return self


ModelOptions = (
    LinearRegOptions
    | LogisticRegOptions
    | BoostedTreeRegressorOptions
    | BoostedTreeClassifierOptions
    | RandomForestRegressorOptions
    | RandomForestClassifierOptions
    | KMeansOptions
    | PcaOptions
)


def option_names(options_class: type[BaseModel]) -> list[str]:
    """The CREATE MODEL option names an options model accepts, sorted."""
    hidden: frozenset[str] = getattr(options_class, "_not_options", frozenset())
    return sorted(n for n in options_class.model_fields if n not in hidden)


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


#: CATEGORY_ENCODING_METHOD → the FeaturePreprocessor's ``categorical_encoding``.
CATEGORY_ENCODINGS: dict[str, str] = {
    "ONE_HOT_ENCODING": "one_hot",
    "DUMMY_ENCODING": "dummy",
    "LABEL_ENCODING": "label",
    "TARGET_ENCODING": "target",  # boosted trees and random forests
}

_NOT_YET_COMMON = {
    "num_trials": "hyperparameter tuning",
    "max_parallel_trials": "hyperparameter tuning",
    "hparam_tuning_algorithm": "hyperparameter tuning",
    "hparam_tuning_objectives": "hyperparameter tuning",
    "data_split_test_fraction": "hyperparameter tuning's test split",
    "kms_key_name": "customer-managed encryption keys",
}
#: BigQuery ML options of LINEAR_REG / LOGISTIC_REG that Shipyard refuses: name → what.
GLM_UNSUPPORTED_OPTIONS: dict[str, str] = {
    **_NOT_YET_COMMON,
    "model_registry": "Vertex AI model registration",
    "vertex_ai_model_id": "Vertex AI model registration",
    "vertex_ai_model_version_aliases": "Vertex AI model registration",
}
#: BigQuery ML options of BOOSTED_TREE_* and RANDOM_FOREST_* that Shipyard refuses: name → what.
BOOSTED_TREE_UNSUPPORTED_OPTIONS: dict[str, str] = {
    **_NOT_YET_COMMON,
    "approx_global_feature_contrib": "global explanations",
    "xgboost_version": "Shipyard trains with the installed xgboost",
}
#: BigQuery ML options of KMEANS that Shipyard refuses: name → what.
KMEANS_UNSUPPORTED_OPTIONS: dict[str, str] = {
    **{k: v for k, v in GLM_UNSUPPORTED_OPTIONS.items() if k != "data_split_test_fraction"},
}
#: BigQuery ML options of PCA that Shipyard refuses: name → what.
PCA_UNSUPPORTED_OPTIONS: dict[str, str] = {
    k: v for k, v in GLM_UNSUPPORTED_OPTIONS.items() if not v.startswith("hyperparameter")
}


def validate_options(
    options_class: type[BaseOptions],
    model_type: str,
    raw: Mapping[str, Any],
    unsupported: Mapping[str, str],
) -> Any:
    """``raw`` CREATE MODEL options (names case-insensitive) as an ``options_class``.

    ``unsupported`` maps BigQuery ML option names this type refuses to what they are for.
    """
    values = {str(k).lower(): v for k, v in raw.items()}
    values.setdefault("model_type", model_type)
    valid = option_names(options_class)
    for key in values:
        if key in unsupported:
            raise Unsupported(
                f"option {key!r} ({unsupported[key]}) is not supported for {model_type} yet",
                option=key,
            )
        if key not in valid:
            raise InvalidArgument(
                f"unknown option {key!r} for model_type {model_type}; valid options: "
                f"{', '.join(valid)}",
                option=key,
                valid=valid,
            )
    given_type = values["model_type"]
    if not isinstance(given_type, str) or given_type.upper() != model_type:
        raise InvalidArgument(
            f"option 'model_type' is {given_type!r} but these options are for {model_type}"
        )
    try:
        options = options_class.model_validate(values)
    except ValidationError as exc:
        raise _validation_error(options_class, model_type, exc, values) from None
    return options
