"""The implicit ranking metrics' fast ranks (approximate scores, bins, exact checks) equal the
ranks of a full sort of the exact scores, ties and edge cases included; and implicit training
in one fit() gives the same factors and losses as a fit() per sweep."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import shipyard.sql.recommend_ranks as recommend_ranks
from shipyard.registry.factorization import FactorModel
from shipyard.sql.recommend import MatrixFactorizationOptions, _implicit_als, ranking_metrics


def _model(
    users: int,
    items: int,
    factors: int,
    *,
    seed: int = 5,
    biases: bool = False,
    rounded: bool = False,
    scale: float = 1.0,
    user_scale: float = 1.0,
) -> FactorModel:
    rng = np.random.default_rng(seed)
    user_f = rng.normal(size=(users, factors)) * scale * user_scale
    item_f = rng.normal(size=(items, factors)) * scale
    if rounded:  # small integers: many exactly equal scores
        user_f, item_f = np.round(user_f), np.round(item_f)
    return FactorModel(
        feedback_type="IMPLICIT",
        user_ids=pa.array(np.arange(users)),
        item_ids=pa.array(np.arange(items)),
        user_factors=user_f,
        item_factors=item_f,
        user_bias=rng.normal(size=users) if biases else np.zeros(users),
        item_bias=rng.normal(size=items) if biases else np.zeros(items),
        intercept=0.75 if biases else 0.0,
    )


def _pairs(model: FactorModel, count: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_users, n_items = len(model.user_factors), len(model.item_factors)
    keys = np.unique(rng.integers(0, n_users, count) * n_items + rng.integers(0, n_items, count))
    return keys // n_items, keys % n_items


def _brute_force(model: FactorModel, pair_users: np.ndarray, pair_items: np.ndarray) -> np.ndarray:
    """1 + the number of items whose exact score is strictly higher, pair by pair."""
    scores = model.score_block(np.arange(len(model.user_factors)))
    own = scores[pair_users, pair_items]
    return 1 + np.sum(scores[pair_users] > own[:, None], axis=1)  # type: ignore[no-any-return]


def _ranks(model: FactorModel, pair_users: np.ndarray, pair_items: np.ndarray) -> np.ndarray:
    users = np.unique(pair_users)
    ranks, _ = recommend_ranks.ranks_and_squared_error(model, pair_users, pair_items, users)
    return ranks


def _squared(model: FactorModel, pair_users: np.ndarray, pair_items: np.ndarray) -> float:
    users = np.unique(pair_users)
    truth = np.zeros((len(model.user_factors), len(model.item_factors)))
    truth[pair_users, pair_items] = 1.0
    scores = model.score_block(users)
    return float(np.sum((scores - truth[users]) ** 2))


@pytest.mark.parametrize(
    ("kwargs", "bins"),
    [
        ({}, None),
        ({"biases": True}, None),
        ({"rounded": True}, None),  # exact ties everywhere
        ({"rounded": True, "biases": True}, None),
        ({}, 64),  # few bins: many neighbours share a rated item's bin and are compared exactly
        ({"rounded": True}, 64),
        ({"scale": 1e-160}, None),  # products near the bottom of the double range
        ({"user_scale": 1e-170}, None),  # user factors whose squares underflow
        ({"scale": 1e70}, None),  # large scores (below the overflow guard)
    ],
)
def test_fast_ranks_equal_a_full_sort(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], bins: int | None
) -> None:
    model = _model(60, 700, 6, **kwargs)  # type: ignore[arg-type]
    pair_users, pair_items = _pairs(model, 3000)
    monkeypatch.setattr(recommend_ranks, "_BLOCK_VALUES", 7 * 700)  # several blocks
    if bins is not None:
        monkeypatch.setattr(recommend_ranks, "_bins", lambda n: bins)
    fallbacks: list[int] = []
    sorted_block = recommend_ranks._sorted_block

    def counted(*args: object) -> float:
        fallbacks.append(1)
        return sorted_block(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(recommend_ranks, "_sorted_block", counted)
    ranks, squared = recommend_ranks.ranks_and_squared_error(
        model, pair_users, pair_items, np.unique(pair_users)
    )
    assert not fallbacks  # every block ranked by the bins
    assert np.array_equal(ranks, _brute_force(model, pair_users, pair_items))
    assert squared == pytest.approx(_squared(model, pair_users, pair_items), rel=1e-12)


def test_rows_whose_scores_all_agree() -> None:
    """A user with zero factors (every score 0), a user who rated every item, duplicated items
    (equal scores), and one item only."""
    model = _model(5, 40, 3)
    model.user_factors[2] = 0.0
    model.item_factors[10:20] = model.item_factors[10]
    pair_users = np.concatenate([np.full(40, 0), [1, 1, 1], np.full(40, 2), [4]])
    pair_items = np.concatenate([np.arange(40), [10, 11, 30], np.arange(40), [15]])
    assert np.array_equal(
        _ranks(model, pair_users, pair_items), _brute_force(model, pair_users, pair_items)
    )
    assert np.all(_ranks(model, np.full(40, 2), np.arange(40)) == 1)  # all tied at the top
    one = _model(3, 1, 2)
    assert np.array_equal(_ranks(one, np.array([0, 2]), np.array([0, 0])), [1, 1])


def test_the_reading_of_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound has room to spare (a quarter of it still ranks right) and is far below a
    bin's width, so a rated item's range is nearly always its own bin."""
    model = _model(40, 500, 10)
    pair_users, pair_items = _pairs(model, 2000)
    bounds = recommend_ranks._error_bounds(model)
    assert bounds is not None and np.all(bounds > 0) and np.all(bounds < 1e-12)
    monkeypatch.setattr(recommend_ranks, "_error_bounds", lambda m: bounds / 4)
    assert np.array_equal(
        _ranks(model, pair_users, pair_items), _brute_force(model, pair_users, pair_items)
    )


