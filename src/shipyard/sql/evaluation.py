"""ML.EVALUATE metrics with BigQuery ML's names and definitions.

=========================  ==================================================================
task                       metrics
=========================  ==================================================================
regression                 mean_absolute_error, mean_squared_error, mean_squared_log_error,
                           median_absolute_error, r2_score, explained_variance
binary_classification      precision, recall, accuracy, f1_score, log_loss, roc_auc — the
                           positive class is the greater class (index 1); a row is predicted
                           positive when its positive probability is above ``threshold``
multiclass_classification  the same names; precision, recall, f1_score, log_loss and roc_auc
                           are macro averages: computed for each class against the rest, then
                           averaged without weights (BigQuery ML's rule)
=========================  ==================================================================

``accuracy`` is the fraction of correct predictions (a micro average). ``log_loss`` per class is
the binary log loss of "this class or not"; for a binary model both classes give the same value,
the usual log loss.

A metric that is undefined for the data is ``None`` (JSON null), never NaN:
mean_squared_log_error when a label or prediction is negative, roc_auc when only one class is
present, r2_score/explained_variance with fewer than two rows, and a binary model's precision
when the threshold leaves no row predicted positive (BigQuery ML returns NaN there).
Multiclass precision counts a class that is never predicted as 0 (BigQuery ML does not say).

Example::

    >>> evaluate("regression", [1.0, 2.0], [1.0, 3.0], None, None)["mean_absolute_error"]
    0.5
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.errors import InvalidArgument

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "ScoreOrder",
    "evaluate",
    "linear_quantiles",
    "merged_quantiles",
    "sorted_quantiles",
]

REGRESSION_METRICS: tuple[str, ...] = (
    "mean_absolute_error",
    "mean_squared_error",
    "mean_squared_log_error",
    "median_absolute_error",
    "r2_score",
    "explained_variance",
)
CLASSIFICATION_METRICS: tuple[str, ...] = (
    "precision",
    "recall",
    "accuracy",
    "f1_score",
    "log_loss",
    "roc_auc",
)
_TASKS = ("regression", "binary_classification", "multiclass_classification")


@dataclass
class ScoreOrder:
    """A binary model's positive-class scores, sorted separately for the rows whose true class
    is positive and for the others: :func:`evaluate` fills it when it computes roc_auc, so that
    the stored ML.ROC_CURVE (:func:`shipyard.sql.inspection.evaluation_curves`) reuses the two
    sorts instead of repeating them (they are most of the time of both)."""

    positives: np.ndarray | None = None
    negatives: np.ndarray | None = None
    #: ``np.searchsorted(negatives, positives, side="left")``: each positive's place among the
    #: negatives, which also places it in the merged order (:func:`merged_quantiles`)
    below: np.ndarray | None = None


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """scikit-learn's regression metrics (equal to float rounding), in NumPy: each scikit-learn
    call re-validates and reshapes its inputs. Plain NumPy sums, not ``np.dot``: BLAS threads
    make a dot product of 300k values 10x slower on a busy machine."""
    diff = y_true - y_pred
    work = np.multiply(diff, diff)  # one scratch vector for the squares below
    squared_sum = float(np.sum(work))
    n = len(y_true)
    absolute = np.abs(diff)
    mean_absolute = _clean(np.mean(absolute))
    result: dict[str, float | None] = {
        "mean_absolute_error": mean_absolute,
        "mean_squared_error": _clean(squared_sum / n),
        "mean_squared_log_error": None,
        # the absolute errors are not needed after this: the median may reorder them in place
        "median_absolute_error": _clean(np.median(absolute, overwrite_input=True)),
        "r2_score": None,
        "explained_variance": None,
    }
    if (y_true >= 0).all() and (y_pred >= 0).all():
        logs = np.log1p(y_true)
        logs -= np.log1p(y_pred)
        result["mean_squared_log_error"] = _clean(np.mean(np.multiply(logs, logs, out=logs)))
    if n >= 2:
        centred = np.subtract(y_true, np.mean(y_true), out=absolute)
        total = float(np.sum(np.multiply(centred, centred, out=work)))
        result["r2_score"] = _clean(_explained(squared_sum, total))
        residual = np.subtract(diff, np.mean(diff), out=diff)
        unexplained = float(np.sum(np.multiply(residual, residual, out=work)))
        result["explained_variance"] = _clean(_explained(unexplained, total))
    return result


def _explained(unexplained: float, total: float) -> float:
    """``1 - unexplained / total`` with scikit-learn's ``force_finite`` rule for a constant
    label: 1.0 when the prediction is perfect, else 0.0."""
    if total == 0.0:
        return 1.0 if unexplained == 0.0 else 0.0
    return 1.0 - unexplained / total


def _roc_auc(
    y_true: np.ndarray, probabilities: np.ndarray, binary: bool, order: ScoreOrder | None = None
) -> float | None:
    if binary:
        if y_true.min() == y_true.max():  # one class only
            return None
        return _clean(_binary_auc(y_true == 1, probabilities[:, 1], order))
    aucs = []
    for k in range(probabilities.shape[1]):
        positives = y_true == k
        if 0 < positives.sum() < len(y_true):
            aucs.append(_binary_auc(positives, probabilities[:, k]))
    return _clean(np.mean(aucs)) if aucs else None


def _binary_auc(positive: np.ndarray, scores: np.ndarray, order: ScoreOrder | None = None) -> float:
    """The area under the ROC curve of ``scores`` for the rows where ``positive`` is True.

    The Mann-Whitney count: for each positive row, the negative rows scored below it, plus half
    of those scored the same (two binary searches in the sorted negative scores). The counts
    are exact integers, so the one division is the only rounding: scikit-learn's
    ``roc_auc_score`` (a trapezoid sum over its ROC curve) agrees to the last bit or two, in
    half its time (two sorts of half the rows, no input checks). ``order``, when given,
    receives the two sorted arrays.
    """
    if not np.isfinite(scores).all():  # scikit-learn's error for NaN / infinity
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(positive, scores))
    pos, neg = _sorted_by_class(positive, scores)
    if order is not None:
        order.positives, order.negatives = pos, neg
    below = np.searchsorted(neg, pos, side="left")
    if order is not None:
        order.below = below
    tied = 0
    # A positive ties with negatives only if the first negative at or above it equals it: one
    # gather tells whether the second binary search (the ties' right ends) is needed at all.
    if len(neg) and (neg[np.minimum(below, len(neg) - 1)] == pos).any():
        ties = np.searchsorted(neg, pos, side="right") - below
        tied = int(np.sum(ties, dtype=np.int64))
    wins = 2 * int(np.sum(below, dtype=np.int64)) + tied
    return wins / (2.0 * len(pos) * len(neg))  # wins: twice the Mann-Whitney U


def _sorted_by_class(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finite ``scores`` of the positive rows and of the others, each sorted (float64).

    Scores that are all float32 values (XGBoost's probabilities, widened) are sorted as float32:
    widening is exact and keeps the order, so the sorted arrays hold the same values (a zero's
    sign aside, whose place among equal zeros no sort promises), in ~70% of the time.
    """
    if len(scores) and _float32_exact(scores):
        narrow = scores.astype(np.float32)
        pos32, neg32 = narrow[positive], narrow[~positive]
        pos32.sort()
        neg32.sort()
        return pos32.astype(np.float64), neg32.astype(np.float64)
    pos = scores[positive]  # fresh copies: sorted in place
    neg = scores[~positive]
    pos.sort()
    neg.sort()
    return pos, neg


