"""Autologging: ``sy.autolog()`` records scikit-learn, XGBoost and LightGBM training as runs.

>>> import shipyard as sy
>>> sy.autolog()                                       # doctest: +SKIP
>>> LogisticRegression().fit(X, y)                     # doctest: +SKIP  (one FINISHED run)

* **scikit-learn**: ``fit`` of every estimator in ``sklearn.utils.all_estimators()`` (patched
  on the class that defines it, so subclasses inheriting it are covered) logs
  ``get_params(deep=False)`` as params, the estimator class as tags, training metrics
  (``training_accuracy``, ``training_f1`` (weighted), ``training_log_loss``; or
  ``training_r2``, ``training_mae``, ``training_mse``), ``best_cv_score`` for searches, and
  ``fit_duration_s``.
* **XGBoost** (``xgboost.train``, and so ``XGBClassifier.fit`` & co.) and **LightGBM**
  (``lightgbm.train``, and so ``LGBMClassifier.fit`` & co.): the params dict, ``num_boost_round``
  and, through a training callback, every eval metric at every iteration as
  ``<dataset>-<metric>`` (``validation_0-rmse``, ``valid_0-l2``) with ``step`` = the iteration.

**Models** (``log_models=True``, the default, as in MLflow): the fitted classifier or regressor
(a search's ``best_estimator_``; the Booster that ``xgboost.train`` / ``lightgbm.train``
returns) is registered after training as the next version of ``registered_model_name``, or of
``autolog.<estimator>_<run id prefix>`` (e.g. ``autolog.logisticregression_1a2b3c4d``), with
``lineage.run_id`` = the run and the lineage edge run → version; the run gets the tags
``registered_model`` and ``registered_model_version``. Its features are the DataFrame's
columns (with their types), else the model's own names, else ``f0, f1, …``; its label is
``y.name`` when that is a name, else ``label``. Transformers and clusterers are not registered;
a model trained on non-numeric columns is skipped with a warning.

Only the outermost autologged call in the process logs: a ``GridSearchCV`` or ``Pipeline`` is one
run, not one per inner ``fit``. With no active run, one is started (named after the estimator,
or ``xgboost`` / ``lightgbm``) and ended after training (FAILED if training raised); with a run
active, everything is logged into it. Autologging never breaks training: a failure of its own is
a warning.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shipyard.client import fluent
from shipyard.errors import FailedPrecondition, InvalidArgument
from shipyard.warehouse.names import QualifiedName

__all__ = ["FRAMEWORKS", "autolog"]

FRAMEWORKS = ("sklearn", "xgboost", "lightgbm")
MAX_PARAM_LENGTH = 6000  # the tracking service's limit on a param value
MAX_KEY_LENGTH = 250
_MARK = "__shipyard_autolog__"

# (owner, attribute) -> the original, for every patch in place.
_patches: dict[str, dict[tuple[Any, str], Any]] = {name: {} for name in FRAMEWORKS}
_lock = threading.RLock()
_depth = 0  # autologged calls in progress, process-wide: only the outermost one logs
_models: dict[str, Any] = {"log": True, "name": None}  # autolog(log_models=…, registered_…)


class AutologWarning(UserWarning):
    """Autologging failed to log something; training went on."""


def autolog(
    frameworks: Iterable[str] | None = None,
    *,
    disable: bool = False,
    log_models: bool = True,
    registered_model_name: str | None = None,
) -> list[str]:
    """Turn autologging on (or off with ``disable=True``) for ``frameworks``; return them.

    ``frameworks=None`` means every supported framework that is installed. Calling it again is
    harmless (patching is idempotent) and replaces the model settings; ``disable=True`` puts
    the original functions back.

    ``log_models=True`` (the default, as MLflow's): each fitted classifier or regressor becomes
    a version in the model registry, with ``lineage.run_id`` = the run, under
    ``registered_model_name`` (``dataset.model``; every fit adds a version), or when None under
    ``autolog.<estimator>_<first 8 characters of the run id>``.
    """
    if not isinstance(log_models, bool):
        raise InvalidArgument(f"log_models must be True or False, got {log_models!r}")
    if registered_model_name is not None:
        registered_model_name = str(QualifiedName.parse(registered_model_name, kind="model"))
    explicit = frameworks is not None
    names = list(FRAMEWORKS if frameworks is None else frameworks)
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown:
        raise InvalidArgument(
            f"unknown autolog framework(s) {unknown}: expected some of {list(FRAMEWORKS)}"
        )
    done: list[str] = []
    with _lock:
        if not disable:
            _models.update(log=log_models, name=registered_model_name)
        for name in names:
            if disable:
                _unpatch(name)
                done.append(name)
                continue
            try:
                _PATCHERS[name]()
            except ImportError as exc:
                if explicit:
                    raise FailedPrecondition(
                        f"cannot autolog {name}: it is not installed ({exc})"
                    ) from exc
                continue
            done.append(name)
    return done


# -- patching ----------------------------------------------------------------------------------


def _patch(framework: str, owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr)
    if original is None or getattr(original, _MARK, False):
        return  # already patched (idempotent)
    wrapper = make(original)
    setattr(wrapper, _MARK, True)
    setattr(owner, attr, wrapper)
    _patches[framework][(owner, attr)] = original


def _unpatch(framework: str) -> None:
    patches = _patches[framework]
    for (owner, attr), original in list(patches.items()):
        setattr(owner, attr, original)
    patches.clear()


def _is_patched(framework: str) -> bool:
    return bool(_patches[framework])


def _warn(what: str, exc: BaseException) -> None:
    warnings.warn(
        f"shipyard autolog: {what} failed ({type(exc).__name__}: {exc}); training goes on",
        AutologWarning,
        stacklevel=3,
    )


class _Session:
    """The run one outermost autologged call logs into; every method swallows its own errors."""

    def __init__(self, run_name: str) -> None:
        self.started: fluent.ActiveRun | None = None
        self.ok = False
        try:
            if fluent.active_run() is None:
                self.started = fluent.start_run(name=run_name)
            self.ok = True
        except Exception as exc:
            _warn("starting a run", exc)

    def log(self, what: str, fn: Callable[[], None]) -> None:
        if not self.ok:
            return
        try:
            fn()
        except Exception as exc:
            _warn(what, exc)

    def end(self, status: str) -> None:
        if self.started is None:
            return
        try:
            if self.started is fluent.active_run():
                fluent.end_run(status)
        except Exception as exc:
            _warn("ending the run", exc)


def _guarded(run_name: Callable[..., str], body: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``body(session, *args, **kwargs)`` if this is the outermost autologged call."""

    def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        global _depth
        with _lock:
            outermost = _depth == 0
            _depth += 1
        try:
            if not outermost:
                return original(*args, **kwargs)
            try:
                name = run_name(*args, **kwargs)
            except Exception:
                name = "autolog"
            session = _Session(name)
            try:
                result = body(session, original, *args, **kwargs)
            except BaseException as exc:
                status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
                session.end(status)
                raise
            session.end("FINISHED")
            return result
        finally:
            with _lock:
                _depth -= 1

    return call


def _clean_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        k = f"{prefix}{key}"
        if not k or len(k) > MAX_KEY_LENGTH or not k.isprintable():
            continue
        out[k] = str(value)[:MAX_PARAM_LENGTH]
    return out


def _log_finite(metrics: Mapping[str, Any], step: int = 0) -> None:
    clean = {}
    for key, value in metrics.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and key and len(key) <= MAX_KEY_LENGTH:
            clean[key] = v
    if clean:
        fluent.log_metrics(clean, step=step)


# -- scikit-learn ------------------------------------------------------------------------------


def _sklearn_fit_owners() -> set[type]:
    from sklearn.utils import all_estimators

    owners: set[type] = set()
    for _, cls in all_estimators():
        for klass in cls.__mro__:
            if "fit" in klass.__dict__:
                if klass.__module__.startswith("sklearn") and inspect.isfunction(
                    klass.__dict__["fit"]
                ):
                    owners.add(klass)
                break
    return owners


def _patch_sklearn() -> None:
    import sklearn  # noqa: F401  (ImportError when not installed)

    if _is_patched("sklearn"):
        return
    for owner in _sklearn_fit_owners():
        _patch("sklearn", owner, "fit", _wrap_sklearn_fit)


def _wrap_sklearn_fit(original: Callable[..., Any]) -> Callable[..., Any]:
    call = _guarded(lambda self, *a, **k: type(self).__name__, _sklearn_body)

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        return call(original, self, *args, **kwargs)

    return fit


def _sklearn_params(estimator: Any) -> dict[str, str]:
    return _clean_params(estimator.get_params(deep=False))


def _sklearn_body(
    session: _Session, original: Callable[..., Any], self: Any, *args: Any, **kwargs: Any
) -> Any:
    cls = type(self)
    session.log("logging params", lambda: fluent.log_params(_sklearn_params(self)))
    session.log(
        "logging tags",
        lambda: fluent.set_tags(
            {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}
        ),
    )
    start = time.perf_counter()
    result = original(self, *args, **kwargs)
    duration = time.perf_counter() - start
    session.log("logging the fit duration", lambda: _log_finite({"fit_duration_s": duration}))
    x = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    session.log("computing training metrics", lambda: _log_finite(_sklearn_metrics(self, x, y)))
    model = _sklearn_model(self)
    if model is not None:
        session.log(
            "registering the model",
            lambda: _register(model, type(model).__name__, x, y, None),
        )
    return result


def _sklearn_model(estimator: Any) -> Any:
    """The model a fit registers: the estimator, or a search's refitted best estimator; None
    for what does not predict (transformers, clusterers)."""
    if not _models["log"]:
        return None
    from sklearn.base import is_classifier, is_regressor

    model = getattr(estimator, "best_estimator_", estimator)
    return model if is_classifier(model) or is_regressor(model) else None


def _sklearn_metrics(estimator: Any, x: Any, y: Any) -> dict[str, float]:
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    if getattr(estimator, "best_score_", None) is not None:
        out["best_cv_score"] = float(estimator.best_score_)
    if x is None or y is None:
        return out
    if is_classifier(estimator):
        pred = estimator.predict(x)
        out["training_accuracy"] = float(metrics.accuracy_score(y, pred))
        out["training_f1"] = float(metrics.f1_score(y, pred, average="weighted"))
        try:
            proba = estimator.predict_proba(x)
        except (AttributeError, NotImplementedError):
            proba = None
        if proba is not None:
            labels = getattr(estimator, "classes_", None)
            out["training_log_loss"] = float(metrics.log_loss(y, proba, labels=labels))
    elif is_regressor(estimator):
        pred = estimator.predict(x)
        out["training_r2"] = float(metrics.r2_score(y, pred))
        out["training_mae"] = float(metrics.mean_absolute_error(y, pred))
        out["training_mse"] = float(metrics.mean_squared_error(y, pred))
    return out


# -- XGBoost / LightGBM ------------------------------------------------------------------------


def _patch_train(framework: str, modules: list[str], body: Callable[..., Any]) -> None:
    mods = [importlib.import_module(m) for m in modules]  # ImportError when not installed
    if _is_patched(framework):
        return
    original = mods[0].train
    signature = inspect.signature(original)
    call = _guarded(lambda *a, **k: framework, body)

    @functools.wraps(original)
    def train(*args: Any, **kwargs: Any) -> Any:
        return call(functools.partial(_call_bound, original, signature), *args, **kwargs)

    setattr(train, _MARK, True)
    for mod in mods:
        if getattr(mod, "train", None) is original:
            _patch(framework, mod, "train", lambda _orig: train)


def _call_bound(
    original: Callable[..., Any],
    signature: inspect.Signature,
    *args: Any,
    _extra_callback: Any = None,
    **kwargs: Any,
) -> Any:
    if _extra_callback is None:
        return original(*args, **kwargs)
    bound = signature.bind(*args, **kwargs)
    callbacks = list(bound.arguments.get("callbacks") or [])
    bound.arguments["callbacks"] = [*callbacks, _extra_callback]
    return original(*bound.args, **bound.kwargs)


def _train_params(
    signature_args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    default_rounds: int,
    *,
    as_text: bool = True,
) -> dict[str, Any]:
    """The params dict and ``num_boost_round``: as text for the run (``as_text``), as given
    for the model version's options."""
    params = signature_args[0] if signature_args else kwargs.get("params", {})
    rounds = signature_args[2] if len(signature_args) > 2 else kwargs.get("num_boost_round")
    rounds = default_rounds if rounds is None else rounds
    if not as_text:
        return {**dict(params or {}), "num_boost_round": rounds}
    out = _clean_params(dict(params or {}))
    out["num_boost_round"] = str(rounds)
    return out


def _xgboost_body(
    session: _Session, original: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    session.log("logging params", lambda: fluent.log_params(_train_params(args, kwargs, 10)))
    callback: Any = None
    if session.ok:
        try:
            callback = _xgboost_callback(session)
        except Exception as exc:
            _warn("making the xgboost callback", exc)
    booster = original(*args, _extra_callback=callback, **kwargs)
    if _models["log"]:
        params = _train_params(args, kwargs, 10, as_text=False)
        session.log(
            "registering the model", lambda: _register(booster, "xgboost", None, None, params)
        )
    return booster


def _xgboost_callback(session: _Session) -> Any:
    from xgboost.callback import TrainingCallback

    class _Log(TrainingCallback):  # type: ignore[misc]
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            def log() -> None:
                latest = {}
                for data, by_metric in evals_log.items():
                    for metric, values in by_metric.items():
                        if values:
                            value = values[-1]
                            latest[f"{data}-{metric}"] = (
                                value[0] if isinstance(value, tuple) else value
                            )
                _log_finite(latest, step=epoch)

            session.log("logging xgboost metrics", log)
            return False

    return _Log()


def _lightgbm_body(
    session: _Session, original: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    session.log("logging params", lambda: fluent.log_params(_train_params(args, kwargs, 100)))

    def callback(env: Any) -> None:
        def log() -> None:
            latest = {f"{r[0]}-{r[1]}": r[2] for r in env.evaluation_result_list or []}
            _log_finite(latest, step=env.iteration)

        session.log("logging lightgbm metrics", log)

    callback.order = 100  # type: ignore[attr-defined]  # after lightgbm's own callbacks
    # The Dataset still holds its DataFrame before training: LightGBM's own feature names
    # replace spaces and symbols, the registry keeps the columns the user will predict with.
    train_set = args[1] if len(args) > 1 else kwargs.get("train_set")
    data = getattr(train_set, "data", None)
    booster = original(*args, _extra_callback=callback if session.ok else None, **kwargs)
    if _models["log"]:
        params = _train_params(args, kwargs, 100, as_text=False)
        session.log(
            "registering the model", lambda: _register(booster, "lightgbm", data, None, params)
        )
    return booster


# -- registering the model ---------------------------------------------------------------------


def _register(model: Any, kind: str, x: Any, y: Any, params: Mapping[str, Any] | None) -> None:
    """Register ``model`` as a version whose lineage is the active run (skipped, with a
    warning, when its features are not all numeric: the registry serves numeric features)."""
    run = fluent.active_run()
    if run is None:
        return
    names, types = _features(x)
    if names is not None and types is None:
        warnings.warn(
            f"shipyard autolog: {kind} was not registered: its training columns are not all "
            f"numeric ({_non_numeric(x)}); the registry stores models of numeric features",
            AutologWarning,
            stacklevel=2,
        )
        return
    name = _models["name"] or f"autolog.{_slug(kind)}_{run.id[:8]}"
    label = getattr(y, "name", None)
    version = fluent._workspace().models.register_object(
        name,
        model,
        feature_names=names,
        feature_types=types,
        label=label if isinstance(label, str) and label.isidentifier() else None,
        run_id=run.id,
        params=None if params is None else dict(params),
    )
    fluent.set_tags(
        {"registered_model": version.model, "registered_model_version": str(version.version)}
    )


def _slug(kind: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in kind.lower()) or "model"


def _features(x: Any) -> tuple[list[str] | None, list[str] | None]:
    """(names, Arrow types) of a DataFrame's columns (types None when one is not numeric);
    (None, types of a numeric matrix) for an array; (None, None) when unknown."""
    columns, dtypes = getattr(x, "columns", None), getattr(x, "dtypes", None)
    if columns is not None and dtypes is not None:
        types = [_numeric_type(d) for d in dtypes]
        known = [t for t in types if t is not None]
        return [str(c) for c in columns], (known if len(known) == len(types) else None)
    dtype, shape = getattr(x, "dtype", None), getattr(x, "shape", None)
    if dtype is not None and shape is not None and len(shape) == 2:
        t = _numeric_type(dtype)
        return None, ([t] * int(shape[1]) if t is not None else None)
    return None, None


def _numeric_type(dtype: Any) -> str | None:
    """The Arrow type of a NumPy integer or float dtype; None for anything else (a pandas
    extension dtype such as category or string included)."""
    import numpy as np
    import pyarrow as pa

    try:
        dtype = np.dtype(dtype)
    except TypeError:
        return None
    return str(pa.from_numpy_dtype(dtype)) if dtype.kind in "iuf" else None


def _non_numeric(x: Any) -> str:
    bad = [f"{c}: {d}" for c, d in zip(x.columns, x.dtypes, strict=True) if not _numeric_type(d)]
    return ", ".join(bad[:5])


_PATCHERS: dict[str, Callable[[], None]] = {
    "sklearn": _patch_sklearn,
    "xgboost": lambda: _patch_train(
        "xgboost", ["xgboost.training", "xgboost", "xgboost.sklearn"], _xgboost_body
    ),
    "lightgbm": lambda: _patch_train(
        "lightgbm", ["lightgbm.engine", "lightgbm", "lightgbm.sklearn"], _lightgbm_body
    ),
}
