"""``sy.autolog()``: scikit-learn, XGBoost and LightGBM training logged as runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.client import autolog as autolog_module


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Any]:
    workspace = sy.connect(tmp_path / "home")
    sy.set_workspace(workspace)
    try:
        yield workspace
    finally:
        sy.autolog(disable=True)
        while sy.active_run() is not None:
            sy.end_run()
        sy.set_workspace(None)
        workspace.close()


def _runs(ws: Any) -> list[Any]:
    return list(ws.runs.list().items)


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


def test_sklearn_fit_logs_params_and_training_metrics(ws: Any) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    assert sy.autolog(["sklearn"]) == ["sklearn"]
    x, y = _iris()
    model = LogisticRegression(max_iter=500, C=0.5).fit(x, y)
    assert model.coef_.shape == (3, 4)
    (run,) = _runs(ws)
    assert run.status.value == "FINISHED" and run.name == "LogisticRegression"
    assert run.params["C"] == "0.5" and run.params["max_iter"] == "500"
    assert run.tags["estimator_name"] == "LogisticRegression"
    assert run.tags["estimator_class"].endswith("LogisticRegression")
    assert run.metrics["training_accuracy"] > 0.9
    assert {"training_f1", "training_log_loss", "fit_duration_s"} <= set(run.metrics)

    # Inside an active run, autolog logs into it and leaves it running.
    with sy.start_run(name="mine") as mine:
        LinearRegression().fit(x, y.astype(float))
        assert sy.active_run() is mine
    got = ws.runs.get(mine.id)
    assert got.status.value == "FINISHED" and len(_runs(ws)) == 2
    assert {"training_r2", "training_mae", "training_mse"} <= set(got.metrics)


def test_grid_search_logs_one_run(ws: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sy.autolog(["sklearn"])
    sy.autolog(["sklearn"])  # idempotent
    x, y = _iris()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0]}, cv=3).fit(x, y)
    assert search.best_params_
    (run,) = _runs(ws)
    assert run.name == "GridSearchCV" and run.status.value == "FINISHED"
    assert "param_grid" in run.params and "best_cv_score" in run.metrics
    assert run.metrics["training_accuracy"] > 0.9


def test_xgboost_train_logs_one_point_per_round(ws: Any) -> None:
    import xgboost as xgb

    sy.autolog(["xgboost"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = x[:, 0] * 2 + rng.normal(size=200) * 0.1
    dtrain, dvalid = xgb.DMatrix(x[:150], y[:150]), xgb.DMatrix(x[150:], y[150:])
    xgb.train({"max_depth": 3, "eta": 0.3}, dtrain, 7, evals=[(dvalid, "validation_0")])
    (run,) = _runs(ws)
    assert run.status.value == "FINISHED" and run.name == "xgboost"
    assert run.params["max_depth"] == "3" and run.params["num_boost_round"] == "7"
    assert set(run.metrics) == {"validation_0-rmse"}
    history = ws.runs.metric_history(run.id, "validation_0-rmse").items
    assert [p.step for p in history] == list(range(7))

    # The sklearn wrapper goes through xgboost.train.
    xgb.XGBRegressor(n_estimators=4).fit(x, y, eval_set=[(x, y)], verbose=False)
    assert len(_runs(ws)) == 2


def test_lightgbm_train_logs_one_point_per_round(ws: Any) -> None:
    import lightgbm as lgb

    sy.autolog(["lightgbm"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] * 2 + rng.normal(size=300) * 0.1
    train = lgb.Dataset(x[:200], y[:200])
    valid = lgb.Dataset(x[200:], y[200:], reference=train)
    params = {"objective": "regression", "num_leaves": 7, "verbose": -1}
    lgb.train(params, train, num_boost_round=6, valid_sets=[valid])
    (run,) = _runs(ws)
    assert run.status.value == "FINISHED" and run.name == "lightgbm"
    assert run.params["num_leaves"] == "7" and run.params["num_boost_round"] == "6"
    assert set(run.metrics) == {"valid_0-l2"}
    history = ws.runs.metric_history(run.id, "valid_0-l2").items
    assert [p.step for p in history] == list(range(6))


def test_disable_restores_the_originals(ws: Any) -> None:
    import lightgbm as lgb
    import lightgbm.sklearn
    import xgboost as xgb
    import xgboost.sklearn
    from sklearn.linear_model import LogisticRegression

    before = (
        LogisticRegression.__dict__["fit"],
        xgb.train,
        xgboost.sklearn.train,
        lgb.train,
        lightgbm.sklearn.train,
    )
    assert sy.autolog() == ["sklearn", "xgboost", "lightgbm"]
    assert LogisticRegression.__dict__["fit"] is not before[0] and xgb.train is not before[1]
    assert lightgbm.sklearn.train is not before[4]
    sy.autolog(disable=True)
    after = (
        LogisticRegression.__dict__["fit"],
        xgb.train,
        xgboost.sklearn.train,
        lgb.train,
        lightgbm.sklearn.train,
    )
    assert after == before
    x, y = _iris()
    LogisticRegression(max_iter=500).fit(x, y)
    assert _runs(ws) == []


def test_bad_arguments() -> None:
    with pytest.raises(sy.InvalidArgument, match="unknown autolog framework"):
        sy.autolog(["torch"])
    with pytest.raises(sy.Unsupported, match="log_models"):
        sy.autolog(log_models=True)


def test_an_autolog_failure_does_not_break_fit(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LogisticRegression

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(autolog_module, "_sklearn_params", boom)
    monkeypatch.setattr(autolog_module, "_sklearn_metrics", boom)
    sy.autolog(["sklearn"])
    x, y = _iris()
    with pytest.warns(autolog_module.AutologWarning, match="boom"):
        model = LogisticRegression(max_iter=500).fit(x, y)
    assert model.predict(x[:2]).shape == (2,)
    (run,) = _runs(ws)
    assert run.status.value == "FINISHED" and "fit_duration_s" in run.metrics

    # Not even when starting the run fails.
    monkeypatch.setattr(autolog_module.fluent, "start_run", boom)
    with pytest.warns(autolog_module.AutologWarning, match="starting a run"):
        LogisticRegression(max_iter=500).fit(x, y)
    assert len(_runs(ws)) == 1


def test_training_errors_fail_the_run(ws: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    sy.autolog(["sklearn"])
    with pytest.raises(ValueError):
        LogisticRegression().fit([[1.0], [2.0]], [0, 0])  # one class
    (run,) = _runs(ws)
    assert run.status.value == "FAILED" and sy.active_run() is None
