"""ModelService.register_model_object: models trained in Python become registry versions whose
Predictor predicts exactly as the estimator did."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.services import Services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = Services.build(Context.open(Settings(home=tmp_path / "home")))
    yield built
    built.close()


def _table(x: np.ndarray, names: list[str]) -> pa.Table:
    return pa.table({n: x[:, i] for i, n in enumerate(names)})


def _probs(out: pa.Table, column: str) -> np.ndarray:
    """The probabilities column back in class order (it lists classes in descending order)."""
    return np.array([[e["prob"] for e in row][::-1] for row in out[column].to_pylist()])


def _iris_frame() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def _cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)


def test_logistic_regression_on_a_dataframe_with_string_labels(services: Services) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _iris_frame()
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500, C=0.5).fit(x, species)
    mv = services.models.register_model_object(
        "demo.iris", model, label="species", metrics={"accuracy": 0.97}, description="iris"
    )
    assert (mv.model, mv.version, mv.flavor) == ("demo.iris", 1, "sklearn")
    assert mv.model_type == "SKLEARN_LOGISTICREGRESSION"
    assert mv.task == "multiclass_classification" and mv.metrics == {"accuracy": 0.97}
    assert [c.name for c in mv.signature.inputs] == list(x.columns)
    assert {c.type for c in mv.signature.inputs} == {"double"}
    assert [(c.name, c.type) for c in mv.signature.outputs] == [
        ("predicted_species", "string"),
        ("predicted_species_probs", "list<item: struct<label: string, prob: double>>"),
    ]
    manifest = services.models.manifest("demo.iris")
    assert manifest.options["C"] == 0.5 and manifest.options["max_iter"] == 500
    assert manifest.label_info == {
        "arrow_type": "string",
        "classes": ["setosa", "versicolor", "virginica"],
    }
    assert manifest.preprocessing["standardize"] is False
    assert services.models.get("demo.iris").description == "iris"

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names" per call
        out = services.models.load("demo.iris").predict(pa.Table.from_pandas(x))
    assert out["predicted_species"].to_pylist() == list(model.predict(x))
    np.testing.assert_allclose(
        _probs(out, "predicted_species_probs"), model.predict_proba(x), atol=1e-12
    )
    # The caller's estimator is unchanged (the registry stores a copy speaking class indices).
    assert list(model.classes_) == ["setosa", "versicolor", "virginica"]
    assert hasattr(model, "feature_names_in_")


def test_random_forest_on_a_matrix_is_binary_with_default_names(services: Services) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _cancer()
    model = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0).fit(x, y)
    mv = services.models.register_model_object("demo.rf", model)
    assert mv.task == "binary_classification" and mv.model_type == "SKLEARN_RANDOMFORESTCLASSIFIER"
    names = [f"f{i}" for i in range(x.shape[1])]
    assert [c.name for c in mv.signature.inputs] == names
    out = services.models.load("demo.rf").predict(_table(x, names), keep_original_columns=False)
    assert out.column_names == ["predicted_label", "predicted_label_probs"]
    assert out["predicted_label"].to_pylist() == model.predict(x).tolist()
    np.testing.assert_array_equal(_probs(out, "predicted_label_probs"), model.predict_proba(x))


def test_pipeline_regressor(services: Services) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), Ridge(alpha=0.3)).fit(x, y)
    mv = services.models.register_model_object("demo.ridge", model)
    assert (mv.task, mv.model_type) == ("regression", "SKLEARN_PIPELINE")
    out = services.models.load("demo.ridge").predict(pa.Table.from_pandas(x))
    np.testing.assert_allclose(out["predicted_label"].to_numpy(), model.predict(x), rtol=1e-12)


def test_xgb_classifier_with_class_names(services: Services) -> None:
    import xgboost as xgb

    x, y = _cancer()
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
    classes = ["malignant", "benign"]  # load_breast_cancer's target_names: 0, 1
    mv = services.models.register_model_object("demo.xgbc", model, classes=classes)
    assert (mv.flavor, mv.model_type, mv.task) == ("xgboost", "XGBOOST", "binary_classification")
    manifest = services.models.manifest("demo.xgbc")
    assert manifest.options["n_estimators"] == 20 and manifest.files == {
        "model.ubj": manifest.files["model.ubj"]
    }
    names = [f"f{i}" for i in range(x.shape[1])]
    out = services.models.load("demo.xgbc").predict(_table(x, names))
    assert out["predicted_label"].to_pylist() == [classes[i] for i in model.predict(x)]
    np.testing.assert_allclose(
        _probs(out, "predicted_label_probs"), model.predict_proba(x), rtol=1e-6
    )


def test_xgboost_train_booster_regression_keeps_missing_values(services: Services) -> None:
    import xgboost as xgb
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = x.copy()
    x[::7, 2] = np.nan  # XGBoost learns a default direction for missing values
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(x, y), num_boost_round=15)
    names = [f"x{i}" for i in range(x.shape[1])]
    mv = services.models.register_model_object("demo.xgbr", booster, feature_names=names)
    assert (mv.task, mv.model_type) == ("regression", "XGBOOST")
    manifest = services.models.manifest("demo.xgbr")
    assert manifest.options == {"num_boost_round": 15, "objective": "reg:squarederror"}
    rows = _table(x, names)
    # NULL (not only NaN) reaches the model as missing: pass-through, nothing imputed.
    rows = rows.set_column(2, "x2", pa.array(x[:, 2], from_pandas=True))
    assert rows["x2"].null_count > 0
    out = services.models.load("demo.xgbr").predict(rows)
    np.testing.assert_allclose(
        out["predicted_label"].to_numpy(), booster.predict(xgb.DMatrix(x)), rtol=1e-6
    )


def test_lgbm_regressor_on_a_dataframe(services: Services) -> None:
    import lightgbm as lgb
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = lgb.LGBMRegressor(n_estimators=25, num_leaves=7, verbose=-1).fit(x, y)
    mv = services.models.register_model_object("demo.lgbr", model, run_id=None)
    assert (mv.flavor, mv.model_type, mv.task) == ("lightgbm", "LIGHTGBM", "regression")
    assert [c.name for c in mv.signature.inputs] == list(x.columns)
    assert services.models.manifest("demo.lgbr").options["num_leaves"] == 7
    out = services.models.load("demo.lgbr").predict(pa.Table.from_pandas(x))
    np.testing.assert_array_equal(out["predicted_label"].to_numpy(), model.predict(x))


def test_lgbm_classifier_keeps_its_string_labels(services: Services) -> None:
    import lightgbm as lgb

    x, y = _iris_frame()
    labels = np.array(["a", "b", "c"])[y]
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x.to_numpy(), labels)
    mv = services.models.register_model_object("demo.lgbc", model)
    assert mv.task == "multiclass_classification"
    names = [c.name for c in mv.signature.inputs]
    assert names == [f"Column_{i}" for i in range(4)]  # LightGBM's own names
    out = services.models.load("demo.lgbc").predict(_table(x.to_numpy(), names))
    assert out["predicted_label"].to_pylist() == list(model.predict(x.to_numpy()))


def test_run_id_sets_lineage(services: Services) -> None:
    from sklearn.linear_model import LinearRegression

    services.tracking.create_experiment("exp")
    run = services.tracking.create_run("exp", name="trainer")
    x = np.arange(20.0).reshape(10, 2)
    model = LinearRegression().fit(x, x @ [1.0, 2.0])
    mv = services.models.register_model_object("demo.lin", model, run_id=run.id)
    assert mv.lineage.run_id == run.id
    assert services.models.manifest("demo.lin").lineage.run_id == run.id
    graph = services.metadata.lineage(f"runs/{run.id}", direction="downstream")
    assert "models/demo.lin/versions/1" in graph.uris
    upstream = services.metadata.lineage("models/demo.lin", direction="upstream")
    assert [(e.kind, e.id) for e in upstream.executions] == [("run", run.id)]


def test_every_call_adds_a_version(services: Services) -> None:
    from sklearn.linear_model import LinearRegression

    x = np.arange(20.0).reshape(10, 2)
    for slope in (1.0, 2.0):
        services.models.register_model_object(
            "demo.lin", LinearRegression().fit(x, x @ [slope, 0.0])
        )
    assert [v.version for v in services.models.versions("demo.lin").items] == [2, 1]
    assert services.models.get("demo.lin").aliases == {"default": 2}


def _bad_inputs() -> list[tuple[str, dict[str, Any], type[Exception], str]]:
    import xgboost as xgb
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y = _iris_frame()
    fitted = LogisticRegression(max_iter=300).fit(x.to_numpy(), y)
    softmax = xgb.train(
        {"objective": "multi:softmax", "num_class": 3}, xgb.DMatrix(x.to_numpy(), y), 2
    )
    return [
        ("unsupported type", {"model": {"a": 1}}, sy.InvalidArgument, r"builtins\.dict.*xgboost"),
        (
            "clusterer",
            {"model": KMeans(2, n_init=1, random_state=0).fit(x)},
            sy.InvalidArgument,
            "neither a classifier nor a regressor",
        ),
        ("not fitted", {"model": LinearRegression()}, sy.FailedPrecondition, "not fitted"),
        (
            "feature_names length",
            {"model": fitted, "feature_names": ["a", "b"]},
            sy.InvalidArgument,
            "2 names but .* 4 features",
        ),
        (
            "duplicate feature names",
            {"model": fitted, "feature_names": ["a", "a", "b", "c"]},
            sy.InvalidArgument,
            "appears twice",
        ),
        (
            "feature type",
            {"model": fitted, "feature_types": ["double", "double", "double", "string"]},
            sy.InvalidArgument,
            "numeric Arrow type",
        ),
        (
            "classes count",
            {"model": fitted, "classes": ["x", "y"]},
            sy.InvalidArgument,
            "2 values but .* 3 classes",
        ),
        (
            "task",
            {"model": fitted, "task": "regression"},
            sy.InvalidArgument,
            "multiclass_classification",
        ),
        ("flavor", {"model": fitted, "flavor": "xgboost"}, sy.InvalidArgument, "'sklearn'"),
        ("objective", {"model": softmax}, sy.InvalidArgument, "multi:softmax"),
        ("label", {"model": fitted, "label": "a b"}, sy.InvalidArgument, "label 'a b'"),
        ("run", {"model": fitted, "run_id": "nope"}, sy.NotFound, "nope"),
        ("name", {"model": fitted, "name": "no-dataset"}, sy.InvalidArgument, "invalid model"),
    ]


def test_bad_input_is_refused_and_stores_nothing(services: Services) -> None:
    for what, args, error, message in _bad_inputs():
        name = args.pop("name", "demo.bad")
        with pytest.raises(error, match=message):
            services.models.register_model_object(name, **args)
        assert services.models.list().items == [], what


def test_a_model_that_cannot_predict_from_numbers_is_refused(services: Services) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
    by_name = make_column_transformer((StandardScaler(), ["a"]), remainder="passthrough")
    model = make_pipeline(by_name, LinearRegression()).fit(frame, [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(sy.InvalidArgument, match="cannot predict from a numeric matrix"):
        services.models.register_model_object("demo.ct", model)
    assert not services.models.exists("demo.ct")


def test_passthrough_preprocessor_round_trips_through_json() -> None:
    p = FeaturePreprocessor.passthrough([("x", "double"), ("n", "int32")])
    stored = json.loads(json.dumps(p.to_dict()))  # JSON has no NaN: nothing to impute is null
    assert [c["impute"] for c in stored["columns"]] == [None, None]
    again = FeaturePreprocessor.from_dict(stored)
    rows = pa.table({"x": [1.5, None, float("inf")], "n": pa.array([3, None, 1], pa.int32())})
    matrix = again.transform(rows, dtype=np.float64)
    np.testing.assert_array_equal(matrix, [[1.5, 3.0], [np.nan, np.nan], [np.inf, 1.0]])
    assert again.input_schema == [{"name": "x", "type": "double"}, {"name": "n", "type": "int32"}]
    with pytest.raises(sy.InvalidArgument, match="numeric Arrow type"):
        FeaturePreprocessor.passthrough([("x", "timestamp[s]")])
    with pytest.raises(sy.InvalidArgument, match="at least one feature"):
        FeaturePreprocessor.passthrough([])


def test_sql_predicts_with_a_registered_object(services: Services) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _cancer()
    names = [f"f{i}" for i in range(x.shape[1])]
    model = LogisticRegression(max_iter=5000).fit(x, y)
    services.models.register_model_object("demo.bc", model, classes=["malignant", "benign"])
    services.tables.load("demo.rows", _table(x, names))
    out = services.sql.execute(
        "SELECT predicted_label FROM ML.PREDICT(MODEL demo.bc, TABLE demo.rows)"
    ).to_arrow()
    expected = np.array(["malignant", "benign"])[model.predict(x)]
    assert out["predicted_label"].to_pylist() == expected.tolist()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_with_passthrough_step_and_mlp_string_labels(services: Services) -> None:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline

    x, y = _iris_frame()
    labels = np.array(["a", "b", "c"])[y]
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    model = Pipeline([("skip", "passthrough"), ("mlp", mlp)]).fit(x, labels)
    mv = services.models.register_model_object("demo.mlp", model)
    assert mv.model_type == "SKLEARN_PIPELINE"
    out = services.models.load("demo.mlp").predict(pa.Table.from_pandas(x))
    assert out["predicted_label"].to_pylist() == list(model.predict(x))
    np.testing.assert_allclose(
        _probs(out, "predicted_label_probs"), model.predict_proba(x), atol=1e-12
    )
    assert list(model.classes_) == ["a", "b", "c"]  # the caller's pipeline is unchanged
