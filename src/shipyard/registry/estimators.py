"""Models trained in Python: turn a fitted estimator object into a model package.

:func:`describe_estimator` recognises what the registry needs to know about a fitted

* scikit-learn classifier or regressor (a ``Pipeline`` too) → flavor ``sklearn``,
  model_type ``SKLEARN_<ESTIMATOR>``;
* ``xgboost.Booster`` or ``XGBModel`` (``XGBClassifier``, ``XGBRegressor``…) → ``xgboost``,
  ``XGBOOST``;
* ``lightgbm.Booster`` or ``LGBMModel`` (``LGBMClassifier``, ``LGBMRegressor``…) → ``lightgbm``,
  ``LIGHTGBM``

— its flavor, task (classifier or regressor; binary or multiclass from ``classes_`` or the
boosting objective), classes, feature names and hyperparameters — and
:func:`package_estimator` builds the registry's :class:`~shipyard.registry.service.NewVersion`:
a pass-through :class:`~shipyard.registry.preprocessing.FeaturePreprocessor` (the numeric
features in the model's order, untouched), the
:class:`~shipyard.registry.preprocessing.LabelInfo` of the classes, the signature and the
manifest.

Classes: the stored model speaks class *indices* 0..K-1, as every model trained by
``CREATE MODEL`` does, and the version's LabelInfo turns an index back into its label. So
``classes[i]`` is the label of the model's output column ``i`` (for scikit-learn and LightGBM
classifiers their ``classes_``; XGBoost and bare boosters only know ``0..K-1``: pass
``classes=`` to name them). A scikit-learn classifier trained on other labels (strings, or
integers other than 0..K-1) is stored as a copy whose ``classes_`` are the indices; the
caller's object is left unchanged.

Before anything is stored, the package's Predictor runs on a row of zeros: a model that cannot
predict from a numeric matrix (e.g. a ``ColumnTransformer`` that selects columns by name) is
refused with InvalidArgument rather than registered and broken at serving time.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.errors import ArtifactCorrupted, FailedPrecondition, InvalidArgument
from shipyard.registry.entities import Lineage
from shipyard.registry.flavors import FLAVORS, load_model
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor, LabelInfo

__all__ = [
    "SUPPORTED_MODELS",
    "EstimatorDescription",
    "describe_estimator",
    "load_model_file",
    "package_estimator",
]

SUPPORTED_MODELS = (
    "a fitted scikit-learn classifier or regressor (Pipelines too), an xgboost.Booster or "
    "XGBModel (XGBClassifier, XGBRegressor…), or a lightgbm.Booster or LGBMModel "
    "(LGBMClassifier, LGBMRegressor…)"
)
_TASKS = ("regression", "binary_classification", "multiclass_classification")
DEFAULT_LABEL = "label"

# XGBoost objectives whose prediction is a value (regression) or class probabilities.
_XGB_BINARY = {"binary:logistic"}
_XGB_MULTICLASS = {"multi:softprob"}
_XGB_REGRESSION_PREFIXES = ("reg:", "count:poisson")
# LightGBM objectives (and aliases), by what their prediction is.
_LGB_BINARY = {"binary"}
_LGB_MULTICLASS = {"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"}
_LGB_REGRESSION = {
    "regression",
    "regression_l2",
    "l2",
    "mean_squared_error",
    "mse",
    "l2_root",
    "root_mean_squared_error",
    "rmse",
    "regression_l1",
    "l1",
    "mean_absolute_error",
    "mae",
    "huber",
    "fair",
    "poisson",
    "quantile",
    "mape",
    "mean_absolute_percentage_error",
    "gamma",
    "tweedie",
}
_LGB_OBJECTIVE_KEYS = ("objective", "objective_type", "app", "application", "loss")
# The file each flavor's model arrives as, when uploaded (REST).
_UPLOAD_FILES = {"xgboost": "model.ubj", "lightgbm": "model.txt", "sklearn": "model.skops"}


@dataclass(frozen=True)
class EstimatorDescription:
    """What the registry knows about a fitted model object (all JSON-friendly)."""

    flavor: str
    model_type: str
    task: str
    classes: list[Any] | None
    feature_names: list[str]
    feature_types: list[str]
    params: dict[str, Any]


def _qualname(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _root_module(model: Any) -> str:
    return type(model).__module__.split(".", 1)[0]


def flavor_of(model: Any) -> str | None:
    """The flavor that stores ``model``, or None when Shipyard cannot store it."""
    root = _root_module(model)
    if root == "xgboost":
        import xgboost as xgb

        return "xgboost" if isinstance(model, xgb.Booster | xgb.XGBModel) else None
    if root == "lightgbm":
        import lightgbm as lgb

        return "lightgbm" if isinstance(model, lgb.Booster | lgb.LGBMModel) else None
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a core dependency
        return None
    return "sklearn" if isinstance(model, BaseEstimator) else None


def _jsonable(value: Any) -> Any:
    """A JSON value for a hyperparameter: numbers, strings, bools, None, lists, dicts; the
    ``repr`` of anything else (an estimator inside a Pipeline, a callable)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _plain(values: Any) -> list[Any]:
    """Python values (not NumPy scalars) of a class list."""
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)]


