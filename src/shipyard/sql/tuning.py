"""Hyperparameter tuning in ``CREATE MODEL``, as BigQuery ML does it, with Optuna underneath.

``OPTIONS(num_trials=N [, max_parallel_trials=P] [, hparam_tuning_algorithm=…]
[, hparam_tuning_objectives=[…]], <option>=HPARAM_RANGE(min, max) | HPARAM_CANDIDATES([…]))``
trains N trials of the model type's usual trainer on the same data split, each with its own
hyperparameters, and scores each on the evaluation split (on the training data when the split
leaves none — the same rule as ML.EVALUATE without input; the job log says so).

* ``num_trials`` 1 to 100; ``max_parallel_trials`` 1 to 5 (default 1, at most ``num_trials``):
  trials run on a thread pool inside the job, XGBoost with ``cores // max_parallel_trials``
  threads each.
* ``hparam_tuning_algorithm``: ``VIZIER_DEFAULT`` (default) is Optuna's TPE sampler (Bayesian
  optimisation, as Vizier's default is), ``RANDOM_SEARCH`` its RandomSampler, ``GRID_SEARCH``
  every combination once (all search spaces must be HPARAM_CANDIDATES), in a seeded random order.
  When every space is a candidate list with at most ``num_trials`` combinations, every
  combination is tried once, whatever the algorithm: the search space is exhausted (BigQuery ML
  stops there too).
* ``hparam_tuning_objectives``: one metric; defaults R2_SCORE (regressors, DNN regressors),
  ROC_AUC (classifiers, DNN classifiers), DAVIES_BOULDIN_INDEX (KMEANS), MEAN_SQUARED_ERROR
  (explicit MATRIX_FACTORIZATION), MEAN_AVERAGE_PRECISION (implicit: also
  NORMALIZED_DISCOUNTED_CUMULATIVE_GAIN, AVERAGE_RANK). Error metrics, LOG_LOSS, AVERAGE_RANK and
  the Davies-Bouldin index are minimised, the others maximised.
* DNN ``hidden_units`` takes candidates only, arrays written ``[[64, 32], [16]]`` or as BigQuery
  ML does, ``[STRUCT([64, 32]), STRUCT([16])]`` (Optuna sees them as text). DNN trials run one
  at a time: PyTorch's random state is per process.
* Search spaces: the options given as HPARAM_RANGE / HPARAM_CANDIDATES. With none given, Shipyard
  tunes the hyperparameters BigQuery ML gives a default range (:data:`DEFAULT_TUNED`) over those
  ranges, leaving out any the statement fixes. ``l1_reg``/``l2_reg`` and ``batch_size`` are
  searched on a log scale (BigQuery ML's LOG scale; a lower bound of 0 becomes ``max / 10**5``).
* ``data_split_test_fraction`` and ``data_split_method='CUSTOM'`` with a STRING column of
  'TRAIN' / 'EVAL' / 'TEST' hold out a test split: see :mod:`shipyard.sql.holdout`.
* A trial whose options do not validate (e.g. ``dropout`` without DART) is INFEASIBLE; one whose
  training raised, or whose objective is NULL, FAILED. The optimal trial is the SUCCEEDED one with
  the best objective (the lowest trial_id on ties): the version's model and metrics are its, and
  every SUCCEEDED trial's model is stored with the version, so ``STRUCT(3 AS trial_id)`` in
  ML.PREDICT / ML.EVALUATE / ML.EXPLAIN_PREDICT uses trial 3. ML.TRIAL_INFO lists the trials;
  ML.EVALUATE without input rows returns one row of evaluation metrics per trial, and
  ML.TRAINING_INFO every trial's iterations (``trial_id`` first).
* Cancelling the job stops the running trials at their next iteration and starts no others.

Example::

    CREATE MODEL demo.tuned
    OPTIONS(model_type='BOOSTED_TREE_CLASSIFIER', num_trials=8, max_parallel_trials=2,
            learn_rate=HPARAM_RANGE(0.05, 0.5), max_tree_depth=HPARAM_CANDIDATES([2, 4, 6]))
    AS SELECT * FROM demo.train
"""

from __future__ import annotations

import itertools
import math
import os
import random
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from sqlglot import exp

from shipyard.engine import JobCancelled, JobContext
from shipyard.errors import InvalidArgument, ShipyardError, SQLError, Unsupported
from shipyard.registry.flavors import save_model
from shipyard.sql import training
from shipyard.sql.dialect import ShipyardBigQuery, literal_value
from shipyard.sql.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS
from shipyard.sql.inspection import training_info_schema

if TYPE_CHECKING:
    from shipyard.sql.modeltypes import ModelTypeSpec, TrainedModel
    from shipyard.sql.service import SqlService

__all__ = [
    "ALGORITHMS",
    "DEFAULT_OBJECTIVES",
    "DEFAULT_TUNED",
    "OBJECTIVES",
    "TUNABLE",
    "TUNING_OPTIONS",
    "HParamCandidates",
    "HParamRange",
    "Tunable",
    "TuningOutcome",
    "TuningPlan",
    "handlers",
    "hparam_value",
    "ml_trial_info",
    "parse_base",
    "plan_tuning",
    "run_trials",
]

#: CREATE MODEL options that configure tuning (not the model).
TUNING_OPTIONS = (
    "num_trials",
    "max_parallel_trials",
    "hparam_tuning_algorithm",
    "hparam_tuning_objectives",
)
ALGORITHMS = ("VIZIER_DEFAULT", "RANDOM_SEARCH", "GRID_SEARCH")
MAX_TRIALS = 100
MAX_PARALLEL_TRIALS = 5
_SEED = 20240101


# --------------------------------------------------------------------------------------------
# search spaces


@dataclass(frozen=True)
class HParamRange:
    """``HPARAM_RANGE(min, max)``: a closed interval of a numeric hyperparameter."""

    low: float
    high: float

    def sql(self) -> str:
        return f"HPARAM_RANGE({self.low}, {self.high})"


@dataclass(frozen=True)
class HParamCandidates:
    """``HPARAM_CANDIDATES([v1, v2, …])``: a list of values to choose from."""

    values: tuple[Any, ...]

    def sql(self) -> str:
        return "HPARAM_CANDIDATES([" + ", ".join(repr(v) for v in self.values) + "])"


Space = HParamRange | HParamCandidates


