"""MATRIX_FACTORIZATION's fast paths give what the general ones give: the id lookup table
equals Arrow's ``index_in``, scoring pairs without NULLs equals the masked path, and
implicit training reports the library's own losses, early stop included.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import shipyard.registry.factorization as factorization
from shipyard.registry.factorization import FactorModel, index_of, predict_pairs
from shipyard.sql.recommend import MatrixFactorizationOptions, _implicit_als

_BIG = 2**63 - 1


@pytest.mark.parametrize(
    ("ids", "values"),
    [
        # compact int64 ids: the table; values below, above and far outside its range
        (pa.array([5, 3, 9]), pa.array([3, None, 9, 100, -_BIG - 1, _BIG, 5, 4, 2])),
        (
            pa.array([-4, 0, 7], pa.int32()),
            pa.array([7, -4, None, 2**31 - 1, -(2**31)], pa.int32()),
        ),
        (pa.array([7, 0], pa.uint8()), pa.array([7, 0, 255, None, 1], pa.uint8())),
        (pa.array([0]), pa.array([0, 0, 1, -1])),  # a single id
        (pa.array([2, 1]), pa.array([], pa.int64())),  # no values
        (pa.array([1, 2]), pa.nulls(3, pa.int64())),  # only NULLs
        # ids too spread for a table, strings, uint64, other types: Arrow's lookup
        (pa.array([0, 2**40]), pa.array([0, 2**40, 1])),
        (pa.array(["b", "a"]), pa.array(["a", None, "c", "b"])),
        (pa.array([3, 2**64 - 1], pa.uint64()), pa.array([2**64 - 1, 3, 4], pa.uint64())),
        (pa.array([1, 2]), pa.array([1, 2, 3], pa.int32())),  # another type than the ids'
    ],
)
def test_index_of_equals_arrows_index_in(ids: pa.Array, values: pa.Array) -> None:
    found = index_of(values, ids)
    assert found.type == pa.int32()
    assert found.equals(pc.index_in(values, value_set=ids))
    chunked = pa.chunked_array([values.slice(0, 2), values.slice(2)], type=values.type)
    assert index_of(chunked, ids).equals(found)


def test_index_of_a_large_shuffled_id_set() -> None:
    rng = np.random.default_rng(2)
    ids = pa.array(rng.permutation(50_000) + 1000)  # 1000 … 50,999 in any order
    values = pa.array(rng.integers(0, 52_000, 200_000), mask=rng.random(200_000) < 0.01)
    assert index_of(values, ids).equals(pc.index_in(values, value_set=ids))


def _model() -> FactorModel:
    rng = np.random.default_rng(3)
    return FactorModel(
        feedback_type="EXPLICIT",
        user_ids=pa.array(np.arange(40)),
        item_ids=pa.array(np.arange(30)),
        user_factors=rng.normal(size=(40, 4)),
        item_factors=rng.normal(size=(30, 4)),
        user_bias=rng.normal(size=40),
        item_bias=rng.normal(size=30),
        intercept=2.5,
    )


def test_pairs_without_nulls_score_as_the_masked_path(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    rng = np.random.default_rng(4)
    users = pa.array(rng.integers(0, 40, 5000), pa.int32())
    items = pa.array(rng.integers(0, 30, 5000), pa.int32())
    fast = predict_pairs(model, users, items)
    assert fast.null_count == 0
    assert np.array_equal(fast.to_numpy(), model.score(users.to_numpy(), items.to_numpy()))
    # One NULL user takes the masked path: the other pairs keep their bits.
    holed = pa.array(users.to_numpy(), mask=np.arange(5000) == 17)
    masked = predict_pairs(model, holed, items)
    assert masked.null_count == 1 and not masked[17].is_valid
    keep = np.arange(5000) != 17
    assert np.array_equal(masked.to_numpy(zero_copy_only=False)[keep], fast.to_numpy()[keep])
    # Chunked index arrays (as a table's columns are) take the fast path too.
    chunked = predict_pairs(model, pa.chunked_array([users]), pa.chunked_array([items]))
    assert chunked.equals(fast)
    monkeypatch.setattr(factorization, "CHUNK_PAIRS", 7)  # chunking does not change a bit
    assert predict_pairs(model, holed, items).equals(masked)


@pytest.mark.parametrize("sweeps", [1, 2, 5])
@pytest.mark.parametrize("early_stop", [False, True])
def test_implicit_losses_and_early_stop_are_the_librarys(early_stop: bool, sweeps: int) -> None:
    """min_rel_progress 1.0: with early_stop the second sweep stalls, so training stops after
    it with its factors (of 5 sweeps; of 2, it is the last one anyway)."""
    pytest.importorskip("implicit")
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(6)
    users, items = rng.integers(0, 60, 1200), rng.integers(0, 35, 1200)
    ratings = rng.integers(1, 4, 1200).astype(np.float64)
    options = MatrixFactorizationOptions(
        feedback_type="IMPLICIT",
        max_iterations=sweeps,
        early_stop=early_stop,
        min_rel_progress=1.0,
        l2_reg=0.5,
        wals_alpha=10.0,
    )
    progress: list[float] = []
    model, info, _ = _implicit_als(
        users, items, ratings, (60, 35), options, 3, lambda f, m: progress.append(f)
    )
    expected_sweeps = min(sweeps, 2) if early_stop else sweeps
    assert [row["iteration"] for row in info] == list(range(expected_sweeps))
    assert progress == [(s + 1) / sweeps for s in range(expected_sweeps)]
    summed = sp.csr_matrix((ratings, (users, items)), shape=(60, 35))
    summed.sum_duplicates()
    confidence = summed.astype(np.float32)
    confidence.data = (1.0 + 10.0 * summed.data).astype(np.float32)
    losses: list[float] = []
    with threadpool_limits(1, "blas"):
        reference = AlternatingLeastSquares(
            factors=3, regularization=0.5, alpha=1.0, iterations=expected_sweeps,
            calculate_training_loss=True, random_state=20240101,
        )  # fmt: skip
        reference.fit(confidence, show_progress=False, callback=lambda i, e, v: losses.append(v))
    assert [row["loss"] for row in info] == [float(v) for v in losses]
    assert np.array_equal(model.user_factors, np.asarray(reference.user_factors, np.float64))
    assert np.array_equal(model.item_factors, np.asarray(reference.item_factors, np.float64))
