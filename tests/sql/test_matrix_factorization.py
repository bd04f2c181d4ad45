"""MATRIX_FACTORIZATION: options, explicit ALS against references, implicit ALS against the
implicit library and a popularity baseline, ML.RECOMMEND / EVALUATE / WEIGHTS / PREDICT output,
the model package, and bad input."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument
from shipyard.registry.factorization import FactorModel
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options
from shipyard.sql.recommend import default_num_factors, explicit_als, ranking_metrics

_NOISE = 0.1


def _explicit(
    users: int = 60, items: int = 40, rank: int = 3, density: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratings of a rank-``rank`` matrix (plus 3.0) at ``density`` of the pairs, noise 0.1."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(users, rank)) @ rng.normal(size=(items, rank)).T + 3.0
    u, i = np.nonzero(rng.random((users, items)) < density)
    return u, i, truth[u, i] + rng.normal(0.0, _NOISE, size=len(u))


def _explicit_table() -> pa.Table:
    u, i, r = _explicit()
    return pa.table({"user": [f"u{x:02d}" for x in u], "item": i.astype(np.int64), "rating": r})


def _implicit(
    users: int = 120, items: int = 60, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts drawn from users' tastes: each user interacts with ~12 items, mostly liked ones,
    and item popularity varies too (so popularity is a fair baseline)."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(users, 4)) @ rng.normal(size=(items, 4)).T
    popularity = rng.normal(0.0, 1.0, size=items)
    logits = 1.5 * taste + popularity[None, :]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows_u, rows_i, counts = [], [], []
    for user in range(users):
        chosen = rng.choice(items, size=12, replace=False, p=p[user])
        rows_u += [user] * 12
        rows_i += chosen.tolist()
        counts += rng.integers(1, 6, size=12).tolist()
    return np.array(rows_u), np.array(rows_i), np.array(counts, dtype=np.float64)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("mf"))
    workspace.load_table("demo.ratings", _explicit_table().to_pylist())
    u, i, r = _implicit()
    workspace.load_table(
        "demo.clicks",
        [
            {"visitor": f"v{a}", "page": int(b), "clicks": float(c)}
            for a, b, c in zip(u, i, r, strict=True)
        ],
    )
    workspace.load_table("demo.t", [{"x": float(n), "y": 2.0 * n + 1} for n in range(30)])
    workspace.sql(
        "CREATE MODEL demo.mf OPTIONS(model_type='matrix_factorization', num_factors=3, "
        "l2_reg=0.1, early_stop=FALSE, max_iterations=30) AS SELECT * FROM demo.ratings"
    )
    workspace.sql(
        "CREATE MODEL demo.imf OPTIONS(model_type='matrix_factorization', "
        "feedback_type='IMPLICIT', user_col='visitor', item_col='page', rating_col='clicks', "
        "num_factors=8, l2_reg=0.1, wals_alpha=10, data_split_method='NO_SPLIT') "
        "AS SELECT * FROM demo.clicks"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    yield workspace
    workspace.close()


# -- options ----------------------------------------------------------------------------------


def test_defaults_are_bigquery_mls() -> None:
    opts = parse_options({"model_type": "matrix_factorization"})
    assert (opts.feedback_type, opts.user_col, opts.item_col, opts.rating_col) == (
        "EXPLICIT",
        "user",
        "item",
        "rating",
    )
    assert (opts.l2_reg, opts.wals_alpha, opts.num_factors) == (1.0, 40.0, None)
    assert (opts.max_iterations, opts.early_stop, opts.min_rel_progress) == (20, True, 0.01)
    assert opts.data_split_method == "AUTO_SPLIT"
    assert MODEL_TYPES["MATRIX_FACTORIZATION"].option_names == [
        "data_split_col",
        "data_split_eval_fraction",
        "data_split_method",
        "early_stop",
        "feedback_type",
        "item_col",
        "l2_reg",
        "max_iterations",
        "min_rel_progress",
        "model_type",
        "num_factors",
        "rating_col",
        "user_col",
        "wals_alpha",
    ]
    assert default_num_factors(1_000) == 10 and default_num_factors(3) == 2


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"wals_alpha": 1.0}, "'wals_alpha' applies only with feedback_type 'IMPLICIT'"),
        ({"num_factors": 0}, "'num_factors' for model_type MATRIX_FACTORIZATION must be >= 1"),
        ({"feedback_type": "ratings"}, "'EXPLICIT', 'IMPLICIT'"),
        ({"l2_reg": -1.0}, "'l2_reg' for model_type MATRIX_FACTORIZATION must be >= 0"),
        ({"l1_reg": 1.0}, "unknown option 'l1_reg'"),
        ({"input_label_cols": ["rating"]}, "unknown option 'input_label_cols'"),
        ({"user_col": "a", "item_col": "a"}, "three different columns"),
    ],
)
def test_bad_options(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_options({"model_type": "MATRIX_FACTORIZATION", **options})
    assert fragment in str(info.value)


# -- explicit ALS -----------------------------------------------------------------------------


def test_explicit_als_is_bounded_by_truncated_svd() -> None:
    """On a fully observed matrix the optimum of rank k plus biases lies between the best
    rank-k and the best rank-(k+2) approximations (Eckart-Young, computed with the SVD)."""
    rng = np.random.default_rng(7)
    full = rng.normal(size=(30, 3)) @ rng.normal(size=(20, 3)).T + rng.normal(0, 0.3, (30, 20))
    u, i = np.nonzero(np.ones_like(full, dtype=bool))
    model, rows = explicit_als(
        u,
        i,
        full[u, i],
        full.shape,
        factors=2,
        l2_reg=1e-9,
        max_iterations=300,
        early_stop=False,
        min_rel_progress=0.0,
        report=lambda *_: None,
    )
    s = np.linalg.svd(full, compute_uv=False)
    best = {k: float(np.sum(s[k:] ** 2) / full.size) for k in (2, 4)}
    loss = rows[-1]["loss"]
    assert best[4] - 1e-9 <= loss < best[2]  # the biases help
    assert np.allclose(model.score(u, i), model.score_block(np.arange(30)).reshape(-1))


def test_explicit_rmse_is_near_the_noise_level() -> None:
    table = _explicit_table()
    trained = MODEL_TYPES["MATRIX_FACTORIZATION"].train(
        table,
        {
            "model_type": "MATRIX_FACTORIZATION",
            "num_factors": 3,
            "l2_reg": 0.5,
            "data_split_method": "RANDOM",
            "data_split_eval_fraction": 0.2,
            "early_stop": False,
            "max_iterations": 40,
        },
    )
    rmse = trained.eval_metrics["mean_squared_error"] ** 0.5
    # held-out pairs: the noise (0.1) plus the error of factors estimated from ~16 ratings each
    assert rmse < 3 * _NOISE
    # a biases-only model (intercept + user + item, no factors) is far worse
    ratings = table.column("rating").to_numpy()
    spread = float(np.std(ratings))
    assert rmse < 0.2 * spread
    assert trained.eval_metrics["r2_score"] > 0.95
    info = trained.training_info
    assert len(info) == 40 and info[-1]["eval_loss"] == pytest.approx(rmse**2)


def test_early_stop_stops_at_min_rel_progress() -> None:
    trained = MODEL_TYPES["MATRIX_FACTORIZATION"].train(
        _explicit_table(),
        {"model_type": "MATRIX_FACTORIZATION", "num_factors": 3, "min_rel_progress": 0.05},
    )
    losses = [row["loss"] for row in trained.training_info]
    assert 2 <= len(losses) < 20
    assert (losses[-2] - losses[-1]) / losses[-2] < 0.05
    assert all((a - b) / a >= 0.05 for a, b in itertools.pairwise(losses[:-1]))


# -- implicit ALS -----------------------------------------------------------------------------


def test_implicit_matches_the_library_used_directly() -> None:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    u, i, r = _implicit()
    table = pa.table({"user": u.astype(np.int64), "item": i.astype(np.int64), "rating": r})
    options = {
        "model_type": "MATRIX_FACTORIZATION",
        "feedback_type": "IMPLICIT",
        "num_factors": 6,
        "l2_reg": 0.5,
        "wals_alpha": 5.0,
        "max_iterations": 7,
        "early_stop": False,
        "data_split_method": "NO_SPLIT",
    }
    trained = MODEL_TYPES["MATRIX_FACTORIZATION"].train(table, options)
    model: FactorModel = trained.model
    # the same factorization with the library alone: rows in the model's id order
    users = np.asarray(pc.index_in(table["user"], value_set=model.user_ids))
    items = np.asarray(pc.index_in(table["item"], value_set=model.item_ids))
    confidence = sp.csr_matrix((1.0 + 5.0 * r, (users, items)), dtype=np.float32)
    with threadpool_limits(1, "blas"):
        direct = AlternatingLeastSquares(
            factors=6, regularization=0.5, iterations=7, random_state=20240101
        )
        direct.fit(confidence, show_progress=False)
    ours = model.score_block(np.arange(len(model.user_ids)))
    theirs = direct.user_factors @ direct.item_factors.T
    assert np.allclose(ours, theirs, atol=1e-4)
    assert len(trained.training_info) == 7


def _split_per_user(
    u: np.ndarray, i: np.ndarray, r: np.ndarray
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    held = np.zeros(len(u), dtype=bool)
    for user in np.unique(u):
        held[np.flatnonzero(u == user)[:3]] = True  # 3 of each user's 12 interactions
    return (u[~held], i[~held], r[~held]), (u[held], i[held], r[held])


def test_implicit_ranks_better_than_popularity() -> None:
    u, i, r = _implicit()
    (tu, ti, tr), (eu, ei, er) = _split_per_user(u, i, r)
    train = pa.table({"user": tu, "item": ti, "rating": tr})
    trained = MODEL_TYPES["MATRIX_FACTORIZATION"].train(
        train,
        {
            "model_type": "MATRIX_FACTORIZATION",
            "feedback_type": "IMPLICIT",
            "num_factors": 8,
            "l2_reg": 0.1,
            "wals_alpha": 10.0,
            "data_split_method": "NO_SPLIT",
        },
    )
    model: FactorModel = trained.model
    users = np.asarray(pc.index_in(pa.array(eu), value_set=model.user_ids))
    items = np.asarray(pc.index_in(pa.array(ei), value_set=model.item_ids))
    ours = ranking_metrics(model, users, items, er)
    counts = np.bincount(np.asarray(pc.index_in(pa.array(ti), value_set=model.item_ids)))
    popularity = FactorModel(
        feedback_type="IMPLICIT",
        user_ids=model.user_ids,
        item_ids=model.item_ids,
        user_factors=np.ones((len(model.user_ids), 1)),
        item_factors=counts[:, None] / counts.max(),
        user_bias=np.zeros(len(model.user_ids)),
        item_bias=np.zeros(len(model.item_ids)),
    )
    baseline = ranking_metrics(popularity, users, items, er)
    assert ours["mean_average_precision"] > baseline["mean_average_precision"]
    assert (
        ours["normalized_discounted_cumulative_gain"]
        > baseline["normalized_discounted_cumulative_gain"]
    )
    assert ours["average_rank"] < baseline["average_rank"] < 0.5  # both beat a random order


def test_ranking_metrics_by_hand() -> None:
    # one user, 4 items scored 4 > 3 > 2 > 1; relevant: items 0 (rank 1) and 2 (rank 3)
    model = FactorModel(
        feedback_type="IMPLICIT",
        user_ids=pa.array([1]),
        item_ids=pa.array([10, 11, 12, 13]),
        user_factors=np.ones((1, 1)),
        item_factors=np.array([[4.0], [3.0], [2.0], [1.0]]),
        user_bias=np.zeros(1),
        item_bias=np.zeros(4),
    )
    got = ranking_metrics(model, np.array([0, 0]), np.array([0, 2]), np.array([1.0, 3.0]))
    assert got["mean_average_precision"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    dcg = 1 / np.log2(2) + 3 / np.log2(4)
    ideal = 3 / np.log2(2) + 1 / np.log2(3)
    assert got["normalized_discounted_cumulative_gain"] == pytest.approx(dcg / ideal)
    assert got["average_rank"] == pytest.approx((1 * 0 + 3 * (2 / 3)) / 4)
    assert got["mean_squared_error"] == pytest.approx(((4 - 1) ** 2 + 9 + 1 + 1) / 4)


# -- through SQL ------------------------------------------------------------------------------


def test_recommend_all_pairs(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.RECOMMEND(MODEL demo.mf)").to_arrow()
    assert out.column_names == ["user", "item", "predicted_rating"]
    assert [f.type for f in out.schema] == [pa.string(), pa.int64(), pa.float64()]
    assert out.num_rows == 60 * 40 and out["predicted_rating"].null_count == 0
    # the observed ratings are reproduced to about the noise level
    truth = _explicit_table()
    joined = ws.sql(
        "SELECT r.rating, p.predicted_rating FROM demo.ratings r JOIN ML.RECOMMEND(MODEL demo.mf)"
        " p USING (user, item)"
    ).to_arrow()
    assert joined.num_rows == truth.num_rows
    errors = joined["rating"].to_numpy() - joined["predicted_rating"].to_numpy()
    assert float(np.sqrt(np.mean(errors**2))) < 2 * _NOISE


def test_recommend_top_k_with_qualify(ws: Any) -> None:
    out = ws.sql(
        "SELECT user, item, predicted_rating FROM ML.RECOMMEND(MODEL demo.mf, "
        "(SELECT 'u01' AS user UNION ALL SELECT 'u02')) "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY user ORDER BY predicted_rating DESC) <= 3 "
        "ORDER BY user, predicted_rating DESC"
    ).to_pylist()
    assert [r["user"] for r in out] == ["u01"] * 3 + ["u02"] * 3
    every = ws.sql(
        "SELECT max(predicted_rating) AS best FROM ML.RECOMMEND(MODEL demo.mf) WHERE user = 'u01'"
    ).to_pylist()
    assert out[0]["predicted_rating"] == pytest.approx(every[0]["best"])


def test_recommend_for_users_items_and_pairs(ws: Any) -> None:
    users = ws.sql(
        "SELECT * FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 'u03' AS user UNION ALL "
        "SELECT 'stranger'))"
    ).to_arrow()
    assert users.num_rows == 2 * 40 and users.column_names == ["user", "item", "predicted_rating"]
    rows = users.to_pylist()
    assert all(r["predicted_rating"] is None for r in rows if r["user"] == "stranger")
    assert all(r["predicted_rating"] is not None for r in rows if r["user"] == "u03")
    items = ws.sql("SELECT * FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 7 AS item))").to_arrow()
    assert items.num_rows == 60 and set(items["item"].to_pylist()) == {7}
    pairs = ws.sql(
        "SELECT * FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 'u03' AS user, 7 AS item, "
        "'note' AS why UNION ALL SELECT 'u03', 999, 'unknown item'))"
    ).to_arrow()
    assert pairs.column_names == ["user", "item", "predicted_rating", "why"]
    first, second = pairs.to_pylist()
    expected = next(r for r in items.to_pylist() if r["user"] == "u03")["predicted_rating"]
    assert first["predicted_rating"] == pytest.approx(expected) and first["why"] == "note"
    assert second["predicted_rating"] is None


def test_implicit_output_names_and_metrics(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.RECOMMEND(MODEL demo.imf, (SELECT 'v1' AS visitor))").to_arrow()
    assert out.column_names == ["visitor", "page", "predicted_clicks_confidence"]
    assert out.num_rows == 60
    stored = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.imf)").to_pylist()
    assert list(stored[0]) == [
        "mean_average_precision",
        "mean_squared_error",
        "normalized_discounted_cumulative_gain",
        "average_rank",
    ]
    given = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.imf, TABLE demo.clicks)").to_pylist()
    assert given[0] == pytest.approx(stored[0])
    assert 0.0 < stored[0]["average_rank"] < 0.3


def test_explicit_evaluate(ws: Any) -> None:
    stored = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.mf)").to_pylist()[0]
    assert list(stored) == [
        "mean_absolute_error",
        "mean_squared_error",
        "mean_squared_log_error",
        "median_absolute_error",
        "r2_score",
        "explained_variance",
    ]
    # 1,200 ratings: AUTO_SPLIT holds out 20 %, on which the stored metrics are computed
    assert stored["mean_squared_error"] < (3 * _NOISE) ** 2
    info = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.mf)").to_pylist()
    assert len(info) == 30
    assert info[-1]["eval_loss"] == pytest.approx(stored["mean_squared_error"])
    assert info[-1]["loss"] < info[-1]["eval_loss"]
    given = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.mf, TABLE demo.ratings)").to_pylist()
    mixed = given[0]["mean_squared_error"]  # training and held-out ratings together
    assert info[-1]["loss"] < mixed < stored["mean_squared_error"]
    one = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.mf, (SELECT 'u01' AS user, 0 AS item, "
        "4.0 AS rating UNION ALL SELECT 'nobody', 0, 1.0))"
    ).to_pylist()[0]
    predicted = ws.sql(
        "SELECT predicted_rating FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 'u01' AS user, "
        "0 AS item))"
    ).to_pylist()[0]["predicted_rating"]
    # the unknown user is left out: the metrics are those of the one known pair
    assert one["mean_absolute_error"] == pytest.approx(abs(4.0 - predicted))


def test_weights_reconstruct_the_predictions(ws: Any) -> None:
    weights = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.mf)").to_arrow()
    assert weights.column_names == ["processed_input", "feature", "factor_weights", "intercept"]
    rows = weights.to_pylist()
    assert len(rows) == 60 + 40 + 1
    # BigQuery ML: the global intercept's row has NULL processed_input and factor_weights
    assert rows[-1]["processed_input"] is None and rows[-1]["factor_weights"] is None
    user = next(r for r in rows if r["processed_input"] == "user" and r["feature"] == "u05")
    item = next(r for r in rows if r["processed_input"] == "item" and r["feature"] == "11")
    assert [w["factor"] for w in user["factor_weights"]] == [1, 2, 3]
    dot = sum(
        a["weight"] * b["weight"]
        for a, b in zip(user["factor_weights"], item["factor_weights"], strict=True)
    )
    expected = rows[-1]["intercept"] + user["intercept"] + item["intercept"] + dot
    got = ws.sql(
        "SELECT predicted_rating FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 'u05' AS user, "
        "11 AS item))"
    ).to_pylist()
    assert got[0]["predicted_rating"] == pytest.approx(expected)
    implicit = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.imf)").to_pylist()
    assert {r["intercept"] for r in implicit} == {0.0}


def test_predictor_package_and_serving(ws: Any) -> None:
    manifest = ws.models.manifest("demo.mf")
    assert manifest.flavor == "factorization" and manifest.task == "recommendation"
    assert sorted(manifest.files) == [
        "item_factors.npy",
        "items.parquet",
        "user_factors.npy",
        "users.parquet",
    ]
    predictor = ws.models.load("demo.mf")
    assert predictor.output_names == ["predicted_rating"]
    assert predictor.signature["inputs"] == [
        {"name": "user", "type": "string"},
        {"name": "item", "type": "int64"},
    ]
    pairs = pa.table({"user": ["u05", "nobody"], "item": pa.array([11, 11], pa.int32())})
    out = predictor.predict(pairs)
    assert out.column_names == ["predicted_rating", "user", "item"]
    assert out["predicted_rating"].null_count == 1
    with pytest.raises(InvalidArgument, match="missing columns"):
        predictor.predict(pa.table({"user": ["u05"]}))
    with pytest.raises(InvalidArgument, match="trained on int64 ids"):
        predictor.predict(pa.table({"user": ["u05"], "item": ["11"]}))
    with pytest.raises(InvalidArgument, match="threshold"):
        predictor.predict(pairs, threshold=0.5)


def test_predict_points_to_recommend(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"ML\.RECOMMEND"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.mf, TABLE demo.ratings)")


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='matrix_factorization', user_col='who') "
            "AS SELECT * FROM demo.ratings",
            "user_col 'who' is not in the training data",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='matrix_factorization') "
            "AS SELECT user, item, CAST(rating AS VARCHAR) AS rating FROM demo.ratings",
            "rating_col 'rating' has type string",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='matrix_factorization') "
            "AS SELECT *, 1 AS extra FROM demo.ratings",
            "also has ['extra']",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='matrix_factorization', "
            "feedback_type='implicit') AS SELECT user, item, rating - 10 AS rating "
            "FROM demo.ratings",
            "must be >= 0",
        ),
        (
            "SELECT * FROM ML.RECOMMEND(MODEL demo.lin)",
            "ML.RECOMMEND does not apply to model demo.lin, a LINEAR_REG model; it applies to "
            "MATRIX_FACTORIZATION",
        ),
        (
            "SELECT * FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 'u01' AS user, 3 AS other))",
            "or only one of them as its single column",
        ),
        (
            "SELECT * FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 1.5 AS user))",
            "column 'user' has type decimal128(2, 1), but the model was trained on string ids",
        ),
        ("SELECT * FROM ML.RECOMMEND(MODEL demo.mf, STRUCT(1 AS top_k))", "no parameter"),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.mf, (SELECT user, item FROM demo.ratings))",
            "the input lacks ['rating']",
        ),
    ],
)
def test_bad_input(ws: Any, sql: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ws.sql(sql)
    assert fragment in str(info.value)
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_feature_info_describes_the_id_columns(ws: Any) -> None:
    rows = {
        r["input"]: r for r in ws.sql("SELECT * FROM ML.FEATURE_INFO(MODEL demo.mf)").to_pylist()
    }
    assert set(rows) == {"user", "item"}
    # BigQuery ML computes only category_count for the user and item columns, integer or not
    assert rows["user"]["category_count"] == 60 and rows["user"]["mean"] is None
    assert rows["item"]["category_count"] == 40
    assert (rows["item"]["min"], rows["item"]["max"], rows["item"]["mean"]) == (None, None, None)


def test_same_answers_over_http(ws: Any) -> None:
    from starlette.testclient import TestClient

    from shipyard.client.remote import RemoteWorkspace
    from shipyard.server import create_app

    query = "SELECT * FROM ML.RECOMMEND(MODEL demo.mf, (SELECT 'u01' AS user)) ORDER BY item"
    local = ws.sql(query).to_arrow()
    with TestClient(create_app(ws.services), base_url="http://127.0.0.1:8765") as client:
        remote = RemoteWorkspace("http://127.0.0.1:8765", client=client)
        assert remote.sql(query).to_arrow().equals(local)
        pairs = pa.table({"user": ["u01"], "item": [3]})
        served = remote.models.load("demo.mf").predict(pairs)
    assert served.equals(ws.models.load("demo.mf").predict(pairs))


def test_flavor_round_trip_and_damage(tmp_path: Any) -> None:
    from shipyard.errors import ArtifactCorrupted
    from shipyard.registry.flavors import load_model, save_model

    model = FactorModel(
        feedback_type="EXPLICIT",
        user_ids=pa.array(["a", "b"]),
        item_ids=pa.array([10, 20, 30]),
        user_factors=np.arange(4.0).reshape(2, 2),
        item_factors=np.arange(6.0).reshape(3, 2),
        user_bias=np.array([0.5, -0.5]),
        item_bias=np.array([0.1, 0.2, 0.3]),
        intercept=3.0,
    )
    meta = save_model("factorization", model, tmp_path)
    back = load_model("factorization", tmp_path, meta)
    assert back.user_ids.equals(model.user_ids) and back.item_ids.equals(model.item_ids)
    assert np.array_equal(back.score_block(np.arange(2)), model.score_block(np.arange(2)))
    assert back.intercept == 3.0 and back.feedback_type == "EXPLICIT"
    (tmp_path / "item_factors.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ArtifactCorrupted, match="cannot be read"):
        load_model("factorization", tmp_path, meta)
    (tmp_path / "users.parquet").unlink()
    with pytest.raises(ArtifactCorrupted, match="users.parquet"):
        load_model("factorization", tmp_path, meta)


def test_chunked_scoring_gives_the_same_answers(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import shipyard.registry.factorization as factorization
    import shipyard.sql.recommend as recommend

    all_pairs = "SELECT * FROM ML.RECOMMEND(MODEL demo.imf) ORDER BY visitor, page"
    whole = ws.sql(all_pairs).to_arrow()
    metrics = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.imf, TABLE demo.clicks)").to_pylist()
    monkeypatch.setattr(factorization, "CHUNK_PAIRS", 7)
    monkeypatch.setattr(recommend, "CHUNK_PAIRS", 7)
    assert ws.sql(all_pairs).to_arrow().equals(whole)
    again = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.imf, TABLE demo.clicks)").to_pylist()
    assert again[0] == pytest.approx(metrics[0])
    monkeypatch.setattr(recommend, "MAX_RECOMMEND_ROWS", 100)
    with pytest.raises(InvalidArgument, match="pass a table of the users"):
        ws.sql("SELECT * FROM ML.RECOMMEND(MODEL demo.imf)")