def hparam_value(node: exp.Expression) -> Space | None:
    """The search space an OPTIONS value spells (HPARAM_RANGE / HPARAM_CANDIDATES), else None."""
    if not isinstance(node, exp.Anonymous):
        return None
    name = str(node.name).upper()
    if name not in ("HPARAM_RANGE", "HPARAM_CANDIDATES"):
        return None
    args = [
        _candidates(a) if name == "HPARAM_CANDIDATES" else literal_value(a)
        for a in node.expressions
    ]
    text = node.sql(dialect=ShipyardBigQuery)
    if name == "HPARAM_RANGE":
        if len(args) != 2 or not all(_is_number(a) for a in args):
            raise SQLError(f"HPARAM_RANGE takes two numbers, HPARAM_RANGE(min, max); got {text}")
        low, high = args
        if not low < high:
            raise InvalidArgument(f"HPARAM_RANGE needs min < max, got {text}")
        return HParamRange(low, high)
    if len(args) != 1 or not isinstance(args[0], list) or not args[0]:
        raise SQLError(
            f"HPARAM_CANDIDATES takes one non-empty array, HPARAM_CANDIDATES([v1, v2, …]); "
            f"got {text}"
        )
    values = tuple(tuple(v) if isinstance(v, list) else v for v in args[0])
    if len({repr(v) for v in values}) != len(values):
        raise InvalidArgument(f"HPARAM_CANDIDATES lists a value twice: {text}")
    return HParamCandidates(values)


def _candidates(node: exp.Expression) -> Any:
    """HPARAM_CANDIDATES' array; an array candidate may be wrapped in an unnamed STRUCT, as
    BigQuery ML writes ``hidden_units=HPARAM_CANDIDATES([STRUCT([16, 8]), STRUCT([32])])``."""
    if not isinstance(node, exp.Array):
        return literal_value(node)
    out = []
    for item in node.expressions:
        if isinstance(item, exp.Struct) and len(item.expressions) == 1:
            only = item.expressions[0]
            if not isinstance(only, exp.PropertyEQ | exp.Alias):
                item = only
        out.append(literal_value(item))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Tunable:
    """One tunable hyperparameter: its kind, valid values and BigQuery ML's default space."""

    kind: Literal["float", "int", "enum", "int_list"]
    valid: tuple[Any, ...]  # (min, max) for numbers (each entry's, for int lists), enum values
    default: Space | None  # None: tuned only when the statement gives candidates
    log: bool = False

    def describe(self) -> str:
        if self.kind == "enum":
            return "one of " + ", ".join(self.valid)
        if self.kind == "int_list":
            return f"a non-empty ARRAY<INT64> of values in [{self.valid[0]}, {self.valid[1]}]"
        kind = "INT64" if self.kind == "int" else "FLOAT64"
        return f"{kind} in [{self.valid[0]}, {self.valid[1]}]"


_INF = math.inf
# Each Tunable's default space is BigQuery ML's "default range" for it (the CREATE MODEL pages);
# None where the reference gives none: such a hyperparameter is tuned only when the statement
# gives it a search space. DEFAULT_TUNED lists exactly the ones with a default space.
_REG = Tunable("float", (0.0, _INF), HParamRange(0.0, 10.0), log=True)
_FRACTION = Tunable("float", (0.0, 1.0), None)
_SUBSAMPLE = Tunable("float", (0.0, 1.0), HParamRange(0.0, 1.0))
_TREE_METHOD = Tunable("enum", ("AUTO", "EXACT", "APPROX", "HIST"), None)
_MIN_SPLIT_LOSS = Tunable("float", (0.0, _INF), None)
_MIN_CHILD_WEIGHT = Tunable("int", (0, _INF), None)
_GLM = {"l1_reg": _REG, "l2_reg": _REG}
_TREES = {
    "learn_rate": Tunable("float", (0.0, _INF), HParamRange(0.0, 1.0)),
    "l1_reg": _REG,
    "l2_reg": _REG,
    "max_tree_depth": Tunable("int", (1, 20), HParamRange(1, 10)),
    "subsample": _SUBSAMPLE,
    "colsample_bytree": _FRACTION,
    "colsample_bylevel": _FRACTION,
    "colsample_bynode": _FRACTION,
    "min_split_loss": _MIN_SPLIT_LOSS,
    "min_tree_child_weight": _MIN_CHILD_WEIGHT,
    "num_parallel_tree": Tunable("int", (1, _INF), None),
    "dropout": Tunable("float", (0.0, 1.0), None),
    "booster_type": Tunable("enum", ("GBTREE", "DART"), None),
    "dart_normalize_type": Tunable("enum", ("TREE", "FOREST"), None),
    "tree_method": _TREE_METHOD,
}
_FOREST = {
    "l1_reg": _REG,
    "l2_reg": _REG,
    "max_tree_depth": Tunable("int", (1, 20), HParamRange(1, 20)),
    "subsample": _SUBSAMPLE,
    "colsample_bytree": _FRACTION,
    "colsample_bylevel": _FRACTION,
    "colsample_bynode": _FRACTION,
    "min_split_loss": _MIN_SPLIT_LOSS,
    "min_tree_child_weight": _MIN_CHILD_WEIGHT,
    "num_parallel_tree": Tunable("int", (2, _INF), HParamRange(2, 200)),
    "tree_method": _TREE_METHOD,
}

# DNN_* and DNN_LINEAR_COMBINED_*: BigQuery ML's spaces; FTRL (no PyTorch optimizer) is left
# out of the default optimizer candidates (a trial that names it is INFEASIBLE). Wide-and-deep
# models take one learn_rate / optimizer value or a per-part STRUCT array, never a search space.
_ACTIVATIONS = ("RELU", "RELU6", "CRELU", "ELU", "SELU", "SIGMOID", "TANH")
_WIDE_DEEP = {
    "batch_size": Tunable("int", (1, 8192), HParamRange(16, 1024), log=True),
    "dropout": Tunable("float", (0.0, 1.0), HParamRange(0.0, 0.8)),
    "hidden_units": Tunable("int_list", (1, _INF), None),
    "activation_fn": Tunable("enum", _ACTIVATIONS, None),
    "l1_reg": _REG,
    "l2_reg": _REG,
}
_NETWORK = {
    **_WIDE_DEEP,
    "learn_rate": Tunable("float", (0.0, _INF), HParamRange(0.0, 1.0)),
    "optimizer": Tunable(
        "enum",
        ("ADAGRAD", "ADAM", "FTRL", "RMSPROP", "SGD"),
        HParamCandidates(("ADAM", "ADAGRAD", "RMSPROP", "SGD")),
    ),
}
_FACTORIZATION = {
    "num_factors": Tunable("int", (2, 200), HParamRange(2, 20)),
    "l2_reg": _REG,
    "wals_alpha": Tunable("float", (0.0, _INF), HParamRange(0.0, 100.0)),
}
_NETWORK_TYPES = (
    "DNN_CLASSIFIER",
    "DNN_REGRESSOR",
    "DNN_LINEAR_COMBINED_CLASSIFIER",
    "DNN_LINEAR_COMBINED_REGRESSOR",
)