def _float32_exact(scores: np.ndarray) -> bool:
    """Whether every (finite) float64 score is a float32 value: a cheap look at the first 64,
    then all of them."""
    head = scores[:64]
    if not np.array_equal(head.astype(np.float32), head):
        return False
    return bool(np.array_equal(scores.astype(np.float32), scores))


def sorted_quantiles(ordered: np.ndarray, count: int) -> np.ndarray | None:
    """``np.quantile(values, np.linspace(0, 1, count))`` bit for bit, given ``ordered``, the
    sorted ``values``; None where a sort and ``np.quantile``'s partition may disagree on bits
    (no values, NaN: NumPy returns the NaN its partition puts last; zeros of both signs, which
    compare equal and so may sit in either order).

    The order statistics are the same values; :func:`linear_quantiles` interpolates them as
    NumPy does. ~0.05 ms, where ``np.quantile`` re-partitions the sorted array (2 ms for 101
    points at 300k rows) and on unsorted values costs more than a sort (1,001 points: 18 ms
    against 14 ms at 300k).
    """
    n = len(ordered)
    if n == 0 or np.isnan(ordered[-1]):
        return None
    lo = int(np.searchsorted(ordered, 0.0, side="left"))
    hi = int(np.searchsorted(ordered, 0.0, side="right"))
    signs = np.signbit(ordered[lo:hi])
    if signs.any() and not signs.all():
        return None
    return linear_quantiles(n, ordered.__getitem__, count)


