"""Hyperparameter tuning in CREATE MODEL: num_trials, HPARAM_RANGE / HPARAM_CANDIDATES, the
algorithms, ML.TRIAL_INFO, trial_id in ML.PREDICT / ML.EVALUATE / ML.EXPLAIN_PREDICT, and bad
input."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound, Unsupported
from shipyard.sql.tuning import HParamRange, plan_tuning

pytest.importorskip("optuna")

_TRIAL_INFO_COLUMNS = [
    "trial_id",
    "hyperparameters",
    "hparam_tuning_evaluation_metrics",
    "training_loss",
    "eval_loss",
    "status",
    "error_message",
    "is_optimal",
]


def _rows(loader: Any, n_features: int, limit: int) -> list[dict[str, Any]]:
    data = loader()
    return [
        {**{f"f{i}": float(row[i]) for i in range(n_features)}, "label": target.item()}
        for row, target in itertools.islice(zip(data.data, data.target, strict=True), limit)
    ]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("tuning"))
    workspace.load_table("demo.bc", _rows(load_breast_cancer, 6, 400))
    workspace.load_table("demo.diabetes", _rows(load_diabetes, 6, 300))
    iris = load_iris()
    workspace.load_table("demo.iris", [{f"f{i}": float(r[i]) for i in range(4)} for r in iris.data])
    workspace.sql(
        "CREATE MODEL demo.tuned OPTIONS(model_type='BOOSTED_TREE_CLASSIFIER', num_trials=4, "
        "max_parallel_trials=2, data_split_method='RANDOM', data_split_eval_fraction=0.3, "
        "max_iterations=8, learn_rate=HPARAM_RANGE(0.02, 0.6), "
        "max_tree_depth=HPARAM_CANDIDATES([1, 3, 5])) AS SELECT * FROM demo.bc"
    )
    workspace.sql(
        "CREATE MODEL demo.plain OPTIONS(model_type='LINEAR_REG') AS SELECT * FROM demo.diabetes"
    )
    yield workspace
    workspace.close()


def _trial_info(ws: Any, model: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ws.sql(f"SELECT * FROM ML.TRIAL_INFO(MODEL {model})").to_pylist()
    return result


# -- a tuned boosted tree classifier ----------------------------------------------------------


def test_trial_info_lists_every_trial(ws: Any) -> None:
    result = ws.sql("SELECT * FROM ML.TRIAL_INFO(MODEL demo.tuned)")
    assert result.column_names == _TRIAL_INFO_COLUMNS
    trials = result.to_pylist()
    assert [t["trial_id"] for t in trials] == [1, 2, 3, 4]
    assert all(t["status"] == "SUCCEEDED" and t["error_message"] is None for t in trials)
    for t in trials:
        assert set(t["hyperparameters"]) == {"learn_rate", "max_tree_depth"}
        assert 0.02 <= t["hyperparameters"]["learn_rate"] <= 0.6
        assert t["hyperparameters"]["max_tree_depth"] in (1, 3, 5)
        assert list(t["hparam_tuning_evaluation_metrics"]) == ["roc_auc"]
        assert 0.5 < t["hparam_tuning_evaluation_metrics"]["roc_auc"] <= 1.0
        assert t["training_loss"] > 0 and t["eval_loss"] > 0
    assert sum(t["is_optimal"] for t in trials) == 1


def test_optimal_trial_is_the_best_and_is_the_models_default(ws: Any) -> None:
    trials = _trial_info(ws, "demo.tuned")
    scores = {t["trial_id"]: t["hparam_tuning_evaluation_metrics"]["roc_auc"] for t in trials}
    (optimal,) = [t for t in trials if t["is_optimal"]]
    best = max(scores.values())
    assert scores[optimal["trial_id"]] == best
    assert best > min(scores.values())  # tuning found something better than its worst trial
    version = ws.models.get_version("demo.tuned")
    assert version.metrics["roc_auc"] == pytest.approx(best)
    manifest = ws.models.manifest("demo.tuned")
    assert manifest.options["learn_rate"] == pytest.approx(optimal["hyperparameters"]["learn_rate"])
    assert manifest.hparam_tuning["optimal_trial_id"] == optimal["trial_id"]
    assert manifest.hparam_tuning["hparam_tuning_algorithm"] == "VIZIER_DEFAULT"


def test_trial_id_selects_the_trials_model(ws: Any) -> None:
    trials = _trial_info(ws, "demo.tuned")
    (optimal,) = [t["trial_id"] for t in trials if t["is_optimal"]]
    other = next(t["trial_id"] for t in trials if not t["is_optimal"])
    query = "SELECT predicted_label_probs FROM ML.PREDICT(MODEL demo.tuned, TABLE demo.bc{})"
    default = ws.sql(query.format("")).to_pylist()
    chosen = ws.sql(query.format(f", STRUCT({optimal} AS trial_id)")).to_pylist()
    different = ws.sql(query.format(f", STRUCT({other} AS trial_id)")).to_pylist()
    assert default == chosen
    assert different != default
    evaluated = ws.sql(
        f"SELECT * FROM ML.EVALUATE(MODEL demo.tuned, TABLE demo.bc, STRUCT({other} AS trial_id))"
    ).to_pylist()
    assert len(evaluated) == 1 and 0.5 < evaluated[0]["roc_auc"] <= 1.0
    explained = ws.sql(
        "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.tuned, (SELECT * FROM demo.bc LIMIT 3), "
        f"STRUCT(2 AS top_k_features, {other} AS trial_id))"
    )
    assert explained.num_rows == 3 and "top_feature_attributions" in explained.column_names


def test_evaluate_without_input_gives_one_row_per_trial(ws: Any) -> None:
    trials = _trial_info(ws, "demo.tuned")
    rows = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.tuned)").to_pylist()
    assert [r["trial_id"] for r in rows] == [1, 2, 3, 4]
    for row, trial in zip(rows, trials, strict=True):
        assert row["roc_auc"] == pytest.approx(trial["hparam_tuning_evaluation_metrics"]["roc_auc"])
        assert 0 <= row["accuracy"] <= 1 and row["log_loss"] > 0
    one = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.tuned, STRUCT(2 AS trial_id))").to_pylist()
    assert len(one) == 1 and one[0]["roc_auc"] == pytest.approx(rows[1]["roc_auc"])


def test_training_info_lists_every_trials_iterations(ws: Any) -> None:
    result = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.tuned) ORDER BY trial_id, iteration")
    assert result.column_names[:3] == ["trial_id", "training_run", "iteration"]
    rows = result.to_pylist()
    assert {r["trial_id"] for r in rows} == {1, 2, 3, 4}
    trials = {t["trial_id"]: t for t in _trial_info(ws, "demo.tuned")}
    for trial_id, trial in trials.items():
        last = [r for r in rows if r["trial_id"] == trial_id][-1]
        assert last["loss"] == pytest.approx(trial["training_loss"])
        assert last["eval_loss"] == pytest.approx(trial["eval_loss"])
    plain = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.plain)")
    assert "trial_id" not in plain.column_names


def test_job_reports_each_trial(ws: Any) -> None:
    job_id = ws.models.get_version("demo.tuned").lineage.job_id
    lines = [line.line for line in ws.jobs.logs(job_id)]
    assert any("4 trials, 2 at a time" in line for line in lines)
    assert sum(line.startswith("trial ") and "SUCCEEDED" in line for line in lines) == 4


# -- algorithms, objectives and default search spaces ---------------------------------------


def test_grid_search_tries_every_combination_once(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.grid OPTIONS(model_type='BOOSTED_TREE_REGRESSOR', num_trials=10, "
        "hparam_tuning_algorithm='GRID_SEARCH', max_iterations=5, data_split_method='RANDOM', "
        "max_tree_depth=HPARAM_CANDIDATES([2, 4]), "
        "tree_method=HPARAM_CANDIDATES(['hist', 'approx'])) "
        "AS SELECT * FROM demo.diabetes"
    )
    trials = _trial_info(ws, "demo.grid")
    combos = {
        (t["hyperparameters"]["max_tree_depth"], t["hyperparameters"]["tree_method"])
        for t in trials
    }
    assert len(trials) == 4 and combos == set(itertools.product([2, 4], ["HIST", "APPROX"]))
    scores = [t["hparam_tuning_evaluation_metrics"]["r2_score"] for t in trials]
    (optimal,) = [t for t in trials if t["is_optimal"]]
    assert optimal["hparam_tuning_evaluation_metrics"]["r2_score"] == max(scores)


def test_minimised_objective_and_default_search_space(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='LINEAR_REG', num_trials=5, "
        "hparam_tuning_algorithm='RANDOM_SEARCH', hparam_tuning_objectives=['mean_squared_error'], "
        "data_split_method='RANDOM') AS SELECT * FROM demo.diabetes"
    )
    trials = _trial_info(ws, "demo.lin")
    assert len(trials) == 5
    for t in trials:  # BigQuery ML's default space for LINEAR_REG: l1_reg, l2_reg in (0, 10]
        assert set(t["hyperparameters"]) == {"l1_reg", "l2_reg"}
        assert all(0 < v <= 10 for v in t["hyperparameters"].values())
    mse = [t["hparam_tuning_evaluation_metrics"]["mean_squared_error"] for t in trials]
    (optimal,) = [t for t in trials if t["is_optimal"]]
    assert optimal["hparam_tuning_evaluation_metrics"]["mean_squared_error"] == min(mse)
    assert ws.models.get_version("demo.lin").metrics["mean_squared_error"] == pytest.approx(
        min(mse)
    )


def test_trial_models_of_sklearn_flavors_load(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.lin2 OPTIONS(model_type='LINEAR_REG', num_trials=2, "
        "l2_reg=HPARAM_CANDIDATES([0.0, 50.0])) AS SELECT * FROM demo.diabetes"
    )
    query = "SELECT predicted_label FROM ML.PREDICT(MODEL demo.lin2, TABLE demo.diabetes{})"
    first, second = (
        ws.sql(query.format(f", STRUCT({i} AS trial_id)")).to_arrow()["predicted_label"].to_numpy()
        for i in (1, 2)
    )
    assert not np.allclose(first, second)  # different regularisation, different models
    ws.sql(
        "CREATE MODEL demo.km2 OPTIONS(model_type='KMEANS', num_trials=2, "
        "num_clusters=HPARAM_CANDIDATES([2, 5])) AS SELECT * FROM demo.iris"
    )
    trials = {
        t["hyperparameters"]["num_clusters"]: t["trial_id"] for t in _trial_info(ws, "demo.km2")
    }
    found = ws.sql(
        "SELECT COUNT(DISTINCT centroid_id) AS n FROM ML.PREDICT(MODEL demo.km2, TABLE demo.iris, "
        f"STRUCT({trials[5]} AS trial_id))"
    ).to_pylist()
    assert found == [{"n": 5}]


def test_trials_keep_the_transform(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.tx TRANSFORM(f0 * 2 AS g0, ML.STANDARD_SCALER(f1) OVER () AS g1, label) "
        "OPTIONS(model_type='LINEAR_REG', num_trials=2, l2_reg=HPARAM_CANDIDATES([0.0, 50.0])) "
        "AS SELECT * FROM demo.diabetes"
    )
    for trial_id in (1, 2):
        rows = ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.tx, (SELECT f0, f1 FROM demo.diabetes), "
            f"STRUCT({trial_id} AS trial_id))"
        )
        assert rows.num_rows == 300 and "predicted_label" in rows.column_names


def test_kmeans_tunes_num_clusters(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.km OPTIONS(model_type='KMEANS', num_trials=3, "
        "num_clusters=HPARAM_CANDIDATES([2, 3, 6])) AS SELECT * FROM demo.iris"
    )
    trials = _trial_info(ws, "demo.km")
    assert sorted(t["hyperparameters"]["num_clusters"] for t in trials) == [2, 3, 6]
    dbi = {
        t["hyperparameters"]["num_clusters"]: t["hparam_tuning_evaluation_metrics"][
            "davies_bouldin_index"
        ]
        for t in trials
    }
    (optimal,) = [t for t in trials if t["is_optimal"]]
    assert dbi[optimal["hyperparameters"]["num_clusters"]] == min(dbi.values())
    # ML.CENTROIDS of a tuned model lists every trial, trial_id first (BigQuery ML's rule)
    centroids = ws.sql(
        "SELECT DISTINCT centroid_id FROM ML.CENTROIDS(MODEL demo.km) "
        f"WHERE trial_id = {optimal['trial_id']}"
    )
    assert centroids.num_rows == optimal["hyperparameters"]["num_clusters"]


def test_infeasible_trials_are_recorded(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.dart OPTIONS(model_type='BOOSTED_TREE_REGRESSOR', num_trials=2, "
        "max_iterations=3, dropout=0.2, booster_type=HPARAM_CANDIDATES(['GBTREE', 'DART'])) "
        "AS SELECT * FROM demo.diabetes"
    )
    trials = {t["hyperparameters"]["booster_type"]: t for t in _trial_info(ws, "demo.dart")}
    assert trials["GBTREE"]["status"] == "INFEASIBLE"
    assert "dropout" in trials["GBTREE"]["error_message"]
    assert trials["GBTREE"]["hparam_tuning_evaluation_metrics"]["r2_score"] is None
    assert trials["DART"]["status"] == "SUCCEEDED" and trials["DART"]["is_optimal"]
    bad = trials["GBTREE"]["trial_id"]
    with pytest.raises(InvalidArgument, match=f"trial {bad} of model demo.dart INFEASIBLE"):
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.dart, TABLE demo.diabetes, "
            f"STRUCT({bad} AS trial_id))"
        )


def test_cancelling_the_job_stops_the_trials(ws: Any) -> None:
    job = ws.submit_sql(
        "CREATE MODEL demo.cancelled OPTIONS(model_type='BOOSTED_TREE_REGRESSOR', "
        "num_trials=100, max_iterations=300, early_stop=FALSE, learn_rate=0.01, "
        "max_tree_depth=HPARAM_RANGE(8, 12)) AS SELECT * FROM demo.diabetes"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the trials to start
        lines = [line.line for line in ws.jobs.logs(job.id)]
        if any(line.startswith("trial ") for line in lines):
            break
        time.sleep(0.05)
    ws.jobs.cancel(job.id)
    done = ws.jobs.wait(job.id, timeout=60)
    assert done.state.value == "CANCELLED"
    trials_run = [line for line in ws.jobs.logs(job.id) if line.line.startswith("trial ")]
    assert 1 <= len(trials_run) < 100
    assert "demo.cancelled" not in [m.name for m in ws.models.list().items]


# -- bad input --------------------------------------------------------------------------------

_CREATE = "CREATE MODEL demo.bad OPTIONS({}) AS SELECT * FROM demo.diabetes"


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (
            "model_type='LINEAR_REG', num_trials=3, max_iterations=HPARAM_RANGE(1, 5)",
            ["'max_iterations' cannot be tuned", "l1_reg, l2_reg"],
        ),
        (
            "model_type='LINEAR_REG', num_trials=3, l1_reg=0.1, l2_reg=0.2",
            ["needs a hyperparameter to tune", "l1_reg, l2_reg"],
        ),
        (
            "model_type='BOOSTED_TREE_REGRESSOR', num_trials=3, "
            "hparam_tuning_objectives=['ROC_AUC']",
            ["'ROC_AUC' is not valid for model_type BOOSTED_TREE_REGRESSOR", "R2_SCORE"],
        ),
        (
            "model_type='LINEAR_REG', num_trials=2, max_parallel_trials=3",
            ["'max_parallel_trials' (3) cannot exceed 'num_trials' (2)"],
        ),
        (
            "model_type='BOOSTED_TREE_REGRESSOR', num_trials=2, "
            "hparam_tuning_algorithm='GRID_SEARCH', "
            "learn_rate=HPARAM_RANGE(0.1, 0.5)",
            ["GRID_SEARCH needs HPARAM_CANDIDATES", "learn_rate"],
        ),
        (
            "model_type='LINEAR_REG', num_trials=2, hparam_tuning_algorithm='bayes'",
            ["'bayes'", "VIZIER_DEFAULT, RANDOM_SEARCH, GRID_SEARCH"],
        ),
        ("model_type='LINEAR_REG', l1_reg=HPARAM_RANGE(0, 1)", ["add OPTIONS(num_trials"]),
        (
            "model_type='LINEAR_REG', num_trials=101",
            ["'num_trials' must be an INT64 from 1 to 100"],
        ),
        ("model_type='LINEAR_REG', num_trials=2, max_parallel_trials=6", ["from 1 to 5"]),
        (
            "model_type='BOOSTED_TREE_REGRESSOR', num_trials=2, booster_type=HPARAM_RANGE(0, 1)",
            ["use HPARAM_CANDIDATES", "GBTREE, DART"],
        ),
        (
            "model_type='BOOSTED_TREE_REGRESSOR', num_trials=2, "
            "tree_method=HPARAM_CANDIDATES(['fast'])",
            ["'fast'", "AUTO, EXACT, APPROX, HIST"],
        ),
        (
            "model_type='BOOSTED_TREE_REGRESSOR', num_trials=2, subsample=HPARAM_RANGE(0.5, 2)",
            ["outside its valid range"],
        ),
        (
            "model_type='LINEAR_REG', num_trials=2, "
            "hparam_tuning_objectives=['R2_SCORE', 'MEAN_SQUARED_ERROR']",
            ["takes one objective"],
        ),
        ("model_type='LINEAR_REG', num_trials=2, warm_start=TRUE", ["warm_start=TRUE cannot"]),
        ("model_type='LINEAR_REG', num_trials=2, l1_reg=HPARAM_RANGE(3, 1)", ["min < max"]),
    ],
)
def test_bad_tuning_options(ws: Any, options: str, fragments: list[str]) -> None:
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument) as info:
        ws.sql(_CREATE.format(options))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert [m.name for m in ws.models.list().items] == before


def test_model_types_without_tuning(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="unknown option 'num_trials' for model_type PCA"):
        ws.sql(_CREATE.format("model_type='PCA', num_trials=2, num_principal_components=2"))
    with pytest.raises(Unsupported, match="not supported for model_type PCA"):
        ws.sql(
            _CREATE.format(
                "model_type='PCA', num_trials=2, num_principal_components=HPARAM_RANGE(1, 3)"
            )
        )


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "SELECT * FROM ML.PREDICT(MODEL demo.tuned, TABLE demo.bc, STRUCT(9 AS trial_id))",
            "model demo.tuned has no trial 9; its trial_id values are 1 to 4",
        ),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.tuned, STRUCT(0 AS trial_id))",
            "has no trial 0",
        ),
        (
            "SELECT * FROM ML.PREDICT(MODEL demo.plain, TABLE demo.diabetes, "
            "STRUCT(1 AS trial_id))",
            "model demo.plain was not",
        ),
        ("SELECT * FROM ML.TRIAL_INFO(MODEL demo.plain)", "not trained with hyperparameter tuning"),
        ("SELECT * FROM ML.TRIAL_INFO(MODEL demo.tuned, TABLE demo.bc)", "takes only the model"),
        (
            "SELECT * FROM ML.EVALUATE(MODEL demo.tuned, STRUCT(0.5 AS threshold))",
            "takes only 'trial_id'",
        ),
    ],
)
def test_bad_trial_references(ws: Any, sql: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ws.sql(sql)
    assert fragment in str(info.value)


def test_trial_info_types(ws: Any) -> None:
    info = ws.sql("SELECT * FROM ML.TRIAL_INFO(MODEL demo.tuned)").to_arrow()
    assert str(info.schema.field("hyperparameters").type) == (
        "struct<learn_rate: double, max_tree_depth: int64>"
    )
    assert np.isfinite(info["training_loss"].to_numpy()).all()


def test_plan_defaults_leave_fixed_options_alone() -> None:
    assert plan_tuning("LINEAR_REG", {"model_type": "LINEAR_REG"}) is None
    plan = plan_tuning(
        "BOOSTED_TREE_CLASSIFIER",
        {"model_type": "BOOSTED_TREE_CLASSIFIER", "num_trials": 5, "learn_rate": 0.1},
    )
    assert plan is not None
    assert list(plan.space) == ["max_tree_depth", "l1_reg", "l2_reg", "subsample"]
    assert plan.space["max_tree_depth"] == HParamRange(1, 10)
    assert (plan.objective, plan.algorithm, plan.max_parallel_trials) == (
        "ROC_AUC",
        "VIZIER_DEFAULT",
        1,
    )
    assert plan.base == {"model_type": "BOOSTED_TREE_CLASSIFIER", "learn_rate": 0.1}
    kmeans = plan_tuning("KMEANS", {"model_type": "KMEANS", "num_trials": 3})
    assert kmeans is not None and kmeans.space == {"num_clusters": HParamRange(2, 10)}
    assert kmeans.objective == "DAVIES_BOULDIN_INDEX" and kmeans.minimise


def test_registry_loads_only_stored_trials(ws: Any) -> None:
    models = ws.services.models
    assert models.load_trial("demo.tuned", 2).task == "binary_classification"
    with pytest.raises(NotFound, match="no stored model for trial 99"):
        models.load_trial("demo.tuned", 99)
    with pytest.raises(NotFound, match="no stored model for trial 1"):
        models.load_trial("demo.plain", 1)
