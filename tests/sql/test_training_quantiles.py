"""training_quantiles selects np.quantile's order statistics without a full sort (radix
selection on the bit patterns): the 1,001 anomaly quantiles of KMEANS, PCA and AUTOENCODER
must stay ``np.quantile``'s bit for bit on any input, skewed, tied or tiny.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import shipyard.sql.clustering as clustering
from shipyard.sql.clustering import _order_statistics, _quantile_ranks, training_quantiles

N = clustering._SELECT_FROM + 7_000  # large enough for the selection


def _reference(values: np.ndarray, count: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.quantile(values, np.linspace(0.0, 1.0, count))


def _ours(values: np.ndarray, count: int = 1001) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inf - inf, as np.quantile warns too
        return training_quantiles(values, count)


def _large_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    chi = rng.chisquare(3, N)
    with_zero = chi.copy()
    with_zero[123] = 0.0
    outlier = rng.random(N)
    outlier[77] = 1e300
    infinite = rng.exponential(size=N)
    infinite[rng.random(N) < 0.001] = np.inf
    return {
        "chi-square": chi,
        "one zero": with_zero,
        "one huge outlier": outlier,
        "a few infinities": infinite,
        "1e-300..1e300": 10.0 ** rng.uniform(-300, 300, N),
        "heavy tail": np.exp(rng.normal(size=N) * 30),
        "subnormals and tiny": rng.random(N) * 1e-310,
        "tiny spread": 1.0 + rng.random(N) * 1e-9,
        "10% zeros": np.where(rng.random(N) < 0.1, 0.0, rng.random(N)),
        "60% zeros": np.where(rng.random(N) < 0.6, 0.0, rng.exponential(size=N)),
        "few distinct": rng.integers(0, 50, N).astype(np.float64),
        "rounded (moderate ties)": np.round(rng.exponential(size=N), 3),
        "constant": np.full(N, 0.75),
        "all zero": np.zeros(N),
        "sorted": np.sort(chi),
        "reversed": np.sort(chi)[::-1].copy(),
        "strided view": np.repeat(chi, 2)[::2],
        # declined by the selection: the sort or np.quantile gives them
        "negative values": rng.normal(size=N),
        "zeros of both signs": np.where(rng.random(N) < 0.5, -0.0, 0.0) + (rng.random(N) > 0.9),
        "NaN": np.where(rng.random(N) < 0.01, np.nan, chi),
    }


LARGE = _large_inputs()


@pytest.mark.parametrize("name", sorted(LARGE))
def test_training_quantiles_equal_np_quantile_bit_for_bit(name: str) -> None:
    values = LARGE[name]
    before = values.tobytes()
    for count in (1001, 101, 2):
        assert _ours(values, count).tobytes() == _reference(values, count).tobytes()
    assert values.tobytes() == before  # the caller's array is neither sorted nor changed


def test_training_quantiles_select_on_continuous_values() -> None:
    """The realistic input (reconstruction errors, distances) takes the selection, not a sort."""
    values = LARGE["chi-square"]
    assert not clustering._tie_heavy(values)
    assert clustering._tie_heavy(LARGE["few distinct"])  # a sort is as fast there
    assert not clustering._tie_heavy(LARGE["10% zeros"])  # zeros are set aside
    ranks = _quantile_ranks(len(values), 1001)
    chosen = _order_statistics(values, ranks)
    assert chosen is not None
    assert chosen.tobytes() == np.sort(values)[ranks].tobytes()


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 1001, 1002, 5000])
def test_quantile_ranks_cover_what_np_quantile_reads(n: int) -> None:
    """Every order statistic the interpolation reads is among the selected ranks: values that
    differ only at ranks outside them give the same quantiles."""
    rng = np.random.default_rng(n)
    ordered = np.sort(rng.random(n))
    ranks = _quantile_ranks(n, 1001)
    assert ranks[0] == 0 and ranks[-1] == n - 1 and np.all(np.diff(ranks) > 0)
    scrambled = np.full(n, np.nan)
    scrambled[ranks] = ordered[ranks]  # NaN at every rank the quantiles must not read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.quantile(ordered, np.linspace(0.0, 1.0, 1001))
    found = clustering.linear_quantiles(n, scrambled.__getitem__, 1001)
    assert found.tobytes() == expected.tobytes()


def _small_inputs(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        np.array([3.5]),
        np.array([2.0, 1.0]),
        np.array([0.0]),
        np.array([0.0, 0.0, 1e300]),
        np.full(9, 7.0),
        np.array([0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 5.0]),
        np.array([5e-324, 0.0, 1e-300, np.inf, 1.7e308]),
        rng.random(700),
        rng.integers(0, 3, 900).astype(np.float64),
        10.0 ** rng.uniform(-300, 300, 1500),
        np.where(rng.random(3000) < 0.4, 0.0, rng.exponential(size=3000)),
        np.concatenate([np.full(2000, 1.5), rng.random(500) + 1.5]),
    ]


@pytest.mark.parametrize("bucket_bits,sort_at_most", [(16, 4096), (4, 8), (2, 1), (1, 0)])
def test_order_statistics_equal_the_sorted_values(
    bucket_bits: int, sort_at_most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small tables and no early sort force many passes, the single-value read (all bits read)
    and the sort of what ties leave; every path gives the sorted array's values."""
    monkeypatch.setattr(clustering, "_BUCKET_BITS", bucket_bits)
    monkeypatch.setattr(clustering, "_SORT_AT_MOST", sort_at_most)
    rng = np.random.default_rng(bucket_bits)
    for values in _small_inputs(rng):
        n = len(values)
        ordered = np.sort(values)
        for ranks in (
            _quantile_ranks(n, 1001),
            _quantile_ranks(n, 2),
            np.unique(rng.integers(0, n, 5)),
            np.arange(n),
        ):
            chosen = _order_statistics(values, ranks)
            assert chosen is not None
            assert chosen.dtype == np.float64
            assert chosen.tobytes() == ordered[ranks].tobytes(), (n, bucket_bits)