# -- per flavor -------------------------------------------------------------------------------


def _not_fitted(model: Any) -> FailedPrecondition:
    return FailedPrecondition(
        f"{type(model).__qualname__} is not fitted; call fit() before registering it",
        type=_qualname(model),
    )


def _sklearn_facts(model: Any) -> tuple[str, list[Any] | None, int, list[str] | None]:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise _not_fitted(model) from None
    except TypeError:
        pass  # not a scikit-learn estimator in full; the checks below decide
    first = model
    if hasattr(model, "steps") and not hasattr(model, "n_features_in_"):
        # A Pipeline starting with "passthrough": its first real step saw the input.
        first = next((s for _, s in model.steps if s not in (None, "passthrough")), model)
    n_features = getattr(first, "n_features_in_", None)
    if n_features is None:
        raise InvalidArgument(
            f"{type(model).__qualname__} does not say how many features it was fitted on "
            "(no n_features_in_); register a fitted scikit-learn classifier or regressor",
            type=_qualname(model),
        )
    names = getattr(first, "feature_names_in_", None)
    names = [str(n) for n in names] if names is not None else None
    if is_classifier(model):
        if not hasattr(model, "predict_proba"):
            raise InvalidArgument(
                f"classifier {type(model).__qualname__} has no predict_proba; the registry's "
                "predictor outputs class probabilities (e.g. use SVC(probability=True))",
                type=_qualname(model),
            )
        classes = _plain(np.asarray(model.classes_))
        if np.asarray(model.classes_).ndim != 1:
            raise InvalidArgument(
                f"{type(model).__qualname__} is a multi-output classifier; the registry stores "
                "classifiers of one label",
                type=_qualname(model),
            )
        return "classification", classes, int(n_features), names
    if is_regressor(model):
        return "regression", None, int(n_features), names
    raise InvalidArgument(
        f"{type(model).__qualname__} is neither a classifier nor a regressor; the registry "
        f"stores models that predict: {SUPPORTED_MODELS}",
        type=_qualname(model),
    )


def _xgboost_facts(model: Any) -> tuple[str, list[Any] | None, int, list[str] | None, Any]:
    import xgboost as xgb

    try:
        booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
    except Exception:  # sklearn's NotFittedError
        raise _not_fitted(model) from None
    config = json.loads(booster.save_config())
    objective = str(config["learner"]["objective"]["name"])
    num_class = int(config["learner"]["learner_model_param"].get("num_class", "0") or 0)
    if any(t == "c" for t in booster.feature_types or []):
        raise InvalidArgument(
            "this XGBoost model has categorical features (enable_categorical); the registry "
            "stores models trained on numeric features only",
            type=_qualname(model),
        )
    names = list(booster.feature_names) if booster.feature_names else None
    if objective in _XGB_BINARY:
        classes: list[Any] | None = [0, 1]
        task = "classification"
    elif objective in _XGB_MULTICLASS:
        classes, task = list(range(num_class)), "classification"
    elif objective.startswith(_XGB_REGRESSION_PREFIXES):
        classes, task = None, "regression"
    else:
        raise InvalidArgument(
            f"XGBoost objective {objective!r} is not supported: its prediction is neither a "
            "value nor class probabilities; supported: binary:logistic, multi:softprob, reg:*, "
            "count:poisson (train multiclass models with multi:softprob, not multi:softmax)",
            objective=objective,
        )
    return task, classes, int(booster.num_features()), names, booster