#: model_type → its tunable hyperparameters (BigQuery ML's list, as far as Shipyard has them).
TUNABLE: dict[str, dict[str, Tunable]] = {
    "LINEAR_REG": _GLM,
    "LOGISTIC_REG": _GLM,
    "BOOSTED_TREE_REGRESSOR": _TREES,
    "BOOSTED_TREE_CLASSIFIER": _TREES,
    "RANDOM_FOREST_REGRESSOR": _FOREST,
    "RANDOM_FOREST_CLASSIFIER": _FOREST,
    "KMEANS": {"num_clusters": Tunable("int", (2, 100), HParamRange(2, 10))},
    "DNN_CLASSIFIER": _NETWORK,
    "DNN_REGRESSOR": _NETWORK,
    "DNN_LINEAR_COMBINED_CLASSIFIER": _WIDE_DEEP,
    "DNN_LINEAR_COMBINED_REGRESSOR": _WIDE_DEEP,
    "MATRIX_FACTORIZATION": _FACTORIZATION,
}
#: Matrix factorization with implicit feedback: its own objectives and default search space.
_IMPLICIT_MF = "MATRIX_FACTORIZATION (IMPLICIT)"

#: What Shipyard tunes (over the default spaces) when the statement gives no search space:
#: the hyperparameters BigQuery ML gives a default range (``wals_alpha`` with implicit
#: feedback only).
DEFAULT_TUNED: dict[str, tuple[str, ...]] = {
    "LINEAR_REG": ("l1_reg", "l2_reg"),
    "LOGISTIC_REG": ("l1_reg", "l2_reg"),
    "BOOSTED_TREE_REGRESSOR": ("learn_rate", "max_tree_depth", "l1_reg", "l2_reg", "subsample"),
    "BOOSTED_TREE_CLASSIFIER": ("learn_rate", "max_tree_depth", "l1_reg", "l2_reg", "subsample"),
    "RANDOM_FOREST_REGRESSOR": (
        "num_parallel_tree",
        "max_tree_depth",
        "subsample",
        "l1_reg",
        "l2_reg",
    ),
    "RANDOM_FOREST_CLASSIFIER": (
        "num_parallel_tree",
        "max_tree_depth",
        "subsample",
        "l1_reg",
        "l2_reg",
    ),
    "KMEANS": ("num_clusters",),
    "DNN_CLASSIFIER": ("learn_rate", "dropout", "batch_size", "l1_reg", "l2_reg", "optimizer"),
    "DNN_REGRESSOR": ("learn_rate", "dropout", "batch_size", "l1_reg", "l2_reg", "optimizer"),
    "DNN_LINEAR_COMBINED_CLASSIFIER": ("dropout", "batch_size", "l1_reg", "l2_reg"),
    "DNN_LINEAR_COMBINED_REGRESSOR": ("dropout", "batch_size", "l1_reg", "l2_reg"),
    "MATRIX_FACTORIZATION": ("num_factors", "l2_reg"),
    _IMPLICIT_MF: ("num_factors", "l2_reg", "wals_alpha"),
}

_REGRESSION_OBJECTIVES = (
    "MEAN_ABSOLUTE_ERROR",
    "MEAN_SQUARED_ERROR",
    "MEAN_SQUARED_LOG_ERROR",
    "MEDIAN_ABSOLUTE_ERROR",
    "R2_SCORE",
    "EXPLAINED_VARIANCE",
)
_CLASSIFICATION_OBJECTIVES = ("PRECISION", "RECALL", "ACCURACY", "F1_SCORE", "LOG_LOSS", "ROC_AUC")
#: model_type → the objectives hparam_tuning_objectives accepts.
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "LINEAR_REG": _REGRESSION_OBJECTIVES,
    "BOOSTED_TREE_REGRESSOR": _REGRESSION_OBJECTIVES,
    "RANDOM_FOREST_REGRESSOR": _REGRESSION_OBJECTIVES,
    "LOGISTIC_REG": _CLASSIFICATION_OBJECTIVES,
    "BOOSTED_TREE_CLASSIFIER": _CLASSIFICATION_OBJECTIVES,
    "RANDOM_FOREST_CLASSIFIER": _CLASSIFICATION_OBJECTIVES,
    "KMEANS": ("DAVIES_BOULDIN_INDEX",),
    "DNN_REGRESSOR": _REGRESSION_OBJECTIVES,
    "DNN_LINEAR_COMBINED_REGRESSOR": _REGRESSION_OBJECTIVES,
    "DNN_CLASSIFIER": _CLASSIFICATION_OBJECTIVES,
    "DNN_LINEAR_COMBINED_CLASSIFIER": _CLASSIFICATION_OBJECTIVES,
    "MATRIX_FACTORIZATION": _REGRESSION_OBJECTIVES,
    _IMPLICIT_MF: (
        "MEAN_AVERAGE_PRECISION",
        "MEAN_SQUARED_ERROR",
        "NORMALIZED_DISCOUNTED_CUMULATIVE_GAIN",
        "AVERAGE_RANK",
    ),
}
#: model_type → the objective used when hparam_tuning_objectives is not given.
DEFAULT_OBJECTIVES = {
    t: "R2_SCORE" if o is _REGRESSION_OBJECTIVES else "ROC_AUC" for t, o in OBJECTIVES.items()
}
DEFAULT_OBJECTIVES["KMEANS"] = "DAVIES_BOULDIN_INDEX"
DEFAULT_OBJECTIVES["MATRIX_FACTORIZATION"] = "MEAN_SQUARED_ERROR"
DEFAULT_OBJECTIVES[_IMPLICIT_MF] = "MEAN_AVERAGE_PRECISION"
_MINIMISE = frozenset(
    {
        "MEAN_ABSOLUTE_ERROR",
        "MEAN_SQUARED_ERROR",
        "MEAN_SQUARED_LOG_ERROR",
        "MEDIAN_ABSOLUTE_ERROR",
        "LOG_LOSS",
        "DAVIES_BOULDIN_INDEX",
        "AVERAGE_RANK",
    }
)


