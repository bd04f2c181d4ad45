"""Numeric input columns as NumPy, chunk by chunk, and their training statistics.

Helpers of :mod:`shipyard.registry.preprocessing`. Arrow tables from DuckDB arrive in several
chunks (about 9 per million rows); nothing here combines them into one array except where a
statistic must see one contiguous array to give the same bits whatever the chunking (the mean and
the standard deviation: Arrow sums each chunk on its own, so a chunked sum rounds differently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "HISTOGRAM_BUCKETS",
    "NumericSource",
    "bucket_counts",
    "finite_or_none",
    "numeric_source",
    "numeric_stats",
    "one_array",
]

_TIMESTAMP_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_MEDIAN_SAMPLE = 20_000
_HISTOGRAM_SAMPLE = 10_000
_BUCKET_BLOCK = 16_384  # bucket_counts' values per block: 2 x 128 KiB of scratch, in L2
#: Equal-width buckets of a numeric column's training histogram (TFDV's default
#: ``num_histogram_buckets``): ML.VALIDATE_DATA_SKEW's baseline.
HISTOGRAM_BUCKETS = 10


def one_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.Array):
        return col
    if col.num_chunks == 1:
        return col.chunk(0)
    return col.combine_chunks()


def finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class NumericSource:
    """A numeric or timestamp column decoded to primitive Arrow numbers, chunks kept as they are.

    ``data`` holds integers or floats (dictionaries decoded, decimals as float64, timestamps as
    int64 in their unit, an all-NULL column as float64). :meth:`values` turns one chunk into
    NumPy exactly as the whole column would turn: NULL → NaN, integers become float64 in every
    chunk when any chunk has a NULL, timestamps become Unix seconds.
    """

    data: pa.ChunkedArray
    divisor: float | None  # timestamps: units per second
    as_float: bool  # integer chunks become float64: the column has a NULL somewhere
    nonfinite_possible: bool  # a float column: a chunk without NULLs can still hold NaN/±inf

    def values(self, arr: pa.Array) -> np.ndarray:
        """A chunk of ``data`` as a NumPy vector; zero-copy for a primitive chunk without NULLs."""
        raw = arr.to_numpy(zero_copy_only=False) if arr.null_count else arr.to_numpy()
        if self.divisor is not None:
            return raw / self.divisor  # type: ignore[no-any-return]
        if self.as_float and raw.dtype.kind != "f":
            return raw.astype(np.float64)
        return raw  # type: ignore[no-any-return]

    def chunk_values(self) -> list[np.ndarray]:
        """Every non-empty chunk through :meth:`values`."""
        return [self.values(c) for c in self.data.chunks if len(c)]


def numeric_source(col: pa.ChunkedArray | pa.Array, kind: str) -> NumericSource:
    """The :class:`NumericSource` of a numeric or timestamp column (``kind``)."""
    data = col if isinstance(col, pa.ChunkedArray) else pa.chunked_array([col])
    if pa.types.is_null(data.type):  # all NULL (e.g. SELECT NULL AS ts): no unit to read
        data, kind = data.cast(pa.float64()), "numeric"
    if pa.types.is_dictionary(data.type):
        data = data.cast(data.type.value_type)
    divisor = None
    if kind == "timestamp":
        divisor = _TIMESTAMP_DIVISOR[data.type.unit]
        data = data.cast(pa.int64())
    elif pa.types.is_decimal(data.type):
        data = data.cast(pa.float64())
    return NumericSource(
        data=data,
        divisor=divisor,
        as_float=data.null_count > 0,
        nonfinite_possible=pa.types.is_floating(data.type),
    )


def bucket_counts(values: np.ndarray, low: float, high: float, buckets: int) -> np.ndarray:
    """How many of ``values`` (finite, within [low, high]) fall in each of ``buckets``
    equal-width buckets from ``low`` to ``high``; ``high`` itself counts in the last bucket, as in
    TFDV's histograms. ``low == high``: one bucket holding every value (a point mass).

    Works in blocks of :data:`_BUCKET_BLOCK` values through two reused scratch vectors that stay
    in cache: whole-column temporaries cost more in fresh pages than the arithmetic (300k values:
    2.8 ms → 0.6 ms).
    """
    if not high > low:
        return np.array([len(values)], dtype=np.int64)
    scale = buckets / (high - low)
    size = min(len(values), _BUCKET_BLOCK)
    scaled, index = np.empty(size), np.empty(size, dtype=np.intp)
    # the maximum lands in bucket ``buckets``: folded into the last one below, which is cheaper
    # than clipping every value
    counts = np.zeros(buckets + 1, dtype=np.int64)
    for start in range(0, len(values), _BUCKET_BLOCK):
        block = values[start : start + _BUCKET_BLOCK]
        n = len(block)
        np.subtract(block, low, out=scaled[:n], dtype=np.float64)
        scaled[:n] *= scale
        np.copyto(index[:n], scaled[:n], casting="unsafe")  # truncation: floor of x >= 0
        counts += np.bincount(index[:n], minlength=buckets + 1)[: buckets + 1]
    counts[buckets - 1] += counts[buckets]
    return counts[:buckets]


def numeric_stats(source: NumericSource, n_rows: int) -> dict[str, Any]:
    """min, max, mean, median (sampled), stddev, null count and histogram; NaN and ±inf count
    as NULL.

    The mean and stddev are Arrow's over one contiguous array of the finite values, whatever
    the chunking (a chunked Arrow sum rounds differently); the median is ``np.median`` of every
    ``count // 20,000``-th finite value; min and max are NumPy's. ``histogram``: 10,000 to
    20,000 values of that sample (every value of a column under 20,000 rows) counted in
    :data:`HISTOGRAM_BUCKETS` equal-width buckets from min to max (one bucket when min == max),
    ML.VALIDATE_DATA_SKEW's training distribution, for a pass over ~10,000 values.
    """
    if source.data.null_count:
        # NULLs are NaN by now: keep the finite values of each chunk, then join them.
        chunks = source.chunk_values()
        return _present_stats(
            np.concatenate([c[np.isfinite(c)] for c in chunks]) if chunks else np.empty(0),
            n_rows,
        )
    values = source.values(one_array(source.data))
    if len(values) == 0:
        return {"null_count": n_rows, "count": 0}
    as_arrow = pa.array(values)  # zero-copy; Arrow's single-pass kernels are the fastest here
    mean = float(pc.mean(as_arrow).as_py())
    # NaN and ±inf carry through the mean's sum, so a finite mean means there are none.
    if values.dtype.kind == "f" and not math.isfinite(mean):
        return _present_stats(values[np.isfinite(values)], n_rows)
    return _stats(values, as_arrow, mean, n_rows)


def _present_stats(present: np.ndarray, n_rows: int) -> dict[str, Any]:
    """:func:`numeric_stats` from the finite values of a column that held NaN, ±inf or NULL."""
    null_count = n_rows - len(present)
    if len(present) == 0:
        return {"null_count": null_count, "count": 0}
    as_arrow = pa.array(present)
    return _stats(present, as_arrow, float(pc.mean(as_arrow).as_py()), n_rows)


def _stats(present: np.ndarray, as_arrow: pa.Array, mean: float, n_rows: int) -> dict[str, Any]:
    """The statistics of the finite values ``present`` (``as_arrow``: the same, zero-copy)."""
    std = float(pc.stddev(as_arrow, ddof=1).as_py()) if len(present) > 1 else 0.0
    step = max(1, len(present) // _MEDIAN_SAMPLE)
    # The strided sample gathered once into a contiguous copy, which np.median may then reorder
    # in place (it would copy it anyway); the histogram does not care about the order.
    sample = np.ascontiguousarray(present[::step]) if step > 1 else present.copy()
    low, high = np.min(present), np.max(present)
    # 10,000-20,000 of the sampled values (all of them under 20,000 rows): 10 bucket shares
    # to within ~1%, at half the cost of the whole sample
    every = max(1, len(sample) // _HISTOGRAM_SAMPLE)
    histogram = bucket_counts(sample[::every], float(low), float(high), HISTOGRAM_BUCKETS)
    # approximate on a strided sample: fast, stable
    median = float(np.median(sample, overwrite_input=True))
    return {
        "min": finite_or_none(low),
        "max": finite_or_none(high),
        "mean": finite_or_none(mean),
        "median": finite_or_none(median),
        "stddev": finite_or_none(std),
        "null_count": n_rows - len(present),
        "count": len(present),
        "histogram": histogram.tolist(),
    }