def merged_quantiles(order: ScoreOrder, count: int) -> np.ndarray | None:
    """``np.quantile`` of all the scores of ``order`` (positives and negatives together), bit
    for bit, without merging them: positive ``i`` sits at ``i + below[i]`` in the merged order
    (ahead of the negatives it ties with, as a stable merge puts it), so each order statistic
    is one binary search among those places. None when a zero is within the scores' range
    (its sign could differ from the rows'), a score is NaN, or a class has no rows.
    """
    pos, neg = order.positives, order.negatives
    if pos is None or neg is None or len(pos) == 0 or len(neg) == 0:
        return None
    low, high = min(pos[0], neg[0]), max(pos[-1], neg[-1])
    if np.isnan(pos[-1]) or np.isnan(neg[-1]) or low <= 0.0 <= high:
        return None
    below = order.below
    if below is None or len(below) != len(pos):
        below = np.searchsorted(neg, pos, side="left")
    places = np.arange(len(pos)) + below  # strictly increasing
    n = len(pos) + len(neg)

    def take(ranks: np.ndarray) -> np.ndarray:
        ranks = ranks % n  # -1: the last
        ahead = np.searchsorted(places, ranks, side="left")  # positives before each rank
        found = np.minimum(ahead, len(pos) - 1)
        is_positive = places[found] == ranks
        return np.where(is_positive, pos[found], neg[np.minimum(ranks - ahead, len(neg) - 1)])

    return linear_quantiles(n, take, count)


def linear_quantiles(n: int, take: Any, count: int) -> np.ndarray:
    """NumPy's "linear" quantiles at ``np.linspace(0, 1, count)`` of ``n`` values whose order
    statistics ``take(indexes)`` returns (index -1: the largest), step for step as
    ``numpy.lib._function_base_impl._quantile``, ``_get_indexes`` and ``_lerp`` compute them:
    the virtual index ``(n - 1) * q``, its floor, -1 from the last index on, ``gamma`` the
    virtual index less that, then ``a + (b - a) * gamma``, or ``b - (b - a) * (1 - gamma)``
    where ``gamma >= 0.5``. tests/sql/test_sorted_quantiles.py pins the equality."""
    virtual = (n - 1) * np.linspace(0.0, 1.0, count)
    previous = np.floor(virtual)
    following = previous + 1
    last = virtual >= n - 1
    previous[last] = -1
    following[last] = -1
    previous_indexes = previous.astype(np.intp)
    gamma = virtual - previous_indexes
    a = take(previous_indexes)
    b = take(following.astype(np.intp))
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out  # type: ignore[no-any-return]


def _macro_log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """The unweighted mean over classes of the one-vs-rest binary log loss."""
    k = probabilities.shape[1]
    if k == 2:
        return _binary_log_loss(y_true, probabilities)
    p = np.clip(probabilities, 1e-15, 1.0)
    # Each row normalised to sum 1, in place (NumPy's row sum and its order).
    total = p.sum(axis=1)
    p /= total[:, None]
    np.clip(p, 1e-15, 1.0 - 1e-15, out=p)
    # log(p) where the row is of the class, log1p(-p) elsewhere: the values np.where picked
    # from the two full arrays, in fewer (rows, K) temporaries.
    terms = np.log1p(np.negative(p, out=np.empty_like(p)))
    np.copyto(terms, np.log(p), where=y_true[:, None] == np.arange(k))
    per_class = -np.mean(terms, axis=0)
    return _clean(np.mean(per_class))


def _binary_log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """:func:`_macro_log_loss` for two classes, bit for bit, on the two columns as contiguous
    vectors: no (rows, 2) mask, no strided reduction, three row-length buffers instead of
    seven (fresh memory is much of the cost; 20 ms to 9 ms of CPU on 300k rows).

    Every step is elementwise, so each value is the one the (rows, 2) arrays hold, and each
    column's sum is sequential over the rows (``cumsum``'s last value), as NumPy's reduction of
    a (rows, 2) array over its rows is.
    """
    n = len(y_true)
    positive = y_true == 1
    first = np.clip(probabilities[:, 0], 1e-15, 1.0)  # contiguous
    second = np.clip(probabilities[:, 1], 1e-15, 1.0)
    scratch = np.add(first, second)  # each row's total
    np.divide(first, scratch, out=first)
    np.divide(second, scratch, out=second)
    per_class = []
    for p, others in ((first, positive), (second, ~positive)):
        np.clip(p, 1e-15, 1.0 - 1e-15, out=p)
        np.log1p(np.negative(p, out=scratch), out=scratch)  # for rows of the other class
        np.log(p, out=p)  # for rows of this class
        np.copyto(p, scratch, where=others)
        per_class.append(-(float(np.cumsum(p, out=p)[-1]) / n))
    return _clean((per_class[0] + per_class[1]) / 2.0)


