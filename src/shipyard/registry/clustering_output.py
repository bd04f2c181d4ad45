"""KMEANS' distances and ML.PREDICT columns, computed a block of rows at a time.

:meth:`Predictor.centroid_distances <shipyard.registry.predictor.Predictor.centroid_distances>`
and the KMEANS columns of ML.PREDICT (``CENTROID_ID``, ``NEAREST_CENTROIDS_DISTANCE``) work on
blocks of rows that stay in cache: each block's product with the centroids, the
``|x|² - 2 x·c + |c|²`` steps, the square root and the ranking of the centroids run before the
next block is read. The arithmetic is the whole-matrix one, element for element: a row's BLAS
matrix product does not depend on the rows that come with it nor on the matrix layout (the
tests pin this), but a one-row product (gemv) rounds differently, so a one-row block out of
more is multiplied as two rows. The values are the same bits; what goes is the passes over a
(rows x clusters) matrix in memory, and for ML.PREDICT the matrix itself:
:func:`nearest_from_table` builds each block of the model matrix from the input columns
(:meth:`FeaturePreprocessor.numeric_blocks`), exactly as :meth:`FeaturePreprocessor.transform`
writes it, and never holds the whole matrix.

The ranking is a stable argsort's: the nearest first, of equal distances the lower centroid
id first. One sorting network carries each distance's centroid along (:class:`_Nearest`); a
block where two of a row's ``m + 1`` nearest are equally far is ranked by comparisons
(:func:`rank_block`, :func:`smallest_values`), and a block with a NaN (which argsort puts
last) or more than ``RANK_BY_COMPARISON`` clusters takes the argsort itself. ML.PREDICT ranks
the values before their clipping and square root, which keep their order, and takes the root
of each row's ``m + 1`` nearest only; two of them equal after the root count as a tie.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "BLOCK_ROWS",
    "RANK_BY_COMPARISON",
    "block_distances",
    "block_rows",
    "distances",
    "distances_with_nearest",
    "nearest_columns",
    "nearest_from_distances",
    "nearest_from_matrix",
    "nearest_from_table",
    "own_products",
    "rank_block",
]

#: Rows per block: a block's (clusters, rows) distances and int8 ranks stay in cache, and the
#: ~200 NumPy calls of a block's ranking cost little against its work (8,192 rows: ~2x the
#: ranking time of 32,768 at 8 clusters).
BLOCK_ROWS = 32768
#: ... fewer for wide rows or many clusters: a block's rows, or its (clusters, rows) distances,
#: take at most about this many bytes.
_BLOCK_BYTES = 8 << 20
#: Up to this many clusters, a block is ranked by pairwise comparisons instead of argsort.
RANK_BY_COMPARISON = 16


class _Centers:
    """The centroids as the distance arithmetic reads them (computed once per call)."""

    def __init__(self, centers: np.ndarray, cosine: bool, rows: int) -> None:
        centers = np.asarray(centers, dtype=np.float64)
        self.k = len(centers)
        self.cosine = cosine
        self.many_rows = rows > 1  # the input's row count (see _product)
        # ``t``: the transposed view of a C-contiguous (clusters, features) array, the operand
        # the whole-matrix product ``x @ centers.T`` had: a one-row product is a BLAS gemv,
        # whose bits depend on which operand is transposed.
        if cosine:
            cn = np.linalg.norm(centers, axis=1, keepdims=True)
            self.t = np.ascontiguousarray(centers / np.where(cn == 0, 1, cn)).T
        else:
            self.t = np.ascontiguousarray(centers).T
            self.squared = np.einsum("ij,ij->i", centers, centers)[:, None]


def block_distances(
    x: np.ndarray,
    centers: _Centers,
    out: np.ndarray,
    squared_norms: np.ndarray | None = None,
    product: np.ndarray | None = None,
    *,
    root: bool = True,
) -> None:
    """``out`` (clusters, rows) = the distances of the rows of ``x`` (C-contiguous float64) to
    the centroids, with :meth:`Predictor._centroid_distances`' arithmetic, element for element.
    ``root=False`` stops before the clipping at 0 and the square root (:func:`_root`), for a
    caller that ranks the values first and takes the root of those it keeps.

    EUCLIDEAN: ``|x|² - 2 x·c + |c|²`` on the product, clipped at 0, its square root (doubling
    is exact, so ``2 * (x @ c)`` has the bits of ``(2 * x) @ c``). COSINE: BigQuery ML's
    ``sqrt(1 - cosine similarity)``; an all-zero row or centroid is at distance 1 from all.
    ``squared_norms``: the rows' ``einsum("ij,ij->i")``, when the caller has them;
    ``product``: a (rows, clusters) scratch buffer, when the caller has one.

    The product is BLAS' (rows, clusters) one, as on the whole matrix; it is transposed (in
    cache) before the element-wise steps, which NumPy runs ~5x faster along the rows than
    along 8 clusters broadcast against a column.
    """
    if product is None:
        product = np.empty((len(x), centers.k))
    if centers.cosine:
        xn = np.linalg.norm(x, axis=1, keepdims=True)
        _product(x / np.where(xn == 0, 1, xn), centers, product)
        out[...] = product.T
        np.subtract(1.0, out, out=out)
    else:
        _product(x, centers, product)
        np.multiply(product.T, 2.0, out=out)  # transposed and doubled in one pass
        if squared_norms is None:
            squared_norms = np.einsum("ij,ij->i", x, x)
        np.subtract(squared_norms[None, :], out, out=out)
        out += centers.squared
    if root:
        _root(out)


def _root(values: np.ndarray) -> None:
    """The distances from :func:`block_distances`' values before their root, in place: clipped
    at 0, their square root. Non-decreasing: it keeps any order of the values (equal values
    stay equal; unequal ones may become equal)."""
    np.maximum(values, 0.0, out=values)
    np.sqrt(values, out=values)


def _product(x: np.ndarray, centers: _Centers, out: np.ndarray) -> None:
    """``out`` = ``x @ centers.t``. A block of one row out of more (the last block, or a
    one-row chunk of the input) is multiplied as two rows: BLAS computes a one-row product
    (gemv) with other roundings than the matrix product (gemm) the whole matrix had."""
    if len(x) == 1 and centers.many_rows:
        out[...] = np.matmul(np.concatenate([x, x]), centers.t)[:1]
    else:
        np.matmul(x, centers.t, out=out)


def block_rows(width: int, k: int) -> int:
    """Rows per block for rows of ``width`` features and ``k`` centroids."""
    return min(BLOCK_ROWS, max(1024, _BLOCK_BYTES // (8 * max(width, k, 1))))


def _row_blocks(matrix: np.ndarray, rows: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, block)``: ``matrix`` in C-contiguous float64 blocks of ``rows`` rows (a
    column-major matrix's block is copied in cache; the values are the same)."""
    n = len(matrix)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        yield start, stop, np.ascontiguousarray(matrix[start:stop], dtype=np.float64)


