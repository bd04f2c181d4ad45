"""PCA: training with scikit-learn, and its ML functions.

Training follows BigQuery ML's PCA options: every column of the training query is a feature
(numeric columns standardized when ``scale_features``, default TRUE; categorical ones one-hot
encoded); exactly one of ``num_principal_components`` (at most the number of encoded features
and of rows) and ``pca_explained_variance_ratio`` (the fewest components whose cumulative
explained variance ratio reaches it); ``pca_solver`` FULL / RANDOMIZED / AUTO is scikit-learn's
``svd_solver`` (a ratio always uses the full solver, which is what scikit-learn supports).

ML functions:

* ML.PREDICT (the Predictor): ``principal_component_1`` … ``principal_component_k`` (FLOAT64);
  the input columns only with ``STRUCT(TRUE AS keep_original_columns)`` (BigQuery ML's default
  for PCA is FALSE).
* ML.EVALUATE: ``total_explained_variance_ratio`` — stored from training, or, with input rows,
  the share of those rows' variance (around the training mean) that the components capture.
* ML.PRINCIPAL_COMPONENTS: ``principal_component_id`` (INT64, 0-based: id 0 is
  ``principal_component_1``), ``feature``, ``numerical_value``, ``categorical_value`` — the
  component's weights on the preprocessed features.
* ML.PRINCIPAL_COMPONENT_INFO: ``principal_component_id``, ``eigenvalue`` (the explained
  variance), ``explained_variance_ratio``, ``cumulative_explained_variance_ratio``, by
  decreasing eigenvalue.
* ML.DETECT_ANOMALIES(MODEL m, STRUCT(c AS contamination), TABLE t): ``is_anomaly`` and
  ``mean_squared_error``, the row's reconstruction error over the preprocessed features; a row
  is an anomaly when its error is above the ``1 - contamination`` quantile of the training rows'
  errors.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shipyard.errors import InvalidArgument
from shipyard.registry import projection
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql.clustering import (
    _with_inputs,
    feature_rows,
    require_model_type,
    training_quantiles,
)
from shipyard.sql.training import Progress, UnsupervisedFit, one_blas_thread

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "PCA_METRICS",
    "detect_pca_anomalies",
    "evaluate_pca_rows",
    "ml_principal_component_info",
    "ml_principal_components",
    "train_pca",
]

PCA_METRICS: tuple[str, ...] = ("total_explained_variance_ratio",)
_SEED = 20240101
_SOLVERS = {"FULL": "full", "RANDOMIZED": "randomized", "AUTO": "auto"}
#: Rows per block of the reconstruction errors' element-wise passes.
_BLOCK_ROWS = 4096


def train_pca(
    table: pa.Table, options: Any, report: Progress, warm_start: Predictor | None = None
) -> UnsupervisedFit:
    from sklearn.decomposition import PCA

    start = time.perf_counter()
    n = table.num_rows
    if n < 2:
        raise InvalidArgument(f"PCA needs at least 2 training rows; the training data has {n}")
    features = list(table.column_names)
    preprocessor = FeaturePreprocessor.fit(
        table, features, standardize=options.scale_features, categorical_encoding="one_hot"
    )
    # Column-major: each numeric column is one contiguous copy (300k x 20: 12 ms of CPU against
    # 20 row-major), scikit-learn's column means are then pairwise sums down contiguous columns
    # (10 ms less than running sums down strided ones, and more accurate), and the
    # reconstruction errors read each feature's values contiguously (_blocked_errors).
    # PCA.fit: 14 ms against 24; the model moves in the last bits (mean_ by ~1e-17 here).
    x = preprocessor.transform(table, dtype=np.float64, order="F")
    limit = min(n, x.shape[1])
    components: int | float
    solver = _SOLVERS[options.pca_solver]
    if options.num_principal_components is not None:
        components = options.num_principal_components
        if components > limit:
            raise InvalidArgument(
                f"num_principal_components {components} is more than PCA can find here: at "
                f"most min(rows, encoded features) = min({n}, {x.shape[1]}) = {limit}",
                num_principal_components=components,
            )
    else:
        components = options.pca_explained_variance_ratio
        solver = "full"
    report(0.0, "fitting PCA")
    model = PCA(n_components=components, svd_solver=solver, random_state=_SEED).fit(x)
    k = int(model.n_components_)
    errors = _reconstruction_errors(model, x)
    ratio = float(np.sum(model.explained_variance_ratio_))
    report(1.0, f"fitted PCA: {k} components explain {ratio:.4g} of the variance")
    quantiles = training_quantiles(errors)  # np.quantile's 1,001 values, from one sort
    return UnsupervisedFit(
        task="dimensionality_reduction",
        model=model,
        preprocessor=preprocessor,
        features=features,
        training_info=[
            {
                "training_run": 0,
                "iteration": 0,
                "loss": float(np.mean(errors)),
                "eval_loss": None,
                "learning_rate": None,
                "duration_ms": round((time.perf_counter() - start) * 1000),
            }
        ],
        metrics={"total_explained_variance_ratio": ratio},
        predictor_config={
            "matrix_dtype": "float64",
            "model_type": "PCA",
            "num_components": k,
            "anomaly_quantiles": [float(q) for q in quantiles],
        },
    )


def _reconstruction_errors(model: Any, x: np.ndarray) -> np.ndarray:
    """Each row's mean squared error between ``x`` and ``inverse_transform(transform(x))``.

    scikit-learn's arithmetic (a projection centred after the product, then back) on the same
    matrix, bit for bit, without its input checks and in place: the (rows, features)
    temporaries were most of the time. A large column-major ``x`` goes a block of rows at a
    time (:func:`_blocked_errors`); otherwise the two products run on the whole matrix (BLAS
    treats a small block of rows differently from the same rows inside a larger matrix) and
    the element-wise rest goes in row blocks that stay in the CPU cache.
    """
    if model.whiten:
        restored = model.inverse_transform(model.transform(x))
        return np.mean((x - restored) ** 2, axis=1)  # type: ignore[no-any-return]
    components = model.components_
    n, width = x.shape
    if n == 0:
        return np.zeros(0)
    column_major = x.flags.f_contiguous and width > 1
    with one_blas_thread():  # thin products: see training.one_blas_thread
        if column_major:
            errors = _blocked_errors(model, x)
            if errors is not None:
                return errors
        projected = x @ components.T
        projected -= model.mean_.reshape(1, -1) @ components.T
        restored = projected @ components
    del projected
    if column_major:
        return _column_major_errors(restored, x, model.mean_)
    # The mean added as a (block, features) tile rather than broadcast from one row: the same
    # operations on the same values (a row's error never depends on the block), 19 ms down to
    # 15 at 300k x 20.
    rows = min(_BLOCK_ROWS, n)
    mean = np.tile(model.mean_, (rows, 1))
    errors = np.empty(n)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        block = restored[lo:hi]
        block += mean[: hi - lo]
        block -= x[lo:hi]  # (restored - x)² = (x - restored)², bit for bit
        np.square(block, out=block)
        np.mean(block, axis=1, out=errors[lo:hi])
    return errors


def _blocked_errors(model: Any, x: np.ndarray) -> np.ndarray | None:
    """:func:`_column_major_errors`' values for a large column-major ``x``, a block of rows at a
    time: both products and the element-wise passes on blocks that stay in cache, never the
    (rows, features) restored matrix. 300k x 20 on 5 components: ~15 ms of CPU against ~40.

    The blocks are ML.PREDICT's (:func:`projection.block_bounds`), whose products have the
    whole matrix's bits; a block of ``block_rows`` rows is multiplied transposed,
    ``components.T @ projected`` straight into the (features, rows) block the element-wise
    passes want (the same bits, see :mod:`shipyard.registry.projection`), the longer last block
    as the whole matrix is, then transposed. None where the blocks do not apply (few rows, wide
    models) or with one component (matrix-vector products, whose bits depend on the layout).
    """
    components = model.components_
    k, width = components.shape
    n = len(x)
    bounds = projection.block_bounds(n, width, k)
    if bounds is None or k < 2:
        return None
    size, longest = bounds[1], n - bounds[-2]
    shift = (model.mean_.reshape(1, -1) @ components.T).reshape(-1, 1)
    column = model.mean_.reshape(-1, 1)
    projected, restored = np.empty(k * longest), np.empty(width * longest)
    product, back = np.empty((longest, k)), np.empty((longest, width))
    errors = np.empty(n)
    for lo, hi in itertools.pairwise(bounds):
        m, rows = hi - lo, x[lo:hi]
        full = m == size
        p = projection.centred_projection(
            rows, components, shift, projected[: k * m].reshape(k, m), product, full=full
        )
        block = restored[: width * m].reshape(width, m)
        if full:
            np.matmul(components.T, p, out=block)
            block += column
        else:
            np.add(np.matmul(p.T, components, out=back[:m]).T, column, out=block)
        _squared_error_sums(block, rows.T, errors[lo:hi])
    errors /= width  # np.mean's division of the sums by the count
    return errors


def _column_major_errors(restored: np.ndarray, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The row-major path's values for a column-major ``x``, a block of rows at a time with
    the features as rows of a scratch block: ``restored + mean`` lands there transposed, then
    each feature's values subtract one contiguous run of ``x`` (not a strided one) and the
    rows' means are numpy's own pairwise sums (:func:`_pairwise_column_sums`) as vector
    operations down the block: 300k x 20, 36 ms of CPU against 40 for the row-major path on
    this layout (np.mean over 20 values per row costs ~25 ns a row; these sums 6).
    """
    n, width = x.shape
    rows = min(_BLOCK_ROWS, n)
    column = mean.reshape(-1, 1)
    scratch = np.empty((width, rows))
    errors = np.empty(n)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        block = scratch[:, : hi - lo]
        np.add(restored[lo:hi].T, column, out=block)
        _squared_error_sums(block, x[lo:hi].T, errors[lo:hi])
    errors /= width  # np.mean's division of the sums by the count
    return errors