def _classification(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray,
    binary: bool,
    order: ScoreOrder | None = None,
) -> dict[str, float | None]:
    precision, recall, f1 = _precision_recall_f1(y_true, y_pred, binary)
    if binary and not (y_pred == 1).any():
        precision = None  # no row predicted positive: BigQuery ML's NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "precision": precision,
            "recall": recall,
            "accuracy": _clean(float(np.mean(y_true == y_pred))),
            "f1_score": f1,
            "log_loss": _macro_log_loss(y_true, probabilities),
            "roc_auc": _roc_auc(y_true, probabilities, binary, order),
        }


def _precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray, binary: bool
) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 from one confusion matrix, as scikit-learn's
    ``precision_recall_fscore_support(zero_division=0)`` defines them: for the positive class
    (binary), or the unweighted mean over the classes seen in either column (macro).

    One ``bincount`` instead of three scikit-learn calls that each rebuild the matrix: 112 ms
    to 0.5 ms on 300k rows.
    """
    truth = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    k = max(int(max(truth.max(initial=0), pred.max(initial=0))) + 1, 2)
    matrix = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(matrix)
    predicted = matrix.sum(axis=0)  # tp + fp
    actual = matrix.sum(axis=1)  # tp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        denominator = predicted + actual  # 2tp + fp + fn
        f1 = np.where(denominator > 0, 2 * tp / denominator, 0.0)
    if binary:
        return _clean(precision[1]), _clean(recall[1]), _clean(f1[1])
    seen = (predicted > 0) | (actual > 0)
    return (
        _clean(float(np.mean(precision[seen]))),
        _clean(float(np.mean(recall[seen]))),
        _clean(float(np.mean(f1[seen]))),
    )


def evaluate(
    task: str,
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray | None,
    probabilities: np.ndarray | None,
    classes: Sequence[Any] | None,
    *,
    threshold: float | None = None,
    order: ScoreOrder | None = None,
) -> dict[str, float | None]:
    """ML.EVALUATE's metrics for one task.

    Regression: ``y_true``/``y_pred`` are numbers; ``probabilities`` and ``classes`` are None.
    Classification: ``y_true`` and ``y_pred`` are class indices 0..K-1 (``y_pred`` may be None:
    it is then derived from the probabilities), ``probabilities`` has shape (rows, K) in class
    order and ``classes`` lists the K class values. For binary tasks a ``threshold`` recomputes
    the predictions from the positive-class probability. ``order`` (binary tasks) receives the
    sorted scores of the roc_auc computation, for
    :func:`~shipyard.sql.inspection.evaluation_curves`.
    """
    if task not in _TASKS:
        raise InvalidArgument(f"task {task!r} is not valid; valid tasks: {', '.join(_TASKS)}")
    truth = np.asarray(y_true)
    if len(truth) == 0:
        raise InvalidArgument(
            "there are no rows to evaluate: the evaluation data is empty (or every label is NULL)"
        )
    if task == "regression":
        if y_pred is None:
            raise InvalidArgument("regression evaluation needs y_pred, the predicted values")
        if threshold is not None:
            raise InvalidArgument(
                f"threshold={threshold} applies only to binary classification models"
            )
        pred = np.asarray(y_pred, dtype=np.float64)
        if pred.shape != truth.shape:
            raise InvalidArgument(
                f"y_true has {len(truth)} rows but y_pred has {len(pred)}; they must match"
            )
        return _regression(truth.astype(np.float64, copy=False), pred)

    if probabilities is None or classes is None:
        raise InvalidArgument(f"{task} evaluation needs the class probabilities and the classes")
    proba = np.asarray(probabilities, dtype=np.float64)
    k = len(classes)
    if proba.ndim != 2 or proba.shape != (len(truth), k):
        raise InvalidArgument(
            f"probabilities must have shape (rows, classes) = ({len(truth)}, {k}), "
            f"got {proba.shape}"
        )
    binary = task == "binary_classification"
    if binary and k != 2:
        raise InvalidArgument(f"binary_classification needs 2 classes, got {k}: {list(classes)}")
    truth = truth.astype(np.int64, copy=False)
    if truth.min() < 0 or truth.max() >= k:
        raise InvalidArgument(
            f"y_true must hold class indices 0..{k - 1}; got values from {truth.min()} "
            f"to {truth.max()}"
        )
    if threshold is not None:
        if not binary:
            raise InvalidArgument(
                f"threshold={threshold} applies only to binary classification models; "
                "multiclass models predict the most probable class"
            )
        if not 0.0 <= float(threshold) <= 1.0:
            raise InvalidArgument(f"threshold must be in [0, 1], got {threshold}")
        pred = (proba[:, 1] > float(threshold)).astype(np.int64)
    elif y_pred is None:
        pred = (proba[:, 1] > 0.5).astype(np.int64) if binary else np.argmax(proba, axis=1)
    else:
        pred = np.asarray(y_pred).astype(np.int64, copy=False)
    return _classification(truth, pred, proba, binary, order)