def test_order_statistics_read_tied_values_off_their_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values within 2**28 ulps of each other, each repeated: the second pass reads all the
    bits, and its buckets (single values) give the order statistics without a sort."""
    monkeypatch.setattr(clustering, "_SORT_AT_MOST", 0)
    rng = np.random.default_rng(4)
    base = int(np.array(1.0).view(np.int64))
    values = np.repeat((base + rng.integers(0, 2**28, 500)).view(np.float64), 8)
    rng.shuffle(values)
    ordered = np.sort(values)
    for ranks in (np.array([0, 1999, 3999]), np.unique(rng.integers(0, 4000, 4)), np.array([7])):
        chosen = _order_statistics(values, ranks)
        assert chosen is not None
        assert chosen.tobytes() == ordered[ranks].tobytes()


def test_order_statistics_set_zeros_aside() -> None:
    values = np.array([0.0, 3.0, 0.0, 0.0, 1.0])
    for ranks in ([0, 1, 2], [2, 3], [4], [0, 4]):
        chosen = _order_statistics(values, np.array(ranks))
        assert chosen is not None
        assert chosen.tobytes() == np.sort(values)[ranks].tobytes()


@pytest.mark.parametrize(
    "values",
    [[1.0, -2.0], [-0.0, 1.0], [0.0, np.nan], [np.nan], [-np.inf, 1.0], [1.0, -np.nan]],
)
def test_order_statistics_decline_what_the_bits_do_not_order(values: list[float]) -> None:
    array = np.array(values)
    assert _order_statistics(array, np.arange(len(array))) is None


def test_training_quantiles_of_few_rows_and_other_dtypes() -> None:
    rng = np.random.default_rng(9)
    for n in (1, 2, 3, 1000, 1001, 1002):
        values = rng.exponential(size=n)
        assert _ours(values).tobytes() == _reference(values, 1001).tobytes()
    single = rng.random(N).astype(np.float32)  # float32 keeps NumPy's own float32 path
    assert _ours(single).tobytes() == _reference(single, 1001).tobytes()
