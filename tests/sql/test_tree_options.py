"""RANDOM_FOREST_* and the tree options (DART, instance_weight_col): defaults, training, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import accuracy_score, r2_score

import shipyard as sy
from shipyard.errors import InvalidArgument
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options


def _table(loader: Any) -> pa.Table:
    data = loader()
    columns: dict[str, Any] = {f"f{i}": data.data[:, i] for i in range(data.data.shape[1])}
    columns["label"] = data.target
    return pa.table(columns)


def _config(booster: xgb.Booster) -> dict[str, Any]:
    return json.loads(booster.save_config())  # type: ignore[no-any-return]


# -- options ----------------------------------------------------------------------------------


def test_random_forest_defaults_are_bigquery_mls() -> None:
    rf = parse_options({"model_type": "random_forest_classifier"})
    assert rf.model_type == "RANDOM_FOREST_CLASSIFIER"
    assert (rf.num_parallel_tree, rf.subsample, rf.colsample_bynode) == (100, 0.8, 0.8)
    assert (rf.colsample_bytree, rf.colsample_bylevel, rf.max_tree_depth) == (1.0, 1.0, 15)
    assert (rf.l1_reg, rf.l2_reg, rf.min_split_loss, rf.min_tree_child_weight) == (0, 1.0, 0, 1)
    assert (rf.tree_method, rf.early_stop, rf.min_rel_progress) == ("AUTO", True, 0.01)
    assert rf.category_encoding_method == "LABEL_ENCODING" and rf.instance_weight_col is None
    names = MODEL_TYPES["RANDOM_FOREST_REGRESSOR"].option_names
    assert "num_parallel_tree" in names and "instance_weight_col" in names
    assert "max_iterations" not in names and "learn_rate" not in names
    assert "auto_class_weights" not in names
    assert "class_weights" in MODEL_TYPES["RANDOM_FOREST_CLASSIFIER"].option_names


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"learn_rate": 0.1}, "unknown option 'learn_rate'"),
        ({"max_iterations": 3}, "unknown option 'max_iterations'"),
        ({"booster_type": "DART"}, "unknown option 'booster_type'"),
        ({"num_parallel_tree": 1}, "'num_parallel_tree' for model_type RANDOM_FOREST_REGRESSOR"),
        ({"subsample": 1.0}, "'subsample'"),
        ({"colsample_bynode": 0.0}, "'colsample_bynode'"),
        ({"tree_method": "fast"}, "'AUTO', 'EXACT', 'APPROX', 'HIST'"),
        ({"instance_weight_col": 3}, "'instance_weight_col'"),
    ],
)
def test_random_forest_bad_options(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_options({"model_type": "RANDOM_FOREST_REGRESSOR", **options})
    assert fragment in str(info.value)


def test_dart_options_need_dart() -> None:
    dart = parse_options(
        {"model_type": "BOOSTED_TREE_REGRESSOR", "booster_type": "dart", "dropout": 0.2}
    )
    assert (dart.booster_type, dart.dropout, dart.dart_normalize_type) == ("DART", 0.2, "TREE")
    for name, value in (("dropout", 0.1), ("dart_normalize_type", "FOREST")):
        with pytest.raises(InvalidArgument, match=f"'{name}' applies only with booster_type"):
            parse_options({"model_type": "BOOSTED_TREE_REGRESSOR", name: value})
    with pytest.raises(InvalidArgument, match="'dropout'.*<= 1"):
        parse_options(
            {"model_type": "BOOSTED_TREE_REGRESSOR", "booster_type": "DART", "dropout": 2}
        )


# -- training ---------------------------------------------------------------------------------


def test_random_forest_is_one_round_of_parallel_trees() -> None:
    t = _table(load_diabetes)
    trained = MODEL_TYPES["RANDOM_FOREST_REGRESSOR"].train(
        t, {"model_type": "RANDOM_FOREST_REGRESSOR", "num_parallel_tree": 20}
    )
    booster = trained.model
    params = _config(booster)["learner"]["gradient_booster"]
    assert params["gbtree_model_param"]["num_parallel_tree"] == "20"
    assert booster.num_boosted_rounds() == 1
    updater = params["tree_train_param"]
    assert float(updater["subsample"]) == pytest.approx(0.8)
    assert float(updater["colsample_bynode"]) == pytest.approx(0.8)
    assert float(updater["eta"]) == 1.0 and updater["max_depth"] == "15"
    assert len(trained.training_info) == 1


def test_random_forest_parity_with_xgboost_rf() -> None:
    """As good as XGBoost's own random forest with the same settings (same split)."""
    t = _table(load_breast_cancer)
    settings = {"data_split_method": "NO_SPLIT", "num_parallel_tree": 30, "max_tree_depth": 8}
    trained = MODEL_TYPES["RANDOM_FOREST_CLASSIFIER"].train(
        t, {"model_type": "RANDOM_FOREST_CLASSIFIER", **settings}
    )
    x = np.column_stack([t[c].to_numpy() for c in t.column_names if c != "label"])
    y = t["label"].to_numpy()
    ours = trained.eval_metrics["accuracy"]
    same: dict[str, Any] = {"tree_method": "hist", "random_state": 0}
    direct = xgb.XGBRFClassifier(
        n_estimators=30, subsample=0.8, colsample_bynode=0.8, max_depth=8, reg_lambda=1.0, **same
    ).fit(x, y)
    assert ours is not None and ours >= accuracy_score(y, direct.predict(x)) - 0.01

    reg = _table(load_diabetes)
    fitted = MODEL_TYPES["RANDOM_FOREST_REGRESSOR"].train(
        reg, {"model_type": "RANDOM_FOREST_REGRESSOR", **settings}
    )
    xr = np.column_stack([reg[c].to_numpy() for c in reg.column_names if c != "label"])
    yr = reg["label"].to_numpy()
    direct_r = xgb.XGBRFRegressor(
        n_estimators=30, subsample=0.8, colsample_bynode=0.8, max_depth=8, reg_lambda=1.0, **same
    ).fit(xr, yr)
    r2 = fitted.eval_metrics["r2_score"]
    assert r2 is not None and r2 >= r2_score(yr, direct_r.predict(xr)) - 0.02