def _lightgbm_facts(model: Any) -> tuple[str, list[Any] | None, int, list[str] | None, Any]:
    import lightgbm as lgb

    try:
        booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
    except Exception:  # LGBMNotFittedError
        raise _not_fitted(model) from None
    if getattr(booster, "pandas_categorical", None):
        raise InvalidArgument(
            "this LightGBM model has pandas categorical features; the registry stores models "
            "trained on numeric features only",
            type=_qualname(model),
        )
    if isinstance(model, lgb.LGBMModel):
        objective: Any = model.objective_
    else:
        params = booster.params or {}
        # None (lightgbm.train's record of "not given") is LightGBM's default, regression.
        given = (params[k] for k in _LGB_OBJECTIVE_KEYS if params.get(k) is not None)
        objective = next(given, "regression")
    if not isinstance(objective, str):
        raise InvalidArgument(
            "this LightGBM model has a custom objective; its prediction is a raw score, which "
            "the registry cannot read as a value or as class probabilities",
            type=_qualname(model),
        )
    name = objective.split()[0].lower()
    k = int(booster.num_model_per_iteration())
    classes: list[Any] | None
    if name in _LGB_BINARY:
        task, classes = "classification", [0, 1]
    elif name in _LGB_MULTICLASS:
        task, classes = "classification", list(range(k))
    elif name in _LGB_REGRESSION:
        task, classes = "regression", None
    else:
        raise InvalidArgument(
            f"LightGBM objective {objective!r} is not supported: its prediction is neither a "
            "value nor class probabilities; supported: binary, multiclass, multiclassova and "
            "the regression objectives",
            objective=objective,
        )
    if task == "classification" and hasattr(model, "classes_"):
        classes = _plain(np.asarray(model.classes_))  # LGBMClassifier encodes labels itself
    return task, classes, int(booster.num_feature()), list(booster.feature_name()), booster


def _params_of(model: Any, flavor: str, booster: Any) -> dict[str, Any]:
    if hasattr(model, "get_params"):
        params = model.get_params(deep=False)
        if flavor != "sklearn":  # XGBModel/LGBMModel: None means "the library's default"
            params = {k: v for k, v in params.items() if v is not None}
    elif flavor == "lightgbm":
        params = dict(booster.params or {})
    else:
        config = json.loads(booster.save_config())
        params = {
            "objective": config["learner"]["objective"]["name"],
            "num_boost_round": booster.num_boosted_rounds(),
        }
    return {str(k): _jsonable(v) for k, v in sorted(params.items())}


# -- describing -------------------------------------------------------------------------------


def describe_estimator(
    model: Any,
    *,
    flavor: str | None = None,
    feature_names: Sequence[str] | None = None,
    feature_types: Sequence[str] | None = None,
    task: str | None = None,
    classes: Sequence[Any] | None = None,
) -> EstimatorDescription:
    """What the registry needs to know about ``model``; the keyword arguments override (and are
    checked against) what the object says about itself.

    Feature names default to the model's own (``feature_names_in_`` when fitted on a
    DataFrame, XGBoost's and LightGBM's feature names), else ``f0, f1, …``; feature types to
    ``double``.
    """
    found = flavor_of(model)
    if found is None:
        raise InvalidArgument(
            f"cannot register a {_qualname(model)}: the registry stores {SUPPORTED_MODELS}",
            type=_qualname(model),
        )
    if flavor is not None and flavor != found:
        raise InvalidArgument(
            f"flavor {flavor!r} does not store a {_qualname(model)}; its flavor is {found!r} "
            f"(valid flavors: {', '.join(sorted(FLAVORS))})",
            flavor=flavor,
        )
    booster: Any = None
    if found == "sklearn":
        kind, own_classes, n_features, own_names = _sklearn_facts(model)
        model_type = f"SKLEARN_{type(model).__name__.upper()}"
    elif found == "xgboost":
        kind, own_classes, n_features, own_names, booster = _xgboost_facts(model)
        model_type = "XGBOOST"
    else:
        kind, own_classes, n_features, own_names, booster = _lightgbm_facts(model)
        model_type = "LIGHTGBM"

    names = _feature_names(model, feature_names, own_names, n_features)
    types = _feature_types(feature_types, names)
    labels = _classes(model, kind, own_classes, classes)
    inferred = (
        "regression"
        if labels is None
        else ("binary_classification" if len(labels) == 2 else "multiclass_classification")
    )
    if task is not None and task != inferred:
        if task not in _TASKS:
            raise InvalidArgument(
                f"task {task!r} is not valid; valid tasks: {', '.join(_TASKS)}", task=task
            )
        raise InvalidArgument(
            f"task {task!r} does not match the model: {type(model).__qualname__} is "
            f"{inferred}" + (f" with {len(labels)} classes" if labels is not None else ""),
            task=task,
            inferred=inferred,
        )
    return EstimatorDescription(
        flavor=found,
        model_type=model_type,
        task=inferred,
        classes=labels,
        feature_names=names,
        feature_types=types,
        params=_params_of(model, found, booster),
    )


