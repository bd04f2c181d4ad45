"""category_encoding_method='TARGET_ENCODING' (BOOSTED_TREE_*, RANDOM_FOREST_*): the label that
:meth:`FeaturePreprocessor.fit <shipyard.registry.preprocessing.FeaturePreprocessor.fit>`
encodes each category with.

BigQuery ML's reference: a category becomes "the probability of the target for classification
models, or the expected value of the target for regression models". Shipyard computes it from
the training rows only (evaluation rows are left out, so the evaluation metrics do not see their
own labels): regression, the category's mean label; binary classification, its share of the
positive class (the greater label, as ML.PREDICT's probability); multiclass, one column per class
with the category's share of each. NULL is a category of its own when training had NULLs; an
unseen value (or NULL that training never had) gets the training rows' mean (or class shares).
Instance weights do not weigh the means.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.sql.training import PreparedData

__all__ = ["encoding_target"]


def encoding_target(
    options: Any, data: PreparedData, eval_idx: np.ndarray | None
) -> dict[str, Any]:
    """``FeaturePreprocessor.fit``'s ``target``/``target_names`` keywords, or {} when the
    encoding is not TARGET_ENCODING."""
    if getattr(options, "category_encoding_method", None) != "TARGET_ENCODING":
        return {}
    target = np.array(data.y, dtype=np.float64)
    if eval_idx is not None:
        target[eval_idx] = np.nan
    names = None
    if data.task == "multiclass_classification" and data.label_info is not None:
        names = [str(v) for v in data.label_info.values()]
    return {"target": target, "target_names": names}
