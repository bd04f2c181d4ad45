"""ML.EVALUATE metrics: BigQuery ML's names, sklearn's definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from shipyard.errors import InvalidArgument
from shipyard.sql.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS, evaluate

rng = np.random.default_rng(7)


def test_regression_metrics_match_sklearn() -> None:
    y = rng.uniform(1, 10, size=200)
    pred = y + rng.normal(scale=0.5, size=200)
    pred = np.abs(pred)
    m = evaluate("regression", y, pred, None, None)
    assert list(m) == list(REGRESSION_METRICS)
    assert m["mean_absolute_error"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["mean_squared_error"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert m["mean_squared_log_error"] == pytest.approx(skm.mean_squared_log_error(y, pred))
    assert m["median_absolute_error"] == pytest.approx(skm.median_absolute_error(y, pred))
    assert m["r2_score"] == pytest.approx(skm.r2_score(y, pred))
    assert m["explained_variance"] == pytest.approx(skm.explained_variance_score(y, pred))


def test_undefined_regression_metrics_are_none() -> None:
    m = evaluate("regression", [-1.0, 2.0], [1.0, 2.0], None, None)
    assert m["mean_squared_log_error"] is None
    single = evaluate("regression", [1.0], [2.0], None, None)
    assert single["r2_score"] is None and single["mean_absolute_error"] == 1.0


def test_binary_metrics_use_the_positive_class_and_threshold() -> None:
    y = rng.integers(0, 2, size=300)
    p1 = np.clip(y * 0.6 + rng.uniform(0, 0.4, size=300), 0, 1)
    probs = np.column_stack([1 - p1, p1])
    m = evaluate("binary_classification", y, None, probs, ["no", "yes"])
    assert list(m) == list(CLASSIFICATION_METRICS)
    pred = (p1 > 0.5).astype(int)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1_score"] == pytest.approx(skm.f1_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs), rel=1e-6)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    strict = evaluate("binary_classification", y, None, probs, ["no", "yes"], threshold=0.9)
    assert strict["recall"] == pytest.approx(skm.recall_score(y, (p1 > 0.9).astype(int)))
    assert strict["roc_auc"] == m["roc_auc"]  # threshold-free


def test_multiclass_metrics_are_macro_averages() -> None:
    y = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    m = evaluate("multiclass_classification", y, pred, probs, ["a", "b", "c"])
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["f1_score"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    # BigQuery ML macro-averages log_loss too: each class against the rest, then the mean.
    per_class = [skm.log_loss(y == k, probs[:, k], labels=[False, True]) for k in range(3)]
    assert m["log_loss"] == pytest.approx(np.mean(per_class), rel=1e-6)
    assert m["log_loss"] != pytest.approx(skm.log_loss(y, probs), rel=1e-3)
    expected_auc = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert m["roc_auc"] == pytest.approx(expected_auc)


def test_binary_precision_is_none_when_nothing_is_predicted_positive() -> None:
    probs = np.array([[0.4, 0.6], [0.8, 0.2], [0.3, 0.7]])
    m = evaluate("binary_classification", [1, 0, 0], None, probs, [0, 1], threshold=0.9)
    assert m["precision"] is None  # BigQuery ML: NaN, no positive prediction at all
    assert m["recall"] == 0.0 and m["f1_score"] == 0.0
    wrong = evaluate("binary_classification", [1, 0, 0], None, probs, [0, 1], threshold=0.65)
    assert wrong["precision"] == 0.0  # one positive prediction, and it is wrong


def test_roc_auc_is_none_with_a_single_class() -> None:
    probs = np.array([[0.3, 0.7], [0.6, 0.4]])
    m = evaluate("binary_classification", [1, 1], None, probs, [0, 1])
    assert m["roc_auc"] is None and m["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "ranking"}, "valid tasks"),
        ({"y_true": []}, "no rows"),
        ({"y_pred": [1.0]}, "must match"),
        ({"threshold": 0.5}, "only to binary"),
    ],
)
def test_regression_argument_errors(kwargs: dict, message: str) -> None:
    args = {"task": "regression", "y_true": [1.0, 2.0], "y_pred": [1.0, 2.0]}
    args.update(kwargs)
    with pytest.raises(InvalidArgument, match=message):
        evaluate(
            args["task"],
            args["y_true"],
            args["y_pred"],
            None,
            None,
            threshold=args.get("threshold"),
        )


def test_classification_argument_errors() -> None:
    probs = np.array([[0.2, 0.3, 0.5]])
    with pytest.raises(InvalidArgument, match="only to binary"):
        evaluate("multiclass_classification", [2], None, probs, [0, 1, 2], threshold=0.4)
    with pytest.raises(InvalidArgument, match="shape"):
        evaluate("multiclass_classification", [2], None, probs, [0, 1])
    with pytest.raises(InvalidArgument, match=r"class indices 0\.\.2"):
        evaluate("multiclass_classification", [5], None, probs, [0, 1, 2])
    with pytest.raises(InvalidArgument, match="probabilities"):
        evaluate("binary_classification", [1], [1], None, None)


def test_precision_recall_f1_equal_scikit_learns_bit_for_bit() -> None:
    """The one-bincount implementation against scikit-learn on random labels, edge cases
    included (a class never predicted, a class never present, every prediction the same)."""
    import warnings

    import numpy as np
    from sklearn import metrics as skm

    from shipyard.sql.evaluation import _precision_recall_f1

    rng = np.random.default_rng(0)
    warnings.simplefilter("ignore")
    for _ in range(200):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 50))
        truth, pred = rng.integers(0, k, n), rng.integers(0, k, n)
        if rng.random() < 0.2:
            pred[:] = 0
        binary = k == 2 and rng.random() < 0.7
        kwargs: dict[str, object] = {"average": "binary" if binary else "macro", "zero_division": 0}
        if binary:
            kwargs["pos_label"] = 1
        want = (
            skm.precision_score(truth, pred, **kwargs),
            skm.recall_score(truth, pred, **kwargs),
            skm.f1_score(truth, pred, **kwargs),
        )
        assert _precision_recall_f1(truth, pred, binary) == tuple(float(w) for w in want)