def _feature_names(
    model: Any, given: Sequence[str] | None, own: list[str] | None, n_features: int
) -> list[str]:
    if given is None:
        return own if own is not None else [f"f{i}" for i in range(n_features)]
    if isinstance(given, str) or not all(isinstance(n, str) for n in given):
        raise InvalidArgument(
            f"feature_names must be a list of strings, got {given!r}", feature_names=repr(given)
        )
    names = list(given)
    if len(names) != n_features:
        raise InvalidArgument(
            f"feature_names has {len(names)} names but {type(model).__qualname__} was fitted on "
            f"{n_features} features",
            given=len(names),
            expected=n_features,
        )
    return names


def _feature_types(given: Sequence[str] | None, names: list[str]) -> list[str]:
    if given is None:
        return ["double"] * len(names)
    if isinstance(given, str) or len(list(given)) != len(names):
        raise InvalidArgument(
            f"feature_types must list one Arrow type per feature ({len(names)}), got {given!r}",
            feature_types=repr(given),
        )
    return [str(t) for t in given]


def _classes(
    model: Any, kind: str, own: list[Any] | None, given: Sequence[Any] | None
) -> list[Any] | None:
    if kind == "regression":
        if given is not None:
            raise InvalidArgument(
                f"classes were given, but {type(model).__qualname__} is a regressor",
                type=_qualname(model),
            )
        return None
    assert own is not None
    if given is None:
        return own
    labels = _plain(np.asarray(list(given)) if not isinstance(given, list) else given)
    if len(labels) != len(own):
        raise InvalidArgument(
            f"classes has {len(labels)} values but {type(model).__qualname__} has {len(own)} "
            f"classes ({own}); give one label per class, in the model's class order",
            given=len(labels),
            expected=len(own),
        )
    if len(set(map(repr, labels))) != len(labels):
        raise InvalidArgument(f"classes {labels} has duplicates; every class needs its own label")
    return labels


# -- packaging --------------------------------------------------------------------------------


def _label_info(classes: list[Any]) -> LabelInfo:
    try:
        arr = pa.array(classes)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidArgument(
            f"classes {classes[:10]} must all be strings, all integers, all bools or all "
            f"numbers ({exc})"
        ) from None
    try:
        return LabelInfo.from_dict({"arrow_type": str(arr.type), "classes": arr.to_pylist()})
    except InvalidArgument:
        raise InvalidArgument(
            f"classes {classes[:10]} have type {arr.type}; class labels must be strings, "
            "integers, bools or floating point numbers",
            type=str(arr.type),
        ) from None


def _storable(model: Any, description: EstimatorDescription) -> Any:
    """The object the flavor stores: a scikit-learn copy whose classes are 0..K-1 and which no
    longer insists on DataFrame column names (the predictor feeds a matrix in the signature's
    column order); the Booster of an XGBoost or LightGBM model."""
    if description.flavor == "xgboost":  # the flavor stores (and loads) the Booster
        return model.get_booster() if hasattr(model, "get_booster") else model
    if description.flavor == "lightgbm":
        return model.booster_ if hasattr(model, "booster_") else model
    from sklearn.pipeline import Pipeline

    def parts(estimator: Any) -> list[Any]:
        steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else []
        return [estimator, *steps]

    k = len(description.classes) if description.classes is not None else 0
    encode = k > 0 and not np.array_equal(np.asarray(model.classes_), np.arange(k))
    named = any("feature_names_in_" in getattr(p, "__dict__", {}) for p in parts(model))
    if not (encode or named):
        return model  # nothing to change: no copy
    out = copy.deepcopy(model)
    for part in parts(out):
        if "feature_names_in_" in getattr(part, "__dict__", {}):
            del part.feature_names_in_
    if encode:
        final = out.steps[-1][1] if isinstance(out, Pipeline) else out
        binarizer = getattr(final, "_label_binarizer", None)  # MLPClassifier
        if "classes_" in vars(final):
            final.classes_ = np.arange(k)
        elif binarizer is not None and "classes_" in vars(binarizer):
            binarizer.classes_ = np.arange(k)
        if not np.array_equal(np.asarray(out.classes_), np.arange(k)):
            raise InvalidArgument(
                f"cannot store the classes of {type(model).__qualname__} as indices "
                f"0..{k - 1}; train it on class indices (e.g. with a LabelEncoder) and "
                "pass the labels as classes=",
                type=_qualname(model),
            )
    return out


