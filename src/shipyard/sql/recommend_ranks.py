"""Ranks of rated items among all of a user's item scores (the implicit ranking metrics).

``rank(u, i) = 1 + #{items j : score(u, j) > score(u, i)}``, with ``score`` the model's exact
score (:class:`~shipyard.registry.factorization.FactorModel`, the bits ML.RECOMMEND returns).
Sorting each user's exact scores costs ``n log n`` comparisons of doubles per user, on top of
scoring every (user, item) pair factor by factor. :func:`ranks_and_squared_error` gets the very
same integers with less work, a block of users at a time:

1. **Bounds**: a user's exact scores are within ``g(k+3)·R_u`` of the real numbers
   (``g(m) = m·u / (1 - m·u)``, ``u = 2⁻⁵³``, ``k`` factors, ``R_u`` a bound of
   ``Σ_i |x_ui·y_ji| + |intercept| + |b_u| + |b_j|`` over the items, computed as
   ``|x_u|_1 · max |Y| + …`` so that no underflow of squares can shrink it: the classic bound
   of a floating-point dot product and three additions); ``e_u = 8·(k+3)·u·R_u``, about
   eight times that, is the margin used below.
2. **Scaled scores in bins**: each user gets a map ``v = c_u · score + d_u`` that sends the
   range of its rated items' exact scores (± ``e_u``) onto bins ``2 … B - 2`` (``B`` about 1.6
   bins per item). One BLAS product per block, ``[c_u·x_u, c_u·a_u + d_u, c_u] · [y_j, 1,
   b_j]`` (``a_u`` the intercept plus the user's bias), gives every item's ``v`` within
   ``δ_u`` of the real ``c_u · score + d_u``: the dot product bound again, over
   ``2·c_u·R_u + |c_u·a_u| + |d_u|``, with ``c_u`` capped so that ``δ_u`` stays below a
   quarter of a bin. Items are counted per (user, bin) (``np.bincount``, then a running sum);
   those below (above) the rated range fall into bin 0 (``B - 1``).
3. **Counting**: for a rated item with exact score ``o``, an item whose ``v`` is above
   ``H = c_u·(o + e_u) + d_u + δ_u`` has a real score above ``o + e_u``, so an exact score
   above ``o``: every item in a bin above ``H``'s is counted. One whose ``v`` is below
   ``L = c_u·(o - e_u) + d_u - δ_u`` is not above ``o``. The few neighbours in the bins of
   ``L`` … ``H`` are compared by ``v`` the same way, and only those between ``L`` and ``H``
   (a tie, or nearly) get their exact score compared with ``o``.

A block is ranked by sorting its exact scores instead if a rated item falls outside its own
range (which would mean the bound failed: it does not) or a range spans more than two bins.
Models whose factors are not finite, or so large that a product could overflow, are ranked by
sorting too (:func:`_sorted_block`). A user whose rated range or ``R_u`` is below ``10⁻²⁹⁰``
gets one bin: all of its items are compared exactly.

The squared error of ML.EVALUATE's ``mean_squared_error`` (every pair of the evaluated users
against the 0/1 preference) is summed through the Gram matrix of the items' factors:
``Σ_j score(u, j)² = z_uᵀ G z_u`` with ``z_u = [x_u, a_u, 1]`` and ``G`` the Gram matrix of
``[y_j, 1, b_j]``, without any per-pair score; it differs from the sum of the exact scores'
squares by a few units in the last place of the total.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shipyard.registry.predictor import one_blas_thread

if TYPE_CHECKING:
    from shipyard.registry.factorization import FactorModel

__all__ = ["ranks_and_squared_error"]

# Threads for the blocks of users (NumPy's products, sorts and searches release the GIL).
_THREADS = 4
# Scores in a block of users (about 1 MiB of doubles: the block stays in a core's cache).
_BLOCK_VALUES = 1 << 17
_UNIT = 2.0**-53
# Absolute slack for products that underflow (each rounding of a subnormal is below 2⁻¹⁰⁷⁴).
_TINY = 1e-300
# Above this bound on a score's size, products could overflow: rank by sorting instead.
_HUGE = 1e150
# A user whose rated items' scores (± e_u) span less than this gets a single bin.
_FLAT = 1e-290
# The rounding error δ_u is kept below this many bins (c_u is capped accordingly).
_DELTA_BINS = 0.25


@dataclass
class _Items:
    """What every block shares: the items' side of the scaled product, the Gram matrix of the
    squared error, the users' ``R_u`` and the bins per row."""

    columns: np.ndarray  # (k + 2, items): y_j, 1, b_j
    gram: np.ndarray | None  # (k + 2, k + 2): [y_j, 1, b_j]ᵀ [y_j, 1, b_j]; None: overflows
    sizes: np.ndarray  # R_u of every user row
    bins: int


