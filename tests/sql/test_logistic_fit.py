"""LOGISTIC_REG fits scikit-learn's LogisticRegression on one BLAS thread: the estimator it
would fit on one thread, bit for bit, whatever the caller's BLAS thread setting (OpenBLAS
splits the gradient's sum over the rows between its threads, which rounds differently and,
on a busy machine, made the fit several times slower)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info, threadpool_limits

from shipyard.registry.preprocessing import LabelInfo
from shipyard.sql.training import _linear_model_scores, _log_loss, train_logistic


def _data(rows: int, classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 10))
    logits = x[:, :classes] * 2.0 + rng.normal(scale=1.5, size=(rows, classes))
    return x, np.argmax(logits, axis=1).astype(np.int64)


def _options(**changes: Any) -> SimpleNamespace:
    values = {
        "l1_reg": 0.0,
        "l2_reg": 0.0,
        "max_iterations": 20,
        "fit_intercept": True,
        "auto_class_weights": False,
        "class_weights": None,
    }
    values.update(changes)
    return SimpleNamespace(**values)


def _quiet(fraction: float, message: str) -> None:
    pass


def _train(x: np.ndarray, y: np.ndarray, **changes: Any) -> Any:
    labels = LabelInfo.fit(pa.array(y), label="label", max_classes=50)
    return train_logistic(x, y, None, None, _options(**changes), labels, _quiet)


@pytest.mark.parametrize(
    ("classes", "changes", "reference"),
    [
        (2, {}, {"C": math.inf, "l1_ratio": 0.0, "solver": "lbfgs"}),
        (2, {"l2_reg": 0.5}, {"C": 1.0, "l1_ratio": 0.0, "solver": "lbfgs"}),
        (3, {}, {"C": math.inf, "l1_ratio": 0.0, "solver": "lbfgs"}),
    ],
)
def test_the_fit_is_scikit_learns_on_one_blas_thread(
    classes: int, changes: dict[str, Any], reference: dict[str, Any]
) -> None:
    x, y = _data(60_000, classes)
    with threadpool_limits(1, "blas"):
        expected = LogisticRegression(max_iter=1000, **reference).fit(x, y)
    fit = _train(x, y, **changes)
    assert np.array_equal(fit.model.coef_, expected.coef_)
    assert np.array_equal(fit.model.intercept_, expected.intercept_)
    # ML.TRAINING_INFO's loss and the metric rows' scores: ML.PREDICT's arithmetic on the rows
    scores = _linear_model_scores(fit.model, x, classes)
    assert np.array_equal(fit.metric_scores, scores)
    assert fit.training_info[0]["loss"] == _log_loss(y, scores)


def test_the_coefficients_do_not_depend_on_the_callers_blas_threads() -> None:
    if not any(pool.get("internal_api") == "openblas" for pool in threadpool_info()):
        pytest.skip("the thread split is OpenBLAS's")
    x, y = _data(60_000)
    with threadpool_limits(2, "blas"):
        two = _train(x, y)
    with threadpool_limits(1, "blas"):
        one = _train(x, y)
    assert np.array_equal(two.model.coef_, one.model.coef_)
    assert np.array_equal(two.model.intercept_, one.model.intercept_)
    assert two.training_info[0]["loss"] == one.training_info[0]["loss"]