def _variant(model_type: str, options: Mapping[str, Any]) -> str:
    """The key of OBJECTIVES / DEFAULT_OBJECTIVES / DEFAULT_TUNED: the model type, or for
    matrix factorization with implicit feedback its own entry (ranking objectives)."""
    feedback = options.get("feedback_type")
    if model_type == "MATRIX_FACTORIZATION" and str(feedback).upper() == "IMPLICIT":
        return _IMPLICIT_MF
    return model_type


# --------------------------------------------------------------------------------------------
# the plan: options checked before any data is read


@dataclass(frozen=True)
class TuningPlan:
    model_type: str
    num_trials: int
    max_parallel_trials: int
    algorithm: str
    objective: str
    space: dict[str, Space]
    base: dict[str, Any]  # the model options without the tuning options and search spaces
    default_space: bool = False

    @property
    def minimise(self) -> bool:
        return self.objective in _MINIMISE

    def settings(self) -> dict[str, Any]:
        return {
            "num_trials": self.num_trials,
            "max_parallel_trials": self.max_parallel_trials,
            "hparam_tuning_algorithm": self.algorithm,
            "hparam_tuning_objectives": [self.objective],
            "search_space": {k: v.sql() for k, v in self.space.items()},
            "default_search_space": self.default_space,
        }


def plan_tuning(model_type: str, options: Mapping[str, Any]) -> TuningPlan | None:
    """The tuning a CREATE MODEL's OPTIONS ask for, checked; None when they ask for none."""
    spaces = {k: v for k, v in options.items() if isinstance(v, HParamRange | HParamCandidates)}
    given = [k for k in TUNING_OPTIONS if k in options]
    if not spaces and not given:
        return None
    tunables = TUNABLE.get(model_type)
    if tunables is None and not spaces:
        return None  # the model type's own options report num_trials & co. (unknown/unsupported)
    if "num_trials" not in options:
        what = ", ".join([*(f"{k}={v.sql()}" for k, v in spaces.items()), *given])
        raise InvalidArgument(
            f"{what} needs hyperparameter tuning: add OPTIONS(num_trials=…) (1 to {MAX_TRIALS})",
            option="num_trials",
        )
    if tunables is None:
        raise Unsupported(
            f"hyperparameter tuning (HPARAM_RANGE / HPARAM_CANDIDATES) is not supported for "
            f"model_type {model_type}; model types that support it: {', '.join(TUNABLE)}",
            option=next(iter(spaces)),
        )
    for name, space in spaces.items():
        _check_space(model_type, name, space, tunables)
    if options.get("warm_start") is True:
        raise InvalidArgument(
            "warm_start=TRUE cannot be combined with hyperparameter tuning (num_trials): each "
            "trial trains from scratch",
            option="warm_start",
        )
    num_trials = _int_option(options, "num_trials", 1, MAX_TRIALS, None)
    parallel = _int_option(options, "max_parallel_trials", 1, MAX_PARALLEL_TRIALS, 1)
    if parallel > num_trials:
        raise InvalidArgument(
            f"option 'max_parallel_trials' ({parallel}) cannot exceed 'num_trials' ({num_trials})",
            option="max_parallel_trials",
        )
    algorithm = options.get("hparam_tuning_algorithm", "VIZIER_DEFAULT")
    if not isinstance(algorithm, str) or algorithm.upper() not in ALGORITHMS:
        raise InvalidArgument(
            f"option 'hparam_tuning_algorithm' has invalid value {algorithm!r}; valid values: "
            f"{', '.join(ALGORITHMS)}",
            option="hparam_tuning_algorithm",
        )
    algorithm = algorithm.upper()
    variant = _variant(model_type, options)
    objective = _objective(variant, options.get("hparam_tuning_objectives"))
    default_space = not spaces
    if default_space:
        defaults = DEFAULT_TUNED[variant]
        spaces = {
            n: tunables[n].default  # type: ignore[misc]
            for n in defaults
            if n.lower() not in options and tunables[n].default is not None
        }
        if not spaces:
            raise InvalidArgument(
                f"num_trials needs a hyperparameter to tune, but the statement fixes every one "
                f"Shipyard tunes by default for {variant} ({', '.join(defaults)}); give one a "
                f"search space, e.g. {defaults[0]}=HPARAM_RANGE(…) — tunable: "
                f"{', '.join(tunables)}",
                option="num_trials",
            )
    if algorithm == "GRID_SEARCH":
        ranged = [n for n, s in spaces.items() if isinstance(s, HParamRange)]
        if ranged:
            source = "the default search space of" if default_space else "HPARAM_RANGE for"
            raise InvalidArgument(
                f"hparam_tuning_algorithm GRID_SEARCH needs HPARAM_CANDIDATES for every tuned "
                f"hyperparameter, but {source} {', '.join(ranged)} is a range; use "
                "HPARAM_CANDIDATES([…]) or VIZIER_DEFAULT / RANDOM_SEARCH",
                option="hparam_tuning_algorithm",
            )
    _optuna()  # refused now, not after the training data is read
    base = {k: v for k, v in options.items() if k not in TUNING_OPTIONS and k not in spaces}
    return TuningPlan(
        model_type, num_trials, parallel, algorithm, objective, spaces, base, default_space
    )


def _int_option(
    options: Mapping[str, Any], name: str, low: int, high: int, default: int | None
) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(
            f"option '{name}' must be an INT64 from {low} to {high}, got {value!r}", option=name
        )
    return value


