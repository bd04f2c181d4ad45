"""KMEANS' ranking of the nearest centroids by one sorting network that carries each value's
centroid (shipyard.registry.clustering_output._Nearest): a stable argsort's ids and values
whenever a row's m + 1 smallest distances are distinct, and the comparisons' ranking (the
lower id first) for a block where two of them are equal. The training distances' column-major
store gives the same values and anomaly statistics as a row-major matrix."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.registry import clustering_output as co
from shipyard.sql.clustering import anomaly_statistics


def _stable_nearest(distances: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(distances, axis=1, kind="stable")[:, :m]
    return order + 1, np.take_along_axis(distances, order, axis=1)


def _sorted_block(columns: np.ndarray, m: int) -> object:
    k, n = columns.shape
    return co._Nearest(n, k, m, n)._sort_with_ids(np.ascontiguousarray(columns))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6, 8, 13, 16])
def test_the_network_ranks_as_a_stable_argsort(k: int) -> None:
    rng = np.random.default_rng(k)
    d = rng.random((3000, k)) * 5
    m = min(k, 5)
    found = _sorted_block(d.T, m)
    assert found is not None  # distinct values: the network's answer is taken
    values, owners = found  # type: ignore[misc]
    want_ids, want_values = _stable_nearest(d, m)
    assert np.array_equal(np.array(owners).T, want_ids)
    assert np.array_equal(np.array(values).T, want_values)
    ids, nearest = co.nearest_from_distances(d, m)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)


@pytest.mark.parametrize(
    ("first", "second", "network"),
    [
        (0, 1, False),  # the two nearest tie
        (4, 5, False),  # the 5th and the 6th nearest tie: the lower id is listed
        (6, 7, True),  # a tie behind the 6 nearest changes nothing: the network ranks
    ],
)
def test_equal_distances_among_the_nearest_take_the_comparisons(
    first: int, second: int, network: bool
) -> None:
    k, m = 8, 5
    rng = np.random.default_rng(3)
    d = rng.random((500, k))
    # each row's sorted values, dealt to the centroids in a random order
    base = np.sort(d, axis=1)
    order = np.argsort(rng.random((500, k)), axis=1)
    base[:, second] = base[:, first]  # ranks ``first`` and ``second`` are equal
    d = np.take_along_axis(base, order, axis=1)
    assert (_sorted_block(d.T, m) is not None) is network
    ids, nearest = co.nearest_from_distances(d, m)
    want_ids, want_values = _stable_nearest(d, m)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)


def test_one_block_with_a_tie_does_not_change_the_others() -> None:
    rng = np.random.default_rng(4)
    rows = 2 * co.BLOCK_ROWS + 7
    d = rng.random((rows, 8))
    d[co.BLOCK_ROWS + 11, 3] = d[co.BLOCK_ROWS + 11, 1] = 0.0  # a tie in the second block
    d[-1, 6] = d[-1, 2] = 0.5  # and in the short last block
    ids, nearest = co.nearest_from_distances(d, 5)
    want_ids, want_values = _stable_nearest(d, 5)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)
    assert ids[co.BLOCK_ROWS + 11, :2].tolist() == [2, 4]  # the lower id first


def test_predict_ranks_rows_on_duplicate_centroids_as_argsort() -> None:
    # two equal centroids: every row ties, every block takes the comparisons
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5000, 4))
    centers = rng.standard_normal((6, 4))
    centers[4] = centers[1]
    ids, nearest = co.nearest_from_matrix(x, centers, False, 5)
    want_ids, want_values = _stable_nearest(co.distances(x, centers, False), 5)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)


@pytest.mark.parametrize("rows", [1, 5, co.BLOCK_ROWS + 1])
def test_training_distances_are_stored_by_centroid_with_the_same_values(rows: int) -> None:
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 6))
    centers = rng.standard_normal((4, 6))
    full, labels, nearest = co.distances_with_nearest(x, centers, False)
    assert full.shape == (rows, 4) and full.T.flags.c_contiguous  # a centroid's distances
    want = co.distances(x, centers, False)
    assert np.array_equal(full, want)
    assert np.array_equal(labels, np.argmin(want, axis=1))
    assert anomaly_statistics(full, (labels, nearest)) == anomaly_statistics(want)


def test_infinite_distances_without_nan_rank_as_a_stable_argsort() -> None:
    rng = np.random.default_rng(8)
    d = rng.random((4000, 8))
    d[::3, 5] = np.inf  # one infinite distance a row: the network ranks it last
    assert _sorted_block(d[::3].T, 5) is not None
    d[::7, 2] = np.inf  # two in some rows: equal, the comparisons rank them
    ids, nearest = co.nearest_from_distances(d, 5)
    want_ids, want_values = _stable_nearest(d, 5)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)
    ids, nearest = co.nearest_from_distances(d, 8)  # every centroid listed: the infinite too
    want_ids, want_values = _stable_nearest(d, 8)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)


def _root_then_rank(values: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """ML.PREDICT's ranking of values before their root (_Nearest with rooted=False)."""
    n, k = values.shape
    nearest = co._Nearest(n, k, m, n, rooted=False)
    nearest.add(0, np.ascontiguousarray(values.T))
    return nearest.ids, nearest.distances


def test_values_equal_only_after_the_root_rank_by_id() -> None:
    # two squared distances one ulp apart with the same square root, and two negative ones
    # (rounding below 0) that both clip to 0: ranked by id, as the distances themselves
    a = next(v for v in np.linspace(2.0, 3.0, 1000) if np.sqrt(v) == np.sqrt(np.nextafter(v, 9)))
    rows = np.array(
        [
            [5.0, np.nextafter(a, 9), a, 9.0, 7.0, 8.0],
            [4.0, -3e-17, -1e-17, 0.5, 6.0, 2.0],
            [4.0, 1.0, 3.0, 0.5, 6.0, 2.0],  # no tie
        ]
    )
    rooted = np.sqrt(np.maximum(rows, 0.0))
    want_ids, want_values = _stable_nearest(rooted, 5)
    assert want_ids[0, :2].tolist() == [2, 3] and want_ids[1, :2].tolist() == [2, 3]
    ids, nearest = _root_then_rank(rows, 5)
    assert np.array_equal(ids, want_ids) and np.array_equal(nearest, want_values)
    ids, nearest = _root_then_rank(rows[2:], 5)  # the network's block: roots of its 6 nearest
    assert np.array_equal(ids, want_ids[2:]) and np.array_equal(nearest, want_values[2:])