def _squared_error_sums(block: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[j]`` = the sum over features of ``(block[:, j] - rows[:, j])²`` in numpy's
    pairwise order; ``block`` holds the restored values, (features, rows), and is overwritten.
    (restored - x)² = (x - restored)², bit for bit."""
    block -= rows
    np.square(block, out=block)
    _pairwise_column_sums(block, out)


def _pairwise_column_sums(block: np.ndarray, out: np.ndarray) -> None:
    """``out[j]`` = the sum of ``block[:, j]`` as numpy's ``add.reduce`` sums a contiguous row
    of ``len(block)`` values: 0.0 (the reduction's start) plus the values' pairwise sum, where
    below 8 values they are added one after the other to 0.0; up to 128, eight running sums
    over steps of 8 are combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then
    the remainder is added one by one; beyond, the two halves (the first a multiple of 8 long)
    are summed so and added. Here each value is a row of the block, a column's worth of
    operands, so each step is one vector operation. ``block`` is overwritten.
    """
    _pairwise_sums(block, out)
    out += 0.0  # the reduction's start: a sum of -0.0 values is +0.0, as numpy's


def _pairwise_sums(block: np.ndarray, out: np.ndarray) -> None:
    n = len(block)
    if n < 8:
        out[...] = 0.0
        for row in block:
            out += row
        return
    if n <= 128:
        sums = block[:8]
        stop = n - n % 8
        for i in range(8, stop, 8):
            sums += block[i : i + 8]
        np.add(sums[0::2], sums[1::2], out=sums[0::2])  # r0+r1, r2+r3, r4+r5, r6+r7
        np.add(sums[0::4], sums[2::4], out=sums[0::4])  # (r0+r1)+(r2+r3), (r4+r5)+(r6+r7)
        np.add(sums[0], sums[4], out=out)
        for i in range(stop, n):
            out += block[i]
        return
    half = n // 2
    half -= half % 8
    _pairwise_sums(block[:half], out)
    right = np.empty_like(out)
    _pairwise_sums(block[half:], right)
    out += right


def evaluate_pca_rows(predictor: Predictor, rows: pa.Table) -> dict[str, float | None]:
    x = predictor.preprocessor.transform(rows, dtype=np.float64)
    centred = x - predictor.model.mean_[None, :]
    total = float(np.sum(centred**2))
    if total == 0.0:
        return {"total_explained_variance_ratio": None}
    with one_blas_thread():  # a thin product: see training.one_blas_thread
        projected = centred @ predictor.model.components_.T
    captured = float(np.sum(projected**2))
    return {"total_explained_variance_ratio": captured / total}


def detect_pca_anomalies(predictor: Predictor, rows: pa.Table, contamination: float) -> pa.Table:
    from shipyard.sql.clustering import anomaly_threshold

    # column-major, as in training: the same matrix, so the training rows' errors here are
    # the ones training ranked (and a cheaper transform)
    x = predictor.preprocessor.transform(rows, dtype=np.float64, order="F")
    errors = _reconstruction_errors(predictor.model, x) if len(rows) else np.zeros(0)
    threshold = anomaly_threshold(predictor.config, contamination)
    out = {
        "is_anomaly": pa.array(errors > threshold, type=pa.bool_()),
        "mean_squared_error": pa.array(errors, type=pa.float64()),
    }
    return _with_inputs(out, rows)


def _no_input(call: MLCall) -> None:
    if call.input is not None:
        raise InvalidArgument(
            f"ML.{call.function} takes no input rows: ML.{call.function}(MODEL {call.model})"
        )


def ml_principal_components(service: SqlService, call: MLCall) -> pa.Table:
    """ML.PRINCIPAL_COMPONENTS: each component's weight per input column."""
    call.check_params({})
    require_model_type(service, call, ("PCA",))
    _no_input(call)
    predictor = service.models.load(call.model)
    vectors = np.asarray(predictor.model.components_, dtype=np.float64)
    return feature_rows(
        predictor.preprocessor,
        vectors,
        id_name="principal_component_id",
        ids=list(range(len(vectors))),
        unscale=False,
    )


def ml_principal_component_info(service: SqlService, call: MLCall) -> pa.Table:
    """ML.PRINCIPAL_COMPONENT_INFO: eigenvalues and explained variance ratios."""
    call.check_params({})
    require_model_type(service, call, ("PCA",))
    _no_input(call)
    model = service.models.load(call.model).model
    ratios = np.asarray(model.explained_variance_ratio_, dtype=np.float64)
    return pa.table(
        {
            "principal_component_id": pa.array(np.arange(len(ratios)), type=pa.int64()),
            "eigenvalue": pa.array(np.asarray(model.explained_variance_, dtype=np.float64)),
            "explained_variance_ratio": pa.array(ratios),
            "cumulative_explained_variance_ratio": pa.array(np.cumsum(ratios)),
        }
    )
