"""LINEAR_REG's unregularised fit: scikit-learn's ``LinearRegression``, solved in fewer passes.

``LinearRegression.fit`` on a dense matrix checks it for NaN/infinity twice, copies it, centres
the copy, and hands it to LAPACK's ``gelsd`` (an SVD-based least squares solver), which copies it
once more into column-major order and then runs a Householder QR one column at a time: about
forty passes over the matrix (~0.1 s at 300k x 20). :func:`fit_linear_regression` returns the
same fitted estimator (``coef_``, ``intercept_``, ``rank_``, ``singular_``) in one of two ways:

* **Well-conditioned** (the common case: standardised features) — the normal equations. One
  pass over the rows, in blocks that stay in cache, builds the centred Gram matrix
  ``Xcᵀ·Xc`` and ``Xcᵀ·yc``; a Cholesky solve of the equilibrated system gives the
  coefficients, and one step of iterative refinement (a second pass: the residual
  ``yc - Xc·b`` and its projection ``Xcᵀ·r``) brings them to the accuracy of a QR solve. The
  answer differs from ``gelsd``'s in the last bits (about 1e-15 relative in the predictions on
  well-conditioned data, 1e-12 in the coefficients at a condition number of 1,000), within
  both solvers' own rounding error. Used only when the matrix is far from rank-deficient:
  condition number at most :data:`MAX_CONDITION` after scaling the columns to unit norm and at
  most :data:`MAX_RAW_CONDITION` before (scikit-learn treats singular values below
  ``tol = 1e-6`` of the largest as zero, so the rank is full either way).
* **Otherwise** (collinear or nearly collinear columns, a constant column, fewer rows than
  columns, one row, more than :data:`MAX_COLUMNS` columns) — ``gelsd`` on the same centred
  matrix as scikit-learn, with its cutoff ``tol``: the minimum-norm solution, bit for bit
  scikit-learn's, with one column-major copy instead of three copies and two finiteness
  checks.

``singular_`` is ``gelsd``'s on the second path; on the first it is the square root of the
centred Gram matrix's eigenvalues (the same values to ~1e-15 relative for the large ones). A
matrix or label with NaN or infinity goes to scikit-learn's own ``fit``, for its error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["MAX_COLUMNS", "MAX_CONDITION", "MAX_RAW_CONDITION", "fit_linear_regression"]

#: The normal equations are used up to this condition number of the column-scaled matrix
#: (their error grows with its square; one refinement step brings it back to QR's level).
MAX_CONDITION = 1e3
#: ... and up to this condition number of the centred matrix itself, far below the
#: 1e6 (1 / ``LinearRegression.tol``) where scikit-learn starts to drop singular values.
MAX_RAW_CONDITION = 1e5
#: ... and up to this many columns: the condition check decomposes the (columns x columns)
#: Gram matrix, and a rank-deficient matrix (one-hot columns next to the intercept) pays for
#: the Gram matrix before it falls back to gelsd.
MAX_COLUMNS = 512
#: Rows per block of the two passes: 2048 x 20 float64 (320 KiB) stays in the L2 cache while
#: it is centred and multiplied.
_BLOCK_BYTES = 320 * 1024


def fit_linear_regression(x: np.ndarray, y: np.ndarray, *, fit_intercept: bool) -> Any:
    """A fitted ``LinearRegression(fit_intercept=fit_intercept)`` for the float64 matrix
    ``x`` (rows x features) and labels ``y`` (see the module docstring). Anything else (another
    dtype or shape) is scikit-learn's own fit, with its checks and messages."""
    from sklearn.linear_model import LinearRegression

    model = LinearRegression(fit_intercept=fit_intercept)
    if not (isinstance(x, np.ndarray) and x.dtype == np.float64 and x.ndim == 2):
        return model.fit(x, y)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != len(x) or x.shape[1] == 0 or len(x) == 0:
        return model.fit(x, y)
    p = x.shape[1]
    if fit_intercept:
        # As scikit-learn: np.average over the rows (a mean), subtracted from a copy.
        x_offset = np.asarray(np.average(x, axis=0))
        y_offset = np.asarray(np.average(y))
    else:
        x_offset = np.zeros(p)
        y_offset = np.asarray(0.0)
    if not (np.isfinite(x_offset).all() and math.isfinite(float(y_offset))):
        return model.fit(x, y)  # NaN or infinity somewhere: scikit-learn's error
    solved = _normal_equations(x, y, x_offset, float(y_offset))
    if solved is None:
        coef, rank, singular = _gelsd(x, y, x_offset, y_offset, model.tol)
    else:
        coef, rank, singular = solved
    model.coef_ = coef
    model.rank_ = rank
    model.singular_ = singular
    model.n_features_in_ = p
    model.intercept_ = y_offset - x_offset @ coef if fit_intercept else 0.0
    return model