def test_blocks_that_cannot_be_binned_are_sorted_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(30, 200, 4, biases=True)
    pair_users, pair_items = _pairs(model, 800)
    expected = _brute_force(model, pair_users, pair_items)
    # No block can be binned: every block goes to the sort, with the same ranks.
    monkeypatch.setattr(recommend_ranks, "_bounded_block", lambda *args: None)
    assert np.array_equal(_ranks(model, pair_users, pair_items), expected)
    monkeypatch.undo()
    # A bound so wide that a range spans more than two bins: those blocks are sorted.
    monkeypatch.setattr(
        recommend_ranks, "_error_bounds", lambda m: np.full(len(m.user_factors), 1e6)
    )
    assert np.array_equal(_ranks(model, pair_users, pair_items), expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e200])
def test_non_finite_or_huge_factors_rank_by_sorting(bad: float) -> None:
    model = _model(8, 30, 3)
    model.item_factors[4, 1] = bad
    assert recommend_ranks._error_bounds(model) is None
    pair_users, pair_items = _pairs(model, 60)
    scores = model.score_block(np.arange(8))
    ordered = np.sort(scores, axis=1)
    own = scores[pair_users, pair_items]
    expected = [
        1 + 30 - np.searchsorted(ordered[u], o, side="right")
        for u, o in zip(pair_users, own, strict=True)
    ]
    assert np.array_equal(_ranks(model, pair_users, pair_items), expected)


def test_ranking_metrics_do_not_depend_on_blocks_or_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model(50, 300, 5)
    rng = np.random.default_rng(9)
    users, items = rng.integers(0, 50, 2000), rng.integers(0, 300, 2000)
    ratings = rng.integers(1, 5, 2000).astype(np.float64)
    first = ranking_metrics(model, users, items, ratings)
    monkeypatch.setattr(recommend_ranks, "_THREADS", 1)
    assert ranking_metrics(model, users, items, ratings) == first
    monkeypatch.setattr(recommend_ranks, "_BLOCK_VALUES", 1)  # a user per block
    again = ranking_metrics(model, users, items, ratings)
    for name in ("mean_average_precision", "normalized_discounted_cumulative_gain", "average_rank"):
        assert again[name] == first[name]
    assert again["mean_squared_error"] == pytest.approx(first["mean_squared_error"], rel=1e-13)


