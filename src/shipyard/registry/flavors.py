"""Model flavors: how a trained model is written to, and read back from, a package folder.

Every flavor uses a format that cannot run code when it is read:

========  =====================================  ==============================================
flavor    file                                   loaded with
========  =====================================  ==============================================
xgboost   ``model.ubj`` (XGBoost's native UBJSON)  ``xgboost.Booster().load_model``
lightgbm  ``model.txt`` (LightGBM's text format)   ``lightgbm.Booster(model_file=…)``
sklearn   ``model.skops`` (skops, never pickle)    ``skops.io.load`` with an explicit trust list
onnx      ``model.onnx`` (imported, verbatim)      ``onnxruntime.InferenceSession`` (extra onnx)
========  =====================================  ==============================================

``statsforecast`` (ARIMA_PLUS, ARIMA_PLUS_XREG) writes ``model.json``: statsforecast's fitted
ARIMA dicts (numbers and arrays) as JSON, rebuilt exactly by
:func:`shipyard.registry.forecasting.from_json`; no pickle is written or read.
``insights`` (CONTRIBUTION_ANALYSIS) writes ``insights.parquet``: the table ML.GET_INSIGHTS
returns, computed at CREATE MODEL (:mod:`shipyard.registry.insights`).

For ``sklearn`` the types skops does not trust by default are recorded at save time
(``trusted_types`` in the returned metadata). At load time the file's untrusted types must be a
subset of that list *and* each must come from an allow-listed module (``sklearn.``, ``numpy.``,
``scipy.``); anything else is refused with :class:`~shipyard.errors.ArtifactCorrupted`. The
registry verifies each file's sha256 before :func:`load_model` is called.

Example::

    meta = save_model("xgboost", booster, folder)   # {"files": ["model.ubj"], ...}
    booster = load_model("xgboost", folder, meta)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.errors import ArtifactCorrupted, InvalidArgument, Unsupported

__all__ = ["ALLOWED_MODULE_PREFIXES", "FLAVORS", "load_model", "save_model"]

#: Module prefixes whose types a ``sklearn`` flavor file may contain beyond skops' defaults.
ALLOWED_MODULE_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.")

_XGB_FILE = "model.ubj"
_LGB_FILE = "model.txt"
_SKOPS_FILE = "model.skops"


def _threads() -> int:
    return os.cpu_count() or 1


def _require_file(folder: Path, name: str, flavor: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise ArtifactCorrupted(
            f"{flavor} model file {name!r} is missing from {str(folder)!r}; the package must "
            f"contain the files its manifest lists",
            path=str(path),
        )
    return path


def _files_of(meta: dict[str, Any], default: str) -> str:
    files = meta.get("files") or [default]
    return str(files[0])


# -- xgboost ----------------------------------------------------------------------------------


def _save_xgboost(model: Any, folder: Path) -> dict[str, Any]:
    import xgboost as xgb

    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not isinstance(booster, xgb.Booster):
        raise InvalidArgument(
            f"the xgboost flavor stores an xgboost.Booster or XGBModel, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    booster.save_model(str(Path(folder) / _XGB_FILE))
    return {"files": [_XGB_FILE], "format": "ubj", "library_version": xgb.__version__}


def _load_xgboost(folder: Path, meta: dict[str, Any]) -> Any:
    import xgboost as xgb

    path = _require_file(folder, _files_of(meta, _XGB_FILE), "xgboost")
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise ArtifactCorrupted(
            f"xgboost model file {path.name!r} cannot be read: {str(exc).splitlines()[0]}",
            path=str(path),
        ) from exc
    booster.set_param({"nthread": _threads()})
    return booster


# -- lightgbm ---------------------------------------------------------------------------------


def _save_lightgbm(model: Any, folder: Path) -> dict[str, Any]:
    import lightgbm as lgb

    booster = model.booster_ if hasattr(model, "booster_") else model
    if not isinstance(booster, lgb.Booster):
        raise InvalidArgument(
            f"the lightgbm flavor stores a lightgbm.Booster or LGBMModel, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    booster.save_model(str(Path(folder) / _LGB_FILE))
    return {"files": [_LGB_FILE], "format": "text", "library_version": lgb.__version__}


def _load_lightgbm(folder: Path, meta: dict[str, Any]) -> Any:
    import lightgbm as lgb

    path = _require_file(folder, _files_of(meta, _LGB_FILE), "lightgbm")
    try:
        return lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise ArtifactCorrupted(
            f"lightgbm model file {path.name!r} cannot be read: {exc}", path=str(path)
        ) from exc


# -- sklearn (skops) --------------------------------------------------------------------------


def _disallowed(types: list[str]) -> list[str]:
    return [t for t in types if not t.startswith(ALLOWED_MODULE_PREFIXES)]


def _save_sklearn(model: Any, folder: Path) -> dict[str, Any]:
    import sklearn
    import skops.io as sio

    path = Path(folder) / _SKOPS_FILE
    sio.dump(model, path)
    trusted = sorted(sio.get_untrusted_types(file=path))
    bad = _disallowed(trusted)
    if bad:
        path.unlink(missing_ok=True)
        # Refuse now rather than write a package that can never be loaded.
        raise Unsupported(
            f"the sklearn flavor cannot store {type(model).__qualname__}: it contains types "
            f"{bad} from modules outside {list(ALLOWED_MODULE_PREFIXES)}",
            types=bad,
        )
    return {
        "files": [_SKOPS_FILE],
        "format": "skops",
        "trusted_types": trusted,
        "library_version": sklearn.__version__,
    }


def _load_sklearn(folder: Path, meta: dict[str, Any]) -> Any:
    import skops.io as sio

    path = _require_file(folder, _files_of(meta, _SKOPS_FILE), "sklearn")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a damaged zip or schema: skops raises many kinds
        raise ArtifactCorrupted(
            f"sklearn model file {path.name!r} cannot be read: {exc}", path=str(path)
        ) from exc
    recorded = set(meta.get("trusted_types") or [])
    unexpected = sorted(set(untrusted) - recorded)
    if unexpected:
        raise ArtifactCorrupted(
            f"sklearn model file {path.name!r} contains types {unexpected} that were not "
            f"recorded when it was saved (recorded: {sorted(recorded)}); refusing to load it",
            path=str(path),
            types=unexpected,
        )
    bad = _disallowed(list(untrusted))
    if bad:
        raise ArtifactCorrupted(
            f"sklearn model file {path.name!r} contains types {bad} outside the allowed modules "
            f"{list(ALLOWED_MODULE_PREFIXES)}; refusing to load it",
            path=str(path),
            types=bad,
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactCorrupted(
            f"sklearn model file {path.name!r} cannot be loaded: {exc}", path=str(path)
        ) from exc


# -- onnx (imported models) -------------------------------------------------------------------

_ONNX_FILE = "model.onnx"


def _save_onnx(model: Any, folder: Path) -> dict[str, Any]:
    """``model``: the bytes of an ONNX file (or its path); stored verbatim, never re-serialised."""
    if isinstance(model, str | Path):
        model = Path(model).read_bytes()
    if not isinstance(model, bytes | bytearray):
        raise InvalidArgument(
            f"the onnx flavor stores the bytes of an .onnx file, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    (Path(folder) / _ONNX_FILE).write_bytes(bytes(model))
    try:
        import onnxruntime

        version = onnxruntime.__version__
    except ImportError:  # pragma: no cover - the extra is missing; loading will say so
        version = None
    return {"files": [_ONNX_FILE], "format": "onnx", "library_version": version}


def _load_onnx(folder: Path, meta: dict[str, Any]) -> Any:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - depends on the environment
        raise Unsupported("ONNX models need onnxruntime: pip install 'shipyard[onnx]'") from None
    path = _require_file(folder, _files_of(meta, _ONNX_FILE), "onnx")
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise ArtifactCorrupted(
            f"onnx model file {path.name!r} cannot be read: {str(exc).splitlines()[0]}",
            path=str(path),
        ) from exc


# -- dispatch ---------------------------------------------------------------------------------

_Saver = Callable[[Any, Path], dict[str, Any]]
_Loader = Callable[[Path, dict[str, Any]], Any]


def _save_factorization(model: Any, folder: Path) -> dict[str, Any]:
    from shipyard.registry.factorization import save_factor_model

    return save_factor_model(model, folder)


def _load_factorization(folder: Path, meta: dict[str, Any]) -> Any:
    from shipyard.registry.factorization import load_factor_model

    return load_factor_model(folder, meta)


def _save_torch(model: Any, folder: Path) -> dict[str, Any]:
    from shipyard.registry.neural import save_neural_net

    return save_neural_net(model, folder)


def _load_torch(folder: Path, meta: dict[str, Any]) -> Any:
    from shipyard.registry.neural import load_neural_net

    return load_neural_net(folder, meta)


def _save_statsforecast(model: Any, folder: Path) -> dict[str, Any]:
    # ARIMA_PLUS: statsforecast's fitted ARIMA dicts as JSON, rebuilt exactly; never a pickle.
    from shipyard.registry.forecasting import save_forecast_model

    return save_forecast_model(model, folder)


def _load_statsforecast(folder: Path, meta: dict[str, Any]) -> Any:
    from shipyard.registry.forecasting import load_forecast_model

    path = _require_file(folder, _files_of(meta, "model.json"), "statsforecast")
    return load_forecast_model(path)


def _save_insights(model: Any, folder: Path) -> dict[str, Any]:
    from shipyard.registry.insights import save_insights_model

    return save_insights_model(model, folder)


def _load_insights(folder: Path, meta: dict[str, Any]) -> Any:
    from shipyard.registry.insights import load_insights_model

    _require_file(folder, _files_of(meta, "insights.parquet"), "insights")
    return load_insights_model(folder, meta)


def _save_transform(model: Any, folder: Path) -> dict[str, Any]:
    from shipyard.registry.transform import save_transform_model

    return save_transform_model(model, folder)


def _load_transform(folder: Path, meta: dict[str, Any]) -> Any:
    from shipyard.registry.transform import load_transform_model

    _require_file(folder, _files_of(meta, "transform.json"), "transform")
    return load_transform_model(folder, meta)


FLAVORS: dict[str, tuple[_Saver, _Loader]] = {
    # MATRIX_FACTORIZATION: Parquet id mappings and .npy factors, read with allow_pickle=False
    # (shipyard.registry.factorization)
    "factorization": (_save_factorization, _load_factorization),
    # model_type='CONTRIBUTION_ANALYSIS': the insights table as Parquet (shipyard.registry.insights)
    "insights": (_save_insights, _load_insights),
    "lightgbm": (_save_lightgbm, _load_lightgbm),
    "onnx": (_save_onnx, _load_onnx),
    "sklearn": (_save_sklearn, _load_sklearn),
    # ARIMA_PLUS / ARIMA_PLUS_XREG: fitted ARIMA as JSON (shipyard.registry.forecasting)
    "statsforecast": (_save_statsforecast, _load_statsforecast),
    # DNN and AUTOENCODER models: safetensors weights + JSON architecture, NumPy inference
    # (shipyard.registry.neural)
    "torch": (_save_torch, _load_torch),
    # model_type='TRANSFORM_ONLY': the fitted TRANSFORM as JSON (shipyard.registry.transform)
    "transform": (_save_transform, _load_transform),
    "xgboost": (_save_xgboost, _load_xgboost),
}


def _flavor(flavor: str) -> tuple[_Saver, _Loader]:
    try:
        return FLAVORS[flavor]
    except KeyError:
        raise Unsupported(
            f"model flavor {flavor!r} is not supported; "
            f"valid flavors: {', '.join(sorted(FLAVORS))}",
            flavor=flavor,
        ) from None


def save_model(flavor: str, model: Any, folder: Path) -> dict[str, Any]:
    """Write ``model`` into ``folder`` (which must exist); returns the flavor's manifest entry.

    The entry always has ``files`` (names relative to ``folder``) and ``library_version``.
    """
    saver, _ = _flavor(flavor)
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgument(f"model folder {str(folder)!r} does not exist or is not a folder")
    meta = saver(model, folder)
    meta["flavor"] = flavor
    return meta


def load_model(flavor: str, folder: Path, flavor_meta: dict[str, Any]) -> Any:
    """Read back the model that :func:`save_model` wrote, given its manifest entry."""
    _, loader = _flavor(flavor)
    return loader(Path(folder), dict(flavor_meta or {}))