# -- through SQL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("trees"))
    rng = np.random.default_rng(7)
    rows = []
    for i in range(300):
        x = float(rng.uniform(0, 10))
        noisy = i % 3 == 0  # a third of the rows carry a wrong label and weight 0
        rows.append(
            {
                "x": x,
                "c": "ab"[i % 2],
                "y": 1000.0 if noisy else 2.0 * x,
                "w": 0.0 if noisy else 1.0,
                "cls": "hi" if x > 5 else "lo",
            }
        )
    workspace.load_table("demo.t", rows)
    yield workspace
    workspace.close()


def test_instance_weight_col_weighs_rows(ws: Any) -> None:
    common = "input_label_cols=['y'], data_split_method='NO_SPLIT', max_iterations=30"
    ws.sql(
        "CREATE MODEL demo.weighted OPTIONS(model_type='boosted_tree_regressor', "
        f"{common}, instance_weight_col='w') AS SELECT x, y, w FROM demo.t"
    )
    ws.sql(
        f"CREATE MODEL demo.unweighted OPTIONS(model_type='boosted_tree_regressor', {common}) "
        "AS SELECT x, y FROM demo.t"
    )
    query = "SELECT predicted_y AS p, 2 * x AS truth FROM ML.PREDICT(MODEL demo.{}, TABLE demo.t)"
    weighted = ws.sql(query.format("weighted")).to_pylist()
    unweighted = ws.sql(query.format("unweighted")).to_pylist()
    err_w = np.mean([abs(r["p"] - r["truth"]) for r in weighted])
    err_u = np.mean([abs(r["p"] - r["truth"]) for r in unweighted])
    assert err_w < 1.0 < 100.0 < err_u  # weight-0 rows are ignored; unweighted they pull
    signature = ws.models.get_version("demo.weighted").signature
    assert [c.name for c in signature.inputs] == ["x"]  # the weight column is not a feature


def test_random_forest_through_sql(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.forest OPTIONS(model_type='RANDOM_FOREST_CLASSIFIER', "
        "input_label_cols=['cls'], num_parallel_tree=30, instance_weight_col='w') "
        "AS SELECT x, c, w, cls FROM demo.t"
    )
    out = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.forest, TABLE demo.t)").to_arrow()
    assert out.column_names[:2] == ["predicted_cls", "predicted_cls_probs"]
    assert out.schema.field("predicted_cls").type == pa.string()
    metrics = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.forest)").to_pylist()[0]
    assert metrics["accuracy"] > 0.95
    assert ws.models.get_version("demo.forest").model_type == "RANDOM_FOREST_CLASSIFIER"