def ranks_and_squared_error(
    model: FactorModel, pair_users: np.ndarray, pair_items: np.ndarray, users: np.ndarray
) -> tuple[np.ndarray, float]:
    """Rank of each (user row, item row) pair and the squared error of the implicit preference.

    ``pair_users`` is sorted (every pair of a user together), ``users`` its distinct values in
    order. Returns each pair's rank (1 = the user's highest score; ties count only the items
    scored strictly higher) and ``Σ (score - preference)²`` over every item of each of
    ``users`` (preference 1 for the pairs, 0 otherwise).
    """
    n_items = len(model.item_factors)
    ranks = np.empty(len(pair_users), dtype=np.int64)
    own = model.score(pair_users, pair_items)
    bounds = _error_bounds(model)
    step = max(1, _BLOCK_VALUES // max(1, n_items))
    blocks = [users[start : start + step] for start in range(0, len(users), step)]

    def block(block_users: np.ndarray) -> tuple[float, float]:
        """Ranks of one block of users' pairs (written in place); its squared-error sums."""
        lo = np.searchsorted(pair_users, block_users[0], side="left")
        hi = np.searchsorted(pair_users, block_users[-1], side="right")
        local = np.searchsorted(block_users, pair_users[lo:hi])
        mine, out = own[lo:hi], ranks[lo:hi]
        ranked = False
        if items is not None and bounds is not None:
            ranked = _bounded_block(
                model, items, block_users, local, mine, pair_items[lo:hi], bounds, out
            )
        if ranked and items is not None:
            total = _squares(model, items, block_users)
        else:
            total = _sorted_block(model, block_users, local, mine, out)
        return total, float(np.sum((mine - 1.0) ** 2 - mine**2))

    # Each block's product on one BLAS thread; blocks on a few threads. Their sums are added in
    # block order, so the result does not depend on the threads.
    workers = min(len(blocks), os.cpu_count() or 1, _THREADS)
    with one_blas_thread():  # numpy's OpenBLAS, inspected once per process
        items = _items(model) if bounds is not None else None
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="shipyard-ranking") as pool:
                sums = list(pool.map(block, blocks))
        else:
            sums = [block(b) for b in blocks]
    squared = 0.0
    for total, correction in sums:
        squared += total
        squared += correction
    return ranks, squared


def _sizes(model: FactorModel) -> np.ndarray | None:
    """``R_u`` of each user row (see the module docstring), or None to rank by sorting."""
    user_f, item_f = model.user_factors, model.item_factors
    values = (user_f, item_f, model.user_bias, model.item_bias, np.array([model.intercept]))
    if not all(np.isfinite(v).all() for v in values) or item_f.shape[0] == 0:
        return None
    # Σ|x_i·y_i| <= |x|_1 · max|y|: sums of absolute values (squares could underflow).
    user_l1 = np.sum(np.abs(user_f), axis=1)
    item_max = float(np.max(np.abs(item_f))) if item_f.size else 0.0
    item_bias = float(np.max(np.abs(model.item_bias))) if len(model.item_bias) else 0.0
    size = user_l1 * item_max + abs(model.intercept) + np.abs(model.user_bias) + item_bias
    if not np.all(size < _HUGE):
        return None
    return size  # type: ignore[no-any-return]


