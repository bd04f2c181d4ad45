"""FeaturePreprocessor.matrix_blocks: the model matrix a block of rows at a time, with the
bits of transform, whatever the input's chunks and the blocks' bounds."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from shipyard.errors import InvalidArgument
from shipyard.registry.preprocessing import FeaturePreprocessor

ROWS = 1000


def _table() -> pa.Table:
    rng = np.random.default_rng(3)
    a = rng.normal(5, 2, ROWS)
    a[::37] = np.nan  # imputed
    b = pa.array(rng.integers(0, 9, ROWS), mask=np.arange(ROWS) % 11 == 0)  # NULLs
    return pa.table({"a": a, "b": b, "c": rng.normal(0, 1, ROWS)})


@pytest.mark.parametrize("chunk", [1, 7, 250, ROWS])
@pytest.mark.parametrize("bounds", [[0, ROWS], [0, 1, 500, 999, ROWS], [0, 333, 666, ROWS]])
def test_blocks_are_the_matrix_rows(chunk: int, bounds: list[int]) -> None:
    table = _table()
    pre = FeaturePreprocessor.fit(table, ["a", "b", "c"], standardize=True)
    whole = pre.transform(table, dtype=np.float64, order="F")  # written column by column
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=chunk))
    blocks = pre.matrix_blocks(chunked, bounds)
    assert blocks is not None
    seen = []
    for lo, hi, rows in blocks:
        assert rows.flags.c_contiguous and rows.dtype == np.float64
        assert np.array_equal(rows, whole[lo:hi])
        seen.append((lo, hi))
    assert seen == list(itertools.pairwise(bounds))


def test_a_categorical_feature_gives_none() -> None:
    table = _table().append_column("s", pa.array(["x", "y"] * (ROWS // 2)))
    pre = FeaturePreprocessor.fit(table, ["a", "s"], standardize=True)
    assert pre.matrix_blocks(table, [0, ROWS]) is None


@pytest.mark.parametrize("bounds", [[], [0], [1, ROWS], [0, 10], [0, 500, 500, ROWS]])
def test_bounds_that_do_not_cover_the_rows_are_refused(bounds: list[int]) -> None:
    table = _table()
    pre = FeaturePreprocessor.fit(table, ["a", "c"], standardize=True)
    with pytest.raises(InvalidArgument, match="bounds must rise strictly"):
        pre.matrix_blocks(table, bounds)