def _objective(model_type: str, value: Any) -> str:
    valid = OBJECTIVES[model_type]
    if value is None:
        return DEFAULT_OBJECTIVES[model_type]
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        raise InvalidArgument(
            f"option 'hparam_tuning_objectives' takes one objective, e.g. "
            f"['{DEFAULT_OBJECTIVES[model_type]}'], got {value!r}; valid for {model_type}: "
            f"{', '.join(valid)}",
            option="hparam_tuning_objectives",
        )
    name = names[0].upper()
    if name not in valid:
        raise InvalidArgument(
            f"hparam_tuning_objectives {names[0]!r} is not valid for model_type {model_type}; "
            f"valid: {', '.join(valid)}",
            option="hparam_tuning_objectives",
        )
    return name


def _check_space(model_type: str, name: str, space: Space, tunables: dict[str, Tunable]) -> None:
    tunable = tunables.get(name)
    if tunable is None:
        raise InvalidArgument(
            f"option '{name}' cannot be tuned for model_type {model_type}: "
            f"{space.sql().split('(')[0]} applies to {', '.join(tunables)}",
            option=name,
        )
    low, high = tunable.valid[0], tunable.valid[-1]  # numbers; unused for enums
    if isinstance(space, HParamRange):
        if tunable.kind == "int_list":
            raise InvalidArgument(
                f"option '{name}' takes arrays: use HPARAM_CANDIDATES([[…], […]]) (or "
                f"[STRUCT([…]), …]), not {space.sql()}",
                option=name,
            )
        if tunable.kind == "enum":
            raise InvalidArgument(
                f"option '{name}' takes strings: use HPARAM_CANDIDATES([…]) with values from "
                f"{', '.join(tunable.valid)}, not {space.sql()}",
                option=name,
            )
        bounds = (space.low, space.high)
        if tunable.kind == "int" and not all(float(v).is_integer() for v in bounds):
            raise InvalidArgument(
                f"option '{name}' is INT64: HPARAM_RANGE needs integer bounds, got {space.sql()}",
                option=name,
            )
        if space.low < low or space.high > high:
            raise InvalidArgument(
                f"{space.sql()} for option '{name}' is outside its valid range: "
                f"{tunable.describe()}",
                option=name,
            )
        return
    for value in space.values:
        if tunable.kind == "int_list":
            ok = (
                isinstance(value, tuple)
                and len(value) > 0
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value)
            )
        elif tunable.kind == "enum":
            ok = isinstance(value, str) and value.upper() in tunable.valid
        elif tunable.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        else:
            ok = _is_number(value) and low <= value <= high
        if not ok:
            raise InvalidArgument(
                f"HPARAM_CANDIDATES value {value!r} for option '{name}' is not valid: expected "
                f"{tunable.describe()}",
                option=name,
            )


def parse_base(spec: ModelTypeSpec, plan: TuningPlan) -> Any:
    """The options of one point of the search space, validated: the statement's fixed options
    must make sense for some trial (``dropout=0.2`` with ``booster_type=HPARAM_CANDIDATES(
    ['GBTREE', 'DART'])`` does: its GBTREE trials are INFEASIBLE). Raises the first point's
    error when no point of the first few validates."""
    tunables = TUNABLE[plan.model_type]
    choices = [
        [_middle(s, tunables[n])] if isinstance(s, HParamRange) else list(s.values)
        for n, s in plan.space.items()
    ]
    first: ShipyardError | None = None
    for point in itertools.islice(itertools.product(*choices), 64):
        try:
            point_options = {n: _option(v) for n, v in zip(plan.space, point, strict=True)}
            return spec.parse_options({**plan.base, **point_options})
        except ShipyardError as exc:
            first = first or exc
    assert first is not None
    raise first


def _option(value: Any) -> Any:
    """A search-space value as an option value: an array candidate (a tuple) as a list."""
    return list(value) if isinstance(value, tuple) else value


def _encode(value: Any) -> Any:
    """A candidate as Optuna stores it: numbers and strings as they are, arrays as text."""
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return value.upper() if isinstance(value, str) else value


def _decode(value: Any, tunable: Tunable) -> Any:
    if tunable.kind == "int_list" and isinstance(value, str):
        return [int(v) for v in value.strip("[]").split(",")]
    return _plain(value)


def _middle(space: HParamRange, tunable: Tunable) -> Any:
    if tunable.kind == "int":
        return int(space.low + space.high) // 2
    return (space.low + space.high) / 2


# --------------------------------------------------------------------------------------------
# running the trials


@dataclass
class Trial:
    trial_id: int
    hyperparameters: dict[str, Any]
    status: str = "SUCCEEDED"  # SUCCEEDED | FAILED | INFEASIBLE
    error_message: str | None = None
    objective_value: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training_loss: float | None = None
    eval_loss: float | None = None
    model: dict[str, Any] | None = None  # flavor_meta, predictor_config, preprocessing
    training_info: list[dict[str, Any]] = field(default_factory=list)
    is_optimal: bool = False
    error: BaseException | None = None

    def to_dict(self, objective: str) -> dict[str, Any]:
        key = objective.lower()
        return {
            "trial_id": self.trial_id,
            "hyperparameters": self.hyperparameters,
            "hparam_tuning_evaluation_metrics": {key: self.metrics.get(key)},
            "evaluation_metrics": self.metrics,
            "training_loss": self.training_loss,
            "eval_loss": self.eval_loss,
            "status": self.status,
            "error_message": self.error_message,
            "is_optimal": self.is_optimal,
            "training_info": self.training_info,
            "model": self.model,
        }


@dataclass
class TuningOutcome:
    """The optimal trial's model, the trials' files to store with it and ML.TRIAL_INFO's rows."""

    best: TrainedModel
    files: dict[str, bytes]
    summary: dict[str, Any]


def _distribution(name: str, space: Space, tunable: Tunable) -> Any:
    optuna = _optuna()
    if isinstance(space, HParamCandidates):
        return optuna.distributions.CategoricalDistribution([_encode(v) for v in space.values])
    if tunable.kind == "int":
        return optuna.distributions.IntDistribution(
            int(space.low), int(space.high), log=tunable.log
        )
    low, high = float(space.low), float(space.high)
    if tunable.log:
        low = low if low > 0 else high * 1e-5  # a log scale cannot reach 0
        return optuna.distributions.FloatDistribution(low, high, log=True)
    return optuna.distributions.FloatDistribution(low, high)


