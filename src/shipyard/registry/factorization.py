"""Matrix factorization models: the factors, the id mappings, their files and their scores.

A :class:`FactorModel` holds what a MATRIX_FACTORIZATION model learned: the user and item ids
seen in training (an Arrow array each, in the ids' own type: strings, integers, …; row ``k`` of
a factor matrix belongs to id ``k``), the user and item factor matrices, and for explicit
feedback the user and item biases and the global mean (the intercepts).

A rating is predicted as ``intercept + user_bias + item_bias + user_factors · item_factors``
(explicit) or ``user_factors · item_factors`` (implicit: a relative confidence, biases and
intercept 0). A user or item that training never saw has no factors: its prediction is NULL.

The ``factorization`` flavor stores a model as plain files, none of which can run code when
read: ``users.parquet`` / ``items.parquet`` (columns ``id`` and ``bias``),
``user_factors.npy`` / ``item_factors.npy`` (float64, read with ``allow_pickle=False``) and the
intercept and feedback type in the flavor's manifest entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import ArtifactCorrupted, InvalidArgument

__all__ = [
    "FLAVOR",
    "FactorModel",
    "index_of",
    "load_factor_model",
    "predict_pairs",
    "save_factor_model",
]

FLAVOR = "factorization"
_FILES = ("users.parquet", "items.parquet", "user_factors.npy", "item_factors.npy")
#: Scores are computed this many (user, item) pairs at a time, to bound temporary memory.
CHUNK_PAIRS = 1_000_000
# Block scores are built this many values at a time (fits a core's L2 cache).
_SLICE_VALUES = 32_768
# Integer ids are looked up in a table when their range is at most this many times their count
# (or below _DENSE_SPAN_MIN), and at most _DENSE_SPAN_MAX entries (4 bytes each).
_DENSE_SPAN_PER_ID = 8
_DENSE_SPAN_MIN = 1 << 16
_DENSE_SPAN_MAX = 1 << 26


@dataclass
class FactorModel:
    """The learned state of a matrix factorization model (see the module docstring)."""

    feedback_type: str  # "EXPLICIT" | "IMPLICIT"
    user_ids: pa.Array
    item_ids: pa.Array
    user_factors: np.ndarray  # (users, factors)
    item_factors: np.ndarray  # (items, factors)
    user_bias: np.ndarray  # (users,)
    item_bias: np.ndarray  # (items,)
    intercept: float = 0.0

    @property
    def num_factors(self) -> int:
        return int(self.user_factors.shape[1])

    def user_index(self, values: pa.Array | pa.ChunkedArray, column: str) -> pa.Array:
        """Row of each user id in the factor matrix; NULL for ids training never saw."""
        return _index_in(values, self.user_ids, column)

    def item_index(self, values: pa.Array | pa.ChunkedArray, column: str) -> pa.Array:
        """Row of each item id in the factor matrix; NULL for ids training never saw."""
        return _index_in(values, self.item_ids, column)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for pairs of known (user row, item row), element by element."""
        user_cols, item_cols = self._columns("user"), self._columns("item")
        out = np.empty(len(users))
        spare = np.empty(min(len(users), _SLICE_VALUES))
        for lo in range(0, len(users), _SLICE_VALUES):
            u, i = users[lo : lo + _SLICE_VALUES], items[lo : lo + _SLICE_VALUES]
            part, tmp = out[lo : lo + _SLICE_VALUES], spare[: len(u)]
            # One factor at a time from its contiguous column (cache-resident gathers), in
            # _combine's order: the same bits as every other path.
            np.multiply(user_cols[0].take(u), item_cols[0].take(i), out=part)
            for k in range(1, len(user_cols)):
                np.multiply(user_cols[k].take(u), item_cols[k].take(i), out=tmp)
                part += tmp
            part += self.intercept
            part += self.user_bias.take(u)
            part += self.item_bias.take(i)
        return out

    def score_block(self, users: np.ndarray) -> np.ndarray:
        """(len(users), items): every item's prediction for each user row."""
        return self._outer(
            self.user_factors[users],
            self._columns("item"),
            self.user_bias[users],
            self.item_bias,
            rows_are_users=True,
        )

    def score_items_block(self, items: np.ndarray) -> np.ndarray:
        """(len(items), users): every user's prediction for each item row."""
        return self._outer(
            self.item_factors[items],
            self._columns("user"),
            self.item_bias[items],
            self.user_bias,
            rows_are_users=False,
        )

    def _columns(self, side: str) -> np.ndarray:
        """(factors, ids) of one side, each factor contiguous; built once per loaded model."""
        key = f"_{side}_columns"
        cached = self.__dict__.get(key)
        if cached is None:
            factors = self.item_factors if side == "item" else self.user_factors
            cached = self.__dict__[key] = np.ascontiguousarray(factors.T)
        return cached  # type: ignore[no-any-return]

    def _combine(
        self, user_f: np.ndarray, item_f: np.ndarray, user_b: np.ndarray, item_b: np.ndarray
    ) -> np.ndarray:
        # The same operations in the same order for every pair, whatever the batch (no BLAS,
        # whose kernels round differently at block edges): a pair's score is identical in
        # ML.RECOMMEND, ML.EVALUATE, batch prediction and serving, chunked or not.
        out = user_f[..., 0] * item_f[..., 0]
        for k in range(1, user_f.shape[-1]):
            out = out + user_f[..., k] * item_f[..., k]
        return out + self.intercept + user_b + item_b  # type: ignore[no-any-return]

    def _outer(
        self,
        rows: np.ndarray,
        columns: np.ndarray,
        row_bias: np.ndarray,
        column_bias: np.ndarray,
        *,
        rows_are_users: bool,
    ) -> np.ndarray:
        """:meth:`_combine` of every (row, column) pair — ``rows`` (n, factors) against
        ``columns`` (factors, m) — with the same multiplications and additions in the same
        order, so the same bits; done in place on cache-sized slices, not whole temporaries."""
        n, m = len(rows), columns.shape[1]
        out = np.empty((n, m))
        step = max(1, _SLICE_VALUES // max(m, 1))
        spare = np.empty((min(step, n), m))
        for lo in range(0, n, step):
            part = out[lo : lo + step]
            tmp = spare[: len(part)]
            left = rows[lo : lo + step]
            np.multiply(left[:, 0:1], columns[0], out=part)
            for k in range(1, columns.shape[0]):
                np.multiply(left[:, k : k + 1], columns[k], out=tmp)
                part += tmp
            part += self.intercept
            mine = row_bias[lo : lo + step, None]
            if rows_are_users:  # intercept, then the user's bias, then the item's
                part += mine
                part += column_bias
            else:
                part += column_bias
                part += mine
        return out


def _index_in(values: pa.Array | pa.ChunkedArray, ids: pa.Array, column: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), type=pa.int32())
    if values.type != ids.type:
        # Only within a kind (int32 → int64, large_string → string), as BigQuery coerces: a
        # string is never parsed into a number nor a number printed as a string.
        same_kind = any(
            check(values.type) and check(ids.type)
            for check in (pa.types.is_integer, _is_text, pa.types.is_date, pa.types.is_timestamp)
        )
        try:
            if not same_kind:
                raise pa.ArrowInvalid("different kinds")
            values = values.cast(ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidArgument(
                f"column {column!r} has type {values.type}, but the model was trained on "
                f"{ids.type} ids; cast it to {ids.type}",
                column=column,
                type=str(values.type),
                expected=str(ids.type),
            ) from None
    return index_of(values, ids)


def index_of(values: pa.Array | pa.ChunkedArray, ids: pa.Array) -> pa.Array:
    """``pc.index_in(values, value_set=ids)`` for distinct ``ids`` of the values' type: each
    value's position in ``ids`` (INT32), NULL where the value is NULL or not among them.

    Integer ids that span a compact range (the usual 0…n or 1…n keys) are found through a
    table of positions indexed by ``id - min``: a gather per value instead of a hash probe,
    about three times faster; other ids go to Arrow's hash lookup.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    table = _dense_table(ids) if values.type == ids.type else None
    if table is None:
        return pc.index_in(values, value_set=ids)
    low, positions = table
    valid = None
    if values.null_count:
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        values = pc.fill_null(values, low)
    # (value - low) modulo 2⁶⁴ is below the span exactly for the values in [low, low + span),
    # whatever the value (int64 arithmetic wraps): one comparison finds those outside.
    offset = np.asarray(values.to_numpy(), dtype=np.int64) - np.int64(low)
    np.minimum(offset.view(np.uint64), len(positions) - 1, out=offset.view(np.uint64))
    found = positions.take(offset)  # the table's last entry is -1: values outside its range
    missing = found < 0
    if valid is not None:
        missing |= ~valid
    return pa.array(found, type=pa.int32(), mask=missing if missing.any() else None)


def _dense_table(ids: pa.Array) -> tuple[int, np.ndarray] | None:
    """(smallest id, position of each id - smallest, then -1) for integer ids of a compact
    range that fit in int64; None otherwise."""
    t = ids.type
    if not pa.types.is_integer(t) or t == pa.uint64() or len(ids) == 0 or ids.null_count:
        return None
    numbers = np.asarray(ids.to_numpy(), dtype=np.int64)
    low, high = int(numbers.min()), int(numbers.max())
    span = high - low + 1
    if span > max(_DENSE_SPAN_PER_ID * len(ids), _DENSE_SPAN_MIN) or span > _DENSE_SPAN_MAX:
        return None
    positions = np.full(span + 1, -1, dtype=np.int32)
    positions[numbers - low] = np.arange(len(ids), dtype=np.int32)
    return low, positions


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def predict_pairs(model: FactorModel, users: pa.Array, items: pa.Array) -> pa.Array:
    """FLOAT64 predictions for (user row, item row) index arrays; NULL where either is NULL."""
    if users.null_count == 0 and items.null_count == 0:  # every pair known: no mask, no scatter
        return pa.array(model.score(_numbers(users), _numbers(items)), type=pa.float64())
    known = pc.and_(pc.is_valid(users), pc.is_valid(items))
    known_np = np.asarray(known.to_numpy(zero_copy_only=False), dtype=bool)
    u = np.asarray(pc.fill_null(users, 0).to_numpy(), dtype=np.int64)[known_np]
    i = np.asarray(pc.fill_null(items, 0).to_numpy(), dtype=np.int64)[known_np]
    values = np.zeros(len(known_np))
    where = np.flatnonzero(known_np)
    for start in range(0, len(u), CHUNK_PAIRS):
        rows = where[start : start + CHUNK_PAIRS]
        values[rows] = model.score(u[start : start + CHUNK_PAIRS], i[start : start + CHUNK_PAIRS])
    return pa.array(values, type=pa.float64(), mask=~known_np)


def _numbers(indices: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(indices, pa.ChunkedArray):
        indices = indices.combine_chunks()
    return np.asarray(indices.to_numpy())


# -- the ``factorization`` flavor --------------------------------------------------------------


def save_factor_model(model: Any, folder: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    if not isinstance(model, FactorModel):
        raise InvalidArgument(
            f"the {FLAVOR} flavor stores a FactorModel, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    folder = Path(folder)
    pq.write_table(pa.table({"id": model.user_ids, "bias": model.user_bias}), folder / _FILES[0])
    pq.write_table(pa.table({"id": model.item_ids, "bias": model.item_bias}), folder / _FILES[1])
    np.save(folder / _FILES[2], np.ascontiguousarray(model.user_factors, dtype=np.float64))
    np.save(folder / _FILES[3], np.ascontiguousarray(model.item_factors, dtype=np.float64))
    return {
        "files": list(_FILES),
        "format": "parquet+npy",
        "feedback_type": model.feedback_type,
        "intercept": float(model.intercept),
        "library_version": np.__version__,
    }


def load_factor_model(folder: Path, meta: dict[str, Any]) -> FactorModel:
    import pyarrow.parquet as pq

    folder = Path(folder)
    # The manifest's file list, in _FILES' order (a tuning trial's files are renamed).
    files = list(meta.get("files") or _FILES)
    if len(files) != len(_FILES):
        raise ArtifactCorrupted(
            f"{FLAVOR} model lists {len(files)} files, expected {len(_FILES)}: {list(_FILES)}"
        )
    for name in files:
        if not (folder / name).is_file():
            raise ArtifactCorrupted(
                f"{FLAVOR} model file {name!r} is missing from {str(folder)!r}; the package "
                "must contain the files its manifest lists",
                path=str(folder / name),
            )
    try:
        users = pq.read_table(folder / files[0])
        items = pq.read_table(folder / files[1])
        user_factors = np.load(folder / files[2], allow_pickle=False)
        item_factors = np.load(folder / files[3], allow_pickle=False)
    except Exception as exc:  # damaged Parquet or .npy: several libraries, several errors
        raise ArtifactCorrupted(f"{FLAVOR} model files cannot be read: {exc}") from exc
    if len(users) != len(user_factors) or len(items) != len(item_factors):
        raise ArtifactCorrupted(
            f"{FLAVOR} model files disagree: {len(users)} user ids for {len(user_factors)} user "
            f"factor rows, {len(items)} item ids for {len(item_factors)} item factor rows"
        )
    return FactorModel(
        feedback_type=str(meta.get("feedback_type", "EXPLICIT")),
        user_ids=users.column("id").combine_chunks(),
        item_ids=items.column("id").combine_chunks(),
        user_factors=user_factors,
        item_factors=item_factors,
        user_bias=users.column("bias").to_numpy(),
        item_bias=items.column("bias").to_numpy(),
        intercept=float(meta.get("intercept", 0.0)),
    )
