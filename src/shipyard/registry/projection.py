"""PCA's projection a block of rows at a time: ML.PREDICT straight from the input columns, and
the training rows' reconstruction errors (:mod:`shipyard.sql.decomposition`).

:meth:`Predictor.principal_components <shipyard.registry.predictor.Predictor.principal_components>`
projects the whole model matrix: ``x @ components.T``, then the centring scikit-learn's
``PCA.transform`` applies after the product. For a table whose features are all numeric,
:func:`project_table` gives the same values without that matrix: the rows are written from the
input columns (:meth:`FeaturePreprocessor.matrix_blocks`, exactly as
:meth:`FeaturePreprocessor.transform` writes them) into a column-major block buffer that stays
in cache, each block is projected and centred into the (components, rows) result, whose rows
are ML.PREDICT's columns (Arrow takes them without a copy). At 300k x 20 on 5 components: ~13
ms of CPU against ~20 with row-major blocks (a strided write per feature) and 30 for the matrix
path.

The blocks keep the whole-matrix product's bits: BLAS computes a row of a large product the same
way wherever the row sits, but OpenBLAS multiplies a small product (rows x features x components
up to 10^6) with other kernels, whose last bits differ (64 features on 20 components: blocks of
640 rows differ, as do products of 1-39 rows). So the blocks do not follow the input's chunks:
every block has ``block_rows`` rows (a multiple of 64, and more than 10^6 multiply-adds) from a
multiple of it, the last one runs to the end with ``block_rows`` to ``2 * block_rows - 1`` rows
(:func:`block_bounds`), and fewer rows than two blocks take the matrix path: the same row
alignment as the whole matrix, and no small product.

A block is projected as ``components @ rows.T`` (:func:`centred_projection`): the (components,
rows) result comes out in the layout the callers want, and from a column-major block that
product is the faster one (300k x 20 on 5 components: ~4 ms of CPU against ~7 for
``rows @ components.T``). OpenBLAS gives it the bits of ``rows @ components.T`` when the
block's rows fill its kernels' tiles (a multiple of 8 rows here; ``block_rows`` is a multiple of
64; tests pin it over many shapes), not otherwise: the leftover rows go through edge kernels that
round differently. So the longer last block takes ``rows @ components.T``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "MAX_COMPONENTS",
    "MAX_FEATURES",
    "block_bounds",
    "block_rows",
    "centred_projection",
    "project_table",
]

#: The block path projects on at most this many components, from at most this many features
#: (the sizes its bits were checked at).
MAX_COMPONENTS = 64
MAX_FEATURES = 128
#: A block's product has more multiply-adds than this: OpenBLAS' small-matrix kernels (which
#: round differently) take products up to 10^6.
_SMALL_PRODUCT = 1_000_000


def block_rows(width: int, components: int) -> int:
    """Rows per block: at least 4,096, a multiple of 64, more than ``_SMALL_PRODUCT``
    multiply-adds (20 features on 5 components: 10,048 rows)."""
    rows = max(4096, _SMALL_PRODUCT // max(1, width * components) + 1)
    return -(-rows // 64) * 64


def block_bounds(rows: int, width: int, components: int) -> list[int] | None:
    """The blocks' bounds for ``rows`` rows of ``width`` features projected on ``components``:
    every block ``block_rows`` rows from a multiple of it, the last one to the end (``size`` to
    ``2 * size - 1`` rows), so the whole matrix's row alignment and no small product. None
    when the block path does not apply: fewer rows than two blocks, or more components or
    features than it was checked at."""
    size = block_rows(width, components)
    if components > MAX_COMPONENTS or width > MAX_FEATURES or rows < 2 * size:
        return None
    return [i * size for i in range(rows // size)] + [rows]


def centred_projection(
    rows: np.ndarray,
    components: np.ndarray,
    shift: np.ndarray,
    out: np.ndarray,
    scratch: np.ndarray,
    *,
    full: bool,
) -> np.ndarray:
    """``out`` (components, rows) = ``(rows @ components.T).T - shift``, the bits of that
    product on the whole matrix for a block of :func:`block_bounds`. ``full``: a block of
    exactly ``block_rows`` rows, computed as ``components @ rows.T`` straight into ``out``;
    otherwise (the last, longer block) ``rows @ components.T`` in ``scratch`` (at least
    ``len(rows)`` x components, C-contiguous), then centred into ``out``. ``shift``: (components,
    1), the mean's projection. Returns ``out``."""
    if full:
        np.matmul(components, rows.T, out=out)
        out -= shift
    else:
        product = np.matmul(rows, components.T, out=scratch[: len(rows)])
        np.subtract(product.T, shift, out=out)
    return out


def project_table(model: Any, preprocessor: Any, table: pa.Table) -> np.ndarray | None:
    """(rows, components), column-major: the projection of ``table``'s model matrix on the
    components of the scikit-learn PCA ``model`` (not whitened), as
    :meth:`Predictor.principal_components` computes it from the matrix, bit for bit. None when
    this path does not apply: a whitened or other model, too many components or features,
    fewer rows than two blocks, a feature that is not numeric, a non-finite result (the matrix
    path then raises scikit-learn's error). Call it with BLAS on one thread (the products are
    thin)."""
    components = getattr(model, "components_", None)
    if components is None or getattr(model, "whiten", True):
        return None
    k, width = components.shape
    n = table.num_rows
    bounds = block_bounds(n, width, k)
    if bounds is None:
        return None
    # One component: the whole matrix's product is a matrix-vector one, whose bits depend on
    # the matrix's layout: then row-major blocks, every one multiplied as the matrix is.
    transposed = k > 1
    out = np.empty((k, n))
    shift = (np.reshape(model.mean_, (1, -1)) @ components.T).reshape(-1, 1)
    scratch = np.empty((n - bounds[-2], k))  # the last block is the longest
    # First without looking for NaN/±inf in the inputs (a pass per block): such a value makes
    # its row's projection NaN or ±inf, and one sum over the result finds it; only then the
    # pass that imputes them.
    for impute in (False, True):
        blocks = preprocessor.matrix_blocks(
            table, bounds, impute_nonfinite=impute, order="F" if transposed else "C"
        )
        if blocks is None:
            return None
        for lo, hi, x in blocks:
            full = transposed and hi - lo == bounds[1]
            centred_projection(x, components, shift, out[:, lo:hi], scratch, full=full)
        if math.isfinite(np.einsum("ij->", out)):
            return out.T
    return None
