"""``calculate_p_values`` for LINEAR_REG and LOGISTIC_REG, and ML.ADVANCED_WEIGHTS.

With ``calculate_p_values=TRUE`` training computes each weight's standard error and two-sided
p-value, on the training split:

* LINEAR_REG: ``Cov = σ² · H⁻¹ XᵀX H⁻¹`` with ``H = XᵀX + l2_reg·I`` (the intercept is not
  penalised; without ``l2_reg`` this is the ordinary least-squares ``σ² (XᵀX)⁻¹``),
  ``σ² = RSS / (rows - parameters)``, and Student's t with that many degrees of freedom.
* LOGISTIC_REG (binary): ``Cov = H⁻¹`` with ``H = Xᵀ diag(p(1-p)) X + 2·l2_reg·I``, the Hessian
  of the training objective, and the normal distribution (Wald test).

Rules (Shipyard's; BigQuery ML's page does not spell them out): ``l1_reg`` must be 0 (a lasso
weight has no standard error), multiclass LOGISTIC_REG is Unsupported, and categorical features
need ``category_encoding_method='DUMMY_ENCODING'`` (one-hot columns sum to the intercept, so
their weights are not identifiable). The statistics are kept in the model package (the
predictor's config) for both the standardized weights and the raw-input weights that ML.WEIGHTS
shows by default.

ML.ADVANCED_WEIGHTS(MODEL m[, STRUCT(TRUE AS standardize)]) returns BigQuery ML's columns
``processed_input``, ``category``, ``weight``, ``standard_error``, ``p_value``: one row per
numeric feature (``category`` NULL), one row per category of a categorical feature (the same
``processed_input`` on each), and the ``__INTERCEPT__`` row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shipyard.errors import FailedPrecondition, InvalidArgument, Unsupported

if TYPE_CHECKING:
    from shipyard.registry.predictor import Predictor
    from shipyard.registry.preprocessing import FeaturePreprocessor
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = ["check_p_value_options", "coefficient_statistics", "ml_advanced_weights"]

CONFIG_KEY = "coefficient_statistics"


def check_p_value_options(
    model_type: str, options: Any, preprocessor: FeaturePreprocessor, n_classes: int
) -> None:
    """Refuse calculate_p_values=TRUE where the statistics are not defined."""
    if options.l1_reg > 0:
        raise InvalidArgument(
            f"calculate_p_values=TRUE cannot be combined with l1_reg for {model_type} (an L1 "
            "weight has no standard error); drop l1_reg or calculate_p_values"
        )
    if n_classes > 2:
        raise Unsupported(
            f"calculate_p_values=TRUE is not supported for multiclass {model_type} yet "
            f"({n_classes} classes)"
        )
    one_hot = [
        c["name"]
        for c in preprocessor.to_dict()["columns"]
        if c["kind"] not in ("numeric", "timestamp") and c["encoding"] == "one_hot"
    ]
    if one_hot and options.fit_intercept:
        raise InvalidArgument(
            f"calculate_p_values=TRUE needs category_encoding_method 'DUMMY_ENCODING' for the "
            f"categorical features {one_hot}: one-hot columns add up to the intercept, so their "
            "weights have no standard error"
        )


def coefficient_statistics(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    options: Any,
    preprocessor: FeaturePreprocessor,
    *,
    regression: bool,
) -> dict[str, Any]:
    """Standard errors and p-values of [weights…, intercept], standardized and raw."""
    from scipy import stats

    n, p = x.shape
    intercept = bool(options.fit_intercept)
    design = np.hstack([x, np.ones((n, 1))]) if intercept else np.asarray(x, dtype=np.float64)
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    theta = np.append(coef, float(np.ravel(model.intercept_)[0])) if intercept else coef
    penalty = np.full(design.shape[1], 0.0)
    penalty[:p] = options.l2_reg if regression else 2.0 * options.l2_reg
    if regression:
        gram = design.T @ design
        inverse = np.linalg.pinv(gram + np.diag(penalty))
        residuals = y - design @ theta
        dof = max(n - design.shape[1], 1)
        cov = (float(residuals @ residuals) / dof) * (inverse @ gram @ inverse)
    else:
        proba = 1.0 / (1.0 + np.exp(-(design @ theta)))
        hessian = (design * (proba * (1.0 - proba))[:, None]).T @ design + np.diag(penalty)
        cov = np.linalg.pinv(hessian)
    raw_map = _raw_map(preprocessor, p, intercept)
    result: dict[str, Any] = {"intercept": intercept}
    for name, covariance, values in (
        ("standardized", cov, theta),
        ("raw", raw_map @ cov @ raw_map.T, raw_map @ theta),
    ):
        variance = np.diag(covariance)
        se = np.where(variance > 0, np.sqrt(np.abs(variance)), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.abs(values / se)
        if regression:
            pvalues = 2.0 * stats.t.sf(score, max(n - design.shape[1], 1))
        else:
            pvalues = 2.0 * stats.norm.sf(score)
        result[name] = {"standard_error": _clean(se), "p_value": _clean(pvalues)}
    return result


def _clean(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def _raw_map(preprocessor: FeaturePreprocessor, p: int, intercept: bool) -> np.ndarray:
    """The linear map from standardized parameters to raw-input parameters (ML.WEIGHTS')."""
    size = p + (1 if intercept else 0)
    a = np.eye(size)
    offset = 0
    for col in preprocessor.to_dict()["columns"]:
        width = _width(col)
        if col["kind"] in ("numeric", "timestamp"):
            scale, center = float(col["scale"]), float(col["center"])
            a[offset, offset] = 1.0 / scale
            if intercept:
                a[p, offset] = -center / scale
        offset += width
    return a


def _width(col: dict[str, Any]) -> int:
    if col["kind"] in ("numeric", "timestamp") or col["encoding"] == "label":
        return 1
    dropped = 1 if col["encoding"] == "dummy" and col["categories"] else 0
    return len(col["categories"]) - dropped + (1 if col["null_category"] else 0)


_SCHEMA = pa.schema(
    [
        ("processed_input", pa.string()),
        ("category", pa.string()),
        ("weight", pa.float64()),
        ("standard_error", pa.float64()),
        ("p_value", pa.float64()),
    ]
)


def ml_advanced_weights(service: SqlService, call: MLCall) -> pa.Table:
    """ML.ADVANCED_WEIGHTS: ML.WEIGHTS with standard errors and p-values."""
    from shipyard.sql.clustering import require_model_type
    from shipyard.sql.inspection import weights_rows

    call.check_params({"standardize": bool})
    require_model_type(service, call, ("LINEAR_REG", "LOGISTIC_REG"))
    if call.input is not None:
        raise InvalidArgument(
            f"ML.ADVANCED_WEIGHTS takes no input rows: ML.ADVANCED_WEIGHTS(MODEL {call.model}"
            "[, STRUCT(TRUE AS standardize)])"
        )
    predictor: Predictor = service.models.load(call.model)
    statistics = predictor.config.get(CONFIG_KEY)
    if not statistics:
        raise FailedPrecondition(
            f"model {call.model} was not trained with calculate_p_values=TRUE; retrain it with "
            "OPTIONS(…, calculate_p_values=TRUE) to use ML.ADVANCED_WEIGHTS"
        )
    standardize = bool(call.params.get("standardize"))
    chosen = statistics["standardized" if standardize else "raw"]
    se, pv = chosen["standard_error"], chosen["p_value"]
    rows = weights_rows(predictor, standardize=standardize)
    offset = 0
    out: list[dict[str, Any]] = []
    for row in rows:
        name = row["processed_input"]
        if name == "__INTERCEPT__":
            known = bool(statistics["intercept"])
            out.append(
                _row(
                    name, None, row["weight"], se[-1] if known else None, pv[-1] if known else None
                )
            )
        elif row["category_weights"] is not None:  # one row per category, as BigQuery ML
            # DUMMY_ENCODING's dropped category comes first: NaN statistics, as BigQuery ML
            dropped = int(row.get("_dropped", 0))
            for i, c in enumerate(row["category_weights"]):
                if i < dropped:
                    out.append(_row(name, c["category"], c["weight"], math.nan, math.nan))
                else:
                    j = offset + i - dropped
                    out.append(_row(name, c["category"], c["weight"], se[j], pv[j]))
            offset += len(row["category_weights"]) - dropped
        else:
            out.append(_row(name, None, row["weight"], se[offset], pv[offset]))
            offset += 1
    return pa.Table.from_pylist(out, schema=_SCHEMA)


def _row(name: str, category: str | None, weight: Any, se: Any, pv: Any) -> dict[str, Any]:
    return {
        "processed_input": name,
        "category": category,
        "weight": weight,
        "standard_error": se,
        "p_value": pv,
    }