def _grid(space: Mapping[str, Space]) -> dict[str, list[Any]] | None:
    """Every space as a candidate list, or None when one is a range."""
    if not all(isinstance(s, HParamCandidates) for s in space.values()):
        return None
    return {n: [_encode(v) for v in s.values] for n, s in space.items()}  # type: ignore[union-attr]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the environment
        raise Unsupported(
            "hyperparameter tuning (num_trials) needs Optuna: pip install 'shipyard[tuning]'"
        ) from None
    return optuna


def run_trials(
    spec: ModelTypeSpec, table: pa.Table, plan: TuningPlan, job: JobContext
) -> TuningOutcome:
    """Train ``plan.num_trials`` trials of ``spec`` on ``table``; the optimal one's model first."""
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tunables = TUNABLE[plan.model_type]
    distributions = {n: _distribution(n, s, tunables[n]) for n, s in plan.space.items()}
    grid = _grid(plan.space)
    n_trials = plan.num_trials
    enqueue: list[dict[str, Any]] = []
    sampler: Any
    if grid is not None and (
        plan.algorithm == "GRID_SEARCH" or math.prod(len(v) for v in grid.values()) <= n_trials
    ):
        size = math.prod(len(v) for v in grid.values())
        if size < n_trials:
            job.log(f"the search space has {size} combinations: {size} trials, not {n_trials}")
        n_trials = min(n_trials, size)
        # Every combination, once, in a seeded random order (so that a grid cut short by
        # num_trials still spreads over the space); Optuna's GridSampler cannot run ask/tell.
        combos = list(itertools.product(*grid.values()))
        random.Random(_SEED).shuffle(combos)
        enqueue = [dict(zip(grid, c, strict=True)) for c in combos[:n_trials]]
        sampler = optuna.samplers.RandomSampler(seed=_SEED)
    elif plan.algorithm == "RANDOM_SEARCH":
        sampler = optuna.samplers.RandomSampler(seed=_SEED)
    else:
        sampler = optuna.samplers.TPESampler(seed=_SEED, n_startup_trials=min(10, n_trials))
    direction: Literal["minimize", "maximize"] = "minimize" if plan.minimise else "maximize"
    study = optuna.create_study(direction=direction, sampler=sampler)
    for params in enqueue:
        study.enqueue_trial(params)
    parallel = min(plan.max_parallel_trials, n_trials)
    if plan.model_type in _NETWORK_TYPES and parallel > 1:
        # PyTorch's random state (initial weights, dropout) is one per process: trials on
        # threads side by side would draw from it in turn and lose their reproducibility.
        job.log(
            f"{plan.model_type} trials run one at a time (max_parallel_trials {parallel} "
            "ignored): PyTorch's random state is shared by the threads of a process"
        )
        parallel = 1
    threads = max(1, (os.cpu_count() or 1) // parallel)
    job.log(
        f"hyperparameter tuning: {n_trials} trials, {parallel} at a time ({threads} threads "
        f"each), {plan.algorithm} ({type(sampler).__name__}), objective {plan.objective} "
        f"({direction}d) over {', '.join(f'{k}={v.sql()}' for k, v in plan.space.items())}"
    )
    runner = _Runner(spec, table, plan, job, n_trials, threads)
    lock = threading.Lock()
    trials: dict[int, Trial] = {}
    asked: dict[int, Any] = {}
    futures: dict[Future[Trial], int] = {}
    counter = itertools.count(1)
    with ThreadPoolExecutor(parallel, thread_name_prefix="shipyard-trial") as pool:
        launched = 0
        try:
            while launched < n_trials or futures:
                while launched < n_trials and len(futures) < parallel and not job.cancelled:
                    trial_id = next(counter)
                    with lock:
                        otrial = study.ask(distributions)
                    asked[trial_id] = otrial
                    params = {n: _decode(otrial.params[n], tunables[n]) for n in plan.space}
                    futures[pool.submit(runner.run, trial_id, params)] = trial_id
                    launched += 1
                if not futures:
                    break
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for future in done:
                    trial_id = futures.pop(future)
                    result = future.result()  # JobCancelled propagates
                    trials[trial_id] = result
                    with lock:
                        if result.status == "SUCCEEDED":
                            study.tell(asked[trial_id], result.objective_value)
                        else:
                            study.tell(asked[trial_id], state=optuna.trial.TrialState.FAIL)
                    job.log(_trial_line(result, plan.objective))
        finally:
            runner.stop.set()  # a failure or cancellation stops the trials still running
        job.check_cancelled()
    return runner.outcome(trials)


def _plain(value: Any) -> Any:
    """Optuna's numpy scalars as Python numbers (JSON, Arrow)."""
    return value.item() if hasattr(value, "item") else value


def _trial_line(trial: Trial, objective: str) -> str:
    params = ", ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in trial.hyperparameters.items()
    )
    if trial.status != "SUCCEEDED":
        return f"trial {trial.trial_id} {trial.status} ({params}): {trial.error_message}"
    value = f"{objective.lower()} {trial.objective_value:.6g}"
    return f"trial {trial.trial_id} SUCCEEDED ({params}): {value}"


