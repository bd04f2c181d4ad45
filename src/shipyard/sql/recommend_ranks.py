"""Ranks of rated items among all of a user's item scores (the implicit ranking metrics).

``rank(u, i) = 1 + #{items j : score(u, j) > score(u, i)}``, with ``score`` the model's exact
score (:class:`~shipyard.registry.factorization.FactorModel`, the bits ML.RECOMMEND returns).
Sorting each user's exact scores costs ``n log n`` comparisons of doubles per user, on top of
scoring every (user, item) pair factor by factor. :func:`ranks_and_squared_error` gets the very
same integers with less work, a block of users at a time:

1. **Approximate scores** from one BLAS product per block (``X Yᵀ`` plus the biases). Both the
   exact scores and these are within ``g(k+3) · R_u`` of the real number, whatever the order
   of the sums and with or without FMA (``g(m) = m·u / (1 - m·u)``, ``u = 2⁻⁵³``, ``k``
   factors, ``R_u`` a bound of ``Σ_i |x_ui·y_ji| + |intercept| + |b_u| + |b_j|`` over the
   items: the classic bound of a floating-point dot product and three additions), so they differ
   by at most ``2·g(k+3)·R_u``; ``ε_u`` is four times that. (``R_u`` is computed as
   ``|x_u|_1 · max |Y| + …``, an upper bound of ``Σ_i |x_ui·y_ji|`` + … that no underflow of
   squares can shrink.)
2. **Bins**: each row is mapped to about 1.6 bins per item by ``trunc((s - lo) · scale)``, a
   monotone function of ``s`` (each floating-point step is), and the bins are counted
   (``np.bincount``, then a running sum: how many items lie in the bins up to each one).
3. **Counting**: for a rated item with exact score ``o``, an item whose bin is above the bin of
   ``o + ε_u`` has an approximate score above ``o + ε_u``, so an exact score above ``o``; one
   below the bin of ``o - ε_u`` is not above ``o``. Now and then a neighbour shares the rated
   item's bin: the same comparisons on the scaled values (before the truncation to a bin)
   settle it, and only a neighbour within ``ε_u`` of ``o`` (a tie, or nearly) gets its exact
   score compared with ``o``.

A block is ranked by sorting its exact scores instead if a rated item falls outside its own
range (which would mean the bound failed: it does not) or a range spans more than two bins.
Models whose factors are not finite, or so large that a product could overflow, are ranked by
sorting too (:func:`_sorted_block`).

The squared error of ML.EVALUATE's ``mean_squared_error`` (every pair of the evaluated users
against the 0/1 preference) is summed from the same approximate scores, so it can differ from
the sum of the exact scores' squares by a few units in the last place of the total.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

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
        total = None
        if bounds is not None:
            total = _bounded_block(
                model, block_users, local, mine, pair_items[lo:hi], bounds[block_users], out
            )
        if total is None:
            total = _sorted_block(model, block_users, local, mine, out)
        return total, float(np.sum((mine - 1.0) ** 2 - mine**2))

    from threadpoolctl import threadpool_limits

    # Each block's product on one BLAS thread; blocks on a few threads. Their sums are added in
    # block order, so the result does not depend on the threads.
    workers = min(len(blocks), os.cpu_count() or 1, _THREADS)
    with threadpool_limits(1, "blas"):
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


def _error_bounds(model: FactorModel) -> np.ndarray | None:
    """``ε_u`` of each user row (see the module docstring), or None to rank by sorting."""
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
    return 8.0 * (model.num_factors + 3) * _UNIT * size + _TINY  # type: ignore[no-any-return]


def _bounded_block(
    model: FactorModel,
    block_users: np.ndarray,
    local: np.ndarray,
    own: np.ndarray,
    own_items: np.ndarray,
    bounds: np.ndarray,
    out: np.ndarray,
) -> float | None:
    """Ranks of one block's pairs into ``out`` from approximate scores and bins (``bounds``:
    ``ε`` of each row of the block); the block's ``Σ score²``. None when a rated item fell
    outside its own range or a range spans more than two bins (then sort instead)."""
    n_items, rows = len(model.item_factors), len(block_users)
    bins = _bins(n_items)
    approx = model.user_factors[block_users] @ model.item_factors.T
    if model.intercept != 0.0 or np.any(model.user_bias[block_users]) or np.any(model.item_bias):
        approx += (model.intercept + model.user_bias[block_users])[:, None]
        approx += model.item_bias
    total = float(np.vdot(approx, approx))
    lo = approx.min(axis=1)
    width = approx.max(axis=1) - lo
    # A row whose scores (nearly) all agree gets one bin: its items are all compared exactly.
    scale = np.zeros(rows)
    np.divide(bins - 1.0, width, out=scale, where=width > 1e-290)
    approx -= lo[:, None]
    approx *= scale[:, None]
    keys = approx.astype(np.int64)  # the bin, then the row's offset: a key per (row, bin)
    keys += (np.arange(rows, dtype=np.int64) * bins)[:, None]
    keys = keys.reshape(-1)
    counts = np.bincount(keys, minlength=rows * bins)
    upto = np.cumsum(counts)  # items of the block whose key is at most K

    def scaled(threshold: np.ndarray) -> np.ndarray:
        # The very operations applied to the rows above: the same monotone function.
        return (threshold - lo[local]) * scale[local]  # type: ignore[no-any-return]

    def key_of(value: np.ndarray) -> np.ndarray:
        return base + np.clip(value, 0.0, bins - 1.0).astype(np.int64)  # type: ignore[no-any-return]

    eps = bounds[local]
    base = local.astype(np.int64) * bins
    low, high = scaled(own - eps), scaled(own + eps)
    k_lo, k_hi = key_of(low), key_of(high)
    own_flat = local * n_items + own_items
    own_keys = keys[own_flat]
    if np.any(k_hi - k_lo > 1) or not np.all((own_keys >= k_lo) & (own_keys <= k_hi)):
        return None
    # Items in bins above k_hi are above the rated item; those in [k_lo, k_hi] are checked.
    ranks = 1 + (local.astype(np.int64) + 1) * n_items - upto[k_hi]
    spans = upto[k_hi] - upto[k_lo] + counts[k_lo]
    check = np.flatnonzero(spans > 1)  # a range holding more than the rated item itself
    if len(check):
        c_lo, c_hi = k_lo[check], k_hi[check]
        marked = np.zeros(rows * bins, dtype=bool)
        marked[c_lo] = True
        marked[c_hi] = True
        candidates = np.flatnonzero(marked[keys])  # row * n_items + item, in (row, item) order
        by_key = np.argsort(keys[candidates], kind="stable")
        candidates = candidates[by_key]
        first = np.searchsorted(keys[candidates], c_lo, side="left")
        lengths = spans[check]
        which = np.repeat(np.arange(len(check)), lengths)
        offsets = np.arange(len(which)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = candidates[first[which] + offsets]
        # A neighbour's scaled approximate score above (below) the scaled o + ε (o - ε) puts
        # it above (not above) the rated item; only the ones in between get an exact score.
        value = approx.reshape(-1)[flat]
        above = value > high[check][which]
        unsure = np.flatnonzero(
            ~above & (value >= low[check][which]) & (flat != own_flat[check][which])
        )
        if len(unsure):
            exact = model.score(block_users[flat[unsure] // n_items], flat[unsure] % n_items)
            above[unsure] = exact > own[check][which[unsure]]
        ranks[check] += np.bincount(which, weights=above, minlength=len(check)).astype(np.int64)
    out[:] = ranks
    return total


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
