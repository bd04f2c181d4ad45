"""``ws.models.register_object``: embedded, and over HTTP (``POST
/v1/models/{name}/versions:upload``) through the real app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

import shipyard as sy
from shipyard.server import create_app


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def test_register_object_then_load_and_predict(ws: Any) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _iris()
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, species)
    ws.experiments.create("exp")
    run = ws.runs.create("exp", name="trainer")
    mv = ws.models.register_object(
        "demo.iris", model, label="species", run_id=run.id, metrics={"accuracy": 1.0}
    )
    assert (mv.model, mv.version, mv.task) == ("demo.iris", 1, "multiclass_classification")
    assert mv.lineage.run_id == run.id and mv.metrics == {"accuracy": 1.0}
    assert ws.models.get_version("demo.iris").model_type == "SKLEARN_RANDOMFORESTCLASSIFIER"
    assert ws.models.manifest("demo.iris").options["n_estimators"] == 10
    out = ws.models.load("demo.iris").predict(pa.Table.from_pandas(x))
    assert out["predicted_species"].to_pylist() == list(model.predict(x))
    graph = ws.lineage(f"runs/{run.id}", direction="downstream")
    assert "models/demo.iris/versions/1" in graph.uris


def test_xgboost_wrapper_keeps_its_parameters_over_the_wire(ws: Any) -> None:
    import xgboost as xgb

    x, y = _iris()
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    mv = ws.models.register_object("demo.xgb", model, classes=["a", "b", "c"])
    assert (mv.flavor, mv.model_type) == ("xgboost", "XGBOOST")
    assert ws.models.manifest("demo.xgb").options["max_depth"] == 2
    out = ws.models.predict("demo.xgb", pa.Table.from_pandas(x))
    assert out["predicted_label"].to_pylist() == [["a", "b", "c"][i] for i in model.predict(x)]


def test_bad_input_gives_the_same_errors_both_ways(ws: Any) -> None:
    from sklearn.linear_model import LinearRegression

    x, y = _iris()
    fitted = LinearRegression().fit(x, y)
    with pytest.raises(sy.InvalidArgument, match=r"builtins\.list.*scikit-learn"):
        ws.models.register_object("demo.bad", [1, 2])
    with pytest.raises(sy.InvalidArgument, match="1 names but LinearRegression"):
        ws.models.register_object("demo.bad", fitted, feature_names=["a"])
    with pytest.raises(sy.InvalidArgument, match="invalid model name"):
        ws.models.register_object("bad", fitted)
    with pytest.raises(sy.NotFound, match="nope"):
        ws.models.register_object("demo.bad", fitted, run_id="nope")
    with pytest.raises(sy.InvalidArgument, match="regressor"):
        ws.models.register_object("demo.bad", fitted, classes=["a", "b"])
    assert ws.models.list().items == []


def test_upload_route_refuses_a_bad_description_or_file(tmp_path: Path) -> None:
    local = sy.connect(tmp_path / "home")
    try:
        with TestClient(create_app(local.services)) as client:
            url = "/v1/models/demo.m/versions:upload"
            model = {"model": ("model.txt", b"not a model", "application/octet-stream")}
            answer = client.post(url, files=model, data={"description": '{"flavor": "x"}'})
            assert answer.status_code == 400 and "valid flavors" in answer.json()["message"]
            answer = client.post(url, files=model, data={"description": '{"nope": 1}'})
            assert answer.status_code == 400 and "flavor" in answer.json()["message"]
            for flavor in ("lightgbm", "sklearn", "xgboost"):
                description = json.dumps({"flavor": flavor})
                answer = client.post(url, files=model, data={"description": description})
                assert answer.status_code == 400, flavor
                assert "cannot be loaded" in answer.json()["message"]
        assert local.models.list().items == []
    finally:
        local.close()