def _error_bounds(model: FactorModel) -> np.ndarray | None:
    """``e_u`` of each user row (see the module docstring), or None to rank by sorting."""
    size = _sizes(model)
    if size is None:
        return None
    return 8.0 * (model.num_factors + 3) * _UNIT * size + _TINY  # type: ignore[no-any-return]


def _items(model: FactorModel) -> _Items | None:
    """The shared item side of every block (None: rank by sorting)."""
    sizes = _sizes(model)
    if sizes is None:
        return None
    item_f, k = model.item_factors, model.num_factors
    columns = np.empty((k + 2, len(item_f)))
    columns[:k] = item_f.T
    columns[k] = 1.0
    columns[k + 1] = model.item_bias
    with np.errstate(over="ignore", invalid="ignore"):
        gram = columns @ columns.T
    finite = bool(np.isfinite(gram).all())
    return _Items(columns, gram if finite else None, sizes, _bins(len(item_f)))


def _squares(model: FactorModel, items: _Items, block_users: np.ndarray) -> float:
    """``Σ score²`` over every item of the block's users, from the items' Gram matrix."""
    if items.gram is None:  # huge item factors: square the scores themselves
        return float(np.sum(model.score_block(block_users) ** 2))
    k = model.num_factors
    z = np.empty((len(block_users), k + 2))
    z[:, :k] = model.user_factors[block_users]
    z[:, k] = model.intercept + model.user_bias[block_users]
    z[:, k + 1] = 1.0
    return float(np.einsum("ij,ij->", z @ items.gram, z))