class _Runner:
    """Runs one trial on a worker thread; keeps the best trained model and every trial's files."""

    def __init__(
        self,
        spec: ModelTypeSpec,
        table: pa.Table,
        plan: TuningPlan,
        job: JobContext,
        n_trials: int,
        threads: int,
    ) -> None:
        self.spec, self.table, self.plan, self.job = spec, table, plan, job
        self.n_trials, self.threads = n_trials, threads
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._fractions: dict[int, float] = {}
        self._files: dict[str, bytes] = {}
        self._best: tuple[float, int, TrainedModel] | None = None
        self._eval_warned = False

    def _report(self, trial_id: int) -> Callable[[float, str], None]:
        def report(fraction: float, message: str) -> None:
            if self.stop.is_set():
                raise _Stopped()
            with self._lock:
                self._fractions[trial_id] = fraction
                overall = sum(self._fractions.values()) / self.n_trials
            self.job.progress(0.05 + 0.85 * overall, f"trial {trial_id}/{self.n_trials}: {message}")

        return report

    def run(self, trial_id: int, params: dict[str, Any]) -> Trial:
        trial = Trial(trial_id, params)
        try:
            options = self.spec.parse_options({**self.plan.base, **params})
        except ShipyardError as exc:
            trial.status, trial.error_message = "INFEASIBLE", str(exc)
            return trial
        token = training.XGB_THREADS.set(self.threads)
        try:
            trained = self.spec.train(self.table, options, progress=self._report(trial_id))
        except _Stopped:
            trial.status, trial.error_message = "FAILED", "stopped: the tuning job ended"
            return trial
        except JobCancelled:
            raise
        except ShipyardError as exc:
            trial.status, trial.error_message, trial.error = "FAILED", str(exc), exc
            return trial
        except Exception as exc:
            trial.status, trial.error_message = "FAILED", f"{type(exc).__name__}: {exc}"
            trial.error = exc
            return trial
        finally:
            training.XGB_THREADS.reset(token)
            with self._lock:
                self._fractions[trial_id] = 1.0
        return self._record(trial, trained)

    def _record(self, trial: Trial, trained: TrainedModel) -> Trial:
        key = self.plan.objective.lower()
        trial.metrics = {k: _plain(v) for k, v in trained.eval_metrics.items()}
        value = trial.metrics.get(key)
        trial.training_info = list(trained.training_info)
        last = trained.training_info[-1] if trained.training_info else {}
        trial.training_loss, trial.eval_loss = last.get("loss"), last.get("eval_loss")
        if value is None or not math.isfinite(value):
            trial.status = "FAILED"
            trial.error_message = (
                f"objective {self.plan.objective} is NULL for this trial's model on the "
                "evaluation data"
            )
            return trial
        trial.objective_value = float(value)
        own_split = self.plan.model_type == "MATRIX_FACTORIZATION"  # splits inside its trainer
        if not trained.data_split.get("eval_rows") and not own_split and not self._eval_warned:
            self._eval_warned = True
            self.job.log(
                f"the data split ({trained.data_split.get('effective_method', 'NO_SPLIT')}) "
                "leaves no evaluation rows: trials are scored on the training data"
            )
        trial.model = self._store(trial.trial_id, trained)
        sign = 1.0 if self.plan.minimise else -1.0
        score = sign * trial.objective_value
        with self._lock:
            if self._best is None or (score, trial.trial_id) < self._best[:2]:
                self._best = (score, trial.trial_id, trained)
        return trial

    def _store(self, trial_id: int, trained: TrainedModel) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="shipyard-trial-") as tmp:
            folder = Path(tmp)
            meta = save_model(trained.flavor, trained.model, folder)
            renamed = []
            files = {}
            for name in meta.get("files") or []:
                stored = f"trial_{trial_id}_{name}"
                files[stored] = (folder / name).read_bytes()
                renamed.append(stored)
        with self._lock:
            self._files.update(files)
        return {
            "flavor_meta": {**meta, "files": renamed},
            "predictor_config": dict(trained.predictor_config),
            "preprocessing": trained.preprocessor.to_dict(),
        }

    def outcome(self, by_id: dict[int, Trial]) -> TuningOutcome:
        trials = [by_id[i] for i in sorted(by_id)]
        if self._best is None:
            first = next((t for t in trials if t.error is not None), None)
            if first is not None and isinstance(first.error, ShipyardError):
                raise first.error
            details = "; ".join(f"trial {t.trial_id} {t.status}: {t.error_message}" for t in trials)
            raise InvalidArgument(
                f"hyperparameter tuning of {self.plan.model_type}: no trial succeeded ({details})"
            )
        _, best_id, best = self._best
        preprocessing = best.preprocessor.to_dict()
        for trial in trials:
            trial.is_optimal = trial.trial_id == best_id
            if trial.model is not None and trial.model["preprocessing"] == preprocessing:
                trial.model["preprocessing"] = None  # the version's own
        summary = {
            **self.plan.settings(),
            "optimal_trial_id": best_id,
            "trials": [t.to_dict(self.plan.objective) for t in trials],
        }
        return TuningOutcome(best, dict(self._files), summary)


class _Stopped(Exception):
    """Raised in a trial's progress callback once the tuning job ends early."""


# --------------------------------------------------------------------------------------------
# ML functions: ML.TRIAL_INFO, and trial_id in ML.PREDICT / ML.EVALUATE / ML.EXPLAIN_PREDICT

Handler = Callable[["SqlService", Any], pa.Table]


def _tuning(service: SqlService, model: str) -> dict[str, Any] | None:
    return service.models.manifest(model).hparam_tuning


def _trial(service: SqlService, model: str, function: str, trial_id: Any) -> dict[str, Any]:
    tuning = _tuning(service, model)
    if tuning is None:
        raise InvalidArgument(
            f"ML.{function} parameter 'trial_id' applies only to models trained with "
            f"hyperparameter tuning (OPTIONS(num_trials=…)); model {model} was not"
        )
    ids = [t["trial_id"] for t in tuning["trials"]]
    if isinstance(trial_id, bool) or not isinstance(trial_id, int) or trial_id not in ids:
        raise InvalidArgument(
            f"model {model} has no trial {trial_id!r}; its trial_id values are "
            f"{min(ids)} to {max(ids)} (optimal: {tuning['optimal_trial_id']})"
        )
    trial: dict[str, Any] = tuning["trials"][ids.index(trial_id)]
    ok = [str(t["trial_id"]) for t in tuning["trials"] if t["status"] == "SUCCEEDED"]
    if trial["status"] != "SUCCEEDED":
        raise InvalidArgument(
            f"trial {trial_id} of model {model} {trial['status']} and has no model "
            f"({trial['error_message']}); succeeded trials: "
            f"{', '.join(ok)}"
        )
    return trial


class _TrialModels:
    """The registry as a handler sees it when a call names a trial: that trial's model."""

    def __init__(self, models: Any, name: str, trial: dict[str, Any]) -> None:
        self._models, self._name, self._trial = models, name, trial

    def load(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == self._name and not args and not kwargs:
            return self._models.load_trial(name, self._trial["trial_id"])
        return self._models.load(name, *args, **kwargs)

    def get_version(self, name: str, *args: Any, **kwargs: Any) -> Any:
        version = self._models.get_version(name, *args, **kwargs)
        if name == self._name and not args and not kwargs:
            return version.model_copy(update={"metrics": self._trial["evaluation_metrics"]})
        return version

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._models, attr)


class _TrialService:
    def __init__(self, service: SqlService, models: _TrialModels) -> None:
        self._service, self.models = service, models

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._service, attr)


