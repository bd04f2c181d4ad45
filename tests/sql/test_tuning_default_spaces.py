"""The default search spaces match BigQuery ML's CREATE MODEL pages: a hyperparameter is tuned
by default exactly when the reference gives it a default range (random forests: l1_reg too),
and the options the reference lets a statement tune are the tunable ones."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy
from shipyard.sql.tuning import (
    DEFAULT_TUNED,
    TUNABLE,
    HParamCandidates,
    HParamRange,
    _distribution,
    parse_base,
    plan_tuning,
)

pytest.importorskip("optuna")

#: BigQuery ML's hyperparameters with a default range, per model type (the CREATE MODEL pages).
_REFERENCE_DEFAULTS = {
    "LINEAR_REG": {"l1_reg", "l2_reg"},
    "LOGISTIC_REG": {"l1_reg", "l2_reg"},
    "BOOSTED_TREE_REGRESSOR": {"learn_rate", "max_tree_depth", "l1_reg", "l2_reg", "subsample"},
    "BOOSTED_TREE_CLASSIFIER": {"learn_rate", "max_tree_depth", "l1_reg", "l2_reg", "subsample"},
    "RANDOM_FOREST_REGRESSOR": {
        "num_parallel_tree",
        "max_tree_depth",
        "l1_reg",
        "l2_reg",
        "subsample",
    },
    "RANDOM_FOREST_CLASSIFIER": {
        "num_parallel_tree",
        "max_tree_depth",
        "l1_reg",
        "l2_reg",
        "subsample",
    },
    "KMEANS": {"num_clusters"},
    "DNN_REGRESSOR": {"learn_rate", "dropout", "batch_size", "l1_reg", "l2_reg", "optimizer"},
    "DNN_CLASSIFIER": {"learn_rate", "dropout", "batch_size", "l1_reg", "l2_reg", "optimizer"},
    "DNN_LINEAR_COMBINED_REGRESSOR": {"dropout", "batch_size", "l1_reg", "l2_reg"},
    "DNN_LINEAR_COMBINED_CLASSIFIER": {"dropout", "batch_size", "l1_reg", "l2_reg"},
}


@pytest.mark.parametrize("model_type", sorted(_REFERENCE_DEFAULTS))
def test_default_tuned_is_what_the_reference_gives_a_default_range(model_type: str) -> None:
    assert set(DEFAULT_TUNED[model_type]) == _REFERENCE_DEFAULTS[model_type]
    with_default = {n for n, t in TUNABLE[model_type].items() if t.default is not None}
    assert with_default == _REFERENCE_DEFAULTS[model_type]


def test_random_forests_tune_l1_reg_by_default_on_a_log_scale() -> None:
    for model_type in ("RANDOM_FOREST_REGRESSOR", "RANDOM_FOREST_CLASSIFIER"):
        plan = plan_tuning(model_type, {"model_type": model_type, "num_trials": 4})
        assert plan is not None and plan.default_space
        assert plan.space["l1_reg"] == HParamRange(0.0, 10.0)
        # BigQuery ML's LOG scale: Optuna samples (0, 10] log-uniformly, from 10 / 10**5
        sampled = _distribution("l1_reg", plan.space["l1_reg"], TUNABLE[model_type]["l1_reg"])
        assert (sampled.low, sampled.high, sampled.log) == (1e-4, 10.0, True)
        assert plan.space["num_parallel_tree"] == HParamRange(2, 200)
        fixed = plan_tuning(model_type, {"num_trials": 2, "l1_reg": 0.5})  # fixed: left out
        assert fixed is not None and "l1_reg" not in fixed.space


def test_wide_and_deep_refuses_what_the_reference_does_not_tune() -> None:
    for option in ("learn_rate=HPARAM_RANGE", "optimizer=HPARAM_CANDIDATES"):
        name = option.split("=")[0]
        space = HParamRange(0.01, 0.1) if "RANGE" in option else HParamCandidates(("ADAM",))
        with pytest.raises(sy.InvalidArgument, match=f"'{name}' cannot be tuned"):
            plan_tuning("DNN_LINEAR_COMBINED_REGRESSOR", {"num_trials": 2, name: space})


def test_activation_fn_takes_candidates() -> None:
    from shipyard.sql.modeltypes import MODEL_TYPES

    space = HParamCandidates(("relu", "TANH"))
    for model_type in ("DNN_REGRESSOR", "DNN_LINEAR_COMBINED_CLASSIFIER"):
        plan = plan_tuning(model_type, {"num_trials": 2, "activation_fn": space})
        assert plan is not None and plan.space == {"activation_fn": space}
        assert parse_base(MODEL_TYPES[model_type], plan).activation_fn in ("RELU", "TANH")
    with pytest.raises(sy.InvalidArgument, match="one of RELU, RELU6"):
        plan_tuning("DNN_REGRESSOR", {"num_trials": 2, "activation_fn": HParamCandidates(("X",))})
    with pytest.raises(sy.InvalidArgument, match="takes strings"):
        plan_tuning("DNN_REGRESSOR", {"num_trials": 2, "activation_fn": HParamRange(0, 1)})


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("default_spaces"))
    workspace.load_table(
        "demo.t",
        [
            {"x": float(i % 17), "z": float(i * 7 % 13), "y": float(i % 17 + (i * 7 % 13))}
            for i in range(80)
        ],
    )
    yield workspace
    workspace.close()


@pytest.mark.slow  # XGBoost's first model in a process takes seconds
def test_a_forest_tuned_by_default_searches_l1_reg(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.forest OPTIONS(model_type='RANDOM_FOREST_REGRESSOR', "
        "input_label_cols=['y'], num_trials=3, num_parallel_tree=4, max_tree_depth=3, "
        "subsample=0.8) AS SELECT x, z, y FROM demo.t"
    )
    trials = ws.sql(
        "SELECT hyperparameters, status FROM ML.TRIAL_INFO(MODEL demo.forest) ORDER BY trial_id"
    ).to_arrow()
    assert trials["status"].to_pylist() == ["SUCCEEDED"] * 3
    chosen = trials["hyperparameters"].to_pylist()
    assert all(set(h) == {"l1_reg", "l2_reg"} for h in chosen)
    l1 = [h["l1_reg"] for h in chosen]
    assert all(0 < v <= 10 for v in l1) and len(set(l1)) == 3
    assert all(math.isfinite(h["l2_reg"]) for h in chosen)
