"""Hyperparameter tuning of DNN_* / DNN_LINEAR_COMBINED_* and MATRIX_FACTORIZATION models:
their search spaces and objectives, ML.TRIAL_INFO, and trial_id in ML.PREDICT / ML.EVALUATE /
ML.RECOMMEND (a trial's model is the model its hyperparameters train)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

import shipyard as sy
from shipyard.errors import InvalidArgument
from shipyard.sql.tuning import HParamCandidates, HParamRange, plan_tuning

pytest.importorskip("optuna")
pytest.importorskip("torch")
pytest.importorskip("implicit")

# The module's workspace trains two tuned models (six trials) before its first test.
_SLOW = pytest.mark.slow


def _clicks(users: int = 40, items: int = 25, seed: int = 3) -> list[dict[str, Any]]:
    """~300 implicit-feedback rows (under 500: AUTO_SPLIT keeps them all for training)."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(users, 3)) @ rng.normal(size=(items, 3)).T
    rows = []
    for user in range(users):
        liked = np.argsort(-taste[user])[:8]
        for item in rng.choice(liked, size=7, replace=False):
            rows.append(
                {"user": f"u{user}", "item": int(item), "rating": float(rng.integers(1, 5))}
            )
    return rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("tuning_nets"))
    workspace.load_table("demo.clicks", _clicks())
    data = load_diabetes()
    workspace.load_table(
        "demo.diabetes",
        [
            {**{f"f{i}": float(row[i]) for i in range(4)}, "label": float(target)}
            for row, target in zip(data.data[:300], data.target[:300], strict=True)
        ],
    )
    workspace.sql(
        "CREATE MODEL demo.imf OPTIONS(model_type='MATRIX_FACTORIZATION', "
        "feedback_type='IMPLICIT', num_trials=3, max_iterations=4, early_stop=FALSE) "
        "AS SELECT * FROM demo.clicks"
    )
    workspace.sql(
        "CREATE MODEL demo.dnn OPTIONS(model_type='DNN_REGRESSOR', num_trials=3, "
        "max_iterations=4, early_stop=FALSE, "
        "hidden_units=HPARAM_CANDIDATES([STRUCT([8, 4]), STRUCT([6])]), "
        "learn_rate=HPARAM_RANGE(0.005, 0.1)) AS SELECT * FROM demo.diabetes"
    )
    yield workspace
    workspace.close()


def _trials(ws: Any, model: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = ws.sql(f"SELECT * FROM ML.TRIAL_INFO(MODEL {model})").to_pylist()
    return out


# -- matrix factorization ---------------------------------------------------------------------


@_SLOW
def test_implicit_mf_tunes_its_default_space_for_mean_average_precision(ws: Any) -> None:
    trials = _trials(ws, "demo.imf")
    assert [t["trial_id"] for t in trials] == [1, 2, 3]
    assert all(t["status"] == "SUCCEEDED" for t in trials)
    assert set(trials[0]["hyperparameters"]) == {"num_factors", "l2_reg", "wals_alpha"}
    for t in trials:
        h = t["hyperparameters"]
        assert 2 <= h["num_factors"] <= 20 and 0 < h["l2_reg"] <= 10 and 0 <= h["wals_alpha"] <= 100
    maps = [t["hparam_tuning_evaluation_metrics"]["mean_average_precision"] for t in trials]
    best = [t for t in trials if t["is_optimal"]]
    assert len(best) == 1 and best[0]["hparam_tuning_evaluation_metrics"][
        "mean_average_precision"
    ] == max(maps)
    per_trial = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.imf) ORDER BY trial_id").to_pylist()
    assert [r["mean_average_precision"] for r in per_trial] == pytest.approx(maps)
    assert {"average_rank", "normalized_discounted_cumulative_gain"} <= set(per_trial[0])


