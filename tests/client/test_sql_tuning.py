"""Hyperparameter tuning through the SDK, embedded and over HTTP: the same statement, the same
ML.TRIAL_INFO rows (STRUCT columns included) and trial_id in ML.PREDICT."""

from __future__ import annotations

from typing import Any

import pytest

import shipyard as sy

pytest.importorskip("optuna")


def test_tuning_over_the_sdk(ws: Any) -> None:
    ws.load_table(
        "demo.pts", [{"x": float(i), "z": float(i % 7), "y": 3.0 * i + (i % 5)} for i in range(60)]
    )
    ws.sql(
        "CREATE MODEL demo.tuned OPTIONS(model_type='BOOSTED_TREE_REGRESSOR', num_trials=3, "
        "input_label_cols=['y'], max_iterations=5, max_tree_depth=HPARAM_CANDIDATES([1, 2, 3]))"
        " AS SELECT * FROM demo.pts"
    )
    info = ws.sql("SELECT * FROM ML.TRIAL_INFO(MODEL demo.tuned) ORDER BY trial_id").to_pylist()
    assert [t["trial_id"] for t in info] == [1, 2, 3]
    assert sorted(t["hyperparameters"]["max_tree_depth"] for t in info) == [1, 2, 3]
    assert sum(t["is_optimal"] for t in info) == 1
    assert all(isinstance(t["hparam_tuning_evaluation_metrics"]["r2_score"], float) for t in info)
    rows = ws.sql(
        "SELECT predicted_y FROM ML.PREDICT(MODEL demo.tuned, TABLE demo.pts, "
        "STRUCT(2 AS trial_id))"
    )
    assert rows.num_rows == 60
    with pytest.raises(sy.InvalidArgument, match="has no trial 4"):
        ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.tuned, STRUCT(4 AS trial_id))")