@pytest.mark.parametrize(("early_stop", "sweeps"), [(False, 4), (True, 30)])
def test_one_fit_gives_the_factors_and_losses_of_a_fit_per_sweep(
    early_stop: bool, sweeps: int
) -> None:
    pytest.importorskip("implicit")
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(4)
    users, items = rng.integers(0, 80, 1500), rng.integers(0, 40, 1500)
    ratings = rng.integers(1, 6, 1500).astype(np.float64)
    options = MatrixFactorizationOptions(
        feedback_type="IMPLICIT",
        max_iterations=sweeps,
        early_stop=early_stop,
        min_rel_progress=0.1,
    )
    model, info, _ = _implicit_als(users, items, ratings, (80, 40), options, 4, lambda f, m: None)
    # The reference: one fit() per sweep (the library continues from its factors).
    summed = sp.csr_matrix((ratings, (users, items)), shape=(80, 40))
    summed.sum_duplicates()
    confidence = summed.astype(np.float32)
    confidence.data = (1.0 + 40.0 * summed.data).astype(np.float32)
    losses: list[float] = []
    with threadpool_limits(1, "blas"):
        reference = AlternatingLeastSquares(
            factors=4, regularization=1.0, alpha=1.0, iterations=1,
            calculate_training_loss=True, random_state=20240101,
        )  # fmt: skip
        for _ in range(len(info)):
            reference.fit(
                confidence, show_progress=False, callback=lambda i, e, loss: losses.append(loss)
            )
    assert [row["loss"] for row in info] == [float(v) for v in losses]
    assert [row["iteration"] for row in info] == list(range(len(info)))
    assert np.array_equal(model.user_factors, np.asarray(reference.user_factors, np.float64))
    assert np.array_equal(model.item_factors, np.asarray(reference.item_factors, np.float64))
    if early_stop:
        assert len(info) < sweeps  # it stopped early, after the sweep that stalled
        last, before = info[-1]["loss"], info[-2]["loss"]
        assert (before - last) / before < 0.1
    else:
        assert len(info) == sweeps


@pytest.mark.parametrize("repeats", [False, True])
def test_training_metrics_equal_ml_evaluate_on_the_training_rows(repeats: bool) -> None:
    """Without repeated (user, item) pairs the training metrics take the pairs from the implicit
    matrix (no second sort); with repeats, the general path. Both equal ranking_metrics on the
    training rows, to the bit."""
    pytest.importorskip("implicit")
    import pyarrow.compute as pc

    from shipyard.sql.recommend import train_matrix_factorization

    rng = np.random.default_rng(8)
    keys = rng.permutation(np.unique(rng.integers(0, 60 * 30, 700)))
    if repeats:
        keys = np.concatenate([keys, keys[:50], keys[:5]])
    table = pa.table(
        {
            "user": pa.array([f"u{k // 30}" for k in keys]),
            "item": pa.array(keys % 30),
            "rating": rng.integers(1, 5, len(keys)).astype(np.float64),
        }
    )
    options = MatrixFactorizationOptions(
        feedback_type="IMPLICIT", num_factors=3, max_iterations=3, data_split_method="NO_SPLIT"
    )
    fit = train_matrix_factorization(table, options, lambda f, m: None)
    model = fit.model
    users = pc.index_in(table.column("user"), value_set=model.user_ids).to_numpy()
    items = pc.index_in(table.column("item"), value_set=model.item_ids).to_numpy()
    ratings = table.column("rating").to_numpy()
    assert fit.metrics == ranking_metrics(model, users, items, ratings)


def test_a_narrow_rated_range_among_spread_scores_ranks_by_the_bins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each user's rated range is what the bins cover: two rated items whose scores differ by
    about 1e-11 (relative) among items spread far above and below them (which fall into the
    end bins) still get exact ranks, without the sort."""
    model = _model(6, 300, 5, seed=11)
    model.item_factors[1] = model.item_factors[0] * (1.0 + 1e-11)
    model.item_factors[2] = model.item_factors[0]  # an exact tie with item 0
    pair_users = np.repeat(np.arange(6), 2)
    pair_items = np.tile([0, 1], 6)
    fallbacks: list[int] = []
    sorted_block = recommend_ranks._sorted_block
    monkeypatch.setattr(
        recommend_ranks, "_sorted_block", lambda *a: fallbacks.append(1) or sorted_block(*a)
    )
    ranks, squared = recommend_ranks.ranks_and_squared_error(
        model, pair_users, pair_items, np.arange(6)
    )
    assert not fallbacks
    assert np.array_equal(ranks, _brute_force(model, pair_users, pair_items))
    assert squared == pytest.approx(_squared(model, pair_users, pair_items), rel=1e-12)


def test_the_squared_error_when_the_items_gram_matrix_overflows() -> None:
    """Zero user factors with huge item factors: every score is 0 (all tied at rank 1), and the
    items' Gram matrix overflows, so the squared error comes from the scores themselves."""
    model = _model(4, 50, 3)
    model.user_factors[:] = 0.0
    model.item_factors[:] = 1e200
    pair_users, pair_items = np.array([0, 0, 3]), np.array([4, 9, 0])
    ranks, squared = recommend_ranks.ranks_and_squared_error(
        model, pair_users, pair_items, np.array([0, 3])
    )
    assert np.array_equal(ranks, [1, 1, 1])
    assert squared == 3.0  # (0 - 1)² for each rated pair, 0 elsewhere
