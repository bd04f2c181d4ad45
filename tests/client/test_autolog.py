"""``sy.autolog()``: scikit-learn, XGBoost and LightGBM training logged as runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
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


def _iris_frame() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


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
    with pytest.raises(sy.InvalidArgument, match="invalid model name 'iris'"):
        sy.autolog(registered_model_name="iris")
    with pytest.raises(sy.InvalidArgument, match="log_models"):
        sy.autolog(log_models="yes")  # type: ignore[arg-type]


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


# -- log_models: the fitted model goes to the registry ---------------------------------------------


@pytest.fixture(params=["embedded", "remote"])
def both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A workspace for the fluent API, embedded or over HTTP through the real app."""
    local = sy.connect(tmp_path / "home")
    client = None
    workspace = local
    if request.param == "remote":
        from starlette.testclient import TestClient

        from shipyard.client.remote import RemoteWorkspace
        from shipyard.server import create_app

        client = TestClient(create_app(local.services), base_url="http://127.0.0.1:8765")
        client.__enter__()
        workspace = RemoteWorkspace("http://127.0.0.1:8765", client=client)
    sy.set_workspace(workspace)
    try:
        yield workspace
    finally:
        sy.autolog(disable=True)
        while sy.active_run() is not None:
            sy.end_run()
        sy.set_workspace(None)
        if client is not None:
            client.__exit__(None, None, None)
        local.close()


def test_log_models_registers_the_fitted_model_with_its_run(both: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    ws = both
    sy.autolog(["sklearn"], registered_model_name="autolog.iris_clf")
    x, y = _iris_frame()
    model = LogisticRegression(max_iter=500).fit(x, y)
    (run,) = _runs(ws)
    mv = ws.models.get_version("autolog.iris_clf")
    assert mv.version == 1 and mv.lineage.run_id == run.id
    assert mv.model_type == "SKLEARN_LOGISTICREGRESSION"
    assert [c.name for c in mv.signature.inputs] == list(x.columns)
    assert mv.signature.outputs[0].name == "predicted_target"  # y.name
    assert run.tags["registered_model"] == "autolog.iris_clf"
    assert run.tags["registered_model_version"] == "1"
    assert "models/autolog.iris_clf/versions/1" in ws.lineage(f"runs/{run.id}").uris
    out = ws.models.load("autolog.iris_clf").predict(pa.Table.from_pandas(x))
    assert out["predicted_target"].to_pylist() == model.predict(x).tolist()

    LogisticRegression(max_iter=500, C=0.1).fit(x, y)  # the same name: the next version
    assert ws.models.get("autolog.iris_clf").latest_version == 2
    assert ws.models.manifest("autolog.iris_clf").options["C"] == 0.1


def test_default_model_name_and_boosters(both: Any) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.preprocessing import StandardScaler

    ws = both
    sy.autolog()
    x, _ = _iris()
    StandardScaler().fit(x)  # a transformer: a run, no model
    assert ws.models.list().items == []
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 3))
    target = features[:, 0] * 3 + rng.normal(size=120) * 0.1
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(features, target), 5)
    import pandas as pd

    frame = pd.DataFrame(features, columns=["first col", "second col", "third"])
    lgb.train({"verbose": -1, "num_leaves": 5}, lgb.Dataset(frame, target), num_boost_round=5)
    runs = {r.name: r for r in _runs(ws)}
    xgb_run, lgb_run = runs["xgboost"], runs["lightgbm"]
    xgb_model = f"autolog.xgboost_{xgb_run.id[:8]}"
    mv = ws.models.get_version(xgb_model)
    assert mv.lineage.run_id == xgb_run.id and mv.model_type == "XGBOOST"
    rows = pa.table({f"f{i}": features[:, i] for i in range(3)})
    np.testing.assert_allclose(
        ws.models.load(xgb_model).predict(rows)["predicted_label"].to_numpy(),
        booster.predict(xgb.DMatrix(features)),
        rtol=1e-6,
    )
    lgb_version = ws.models.get_version(f"autolog.lightgbm_{lgb_run.id[:8]}")
    # The DataFrame's own columns, not LightGBM's renamed ones ("first_col").
    assert [c.name for c in lgb_version.signature.inputs] == list(frame.columns)
    assert ws.models.manifest(lgb_version.model).options["num_leaves"] == 5


def test_log_models_false_and_non_numeric_columns(ws: Any) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    x, y = _iris()
    sy.autolog(["sklearn"], log_models=False)
    LogisticRegression(max_iter=500).fit(x, y)
    assert len(_runs(ws)) == 1 and ws.models.list().items == []

    sy.autolog(["sklearn"])
    frame = pd.DataFrame({"colour": ["red", "blue"] * 10, "size": np.arange(20.0)})
    encode = make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough")
    pipe = make_pipeline(encode, LogisticRegression())
    with pytest.warns(autolog_module.AutologWarning, match=r"not all numeric \(colour: "):
        pipe.fit(frame, np.arange(20) % 2)
    assert len(_runs(ws)) == 2 and ws.models.list().items == []