@_SLOW
def test_mf_trial_id_gives_the_model_its_hyperparameters_train(ws: Any) -> None:
    trials = _trials(ws, "demo.imf")
    other = next(t for t in trials if not t["is_optimal"])
    h = other["hyperparameters"]
    ws.sql(
        "CREATE OR REPLACE MODEL demo.imf_again OPTIONS(model_type='MATRIX_FACTORIZATION', "
        f"feedback_type='IMPLICIT', max_iterations=4, early_stop=FALSE, "
        f"num_factors={h['num_factors']}, l2_reg={h['l2_reg']!r}, wals_alpha={h['wals_alpha']!r}) "
        "AS SELECT * FROM demo.clicks"
    )
    order = "ORDER BY user, item"
    trial = ws.sql(
        f"SELECT * FROM ML.RECOMMEND(MODEL demo.imf, STRUCT({other['trial_id']} AS trial_id)) "
        + order
    ).to_pylist()
    again = ws.sql(f"SELECT * FROM ML.RECOMMEND(MODEL demo.imf_again) {order}").to_pylist()
    optimal = ws.sql(f"SELECT * FROM ML.RECOMMEND(MODEL demo.imf) {order}").to_pylist()
    assert trial == again and trial != optimal
    evaluated = ws.sql(
        f"SELECT * FROM ML.EVALUATE(MODEL demo.imf, TABLE demo.clicks, "
        f"STRUCT({other['trial_id']} AS trial_id))"
    ).to_pylist()[0]
    stored = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.imf_again)").to_pylist()[0]
    assert evaluated == pytest.approx(stored)


@_SLOW
def test_explicit_mf_minimises_mean_squared_error(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.emf OPTIONS(model_type='MATRIX_FACTORIZATION', "
        "num_trials=2, max_iterations=3, num_factors=HPARAM_CANDIDATES([2, 5]), l2_reg=0.5) "
        "AS SELECT * FROM demo.clicks"
    )
    trials = _trials(ws, "demo.emf")
    assert sorted(t["hyperparameters"]["num_factors"] for t in trials) == [2, 5]
    errors = {
        t["trial_id"]: t["hparam_tuning_evaluation_metrics"]["mean_squared_error"] for t in trials
    }
    optimal = next(t["trial_id"] for t in trials if t["is_optimal"])
    assert errors[optimal] == min(errors.values())


@_SLOW
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (
            "num_trials=2, wals_alpha=HPARAM_RANGE(1, 50)",
            "option 'wals_alpha' applies only with feedback_type 'IMPLICIT'",
        ),
        (
            "num_trials=2, hparam_tuning_objectives=['AVERAGE_RANK']",
            "valid: MEAN_ABSOLUTE_ERROR, MEAN_SQUARED_ERROR",
        ),
        (
            "feedback_type='IMPLICIT', num_trials=2, hparam_tuning_objectives=['R2_SCORE']",
            "valid: MEAN_AVERAGE_PRECISION, MEAN_SQUARED_ERROR, "
            "NORMALIZED_DISCOUNTED_CUMULATIVE_GAIN, AVERAGE_RANK",
        ),
        ("num_trials=2, num_factors=HPARAM_RANGE(1, 10)", "INT64 in [2, 200]"),
    ],
)
def test_bad_mf_tuning(ws: Any, options: str, fragment: str) -> None:
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument) as info:
        ws.sql(
            f"CREATE MODEL demo.bad OPTIONS(model_type='MATRIX_FACTORIZATION', {options}) "
            "AS SELECT * FROM demo.clicks"
        )
    assert fragment in str(info.value)
    assert [m.name for m in ws.models.list().items] == before


# -- DNN ----------------------------------------------------------------------------------------


@_SLOW
def test_dnn_tunes_hidden_units_from_struct_candidates(ws: Any) -> None:
    trials = _trials(ws, "demo.dnn")
    assert all(t["status"] == "SUCCEEDED" for t in trials)
    units = {tuple(t["hyperparameters"]["hidden_units"]) for t in trials}
    assert units <= {(8, 4), (6,)}
    r2 = [t["hparam_tuning_evaluation_metrics"]["r2_score"] for t in trials]
    optimal = next(t for t in trials if t["is_optimal"])
    assert optimal["hparam_tuning_evaluation_metrics"]["r2_score"] == max(r2)


@_SLOW
def test_dnn_trial_id_predicts_with_that_trials_network(ws: Any) -> None:
    trials = _trials(ws, "demo.dnn")
    other = next(t for t in trials if not t["is_optimal"])
    h = other["hyperparameters"]
    units = ", ".join(str(u) for u in h["hidden_units"])
    ws.sql(
        "CREATE OR REPLACE MODEL demo.dnn_again OPTIONS(model_type='DNN_REGRESSOR', "
        f"max_iterations=4, early_stop=FALSE, hidden_units=[{units}], "
        f"learn_rate={h['learn_rate']!r}) AS SELECT * FROM demo.diabetes"
    )
    query = "SELECT predicted_label FROM ML.PREDICT(MODEL {}, TABLE demo.diabetes{})"
    trial_sql = query.format("demo.dnn", f", STRUCT({other['trial_id']} AS trial_id)")
    trial = [r["predicted_label"] for r in ws.sql(trial_sql).to_pylist()]
    again = [r["predicted_label"] for r in ws.sql(query.format("demo.dnn_again", "")).to_pylist()]
    assert trial == pytest.approx(again, rel=1e-6)
    optimal = [r["predicted_label"] for r in ws.sql(query.format("demo.dnn", "")).to_pylist()]
    assert optimal != trial


