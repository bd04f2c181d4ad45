"""MATRIX_FACTORIZATION: options, ALS training, and ML.RECOMMEND / EVALUATE / WEIGHTS.

Training follows BigQuery ML's matrix factorization options:

* The training query has exactly the ``user_col`` (default 'user'), ``item_col`` ('item') and
  ``rating_col`` ('rating') columns (plus a CUSTOM/SEQ ``data_split_col``). User and item ids may
  be of any scalar type (strings, integers, dates, …); they are mapped to factor rows and the
  mapping is stored with the model (:mod:`shipyard.registry.factorization`). The rating must be
  numeric. Rows with a NULL user, item or rating are dropped.
* ``feedback_type='EXPLICIT'`` (default): a rating is ``intercept + user bias + item bias +
  user factors · item factors``; alternating least squares minimises the squared error on the
  observed ratings plus ``l2_reg`` (default 1.0) times the squared norms of the factors and
  biases. No maintained Python library offers explicit-feedback ALS with biases, so each
  half-step is solved here in closed form with ``np.linalg.solve`` on every user's (item's)
  ``(k+1, k+1)`` normal equations at once (:func:`explicit_als`).
* ``feedback_type='IMPLICIT'``: weighted ALS (Hu, Koren & Volinsky, 2008) with the ``implicit``
  library (benfred/implicit, its CPU solver; extra ``recommend``). Ratings are summed per
  (user, item); a pair's preference is 1 with confidence ``1 + wals_alpha · rating`` (default
  wals_alpha 40), every other pair has preference 0 and confidence 1. Negative ratings are
  refused; zero ratings carry no preference and are dropped. ``wals_alpha`` applies only here.
* ``num_factors``: when omitted, ``max(2, round(log2(training rows)))``.
* ``max_iterations`` (20) ALS sweeps; with ``early_stop`` (TRUE) training stops after the first
  sweep whose relative improvement of the training loss is below ``min_rel_progress`` (0.01).
  ML.TRAINING_INFO has a row per sweep (explicit: mean squared error on the training ratings,
  and on the evaluation ratings as ``eval_loss``; implicit: the library's weighted loss).
* ``num_trials`` tunes ``num_factors``, ``l2_reg`` and (implicit) ``wals_alpha``
  (:mod:`shipyard.sql.tuning`); ``trial_id`` works in ML.RECOMMEND and ML.EVALUATE.
* The data split options are the supervised models' (AUTO_SPLIT by default: no split under 500
  rows). Ids first seen in the evaluation rows have no factors and are left out of the metrics.

ML functions (user and item columns keep their training names and types):

* ML.RECOMMEND(MODEL m [, TABLE t | (query)]): without input, every (user, item) pair of the
  training data; with a table of one column, the user column (the item column), every item
  (user) for each row; with both columns, those pairs, the other columns passed through. The
  output is the user column, the item column, ``predicted_<rating_col>`` (explicit) or
  ``predicted_<rating_col>_confidence`` (implicit), FLOAT64, NULL for an id training never saw,
  then the passed-through columns. Top-k per user is plain SQL:
  ``QUALIFY ROW_NUMBER() OVER (PARTITION BY user ORDER BY predicted_rating DESC) <= 10``.
  Scores are computed about a million at a time; an output above
  :data:`MAX_RECOMMEND_ROWS` rows is refused (pass a table of users instead).
* ML.EVALUATE: explicit — the regression metrics (mean_absolute_error, mean_squared_error,
  mean_squared_log_error, median_absolute_error, r2_score, explained_variance) on the rows whose
  user and item are known. Implicit — ranking metrics (:func:`ranking_metrics`):
  ``mean_average_precision``, ``mean_squared_error`` (confidence against the 0/1 preference),
  ``normalized_discounted_cumulative_gain`` and ``average_rank`` (expected percentile rank,
  0 = top, 0.5 = random; lower is better).
* ML.WEIGHTS: a row per user and per item — ``processed_input`` (the user or item column name),
  ``feature`` (the id as a string), ``factor_weights`` (ARRAY<STRUCT<factor INT64, weight
  FLOAT64>>, factors numbered from 1) and ``intercept`` (the user's or item's bias; 0 for
  implicit models) — and a last row whose ``processed_input``, ``feature`` and
  ``factor_weights`` are NULL that holds the global intercept (the mean training rating; 0 for
  implicit models).
* ML.PREDICT does not apply (as in BigQuery ML); the registry's Predictor
  (task ``recommendation``) scores (user, item) pairs for serving and batch prediction.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.factorization import CHUNK_PAIRS, FactorModel, index_of, predict_pairs
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql.clustering import require_model_type
from shipyard.sql.evaluation import REGRESSION_METRICS, evaluate
from shipyard.sql.options import GLM_UNSUPPORTED_OPTIONS, CommonOptions
from shipyard.sql.recommend_ranks import ranks_and_squared_error
from shipyard.sql.training import Progress, UnsupervisedFit, split_rows

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "IMPLICIT_METRICS",
    "MAX_RECOMMEND_ROWS",
    "MF_UNSUPPORTED_OPTIONS",
    "MatrixFactorizationOptions",
    "default_num_factors",
    "evaluate_matrix_factorization",
    "explicit_als",
    "ml_recommend",
    "ml_weights",
    "ranking_metrics",
    "recommend",
    "train_matrix_factorization",
]

MODEL_TYPE = "MATRIX_FACTORIZATION"
IMPLICIT_METRICS: tuple[str, ...] = (
    "mean_average_precision",
    "mean_squared_error",
    "normalized_discounted_cumulative_gain",
    "average_rank",
)
#: ML.RECOMMEND refuses to build more rows than this in one call.
MAX_RECOMMEND_ROWS = 200_000_000
_SEED = 20240101

#: BigQuery ML options of MATRIX_FACTORIZATION that Shipyard refuses: name → what.
MF_UNSUPPORTED_OPTIONS: dict[str, str] = dict(GLM_UNSUPPORTED_OPTIONS)


class MatrixFactorizationOptions(CommonOptions):
    """MATRIX_FACTORIZATION options (BigQuery ML's names and defaults)."""

    # Options of CommonOptions that matrix factorization does not have.
    _not_options: ClassVar[frozenset[str]] = frozenset(
        {"input_label_cols", "l1_reg", "learn_rate", "enable_global_explain"}
    )

    model_type: Literal["MATRIX_FACTORIZATION"] = "MATRIX_FACTORIZATION"
    feedback_type: Literal["EXPLICIT", "IMPLICIT"] = "EXPLICIT"
    num_factors: int | None = Field(None, ge=1)
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str = "rating"
    wals_alpha: float = Field(40.0, ge=0.0)
    l2_reg: float = Field(1.0, ge=0.0)

    @model_validator(mode="after")
    def _check_mf(self) -> MatrixFactorizationOptions:
        if "wals_alpha" in self.model_fields_set and self.feedback_type != "IMPLICIT":
            raise ValueError(
                "option 'wals_alpha' applies only with feedback_type 'IMPLICIT', not "
                f"{self.feedback_type!r}"
            )
        names = [self.user_col, self.item_col, self.rating_col]
        if len(set(names)) != 3:
            raise ValueError(
                f"options 'user_col', 'item_col' and 'rating_col' must name three different "
                f"columns, got {names}"
            )
        return self


def default_num_factors(rows: int) -> int:
    """``num_factors`` when omitted: ``max(2, round(log2(rows)))``."""
    return max(2, round(math.log2(max(rows, 1))))


# --------------------------------------------------------------------------------------------
# training data


def _column(table: pa.Table, name: str, option: str) -> pa.Array:
    if name not in table.column_names:
        raise InvalidArgument(
            f"{option} {name!r} is not in the training data; its columns are: "
            f"{list(table.column_names)} (set OPTIONS({option}='…'))",
            column=name,
            option=option,
        )
    col = table.column(name)
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _check_id_type(arr: pa.Array, name: str, option: str) -> None:
    t = arr.type
    if pa.types.is_nested(t) or pa.types.is_floating(t) or pa.types.is_null(t):
        raise InvalidArgument(
            f"{option} {name!r} has type {t}; user and item ids must be scalar values such as "
            "STRING or INT64",
            column=name,
            type=str(t),
        )


def _ratings(arr: pa.Array, name: str) -> np.ndarray:
    t = arr.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise InvalidArgument(
            f"rating_col {name!r} has type {t}; MATRIX_FACTORIZATION needs a numeric rating "
            "(INT64, NUMERIC or FLOAT64)",
            column=name,
            type=str(t),
        )
    return np.asarray(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _prepare(table: pa.Table, options: MatrixFactorizationOptions) -> pa.Table:
    """The three columns (and the split column), rows with NULLs dropped, ratings checked."""
    users = _column(table, options.user_col, "user_col")
    items = _column(table, options.item_col, "item_col")
    ratings = _column(table, options.rating_col, "rating_col")
    _check_id_type(users, options.user_col, "user_col")
    _check_id_type(items, options.item_col, "item_col")
    _ratings(ratings, options.rating_col)
    allowed = {options.user_col, options.item_col, options.rating_col}
    if options.data_split_col:
        allowed.add(options.data_split_col)
    extra = [c for c in table.column_names if c not in allowed]
    if extra:
        raise InvalidArgument(
            f"MATRIX_FACTORIZATION trains on the user, item and rating columns only "
            f"({options.user_col!r}, {options.item_col!r}, {options.rating_col!r}); the "
            f"training query also has {extra}: leave them out of the SELECT",
            columns=extra,
        )
    keep = pc.and_(pc.and_(pc.is_valid(users), pc.is_valid(items)), pc.is_valid(ratings))
    if pa.types.is_floating(ratings.type):
        keep = pc.and_(keep, pc.invert(pc.fill_null(pc.is_nan(ratings), True)))
    if options.feedback_type == "IMPLICIT":
        values = _ratings(ratings, options.rating_col)
        negative = int(np.sum(values < 0))
        if negative:
            raise InvalidArgument(
                f"rating_col {options.rating_col!r} is negative in {negative} row(s); implicit "
                "feedback ratings (counts, durations, …) must be >= 0",
                column=options.rating_col,
            )
        keep = pc.and_(keep, pc.greater(ratings, 0))
    table = table.filter(keep)
    if table.num_rows == 0:
        raise InvalidArgument(
            "the training data has no rows with a user, an item and a rating"
            + (" above 0" if options.feedback_type == "IMPLICIT" else "")
            + "; nothing to train on"
        )
    return table


# --------------------------------------------------------------------------------------------
# explicit ALS


def _normal_equations(
    counts: Any, targets: Any, fixed: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solve every row's ridge problem against ``fixed`` (factors with a column of ones).

    ``counts`` (rows by others, sparse CSR) counts each row's observations of each other side;
    ``targets`` (sparse CSR, same shape) sums their residual ratings. Row r minimises
    ``Σ (target - x·w)² + l2·|w|²`` over ``w`` = (factors, bias). Rows are solved in blocks of
    about 4M Gram entries, so memory stays bounded for any number of users or items.
    """
    n, k1 = counts.shape[0], fixed.shape[1]
    solved = np.empty((n, k1))
    ridge = l2 * np.eye(k1)
    step = max(1, (1 << 22) // (k1 * k1))
    for lo in range(0, n, step):
        block = counts[lo : lo + step]
        gram = np.empty((block.shape[0], k1, k1))
        for a in range(k1):  # one Gram row at a time: no (others, k1²) temporary
            gram[:, a, :] = block @ (fixed * fixed[:, a : a + 1])
        gram += ridge[None, :, :]
        rhs = np.asarray(targets[lo : lo + step] @ fixed)
        solved[lo : lo + step] = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
    return solved[:, :-1], solved[:, -1]


def explicit_als(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    shape: tuple[int, int],
    *,
    factors: int,
    l2_reg: float,
    max_iterations: int,
    early_stop: bool,
    min_rel_progress: float,
    report: Progress,
    evaluation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    seed: int = _SEED,
) -> tuple[FactorModel, list[dict[str, Any]]]:
    """Explicit-feedback ALS with user and item biases (see the module docstring).

    ``users``/``items`` are factor rows (0-based) of each rating; ``shape`` is (users, items).
    ``evaluation`` (users, items, ratings of known ids) gives ML.TRAINING_INFO's eval_loss.
    Returns the model (ids left empty: the caller sets them) and a row per sweep.
    """
    import scipy.sparse as sp

    n_users, n_items = shape
    mu = float(np.mean(ratings))
    counts = sp.csr_matrix((np.ones(len(ratings)), (users, items)), shape=shape)
    counts_t = counts.T.tocsr()
    rng = np.random.default_rng(seed)
    item_f = rng.normal(0.0, 0.1, size=(n_items, factors))
    item_b = np.zeros(n_items)
    user_f = np.zeros((n_users, factors))
    user_b = np.zeros(n_users)
    ones_u = np.ones((n_users, 1))
    ones_i = np.ones((n_items, 1))
    rows: list[dict[str, Any]] = []
    previous: float | None = None

    def mse(u: np.ndarray, i: np.ndarray, r: np.ndarray) -> float:
        pred = np.einsum("ij,ij->i", user_f[u], item_f[i]) + mu + user_b[u] + item_b[i]
        return float(np.mean((r - pred) ** 2))

    for sweep in range(max_iterations):
        start = time.perf_counter()
        residual = ratings - mu - item_b[items]
        targets = sp.csr_matrix((residual, (users, items)), shape=shape)
        user_f, user_b = _normal_equations(counts, targets, np.hstack([item_f, ones_i]), l2_reg)
        residual = ratings - mu - user_b[users]
        targets_t = sp.csr_matrix((residual, (items, users)), shape=(n_items, n_users))
        item_f, item_b = _normal_equations(counts_t, targets_t, np.hstack([user_f, ones_u]), l2_reg)
        loss = mse(users, items, ratings)
        eval_loss = mse(*evaluation) if evaluation is not None and len(evaluation[0]) else None
        rows.append(_info_row(sweep, loss, eval_loss, start))
        report((sweep + 1) / max_iterations, f"sweep {sweep + 1}: loss {loss:.6g}")
        if _stalled(early_stop, previous, loss, min_rel_progress):
            break
        previous = loss
    model = FactorModel(
        feedback_type="EXPLICIT",
        user_ids=pa.array([], type=pa.int64()),
        item_ids=pa.array([], type=pa.int64()),
        user_factors=user_f,
        item_factors=item_f,
        user_bias=user_b,
        item_bias=item_b,
        intercept=mu,
    )
    return model, rows


def _stalled(early_stop: bool, previous: float | None, loss: float, min_rel: float) -> bool:
    """BigQuery ML's early stop: the sweep improved the loss by less than min_rel_progress
    (relative; a worse loss is a negative improvement)."""
    if not early_stop or previous is None or previous <= 0:
        return False
    return (previous - loss) / previous < min_rel


def _info_row(sweep: int, loss: float, eval_loss: float | None, start: float) -> dict[str, Any]:
    return {
        "training_run": 0,
        "iteration": sweep,
        "loss": float(loss),
        "eval_loss": None if eval_loss is None else float(eval_loss),
        "learning_rate": None,
        "duration_ms": round((time.perf_counter() - start) * 1000),
    }


# --------------------------------------------------------------------------------------------
# implicit ALS (the ``implicit`` library)


class _EarlyStop(Exception):
    """Raised from implicit's per-sweep callback to end fit() early (early_stop)."""


def _implicit_als(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    shape: tuple[int, int],
    options: MatrixFactorizationOptions,
    factors: int,
    report: Progress,
) -> tuple[FactorModel, list[dict[str, Any]], Any]:
    """Weighted ALS with the implicit library; also returns the (users, items) CSR matrix of
    the summed ratings it trained on."""
    import scipy.sparse as sp

    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:  # pragma: no cover - depends on the environment
        raise Unsupported(
            "feedback_type 'IMPLICIT' trains with the implicit library: "
            "pip install 'shipyard[recommend]'"
        ) from None
    from threadpoolctl import threadpool_limits

    summed = sp.csr_matrix((ratings, (users, items)), shape=shape)  # duplicates add up
    summed.sum_duplicates()
    confidence = summed.astype(np.float32)
    confidence.data = (1.0 + options.wals_alpha * summed.data).astype(np.float32)
    rows: list[dict[str, Any]] = []
    state: dict[str, Any] = {"previous": None, "start": time.perf_counter()}

    def after_sweep(sweep: int, _elapsed: float, loss: float) -> None:
        # implicit calls this after each sweep (both half-steps and the training loss): a
        # training-info row; raising _EarlyStop ends fit() with the factors of this sweep.
        loss = float(loss)
        rows.append(_info_row(sweep, loss, None, state["start"]))
        report((sweep + 1) / options.max_iterations, f"sweep {sweep + 1}: loss {loss:.6g}")
        if _stalled(options.early_stop, state["previous"], loss, options.min_rel_progress):
            raise _EarlyStop
        state["previous"] = loss
        state["start"] = time.perf_counter()

    # One fit() of max_iterations sweeps: the item-major copy of the matrix is built once (a
    # fit() per sweep built it every sweep; the sweeps and losses are the same). Its BLAS calls
    # are small, one thread each is its advice.
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=options.l2_reg,
            alpha=1.0,  # the confidence 1 + wals_alpha·r is already in the matrix
            iterations=options.max_iterations,
            calculate_training_loss=True,
            random_state=_SEED,
        )
        try:
            model.fit(confidence, show_progress=False, callback=after_sweep)
        except _EarlyStop:
            model._check_fit_errors()  # what fit() checks last (NaN factors)
    n_users, n_items = shape
    fitted = FactorModel(
        feedback_type="IMPLICIT",
        user_ids=pa.array([], type=pa.int64()),
        item_ids=pa.array([], type=pa.int64()),
        user_factors=np.asarray(model.user_factors, dtype=np.float64),
        item_factors=np.asarray(model.item_factors, dtype=np.float64),
        user_bias=np.zeros(n_users),
        item_bias=np.zeros(n_items),
        intercept=0.0,
    )
    return fitted, rows, summed


# --------------------------------------------------------------------------------------------
# training


def train_matrix_factorization(
    table: pa.Table, options: Any, report: Progress, warm_start: Predictor | None = None
) -> UnsupervisedFit:
    """CREATE MODEL … OPTIONS(model_type='MATRIX_FACTORIZATION', …) on ``table``."""
    if warm_start is not None:  # pragma: no cover - the options have no warm_start
        raise Unsupported("warm_start is not supported for MATRIX_FACTORIZATION")
    table = _prepare(table, options)
    train_idx, eval_idx, _ = split_rows(table, options)
    train = table if train_idx is None else table.take(pa.array(train_idx))
    user_col, item_col, rating_col = options.user_col, options.item_col, options.rating_col
    user_ids = pc.unique(train.column(user_col))
    item_ids = pc.unique(train.column(item_col))
    users = _rows(index_of(train.column(user_col), user_ids))
    items = _rows(index_of(train.column(item_col), item_ids))
    ratings = _ratings(train.column(rating_col).combine_chunks(), rating_col)
    shape = (len(user_ids), len(item_ids))
    factors = options.num_factors or default_num_factors(train.num_rows)
    evaluation_rows = None if eval_idx is None else table.take(pa.array(eval_idx))
    summed = None
    if options.feedback_type == "EXPLICIT":
        known = None
        if evaluation_rows is not None:
            known = _known_pairs(evaluation_rows, options, user_ids, item_ids)
        model, info = explicit_als(
            users,
            items,
            ratings,
            shape,
            factors=factors,
            l2_reg=options.l2_reg,
            max_iterations=options.max_iterations,
            early_stop=options.early_stop,
            min_rel_progress=options.min_rel_progress,
            report=report,
            evaluation=known,
        )
    else:
        model, info, summed = _implicit_als(users, items, ratings, shape, options, factors, report)
    model.user_ids, model.item_ids = user_ids, item_ids
    if evaluation_rows is not None:
        metrics = _metrics(model, options, evaluation_rows)
    else:  # the training rows: their factor rows are at hand (no second id lookup)
        finite = np.isfinite(ratings)
        if summed is not None and summed.nnz == len(ratings) and finite.all():
            # No (user, item) pair repeats: the implicit matrix's entries are the metrics'
            # pairs, sorted by (user, item), each with its own rating (no second sort).
            metrics = _ranking_metrics_of_pairs(
                model,
                np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(summed.indptr)),
                summed.indices.astype(np.int64),
                summed.data,
            )
        else:
            metrics = _pair_metrics(model, users[finite], items[finite], ratings[finite])
    implicit = model.feedback_type == "IMPLICIT"
    output = f"predicted_{rating_col}" + ("_confidence" if implicit else "")
    config: dict[str, Any] = {
        "matrix_dtype": "float64",
        "model_type": MODEL_TYPE,
        "feedback_type": options.feedback_type,
        "user_col": user_col,
        "item_col": item_col,
        "rating_col": rating_col,
        "output_column": output,
        "num_factors": factors,
    }
    preprocessor = _IdColumns.fit_ids(train, [user_col, item_col], [user_ids, item_ids])
    return UnsupervisedFit(
        task="recommendation",
        model=model,
        preprocessor=preprocessor,
        features=[user_col, item_col],
        training_info=info,
        metrics=metrics,
        predictor_config=config,
    )


class _IdColumns(FeaturePreprocessor):
    """The user and item columns as a preprocessor: it records their names and types (the
    signature) and ML.FEATURE_INFO's statistics; the ids themselves live in the model's Parquet
    mapping, not in the manifest (the stored form is a plain FeaturePreprocessor)."""

    _info: list[dict[str, Any]]

    @classmethod
    def fit_ids(cls, train: pa.Table, columns: list[str], ids: list[pa.Array]) -> _IdColumns:
        # Fitted on one row, so that no category list lands in the manifest.
        first = FeaturePreprocessor.fit(
            train.select(columns).slice(0, 1),
            columns,
            standardize=False,
            categorical_encoding="label",
        )
        out = cls.from_dict(first.to_dict())
        assert isinstance(out, _IdColumns)
        info = []
        for row, column, distinct in zip(first.feature_info(), columns, ids, strict=True):
            stats = dict.fromkeys(row)
            # BigQuery ML computes only category_count for the user and item columns, whatever
            # their type (the reference's ML.FEATURE_INFO page).
            stats.update(input=column, null_count=0, category_count=len(distinct))
            info.append(stats)
        out._info = info
        return out

    def feature_info(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._info]


def _rows(indices: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(indices, pa.ChunkedArray):
        indices = indices.combine_chunks()
    return np.asarray(pc.fill_null(indices, -1).to_numpy(), dtype=np.int64)


def _known_pairs(
    rows: pa.Table, options: Any, user_ids: pa.Array, item_ids: pa.Array
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user rows, item rows, ratings) of the rows whose user and item have factors."""
    users = _rows(index_of(rows.column(options.user_col), user_ids))
    items = _rows(index_of(rows.column(options.item_col), item_ids))
    ratings = _ratings(rows.column(options.rating_col).combine_chunks(), options.rating_col)
    known = (users >= 0) & (items >= 0) & np.isfinite(ratings)
    return users[known], items[known], ratings[known]


def _metrics(model: FactorModel, options: Any, rows: pa.Table) -> dict[str, float | None]:
    return _pair_metrics(model, *_known_pairs(rows, options, model.user_ids, model.item_ids))


def _pair_metrics(
    model: FactorModel, users: np.ndarray, items: np.ndarray, ratings: np.ndarray
) -> dict[str, float | None]:
    """ML.EVALUATE's metrics on (user row, item row, rating) triples of known ids."""
    if model.feedback_type == "EXPLICIT":
        if len(ratings) == 0:
            return dict.fromkeys(REGRESSION_METRICS)
        return evaluate("regression", ratings, model.score(users, items), None, None)
    return ranking_metrics(model, users, items, ratings)


# --------------------------------------------------------------------------------------------
# ranking metrics (implicit feedback)


def ranking_metrics(
    model: FactorModel, users: np.ndarray, items: np.ndarray, ratings: np.ndarray
) -> dict[str, float | None]:
    """ML.EVALUATE for implicit feedback on (user row, item row, rating) triples.

    For every user of the triples, all the model's items are ranked by predicted confidence
    (rank 1 = highest); the user's items with a rating above 0 are the relevant ones, the
    rating (summed per item) their gain:

    * ``mean_average_precision``: the mean over users of average precision — the mean, over
      the user's relevant items, of the share of relevant items among those ranked at or
      above it;
    * ``normalized_discounted_cumulative_gain``: per user ``Σ gain / log2(rank + 1)`` divided
      by the same sum for the ideal order, averaged over users;
    * ``average_rank``: ``Σ rating · percentile rank / Σ rating`` over all triples, with
      percentile rank ``(rank - 1) / (items - 1)`` (Hu, Koren & Volinsky's expected
      percentile ranking: 0 is the top, 0.5 a random order);
    * ``mean_squared_error``: over every (user, item) pair of those users, the squared
      difference between the predicted confidence and the preference (1 for a relevant pair,
      0 otherwise).
    """
    keep = ratings > 0
    users, items, ratings = users[keep], items[keep], ratings[keep]
    if len(users) == 0:
        return dict.fromkeys(IMPLICIT_METRICS)
    # Sum the gains of repeated (user, item) pairs; pairs come out sorted by (user, item).
    n_items = len(model.item_factors)
    key = users * n_items + items
    pairs, inverse = np.unique(key, return_inverse=True)
    gains = np.bincount(inverse, weights=ratings)
    return _ranking_metrics_of_pairs(model, pairs // n_items, pairs % n_items, gains)


def _ranking_metrics_of_pairs(
    model: FactorModel, pair_users: np.ndarray, pair_items: np.ndarray, gains: np.ndarray
) -> dict[str, float | None]:
    """:func:`ranking_metrics` of distinct (user row, item row) pairs sorted by (user, item),
    with their gains (summed ratings, above 0)."""
    n_items = len(model.item_factors)
    distinct = pair_users[np.flatnonzero(np.diff(pair_users, prepend=-1))]  # sorted already
    ranks, squared = ranks_and_squared_error(model, pair_users, pair_items, distinct)
    mse = squared / (len(distinct) * n_items)
    precision, ndcg = _per_user_precision_ndcg(pair_users, ranks, gains)
    percentile = (ranks - 1) / max(n_items - 1, 1)
    return {
        "mean_average_precision": float(np.mean(precision)),
        "mean_squared_error": mse,
        "normalized_discounted_cumulative_gain": float(np.mean(ndcg)),
        "average_rank": float(np.sum(gains * percentile) / np.sum(gains)),
    }


def _per_user_precision_ndcg(
    pair_users: np.ndarray, ranks: np.ndarray, gains: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and NDCG of each user (``pair_users`` sorted), without a Python loop:
    the pairs ordered by (user, rank) — ties in item order — and summed per user."""
    n = len(ranks)
    new_user = np.empty(n, dtype=bool)
    new_user[:1] = True
    np.not_equal(pair_users[1:], pair_users[:-1], out=new_user[1:])
    firsts = np.flatnonzero(new_user)
    counts = np.diff(np.append(firsts, n))
    group = np.cumsum(new_user) - 1  # 0, 1, … per user
    position = np.arange(n) - np.repeat(firsts, counts) + 1  # 1-based place among the user's items
    # One stable sort of (user, rank) as a single integer: ties keep the item order.
    order = np.argsort(group * (int(ranks.max()) + 1) + ranks, kind="stable")
    by_rank = ranks[order]
    precision = np.bincount(group, weights=position / by_rank) / counts
    dcg = np.bincount(group, weights=gains[order] / np.log2(by_rank + 1))
    ideal = gains[np.lexsort((-gains, group))]
    idcg = np.bincount(group, weights=ideal / np.log2(position + 1))
    ndcg = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return precision, ndcg


# --------------------------------------------------------------------------------------------
# ML.RECOMMEND


def recommend(model: FactorModel, config: dict[str, Any], rows: pa.Table | None) -> pa.Table:
    """ML.RECOMMEND's output for a model and its optional input (see the module docstring)."""
    user_col, item_col = str(config["user_col"]), str(config["item_col"])
    output = str(config["output_column"])
    if rows is None:
        all_users = pa.array(np.arange(len(model.user_ids)), type=pa.int64())
        return _expand(model, config, model.user_ids, all_users, by_user=True)
    names = rows.column_names
    has_user, has_item = user_col in names, item_col in names
    if has_user and has_item:
        clash = [n for n in names if n == output]
        if clash:
            raise InvalidArgument(
                f"input already has a column {output!r}, which ML.RECOMMEND outputs; rename or "
                "drop it",
                columns=clash,
            )
        predicted = predict_pairs(
            model,
            model.user_index(rows.column(user_col), user_col),
            model.item_index(rows.column(item_col), item_col),
        )
        rest = [n for n in names if n not in (user_col, item_col)]
        return pa.Table.from_arrays(
            [rows.column(user_col), rows.column(item_col), predicted, *rows.select(rest).columns],
            names=[user_col, item_col, output, *rest],
        )
    if (has_user or has_item) and len(names) == 1:
        values = rows.column(0).combine_chunks()
        if has_user:
            return _expand(model, config, values, model.user_index(values, user_col), by_user=True)
        return _expand(model, config, values, model.item_index(values, item_col), by_user=False)
    raise InvalidArgument(
        f"ML.RECOMMEND input must have the model's user column {user_col!r} and item column "
        f"{item_col!r} (scores those pairs), or only one of them as its single column (every "
        f"item for each user, or every user for each item); the input has {names}",
        columns=names,
    )


def _expand(
    model: FactorModel,
    config: dict[str, Any],
    values: pa.Array,
    index: pa.Array,
    *,
    by_user: bool,
) -> pa.Table:
    """Each value (a user, or an item) against every id of the other side."""
    user_col, item_col = str(config["user_col"]), str(config["item_col"])
    output = str(config["output_column"])
    others = model.item_ids if by_user else model.user_ids
    total = len(values) * len(others)
    if total > MAX_RECOMMEND_ROWS:
        side = "users" if by_user else "items"
        raise InvalidArgument(
            f"ML.RECOMMEND would return {total:,} rows ({len(values):,} {side} × "
            f"{len(others):,}), more than {MAX_RECOMMEND_ROWS:,}; pass a table of the "
            f"{side} to recommend for (a subset) instead",
            rows=total,
        )
    positions = _rows(index)
    n_other = len(others)
    schema = pa.schema(
        [
            (user_col, model.user_ids.type if not by_user else values.type),
            (item_col, model.item_ids.type if by_user else values.type),
            (output, pa.float64()),
        ]
    )
    batches = []
    step = max(1, CHUNK_PAIRS // max(n_other, 1))
    for start in range(0, len(values), step):
        chunk = positions[start : start + step]
        known = chunk >= 0
        scores = np.zeros((len(chunk), n_other))
        if known.any():
            block = (
                model.score_block(chunk[known])
                if by_user
                else model.score_items_block(chunk[known])
            )
            scores[known] = block
        mask = np.repeat(~known, n_other)
        left = values.take(pa.array(np.repeat(np.arange(start, start + len(chunk)), n_other)))
        right = others.take(pa.array(np.tile(np.arange(n_other), len(chunk))))
        predicted = pa.array(scores.reshape(-1), type=pa.float64(), mask=mask)
        pair = (left, right) if by_user else (right, left)
        batches.append(pa.record_batch([pair[0], pair[1], predicted], schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def ml_recommend(service: SqlService, call: MLCall) -> pa.Table:
    """ML.RECOMMEND(MODEL m [, TABLE t | (query)] [, STRUCT(trial_id)]); ``trial_id`` (a
    model trained with num_trials) is resolved by :mod:`shipyard.sql.tuning` before this runs."""
    call.check_params({"trial_id": int})
    require_model_type(service, call, (MODEL_TYPE,))
    predictor = service.models.load(call.model)
    return recommend(predictor.model, predictor.config, call.input)


# --------------------------------------------------------------------------------------------
# ML.EVALUATE and ML.WEIGHTS


def evaluate_matrix_factorization(
    service: SqlService, call: MLCall, stored: dict[str, Any]
) -> pa.Table:
    """ML.EVALUATE for MATRIX_FACTORIZATION: stored metrics, or metrics on the input rows."""
    if call.params.get("threshold") is not None:
        raise InvalidArgument(
            "ML.EVALUATE parameter 'threshold' applies only to binary classification models; "
            f"model {call.model} is a {MODEL_TYPE} model"
        )
    predictor = service.models.load(call.model)
    config = predictor.config
    implicit = config["feedback_type"] == "IMPLICIT"
    names = IMPLICIT_METRICS if implicit else REGRESSION_METRICS
    if call.input is None:
        metrics = stored
    else:
        rows = call.input
        needed = [str(config[c]) for c in ("user_col", "item_col", "rating_col")]
        missing = [c for c in needed if c not in rows.column_names]
        if missing:
            raise InvalidArgument(
                f"ML.EVALUATE on {MODEL_TYPE} model {call.model} needs the columns {needed}; "
                f"the input lacks {missing}",
                missing=missing,
            )
        options = MatrixFactorizationOptions.model_construct(
            user_col=needed[0], item_col=needed[1], rating_col=needed[2]
        )
        metrics = _metrics(predictor.model, options, rows)
    return pa.table({name: pa.array([metrics.get(name)], type=pa.float64()) for name in names})


_FACTOR_WEIGHTS = pa.list_(pa.struct([("factor", pa.int64()), ("weight", pa.float64())]))


def ml_weights(service: SqlService, call: MLCall, fallback: Callable[..., pa.Table]) -> pa.Table:
    """ML.WEIGHTS for MATRIX_FACTORIZATION models; other types go to ``fallback``."""
    if service.models.get_version(call.model).model_type != MODEL_TYPE:
        return fallback(service, call)
    call.check_params({})
    if call.input is not None:
        raise InvalidArgument(f"ML.WEIGHTS takes no input rows: ML.WEIGHTS(MODEL {call.model})")
    predictor = service.models.load(call.model)
    model: FactorModel = predictor.model
    config = predictor.config
    parts = []
    for column, ids, factors, bias in (
        (config["user_col"], model.user_ids, model.user_factors, model.user_bias),
        (config["item_col"], model.item_ids, model.item_factors, model.item_bias),
    ):
        n, k = factors.shape
        entries = pa.StructArray.from_arrays(
            [
                pa.array(np.tile(np.arange(1, k + 1), n), type=pa.int64()),
                pa.array(np.ascontiguousarray(factors, dtype=np.float64).reshape(-1)),
            ],
            names=["factor", "weight"],
        )
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        parts.append(
            pa.table(
                {
                    "processed_input": pa.array([str(column)] * n, type=pa.string()),
                    "feature": ids.cast(pa.string()),
                    "factor_weights": pa.ListArray.from_arrays(offsets, entries),
                    "intercept": pa.array(bias, type=pa.float64()),
                }
            )
        )
    parts.append(
        pa.table(
            {
                "processed_input": pa.nulls(1, type=pa.string()),
                "feature": pa.nulls(1, type=pa.string()),
                # BigQuery ML: NULL processed_input and factor_weights on the global row
                "factor_weights": pa.nulls(1, type=_FACTOR_WEIGHTS),
                "intercept": pa.array([model.intercept], type=pa.float64()),
            }
        )
    )
    return pa.concat_tables([p.cast(parts[-1].schema) for p in parts])