def _trial_aware(function: str, handler: Handler, *, all_trials: Handler | None = None) -> Handler:
    def run(service: SqlService, call: Any) -> pa.Table:
        params = dict(call.params)
        trial_id = params.pop("trial_id", None)
        call = replace(call, params=params)
        if trial_id is None:
            if all_trials is not None and call.input is None and _tuning(service, call.model):
                return all_trials(service, call)
            return handler(service, call)  # the optimal trial: the version's own model
        trial = _trial(service, call.model, function, trial_id)
        view = _TrialService(service, _TrialModels(service.models, call.model, trial))
        return handler(view, call)  # type: ignore[arg-type]

    return run


def _evaluate_all_trials(service: SqlService, call: Any) -> pa.Table:
    """ML.EVALUATE(MODEL tuned): one row per trial, its metrics on the evaluation data."""
    if call.params:
        raise InvalidArgument(
            f"ML.EVALUATE without input rows takes only 'trial_id'; got "
            f"{', '.join(sorted(call.params))}: give the evaluation rows, "
            f"ML.EVALUATE(MODEL {call.model}, TABLE …, STRUCT(…))"
        )
    version = service.models.get_version(call.model)
    tuning = _tuning(service, call.model) or {}
    if version.task == "regression":
        names: tuple[str, ...] = REGRESSION_METRICS
    elif version.task in ("clustering", "recommendation"):
        names = tuple(version.metrics)
    else:
        names = CLASSIFICATION_METRICS
    trials = tuning.get("trials") or []
    columns: dict[str, pa.Array] = {
        "trial_id": pa.array([t["trial_id"] for t in trials], type=pa.int64())
    }
    for name in names:
        columns[name] = pa.array(
            [(t.get("evaluation_metrics") or {}).get(name) for t in trials], type=pa.float64()
        )
    return pa.table(columns)


def ml_trial_info(service: SqlService, call: Any) -> pa.Table:
    """ML.TRIAL_INFO: one row per trial of a model trained with hyperparameter tuning."""
    if call.input is not None or call.params:
        raise InvalidArgument(
            f"ML.TRIAL_INFO takes only the model: ML.TRIAL_INFO(MODEL {call.model})"
        )
    tuning = _tuning(service, call.model)
    if tuning is None:
        raise InvalidArgument(
            f"model {call.model} was not trained with hyperparameter tuning; ML.TRIAL_INFO "
            "needs a model created with OPTIONS(num_trials=…)"
        )
    trials = tuning["trials"]
    model_type = service.models.get_version(call.model).model_type
    tunables = TUNABLE.get(model_type, {})
    names = list(tuning.get("search_space") or {})
    arrow = {
        "int": pa.int64(),
        "float": pa.float64(),
        "enum": pa.string(),
        "int_list": pa.list_(pa.int64()),
    }
    hp_type = pa.struct(
        [(n, arrow[tunables[n].kind] if n in tunables else pa.string()) for n in names]
    )
    objective = tuning["hparam_tuning_objectives"][0].lower()
    return pa.table(
        {
            "trial_id": pa.array([t["trial_id"] for t in trials], type=pa.int64()),
            "hyperparameters": pa.array(
                [{n: t["hyperparameters"].get(n) for n in names} for t in trials], type=hp_type
            ),
            "hparam_tuning_evaluation_metrics": pa.array(
                [{objective: t["hparam_tuning_evaluation_metrics"].get(objective)} for t in trials],
                type=pa.struct([(objective, pa.float64())]),
            ),
            "training_loss": pa.array([t["training_loss"] for t in trials], type=pa.float64()),
            "eval_loss": pa.array([t["eval_loss"] for t in trials], type=pa.float64()),
            "status": pa.array([t["status"] for t in trials], type=pa.string()),
            "error_message": pa.array([t["error_message"] for t in trials], type=pa.string()),
            "is_optimal": pa.array([t["is_optimal"] for t in trials], type=pa.bool_()),
        }
    )


def _training_info_all_trials(handler: Handler) -> Handler:
    """ML.TRAINING_INFO of a tuned model: every trial's iterations, ``trial_id`` first."""

    def run(service: SqlService, call: Any) -> pa.Table:
        tuning = None if call.input is not None or call.params else _tuning(service, call.model)
        if tuning is None:
            return handler(service, call)
        columns = training_info_schema(service.models.get_version(call.model).model_type)
        rows = [
            {"trial_id": t["trial_id"], **{n: row.get(n) for n in columns.names}}
            for t in tuning["trials"]
            for row in t.get("training_info") or []
        ]
        schema = pa.schema([pa.field("trial_id", pa.int64()), *columns])
        return pa.Table.from_pylist(rows, schema=schema)

    return run


def _every_trial(handler: Handler) -> Handler:
    """ML.WEIGHTS / ML.CENTROIDS of a tuned model: every SUCCEEDED trial's rows, ``trial_id``
    first (BigQuery ML's rule for the functions that take no input rows)."""

    def run(service: SqlService, call: Any) -> pa.Table:
        tuning = None if call.input is not None else _tuning(service, call.model)
        if tuning is None:
            return handler(service, call)
        parts = []
        for trial in tuning["trials"]:
            if trial.get("status") != "SUCCEEDED":
                continue
            view = _TrialService(service, _TrialModels(service.models, call.model, trial))
            part = handler(view, call)  # type: ignore[arg-type]
            ids = pa.array([trial["trial_id"]] * part.num_rows, type=pa.int64())
            parts.append(part.add_column(0, "trial_id", ids))
        return pa.concat_tables(parts) if parts else handler(service, call)

    return run


def handlers(existing: Mapping[str, Handler]) -> dict[str, Handler]:
    """ML_HANDLERS entries for tuning: ML.TRIAL_INFO, ML.TRAINING_INFO of every trial, and
    ``trial_id`` in the functions that take it (wrapping their existing handlers)."""
    out: dict[str, Handler] = {"TRIAL_INFO": ml_trial_info}
    if "TRAINING_INFO" in existing:
        out["TRAINING_INFO"] = _training_info_all_trials(existing["TRAINING_INFO"])
    for name in ("PREDICT", "EVALUATE", "EXPLAIN_PREDICT", "RECOMMEND"):
        if name in existing:
            every = _evaluate_all_trials if name == "EVALUATE" else None
            out[name] = _trial_aware(name, existing[name], all_trials=every)
    for name in ("WEIGHTS", "CENTROIDS"):
        if name in existing:
            out[name] = _every_trial(existing[name])
    return out