def _bounded_block(
    model: FactorModel,
    items: _Items,
    block_users: np.ndarray,
    local: np.ndarray,
    own: np.ndarray,
    own_items: np.ndarray,
    bounds: np.ndarray,
    out: np.ndarray,
) -> bool:
    """Ranks of one block's pairs into ``out`` from scaled scores and bins (``bounds``:
    ``e_u`` of every user row). False when a rated item fell outside its own range or a range
    spans more than two bins (then sort instead)."""
    n_items, rows, k = len(model.item_factors), len(block_users), model.num_factors
    bins = items.bins
    eps = bounds[block_users]
    size = items.sizes[block_users]
    # Each row's rated range (± e_u); ``local`` is sorted and holds every row of the block.
    firsts = np.flatnonzero(np.diff(local, prepend=-1))
    lo = np.minimum.reduceat(own, firsts) - eps
    hi = np.maximum.reduceat(own, firsts) + eps
    # c_u: the range onto bins 2 … B-2, or less where the rounding error would exceed a
    # quarter bin (gamma·(4·c·R_u + B + 4) <= _DELTA_BINS, see δ_u below); 0 for a flat row.
    gamma = 2.0 * (k + 6) * _UNIT
    width = hi - lo
    with np.errstate(divide="ignore", over="ignore"):
        cap = (_DELTA_BINS - gamma * (bins + 4.0)) / (gamma * 4.0 * size)
        scale = np.minimum((bins - 4.0) / width, cap)
    scale[(width <= _FLAT) | (size <= _FLAT)] = 0.0
    shift = bins / 2.0 - scale * ((lo + hi) / 2.0)
    a = model.intercept + model.user_bias[block_users]
    users = np.empty((rows, k + 2))
    users[:, :k] = model.user_factors[block_users] * scale[:, None]
    users[:, k] = scale * a + shift
    users[:, k + 1] = scale
    if not np.isfinite(users).all():
        return False
    # δ_u: the bound of a dot product of k + 2 terms whose inputs were rounded at most twice
    # (gamma is twice g(k + 5)), over Σ|terms| <= 2·c·R_u + |c·a_u| + |d_u| (the constant term
    # c·a_u + d_u is itself a rounded sum); plus the float64 rounding of the thresholds below
    # and the underflows' absolute errors.
    magnitude = 2.0 * scale * size + np.abs(scale * a) + np.abs(shift)
    delta = gamma * magnitude + 8.0 * _UNIT * (magnitude + bins) + 1e-280
    v = users @ items.columns  # (rows, items): c_u · score + d_u, within δ_u
    np.clip(v, 0.0, bins - 1.0, out=v)
    keys = v.astype(np.intp)  # the bin, then the row's offset: a key per (row, bin)
    keys += (np.arange(rows, dtype=np.intp) * bins)[:, None]
    keys = keys.reshape(-1)
    counts = np.bincount(keys, minlength=rows * bins)
    upto = np.cumsum(counts, out=counts)  # items of the block whose key is at most K

    c, d, e, dl = scale[local], shift[local], eps[local], delta[local]
    high = c * (own + e) + d + dl  # v above: the exact score is above o
    low = c * (own - e) + d - dl  # v below: the exact score is not above o
    base = local.astype(np.intp) * bins
    k_lo = base + np.floor(low).astype(np.intp)
    k_hi = base + np.floor(high).astype(np.intp)
    own_flat = local * n_items + own_items
    own_keys = keys[own_flat]
    if (
        np.any(low < 1.0)
        or np.any(high >= bins - 1.0)
        or np.any(k_hi - k_lo > 1)
        or not np.all((own_keys >= k_lo) & (own_keys <= k_hi))
    ):
        return False
    # Items in bins above k_hi are above the rated item; those in [k_lo, k_hi] are checked.
    ranks = 1 + (local.astype(np.int64) + 1) * n_items - upto[k_hi]
    spans = upto[k_hi] - upto[k_lo - 1]  # items in bins k_lo … k_hi (k_lo > 0: low >= 1)
    check = np.flatnonzero(spans > 1)  # a range holding more than the rated item itself
    if len(check):
        c_lo, c_hi = k_lo[check], k_hi[check]
        marked = np.zeros(rows * bins, dtype=bool)
        marked[c_lo] = True
        marked[c_hi] = True
        candidates = np.flatnonzero(marked.take(keys))  # row * n_items + item, in (row, item) order
        by_key = np.argsort(keys[candidates], kind="stable")
        candidates = candidates[by_key]
        first = np.searchsorted(keys[candidates], c_lo, side="left")
        lengths = spans[check]
        which = np.repeat(np.arange(len(check)), lengths)
        offsets = np.arange(len(which)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = candidates[first[which] + offsets]
        # A neighbour's v above H (below L) puts it above (not above) the rated item; only
        # the ones in between get an exact score.
        value = v.reshape(-1)[flat]
        above = value > high[check][which]
        unsure = np.flatnonzero(
            ~above & (value >= low[check][which]) & (flat != own_flat[check][which])
        )
        if len(unsure):
            exact = model.score(block_users[flat[unsure] // n_items], flat[unsure] % n_items)
            above[unsure] = exact > own[check][which[unsure]]
        ranks[check] += np.bincount(which, weights=above, minlength=len(check)).astype(np.int64)
    out[:] = ranks
    return True


def _bins(n_items: int) -> int:
    """Bins per row: the power of two nearest above 1.6 per item, within [64, 65536]."""
    return int(min(1 << 16, max(64, 1 << math.ceil(math.log2(max(1.6 * n_items, 1.0))))))


def _sorted_block(
    model: FactorModel, block_users: np.ndarray, local: np.ndarray, own: np.ndarray, out: np.ndarray
) -> float:
    """Ranks of one block's pairs into ``out`` by sorting each user's exact scores (n log n per
    user, then a binary search per pair); the block's ``Σ score²``."""
    n_items = len(model.item_factors)
    scores = model.score_block(block_users)
    total = float(np.sum(scores**2))
    scores.sort(axis=1)
    bounds = np.searchsorted(local, np.arange(len(block_users) + 1))
    for row in range(len(block_users)):
        first, last = bounds[row], bounds[row + 1]
        at_most = np.searchsorted(scores[row], own[first:last], side="right")
        out[first:last] = 1 + n_items - at_most
    return total
