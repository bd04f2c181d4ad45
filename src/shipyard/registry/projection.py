"""PCA's ML.PREDICT projection straight from the input columns, a block of rows at a time.

:meth:`Predictor.principal_components <shipyard.registry.predictor.Predictor.principal_components>`
projects the whole model matrix: ``x @ components.T``, then the centring scikit-learn's
``PCA.transform`` applies after the product. For a table whose features are all numeric,
:func:`project_table` gives the same values without that matrix: the rows are written from the
input columns (:meth:`FeaturePreprocessor.numeric_blocks`, exactly as
:meth:`FeaturePreprocessor.transform` writes them) into a block buffer that stays in cache,
each block is projected and centred into the (components, rows) result, whose rows are
ML.PREDICT's columns (Arrow takes them without a copy). At 300k x 20 on 5 components: 16 ms of
CPU against 30 (the 48 MB matrix was most of it).

The blocks keep the whole-matrix product's bits: BLAS computes a row of a large product the same
way wherever the row sits, but OpenBLAS multiplies a small product (rows x features x components
up to 10^6) with other kernels, whose last bits differ (64 features on 20 components: blocks of
640 rows differ, as do products of 1-39 rows). So the blocks do not follow the input's chunks:
every block has ``block_rows`` rows (a multiple of 64, and more than 10^6 multiply-adds) from a
multiple of it, the last one runs to the end with ``block_rows`` to ``2 * block_rows - 1`` rows,
and a table of fewer than two blocks takes the matrix path: the same row alignment as the whole
matrix, and no small product.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["MAX_COMPONENTS", "MAX_FEATURES", "block_rows", "project_table"]

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
    size = block_rows(width, k)
    if k > MAX_COMPONENTS or width > MAX_FEATURES or n < 2 * size:
        return None
    out = np.empty((k, n))
    # every block ``size`` rows from a multiple of it, the last one to the end (size to
    # 2 * size - 1 rows): the whole matrix's row alignment, and no small product
    bounds = [i * size for i in range(n // size)] + [n]
    operand = components.T  # the transposed view the whole-matrix product had
    shift = (np.reshape(model.mean_, (1, -1)) @ components.T).reshape(-1, 1)
    product = np.empty((min(n, 2 * size - 1), k))
    # First without looking for NaN/±inf in the inputs (a pass per block): such a value makes
    # its row's projection NaN or ±inf, and one sum over the result finds it; only then the
    # pass that imputes them.
    for impute in (False, True):
        blocks = preprocessor.matrix_blocks(table, bounds, impute_nonfinite=impute)
        if blocks is None:
            return None
        for lo, hi, x in blocks:
            p = np.matmul(x, operand, out=product[: hi - lo])
            np.subtract(p.T, shift, out=out[:, lo:hi])
        if math.isfinite(np.einsum("ij->", out)):
            return out.T
    return None