def _blocks(n: int, p: int) -> range:
    return range(0, n, max(256, _BLOCK_BYTES // (8 * p)))


def _normal_equations(
    x: np.ndarray, y: np.ndarray, x_offset: np.ndarray, y_offset: float
) -> tuple[np.ndarray, int, np.ndarray] | None:
    """(coef, rank, singular values) from the normal equations, or None when the centred
    matrix is not well-conditioned enough for them (or holds NaN / infinity)."""
    from scipy.linalg import cho_factor, cho_solve

    n, p = x.shape
    if n <= p or p > MAX_COLUMNS:  # n <= p: the centred matrix has rank < p
        return None
    step = _blocks(n, p).step
    gram = np.zeros((p, p))
    projected = np.zeros(p)
    block = np.empty((min(step, n), p))
    for start in range(0, n, step):
        rows = block[: min(step, n - start)]
        np.subtract(x[start : start + step], x_offset, out=rows)
        gram += rows.T @ rows
        projected += rows.T @ (y[start : start + step] - y_offset)
    if not (np.isfinite(gram).all() and np.isfinite(projected).all()):
        return None
    eigen = np.linalg.eigvalsh(gram)  # ascending
    if not eigen[0] > eigen[-1] / MAX_RAW_CONDITION**2:
        return None
    scale = 1.0 / np.sqrt(np.diag(gram))
    scaled = gram * scale[:, None] * scale[None, :]
    scaled_eigen = np.linalg.eigvalsh(scaled)
    if not scaled_eigen[0] > scaled_eigen[-1] / MAX_CONDITION**2:
        return None
    factor = cho_factor(scaled, lower=True, check_finite=False)
    coef = scale * cho_solve(factor, scale * projected, check_finite=False)
    # One step of iterative refinement: solve again for the residual's projection.
    correction = np.zeros(p)
    for start in range(0, n, step):
        rows = block[: min(step, n - start)]
        np.subtract(x[start : start + step], x_offset, out=rows)
        residual = (y[start : start + step] - y_offset) - rows @ coef
        correction += rows.T @ residual
    coef = coef + scale * cho_solve(factor, scale * correction, check_finite=False)
    if not np.isfinite(coef).all():
        return None
    singular = np.sqrt(np.maximum(eigen[::-1], 0.0))
    return coef, p, singular


def _gelsd(
    x: np.ndarray, y: np.ndarray, x_offset: np.ndarray, y_offset: np.ndarray, tol: float
) -> tuple[np.ndarray, int, np.ndarray]:
    """scikit-learn's solve, bit for bit: ``gelsd`` on the centred matrix with cutoff ``tol``
    (singular values below ``tol`` times the largest count as zero)."""
    from scipy.linalg import lstsq

    centred = np.empty(x.shape, order="F")  # gelsd's layout: no copy inside lstsq
    np.subtract(x, x_offset, out=centred)
    labels = y - y_offset
    coef, _, rank, singular = lstsq(
        centred, labels, cond=tol, check_finite=False, overwrite_a=True, overwrite_b=True
    )
    return coef, int(rank), singular