@pytest.mark.parametrize(
    ("select", "fragment"),
    [
        ("SELECT x, y, CAST(NULL AS DOUBLE) AS w FROM demo.t", "NULL"),
        ("SELECT x, y, c AS w FROM demo.t", "numeric"),
        ("SELECT x, y, -w AS w FROM demo.t", "negative"),
    ],
)
def test_bad_instance_weights(ws: Any, select: str, fragment: str) -> None:
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument, match=fragment):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='boosted_tree_regressor', "
            f"input_label_cols=['y'], instance_weight_col='w') AS {select}"
        )
    assert [m.name for m in ws.models.list().items] == before


def test_dart_and_parallel_trees_train() -> None:
    t = _table(load_diabetes)
    base = {"model_type": "BOOSTED_TREE_REGRESSOR", "max_iterations": 5, "early_stop": False}
    gbtree = MODEL_TYPES["BOOSTED_TREE_REGRESSOR"].train(t, base)
    dart = MODEL_TYPES["BOOSTED_TREE_REGRESSOR"].train(
        t, {**base, "booster_type": "DART", "dropout": 0.5, "dart_normalize_type": "FOREST"}
    )
    booster = _config(dart.model)["learner"]["gradient_booster"]
    assert booster["name"] == "dart"
    assert float(booster["dart_train_param"]["rate_drop"]) == 0.5
    assert booster["dart_train_param"]["normalize_type"] == "forest"
    forest = MODEL_TYPES["BOOSTED_TREE_REGRESSOR"].train(t, {**base, "num_parallel_tree": 3})
    assert forest.model.num_boosted_rounds() == 5
    assert (
        len(
            json.loads(forest.model.save_raw("json"))["learner"]["gradient_booster"]["model"][
                "trees"
            ]
        )
        == 15
    )
    assert gbtree.eval_metrics != dart.eval_metrics


def test_random_forest_class_weights() -> None:
    """auto_class_weights lifts the recall of a rare class (BigQuery ML's weighting)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 2))
    y = np.where(x[:, 0] + 0.8 * rng.normal(size=600) > 1.6, "rare", "common")
    t = pa.table({"a": x[:, 0], "b": x[:, 1], "label": y})
    options = {
        "model_type": "RANDOM_FOREST_CLASSIFIER",
        "num_parallel_tree": 20,
        "max_tree_depth": 3,
        "data_split_method": "NO_SPLIT",
    }
    plain = MODEL_TYPES["RANDOM_FOREST_CLASSIFIER"].train(t, options)
    weighted = MODEL_TYPES["RANDOM_FOREST_CLASSIFIER"].train(
        t, {**options, "auto_class_weights": True}
    )

    def rare_recall(model: Any) -> float:
        out = model.predictor().predict(t, keep_original_columns=False)["predicted_label"]
        predicted = np.asarray(out.to_pylist())
        return float(np.mean(predicted[y == "rare"] == "rare"))

    assert rare_recall(weighted) > rare_recall(plain)
    with pytest.raises(InvalidArgument, match="no weight for classes"):
        MODEL_TYPES["RANDOM_FOREST_CLASSIFIER"].train(
            t, {**options, "class_weights": [("rare", 3.0)]}
        )


@pytest.mark.parametrize(
    ("model_type", "classes"),
    [
        ("LOGISTIC_REG", 2),
        ("LOGISTIC_REG", 3),
        ("BOOSTED_TREE_CLASSIFIER", 2),
        ("RANDOM_FOREST_CLASSIFIER", 3),
        ("RANDOM_FOREST_REGRESSOR", 0),
    ],
)
def test_zero_rows_predict_with_the_output_schema(model_type: str, classes: int) -> None:
    """Prediction on no rows (an empty batch chunk) gives ML.PREDICT's schema, for every flavor."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    label: Any = x[:, 0] if not classes else [f"c{i % classes}" for i in range(60)]
    t = pa.table({"a": x[:, 0], "b": x[:, 1], "label": label})
    options: dict[str, Any] = {"model_type": model_type}
    if model_type.startswith("RANDOM_FOREST"):
        options["num_parallel_tree"] = 5
    predictor = MODEL_TYPES[model_type].train(t, options).predictor()
    for keep in (True, False):
        empty = predictor.predict(t.slice(0, 0), keep_original_columns=keep)
        assert empty.num_rows == 0
        assert empty.schema == predictor.predict(t.slice(0, 2), keep_original_columns=keep).schema
