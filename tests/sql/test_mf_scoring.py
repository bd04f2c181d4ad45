"""Matrix factorization scoring: every path gives a pair the same bits, and the implicit
ranking metrics equal a brute-force reference (ties included)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shipyard.registry.factorization import FactorModel, predict_pairs
from shipyard.sql.recommend import ranking_metrics


def _model(
    users: int = 37, items: int = 23, factors: int = 5, *, rounded: bool = False
) -> FactorModel:
    rng = np.random.default_rng(7)
    user_f, item_f = rng.normal(size=(users, factors)), rng.normal(size=(items, factors))
    if rounded:  # many exactly equal scores: ties in the ranks
        user_f, item_f = np.round(user_f), np.round(item_f)
    return FactorModel(
        feedback_type="EXPLICIT",
        user_ids=pa.array(np.arange(users)),
        item_ids=pa.array(np.arange(items)),
        user_factors=user_f,
        item_factors=item_f,
        user_bias=rng.normal(size=users),
        item_bias=rng.normal(size=items),
        intercept=3.25,
    )


def _by_formula(model: FactorModel, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """intercept + biases + the factor products added one factor at a time, left to right."""
    out = model.user_factors[u, 0] * model.item_factors[i, 0]
    for k in range(1, model.num_factors):
        out = out + model.user_factors[u, k] * model.item_factors[i, k]
    return out + model.intercept + model.user_bias[u] + model.item_bias[i]  # type: ignore[no-any-return]


def test_every_scoring_path_gives_a_pair_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    import shipyard.registry.factorization as factorization

    model = _model()
    u, i = np.meshgrid(np.arange(37), np.arange(23), indexing="ij")
    expected = _by_formula(model, u.ravel(), i.ravel()).reshape(37, 23)
    assert np.array_equal(model.score_block(np.arange(37)), expected)
    assert np.array_equal(model.score_items_block(np.arange(23)), expected.T)
    assert np.array_equal(model.score(u.ravel(), i.ravel()), expected.ravel())
    pairs = predict_pairs(model, pa.array(u.ravel()), pa.array(i.ravel()))
    assert np.array_equal(pairs.to_numpy(), expected.ravel())
    monkeypatch.setattr(factorization, "_SLICE_VALUES", 7)  # slices cut inside rows and pairs
    assert np.array_equal(model.score_block(np.arange(37)), expected)
    assert np.array_equal(model.score(u.ravel(), i.ravel()), expected.ravel())


def _reference(
    model: FactorModel, users: np.ndarray, items: np.ndarray, ratings: np.ndarray
) -> dict[str, float]:
    """The metrics' definitions, one user at a time with plain comparisons."""
    n_items = len(model.item_factors)
    gains: dict[tuple[int, int], float] = {}
    for u, i, r in zip(users, items, ratings, strict=True):
        gains[(u, i)] = gains.get((u, i), 0.0) + r
    precisions, ndcgs, weighted, total, squared = [], [], 0.0, 0.0, 0.0
    for user in sorted({u for u, _ in gains}):
        scores = model.score_block(np.array([user]))[0]
        mine = sorted((i, g) for (u, i), g in gains.items() if u == user)
        ranks = [1 + int(np.sum(scores > scores[i])) for i, _ in mine]
        order = sorted(range(len(mine)), key=lambda j: ranks[j])
        precisions.append(np.mean([(n + 1) / ranks[j] for n, j in enumerate(order)]))
        dcg = sum(mine[j][1] / np.log2(ranks[j] + 1) for j in order)
        ideal = sorted((g for _, g in mine), reverse=True)
        ndcgs.append(dcg / sum(g / np.log2(n + 2) for n, g in enumerate(ideal)))
        for (_, g), rank in zip(mine, ranks, strict=True):
            weighted += g * (rank - 1) / (n_items - 1)
            total += g
        truth = np.zeros(n_items)
        truth[[i for i, _ in mine]] = 1.0
        squared += float(np.sum((scores - truth) ** 2))
    return {
        "mean_average_precision": float(np.mean(precisions)),
        "mean_squared_error": squared / (len(precisions) * n_items),
        "normalized_discounted_cumulative_gain": float(np.mean(ndcgs)),
        "average_rank": weighted / total,
    }


@pytest.mark.parametrize("rounded", [False, True])
def test_ranking_metrics_equal_the_definitions(rounded: bool) -> None:
    model = _model(rounded=rounded)
    rng = np.random.default_rng(11)
    users = rng.integers(0, 37, 400)
    items = rng.integers(0, 23, 400)
    ratings = rng.integers(0, 4, 400).astype(np.float64)  # zeros are left out; repeats add up
    got = ranking_metrics(model, users, items, ratings)
    keep = ratings > 0
    want = _reference(model, users[keep], items[keep], ratings[keep])
    assert got == pytest.approx(want, rel=1e-12)