def package_estimator(
    model: Any,
    *,
    flavor: str | None = None,
    feature_names: Sequence[str] | None = None,
    feature_types: Sequence[str] | None = None,
    task: str | None = None,
    classes: Sequence[Any] | None = None,
    label: str | None = None,
    run_id: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[Any, str, dict[str, Any]]:
    """``(object to store, flavor, manifest fields)`` for ``ModelService.register``'s
    NewVersion; InvalidArgument when the model cannot be served faithfully."""
    description = describe_estimator(
        model,
        flavor=flavor,
        feature_names=feature_names,
        feature_types=feature_types,
        task=task,
        classes=classes,
    )
    label = DEFAULT_LABEL if label is None else label
    if not isinstance(label, str) or not label.isidentifier():
        raise InvalidArgument(
            f"label {label!r} must be a column name (letters, digits and '_'), e.g. 'species'",
            label=repr(label),
        )
    if metrics is not None and not isinstance(metrics, Mapping):
        raise InvalidArgument(f"metrics must be a dict of name → number, got {metrics!r}")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidArgument(f"params must be a dict of name → value, got {params!r}")
    preprocessor = FeaturePreprocessor.passthrough(
        list(zip(description.feature_names, description.feature_types, strict=True))
    )
    label_info = _label_info(description.classes) if description.classes is not None else None
    stored = _storable(model, description)
    # LightGBM and scikit-learn read float64 as given; XGBoost works in float32 itself.
    dtype = "float32" if description.flavor == "xgboost" else "float64"
    predictor = Predictor(
        description.task,
        stored,
        description.flavor,
        preprocessor,
        label_info,
        label,
        {"matrix_dtype": dtype},
    )
    _probe(predictor, description, model)
    manifest = {
        "model_type": description.model_type,
        "task": description.task,
        "label": label,
        "label_info": label_info.to_dict() if label_info else None,
        "feature_columns": list(description.feature_names),
        "signature": predictor.signature,
        "preprocessing": preprocessor.to_dict(),
        "predictor_config": predictor.config,
        "feature_info": preprocessor.feature_info(),
        "options": {str(k): _jsonable(v) for k, v in (params or description.params).items()},
        "metrics": {str(k): _jsonable(v) for k, v in (metrics or {}).items()},
        "lineage": Lineage(run_id=run_id),
    }
    return stored, description.flavor, manifest


def _probe(predictor: Predictor, description: EstimatorDescription, model: Any) -> None:
    """Predict two rows of zeros, as serving would, so a model that cannot is refused now."""
    probe = pa.table(
        {
            n: pa.array([0, 0]).cast(pa.type_for_alias(t))
            for n, t in zip(description.feature_names, description.feature_types, strict=True)
        }
    )
    try:
        out = predictor.predict(probe, keep_original_columns=False)
    except Exception as exc:
        raise InvalidArgument(
            f"{type(model).__qualname__} cannot predict from a numeric matrix of its "
            f"{len(description.feature_names)} features ({type(exc).__name__}: {exc}); the "
            "registry feeds the model the signature's columns, in order, as numbers",
            type=_qualname(model),
        ) from None
    if out.num_rows != 2:  # pragma: no cover - predict always keeps the row count
        raise InvalidArgument(f"{type(model).__qualname__} did not predict one value per row")


def load_model_file(flavor: str, data: bytes, folder: Path) -> Any:
    """A model object from an uploaded model file (the flavor's own format), read with the
    flavor's safe loader: for ``sklearn`` only types from the allow-listed modules load."""
    if flavor not in _UPLOAD_FILES:
        raise InvalidArgument(
            f"flavor {flavor!r} is not valid; valid flavors: {', '.join(sorted(_UPLOAD_FILES))}",
            flavor=flavor,
        )
    name = _UPLOAD_FILES[flavor]
    path = Path(folder) / name
    path.write_bytes(data)
    meta: dict[str, Any] = {"files": [name]}
    try:
        if flavor == "sklearn":
            import skops.io as sio

            meta["trusted_types"] = sorted(sio.get_untrusted_types(file=path))
        return load_model(flavor, Path(folder), meta)
    except (ArtifactCorrupted, InvalidArgument) as exc:
        raise InvalidArgument(f"the uploaded {flavor} model cannot be loaded: {exc}") from None
    except Exception as exc:
        raise InvalidArgument(
            f"the uploaded {flavor} model cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
