"""Explainable AI table functions: ML.EXPLAIN_PREDICT, ML.GLOBAL_EXPLAIN, ML.FEATURE_IMPORTANCE.

The attributions themselves are computed by :mod:`shipyard.registry.explain` (the same code the
serving layer's ``:explain`` uses); these handlers validate the arguments and shape the output
as BigQuery ML does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shipyard.errors import FailedPrecondition, InvalidArgument
from shipyard.registry.explain import CLASS_LEVEL_TOP_FEATURES, explain, input_feature_groups

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "feature_importance",
    "ml_explain_predict",
    "ml_feature_importance",
    "ml_global_explain",
]

_TREE_FLAVORS = ("xgboost",)


def not_applicable(function: str, model: str, model_type: str, applies_to: str) -> InvalidArgument:
    """The error for an ML function called on a model type it does not apply to."""
    return InvalidArgument(
        f"ML.{function} does not apply to model {model} of type {model_type}; it applies to "
        f"{applies_to}",
        function=f"ML.{function}",
        model_type=model_type,
    )


def ml_explain_predict(service: SqlService, call: MLCall) -> pa.Table:
    """ML.EXPLAIN_PREDICT: ML.PREDICT's columns, the top feature attributions, then the inputs."""
    call.check_params(
        {
            "top_k_features": int,
            "threshold": (int, float),
            "approx_feature_contrib": bool,
            "integrated_gradients_num_steps": int,
        }
    )
    rows = call.require_input()
    predictor = service.models.load(call.model)
    options: dict[str, Any] = {
        "top_k_features": call.params.get("top_k_features"),
        "threshold": call.params.get("threshold"),
        "approx_feature_contrib": bool(call.params.get("approx_feature_contrib")),
    }
    steps = call.params.get("integrated_gradients_num_steps")
    if steps is None:
        return predictor.explain(rows, **options)
    if predictor.flavor != "torch":
        model_type = service.models.get_version(call.model).model_type
        raise InvalidArgument(
            f"ML.EXPLAIN_PREDICT parameter 'integrated_gradients_num_steps' applies to DNN "
            f"models (integrated gradients); model {call.model} is a {model_type} model",
            parameter="integrated_gradients_num_steps",
        )
    return explain(predictor, rows, integrated_gradients_num_steps=steps, **options)


def ml_global_explain(service: SqlService, call: MLCall) -> pa.Table:
    """ML.GLOBAL_EXPLAIN: mean |attribution| per feature, computed when the model was trained."""
    call.check_params({"class_level_explain": bool})
    if call.input is not None:
        raise InvalidArgument(
            f"ML.GLOBAL_EXPLAIN takes no input rows: ML.GLOBAL_EXPLAIN(MODEL {call.model}"
            "[, STRUCT(TRUE AS class_level_explain)])"
        )
    manifest = service.models.manifest(call.model)
    stored = manifest.global_explain
    if not stored:
        raise FailedPrecondition(
            f"model {call.model} was not trained with enable_global_explain=TRUE; retrain it "
            "with OPTIONS(…, enable_global_explain=TRUE) to use ML.GLOBAL_EXPLAIN",
            model=call.model,
        )
    if call.params.get("class_level_explain"):
        per_class = stored.get("class_attributions")
        if per_class is None:
            raise InvalidArgument(
                f"class_level_explain applies only to classification models; model "
                f"{call.model} is {manifest.task}"
            )
        label = manifest.label or "label"
        classes: list[str] = []
        features: list[str] = []
        values: list[float] = []
        for cls, attributions in per_class.items():
            top = _ranked(attributions)[:CLASS_LEVEL_TOP_FEATURES]
            classes += [cls] * len(top)
            features += [f for f, _ in top]
            values += [v for _, v in top]
        return pa.table(
            {
                label: pa.array(classes, type=pa.string()),
                "feature": pa.array(features, type=pa.string()),
                "attribution": pa.array(values, type=pa.float64()),
            }
        )
    ranked = _ranked(stored["attributions"])
    return pa.table(
        {
            "feature": pa.array([f for f, _ in ranked], type=pa.string()),
            "attribution": pa.array([v for _, v in ranked], type=pa.float64()),
        }
    )


def _ranked(attributions: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(attributions.items(), key=lambda item: -item[1])


def feature_importance(predictor: Any) -> dict[str, dict[str, float]]:
    """Per input feature: importance_weight (splits), importance_gain and importance_cover
    (averages over its splits) from the XGBoost booster; a one-hot feature's matrix columns
    are pooled (the averages weighted by their split counts)."""
    booster = predictor.model
    weight = booster.get_score(importance_type="weight")
    total_gain = booster.get_score(importance_type="total_gain")
    total_cover = booster.get_score(importance_type="total_cover")
    features, starts = input_feature_groups(predictor)
    width = len(predictor.preprocessor.feature_names_out)
    names = booster.feature_names or [f"f{i}" for i in range(width)]
    ends = np.append(starts[1:], width)
    out: dict[str, dict[str, float]] = {}
    for feature, start, end in zip(features, starts, ends, strict=True):
        columns = names[int(start) : int(end)]
        w = float(sum(weight.get(c, 0.0) for c in columns))
        g = float(sum(total_gain.get(c, 0.0) for c in columns))
        c = float(sum(total_cover.get(c, 0.0) for c in columns))
        out[feature] = {
            "importance_weight": w,
            "importance_gain": g / w if w else 0.0,
            "importance_cover": c / w if w else 0.0,
        }
    return out


def ml_feature_importance(service: SqlService, call: MLCall) -> pa.Table:
    """ML.FEATURE_IMPORTANCE (boosted trees): XGBoost's weight, gain and cover per feature."""
    call.check_params({})
    if call.input is not None:
        raise InvalidArgument(
            f"ML.FEATURE_IMPORTANCE takes no input rows: ML.FEATURE_IMPORTANCE(MODEL {call.model})"
        )
    version = service.models.get_version(call.model)
    if version.flavor not in _TREE_FLAVORS:
        raise not_applicable(
            "FEATURE_IMPORTANCE",
            call.model,
            version.model_type,
            "boosted tree and random forest models (BOOSTED_TREE_CLASSIFIER, "
            "BOOSTED_TREE_REGRESSOR, RANDOM_FOREST_CLASSIFIER, RANDOM_FOREST_REGRESSOR)",
        )
    if version.task == "imported":  # model_type='XGBOOST': no Shipyard preprocessing
        from shipyard.sql.imported import xgboost_feature_importance

        scores = xgboost_feature_importance(service.models.load(call.model))
    else:
        scores = feature_importance(service.models.load(call.model))
    columns: dict[str, Any] = {"feature": pa.array(list(scores), type=pa.string())}
    for key in ("importance_weight", "importance_gain", "importance_cover"):
        columns[key] = pa.array([s[key] for s in scores.values()], type=pa.float64())
    return pa.table(columns)