def distances(
    matrix: np.ndarray,
    centers: np.ndarray,
    cosine: bool,
    squared_norms: np.ndarray | None = None,
) -> np.ndarray:
    """(rows, clusters): each row's distance to each centroid (see :func:`block_distances`),
    computed a block of rows at a time into the result."""
    c = _Centers(centers, cosine, len(matrix))
    out = np.empty((len(matrix), c.k))
    rows = block_rows(np.shape(matrix)[1], c.k)
    columns = np.empty((c.k, min(len(matrix), rows)))
    product = np.empty((columns.shape[1], c.k))
    for start, stop, x in _row_blocks(matrix, rows):
        norms = None if squared_norms is None else squared_norms[start:stop]
        block = columns[:, : stop - start]
        block_distances(x, c, block, norms, product[: stop - start])
        out[start:stop] = block.T
    return out


def distances_with_nearest(
    matrix: np.ndarray,
    centers: np.ndarray,
    cosine: bool,
    squared_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(:func:`distances`, each row's nearest centroid, its distance to it): the nearest is
    ``np.argmin``'s (the first of equal distances), found with the distances, block by block:
    a running minimum over the centroids (the minimum is one of its operands, so the distance
    has the matrix's bits; a block with a NaN takes ``argmin`` itself).

    The distances are the column-major (rows, clusters) view of a (clusters, rows) array: each
    block's distances go in as they are computed (no transposed copy), and a centroid's
    distances are contiguous for the anomaly statistics' pass over them."""
    n = len(matrix)
    c = _Centers(centers, cosine, n)
    out = np.empty((c.k, n))
    labels = np.empty(n, dtype=np.intp)
    nearest = np.empty(n)
    size = block_rows(np.shape(matrix)[1], c.k)
    rows = min(n, size)
    product = np.empty((rows, c.k))
    better = np.empty(rows, dtype=bool)
    step = np.empty(rows, dtype=np.int8 if c.k <= 127 else np.intp)
    label = np.empty(rows, dtype=step.dtype)
    for start, stop, x in _row_blocks(matrix, size):
        b = stop - start
        norms = None if squared_norms is None else squared_norms[start:stop]
        block = out[:, start:stop]
        block_distances(x, c, block, norms, product[:b])
        low = nearest[start:stop]
        if math.isnan(np.einsum("ij->", block)):
            labels[start:stop] = np.argmin(block, axis=0)
            low[...] = block[labels[start:stop], np.arange(b)]
            continue
        low[...] = block[0]
        best, up, moved = label[:b], step[:b], better[:b]
        best[...] = 0
        for j in range(1, c.k):
            np.less(block[j], low, out=moved)  # strictly nearer: of equal ones the first stays
            np.minimum(low, block[j], out=low)
            np.subtract(j, best, out=up)
            np.multiply(up, moved, out=up)
            best += up
        labels[start:stop] = best
    return out.T, labels, nearest


def own_products(x: np.ndarray, vectors: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(rows,): each row's product with its own vector, ``(x @ vectors.T)[arange, own]`` with
    the bits of that whole-matrix product, a block of rows at a time (no (rows, vectors)
    matrix in memory). ``vectors``: C-contiguous (count, features) float64."""
    n = len(x)
    t = np.ascontiguousarray(vectors, dtype=np.float64).T
    out = np.empty(n)
    size = block_rows(np.shape(x)[1], len(vectors))
    rows = min(n, size)
    product = np.empty((rows, len(vectors)))
    index = np.empty(rows, dtype=np.intp)
    offsets = np.arange(0, rows * len(vectors), len(vectors), dtype=np.intp)
    for start, stop, block in _row_blocks(x, size):
        b = stop - start
        part = product[:b]
        if b == 1 and n > 1:  # not BLAS' one-row product (see _product)
            part[...] = np.matmul(np.concatenate([block, block]), t)[:1]
        else:
            np.matmul(block, t, out=part)
        np.add(own[start:stop], offsets[:b], out=index[:b])
        np.take(part.reshape(-1), index[:b], out=out[start:stop])
    return out


def rank_block(columns: np.ndarray, m: int) -> np.ndarray:
    """(m, rows) int8: the ``m`` nearest centroids of each row, nearest first, from
    ``columns`` (clusters, rows), each centroid's distances; NaN-free, at most 127 clusters.

    A stable argsort's order (ties: the lower id first), without a sort per row: centroid j's
    rank in a row is the number of centroids before it at most as far plus those after it
    strictly nearer. Without NaN, "i after j" is "not i before j", so one comparison per pair
    ranks both: k*(k-1)/2 comparisons of columns.
    """
    k, n = columns.shape
    # Centroid i starts ranked behind every later centroid and moves ahead of each one that it
    # is at most as far as; a later centroid j moves behind it then. (Each centroid's
    # comparisons with all later ones at once: a few NumPy calls per centroid, not per pair.)
    rank = np.empty((k, n), dtype=np.int8)
    rank[:] = np.arange(k - 1, -1, -1, dtype=np.int8)[:, None]
    before = np.empty((max(k - 1, 0), n), dtype=bool)
    count = np.empty(n, dtype=np.int8)
    for i in range(k - 1):
        later = before[: k - 1 - i]
        np.less_equal(columns[i], columns[i + 1 :], out=later)
        np.add.reduce(later, axis=0, dtype=np.int8, out=count)
        rank[i] -= count
        rank[i + 1 :] += later
    owner = np.zeros((m, n), dtype=np.int8)  # owner[r]: the centroid of rank r
    same = np.empty((m, n), dtype=bool)
    ranks = np.arange(m, dtype=np.int8)[:, None]
    for j in range(1, k):
        np.equal(rank[j], ranks, out=same)
        owner += same.view(np.int8) * np.int8(j)
    return owner


@functools.lru_cache(maxsize=64)
def sorting_network(k: int, m: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort of ``k`` values as comparators ``(i, j)``, ``i < j``: the
    smaller value goes to ``i``. Only those the first ``m`` outputs depend on."""
    size = 1
    while size < k:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        step = p
        while step >= 1:
            for j in range(step % p, size - step, 2 * step):
                for i in range(min(step, size - j - step)):
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p):
                        pairs.append((i + j, i + j + step))
            step //= 2
        p *= 2
    # positions k.. would hold +inf: a comparator with one of them leaves the values as they are
    needed = set(range(m))
    kept: list[tuple[int, int]] = []
    for i, j in reversed([(i, j) for i, j in pairs if j < k]):
        if i in needed or j in needed:
            needed.update((i, j))
            kept.append((i, j))
    return tuple(reversed(kept))


def smallest_values(columns: np.ndarray, m: int, out: np.ndarray) -> None:
    """``out`` (m, rows): the ``m`` smallest of each row's values in ``columns`` (clusters,
    rows), ascending, by a sorting network of element-wise minima and maxima. NaN-free input:
    these are the values a stable argsort's order takes (a minimum returns one of its operands,
    and equal values have the same bits: distances are never -0.0)."""
    k, n = columns.shape
    work = list(columns.copy())  # rows that change places by reference
    low = np.empty(n)
    for i, j in sorting_network(k, m):
        np.minimum(work[i], work[j], out=low)
        np.maximum(work[i], work[j], out=work[j])
        work[i], low = low, work[i]
    for r in range(m):
        out[r] = work[r]


class _NonFinite(Exception):
    """A block's distances are not all finite (see :func:`nearest_from_table`)."""


class _Nearest:
    """The ``m`` nearest centroids of every row, filled a block at a time: ``ids`` (rows, m)
    1-based int64, ``distances`` (rows, m) float64.

    ``rooted=False``: the blocks hold :func:`block_distances`' values before :func:`_root`;
    the ranking runs on them and the root is taken of the values it keeps (fewer square roots:
    ``m + 1`` of ``k`` a row, when the sorting network ranks the block)."""

    def __init__(
        self,
        n: int,
        k: int,
        m: int,
        rows: int,
        *,
        finite_only: bool = False,
        rooted: bool = True,
    ) -> None:
        self.k, self.m = k, m
        self.finite_only = finite_only  # a block with a NaN or ±inf raises _NonFinite
        self.rooted = rooted
        self.ids = np.empty((n, m), dtype=np.int64)
        self.distances = np.empty((n, m), dtype=np.float64)
        rows = min(n, rows)  # the largest block
        self._values = np.empty((m, rows))
        if k <= RANK_BY_COMPARISON:  # the sorting network's buffers (see _sort_with_ids)
            self._work = np.empty((k + 1, rows))
            self._owners = np.empty((k, rows), dtype=np.int8)
            self._flags = np.empty(rows, dtype=bool)
            self._swap = np.empty(rows, dtype=np.int8)

    def add(self, start: int, columns: np.ndarray) -> None:
        """Rank ``columns`` (clusters, rows), the distances of rows ``start:start + rows``."""
        b = columns.shape[1]
        rows = slice(start, start + b)
        ids, nearest = self.ids[rows], self.distances[rows]
        # The sum is NaN when a value is (or +inf and -inf meet): then the sort decides. (The
        # root keeps NaN and makes no other value NaN.)
        total = np.einsum("ij->", columns)
        if self.finite_only and not math.isfinite(total):
            raise _NonFinite
        if self.k > RANK_BY_COMPARISON or math.isnan(total):
            if not self.rooted:
                _root(columns)
            block = columns.T
            order = np.argsort(block, axis=1, kind="stable")[:, : self.m]
            ids[...] = order
            ids += 1
            nearest[...] = np.take_along_axis(block, order, axis=1)
            return
        found = self._sort_with_ids(columns)
        if found is None:  # equal distances among a row's nearest: ranked by comparisons
            if not self.rooted:
                _root(columns)
            owners: Any = rank_block(columns, self.m)
            owners += 1
            values: Any = self._values[:, :b]
            smallest_values(columns, self.m, values)
        else:
            values, owners = found
        for r in range(self.m):
            ids[:, r] = owners[r]
            nearest[:, r] = values[r]

    def _sort_with_ids(
        self, columns: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        """(the ``m`` smallest distances of each row, ascending; their 1-based centroids,
        int8), by :func:`sorting_network` on ``columns`` (clusters, rows, NaN-free), each value's
        centroid moving with it (then the root of the ``m + 1`` smallest when the blocks are
        not rooted: it keeps their order). None when two of a row's ``m + 1`` smallest
        distances are equal.

        Without such a tie the ``m`` nearest are each strictly nearer than the next, so every
        sort (and the stable argsort) puts the same centroids first: one network pass gives
        the values and the ids, ~2.5 ms less than :func:`rank_block` and
        :func:`smallest_values` at 300k rows and 8 clusters. A tie leaves the order of equal
        values to the comparisons, which put the lower id first."""
        k, b = columns.shape
        outputs = min(self.m + 1, k)
        work = self._work[:, :b]
        np.copyto(work[:k], columns)  # (columns stays as it is: a tie ranks it again)
        values = list(work[:k])  # rows that change places by reference
        spare = work[k]
        owners = self._owners[:, :b]
        owners[...] = np.arange(1, k + 1, dtype=np.int8)[:, None]
        nearer, swap = self._flags[:b], self._swap[:b]
        for i, j in sorting_network(k, outputs):
            np.less(values[j], values[i], out=nearer)  # the values change places
            np.minimum(values[i], values[j], out=spare)
            np.maximum(values[i], values[j], out=values[j])
            values[i], spare = spare, values[i]
            # the ids follow: swap = (a ^ b) where nearer, else 0; a ^= swap; b ^= swap
            np.bitwise_xor(owners[i], owners[j], out=swap)
            np.multiply(swap, nearer.view(np.int8), out=swap)
            owners[i] ^= swap
            owners[j] ^= swap
        if not self.rooted:
            for r in range(outputs):
                _root(values[r])
        for r in range(outputs - 1):
            if np.equal(values[r], values[r + 1], out=nearer).any():
                return None
        return values[: self.m], list(owners[: self.m])


def nearest_from_matrix(
    matrix: np.ndarray, centers: np.ndarray, cosine: bool, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """(ids (rows, m), distances (rows, m)): each row's ``m`` nearest centroids, nearest first,
    from the model matrix (either layout)."""
    rows = block_rows(np.shape(matrix)[1], len(centers))
    blocks = _row_blocks(matrix, rows)
    return _nearest_blocks(blocks, len(matrix), centers, cosine, m, rows)


def _nearest_blocks(
    blocks: Iterable[tuple[int, int, np.ndarray]],
    n: int,
    centers: np.ndarray,
    cosine: bool,
    m: int,
    rows: int,
    *,
    finite_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``blocks``: of at most ``rows`` rows."""
    c = _Centers(centers, cosine, n)
    out = _Nearest(n, c.k, m, rows, finite_only=finite_only, rooted=False)
    columns = np.empty((c.k, min(n, rows)))
    product = np.empty((columns.shape[1], c.k))
    for start, stop, x in blocks:
        block = columns[:, : stop - start]
        block_distances(x, c, block, product=product[: stop - start], root=False)
        out.add(start, block)
    return out.ids, out.distances


def nearest_from_table(
    preprocessor: Any, table: pa.Table, centers: np.ndarray, cosine: bool, m: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`nearest_from_matrix` of ``preprocessor.transform(table, dtype=np.float64)``
    without that matrix: each block of rows is written from the input columns
    (:meth:`FeaturePreprocessor.matrix_blocks`) into a buffer that stays in cache. None when a
    feature is not numeric (the caller builds the matrix).

    The float columns' blocks are not searched for NaN and ±inf to impute: such a value makes
    its row's distances NaN or infinite (EUCLIDEAN: an infinite squared norm; COSINE: a NaN
    direction), so the first block whose distances are not all finite starts the blocks over
    with the imputation (as does a finite row beyond float range, with the same result).
    """
    n = table.num_rows
    rows = block_rows(np.shape(centers)[1], len(centers))
    count = -(-n // rows)  # equal blocks of at most ``rows`` rows, whatever the input's chunks
    bounds = [j * n // count for j in range(count + 1)]
    blocks = preprocessor.matrix_blocks(table, bounds, impute_nonfinite=False)
    if blocks is None:
        return None
    try:
        # (such a value's arithmetic warns of the NaN it makes: those distances are not used)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return _nearest_blocks(blocks, n, centers, cosine, m, rows, finite_only=True)
    except _NonFinite:
        blocks = preprocessor.matrix_blocks(table, bounds)
        return _nearest_blocks(blocks, n, centers, cosine, m, rows)


def nearest_columns(ids: np.ndarray, nearest: np.ndarray) -> list[pa.Array]:
    """``CENTROID_ID`` and ``NEAREST_CENTROIDS_DISTANCE`` (list<struct<CENTROID_ID,
    DISTANCE>>) from :func:`nearest_from_matrix`'s arrays, sharing their buffers."""
    n, m = ids.shape
    entries = pa.StructArray.from_arrays(
        [pa.array(ids.reshape(-1), type=pa.int64()), pa.array(nearest.reshape(-1))],
        names=["CENTROID_ID", "DISTANCE"],
    )
    offsets = pa.array(np.arange(0, n * m + 1, m, dtype=np.int32))
    return [pa.array(ids[:, 0], type=pa.int64()), pa.ListArray.from_arrays(offsets, entries)]


def nearest_from_distances(distances: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (rows, m), distances (rows, m)) of each row's ``m`` nearest centroids, nearest
    first, from a (rows, clusters) distance matrix (:func:`rank_block`'s order)."""
    n, k = distances.shape
    out = _Nearest(n, k, m, BLOCK_ROWS)
    columns = np.empty((k, min(n, BLOCK_ROWS)))
    for start in range(0, n, BLOCK_ROWS):
        block = distances[start : start + BLOCK_ROWS]
        part = columns[:, : len(block)]
        part[...] = block.T
        out.add(start, part)
    return out.ids, out.distances