@_SLOW
def test_dnn_classifier_default_space_and_infeasible_ftrl(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.dnnc OPTIONS(model_type='DNN_CLASSIFIER', num_trials=2, "
        "max_iterations=2, hidden_units=[4], optimizer=HPARAM_CANDIDATES(['FTRL', 'ADAM'])) "
        "AS SELECT f0, f1, label > 140 AS label FROM demo.diabetes"
    )
    trials = {t["hyperparameters"]["optimizer"]: t for t in _trials(ws, "demo.dnnc")}
    assert trials["FTRL"]["status"] == "INFEASIBLE"
    assert "FTRL" in trials["FTRL"]["error_message"]
    assert trials["ADAM"]["status"] == "SUCCEEDED" and trials["ADAM"]["is_optimal"]
    assert "roc_auc" in trials["ADAM"]["hparam_tuning_evaluation_metrics"]


@_SLOW
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ("hidden_units=HPARAM_RANGE(4, 8)", "option 'hidden_units' takes arrays"),
        ("hidden_units=HPARAM_CANDIDATES([[4], [0]])", "a non-empty ARRAY<INT64>"),
        ("batch_size=HPARAM_RANGE(8, 100000)", "INT64 in [1, 8192]"),
        ("dropout=HPARAM_CANDIDATES(['high'])", "FLOAT64 in [0.0, 1.0]"),
        (
            "max_iterations=HPARAM_CANDIDATES([5, 10])",
            "cannot be tuned for model_type DNN_REGRESSOR",
        ),
    ],
)
def test_bad_dnn_tuning(ws: Any, options: str, fragment: str) -> None:
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument) as info:
        ws.sql(
            f"CREATE MODEL demo.bad OPTIONS(model_type='DNN_REGRESSOR', num_trials=2, {options}) "
            "AS SELECT * FROM demo.diabetes"
        )
    assert fragment in str(info.value)
    assert [m.name for m in ws.models.list().items] == before


def test_default_search_spaces_and_objectives() -> None:
    dnn = plan_tuning("DNN_CLASSIFIER", {"model_type": "DNN_CLASSIFIER", "num_trials": 4})
    assert dnn is not None and dnn.objective == "ROC_AUC"
    assert dnn.space["batch_size"] == HParamRange(16, 1024)
    assert dnn.space["optimizer"] == HParamCandidates(("ADAM", "ADAGRAD", "RMSPROP", "SGD"))
    assert "hidden_units" not in dnn.space  # candidates only: no default space
    wide = plan_tuning(
        "DNN_LINEAR_COMBINED_REGRESSOR",
        {"model_type": "DNN_LINEAR_COMBINED_REGRESSOR", "num_trials": 4, "dropout": 0.1},
    )
    assert wide is not None and wide.objective == "R2_SCORE"
    assert set(wide.space) == {"batch_size", "l1_reg", "l2_reg"}
    implicit = plan_tuning(
        "MATRIX_FACTORIZATION",
        {"model_type": "MATRIX_FACTORIZATION", "feedback_type": "implicit", "num_trials": 4},
    )
    assert implicit is not None and implicit.objective == "MEAN_AVERAGE_PRECISION"
    assert implicit.space["wals_alpha"] == HParamRange(0.0, 100.0)
    explicit = plan_tuning("MATRIX_FACTORIZATION", {"num_trials": 4})
    assert explicit is not None and explicit.objective == "MEAN_SQUARED_ERROR"
    assert set(explicit.space) == {"num_factors", "l2_reg"}
    average_rank = plan_tuning(
        "MATRIX_FACTORIZATION",
        {
            "feedback_type": "IMPLICIT",
            "num_trials": 2,
            "hparam_tuning_objectives": ["average_rank"],
        },
    )
    assert average_rank is not None and average_rank.minimise
