"""CREATE MODEL for LINEAR_REG, LOGISTIC_REG and BOOSTED_TREE_*: options, splits, training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score

import shipyard as sy
from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.flavors import load_model, save_model
from shipyard.registry.predictor import Predictor
from shipyard.sql.modeltypes import MODEL_TYPES, TrainedModel, parse_options


def _table(loader: Any, label: Any = None) -> pa.Table:
    data = loader()
    columns: dict[str, Any] = {f"f{i}": data.data[:, i] for i in range(data.data.shape[1])}
    columns["label"] = data.target if label is None else label(data)
    return pa.table(columns)


def _train(model_type: str, table: pa.Table, **options: Any) -> TrainedModel:
    return MODEL_TYPES[model_type].train(table, {"model_type": model_type, **options})


def _standardized(t: pa.Table) -> np.ndarray:
    x = np.column_stack([t.column(c).to_numpy() for c in t.column_names if c != "label"])
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)


@pytest.fixture(scope="module")
def diabetes() -> pa.Table:
    return _table(load_diabetes)


@pytest.fixture(scope="module")
def cancer() -> pa.Table:
    return _table(load_breast_cancer)


# -- options ----------------------------------------------------------------------------------


def test_defaults_are_bigquery_mls() -> None:
    linear = parse_options({"model_type": "linear_reg"})
    assert linear.model_type == "LINEAR_REG"
    assert (linear.max_iterations, linear.l1_reg, linear.l2_reg, linear.learn_rate) == (
        20,
        0.0,
        0.0,
        0.1,
    )
    assert linear.data_split_method == "AUTO_SPLIT" and linear.data_split_eval_fraction == 0.2
    assert linear.early_stop is True and linear.min_rel_progress == 0.01
    assert linear.optimize_strategy == "AUTO_STRATEGY"
    assert linear.category_encoding_method == "ONE_HOT_ENCODING"
    trees = parse_options({"MODEL_TYPE": "BOOSTED_TREE_CLASSIFIER"})
    assert (trees.l2_reg, trees.learn_rate, trees.max_tree_depth, trees.subsample) == (
        1.0,
        0.3,
        6,
        1.0,
    )
    assert trees.booster_type == "GBTREE" and trees.tree_method == "AUTO"
    assert trees.category_encoding_method == "LABEL_ENCODING"
    assert trees.num_parallel_tree == 1 and trees.min_tree_child_weight == 1
    assert trees.colsample_bytree == trees.colsample_bylevel == trees.colsample_bynode == 1.0
    assert (trees.min_split_loss, trees.l1_reg, trees.dropout) == (0.0, 0.0, 0.0)
    assert trees.max_iterations == 20 and trees.early_stop is True
    assert trees.dart_normalize_type == "TREE" and trees.auto_class_weights is False
    assert linear.fit_intercept is True and linear.learn_rate_strategy == "LINE_SEARCH"
    assert linear.ls_init_learn_rate == 0.1


def test_names_and_enum_values_are_case_insensitive() -> None:
    opts = parse_options(
        {"Model_Type": "Logistic_Reg", "DATA_SPLIT_METHOD": "random", "Auto_Class_Weights": True}
    )
    assert opts.data_split_method == "RANDOM" and opts.auto_class_weights is True


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_options({"model_type": "LINEAR_REG", "foo": 1})
    message = str(err.value)
    assert "unknown option 'foo' for model_type LINEAR_REG" in message
    assert "l2_reg" in message and "data_split_method" in message
    # Classifier-only options are unknown for a regressor.
    with pytest.raises(InvalidArgument, match="unknown option 'class_weights'"):
        parse_options({"model_type": "LINEAR_REG", "class_weights": {"a": 1.0}})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_iterations": "10"}, r"'max_iterations'.*INT64, got '10' \(str\)"),
        ({"max_iterations": 1.5}, r"'max_iterations'.*INT64"),
        ({"early_stop": "yes"}, r"'early_stop'.*BOOL"),
        ({"l2_reg": -1.0}, r"'l2_reg'.*>= 0.0, got -1.0"),
        ({"data_split_eval_fraction": 1.0}, r"'data_split_eval_fraction'.*< 1.0"),
        ({"data_split_method": "halves"}, r"'data_split_method'.*'halves'.*'AUTO_SPLIT'"),
        ({"input_label_cols": "y"}, r"'input_label_cols'.*ARRAY<STRING>"),
        ({"input_label_cols": ["a", "b"]}, "exactly one column"),
        ({"data_split_method": "CUSTOM"}, "needs option 'data_split_col'"),
        ({"data_split_col": "c"}, "only valid with data_split_method CUSTOM or SEQ"),
        ({"data_split_eval_fraction": 0.999}, "between 0.01 and 0.99"),
        ({"learn_rate": 0.5}, "'learn_rate' applies only with learn_rate_strategy 'CONSTANT'"),
        (
            {"optimize_strategy": "normal_equation", "l1_reg": 1.0},
            "'NORMAL_EQUATION' cannot be used with option 'l1_reg'",
        ),
    ],
)
def test_bad_option_values_name_option_value_and_expectation(options: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_options({"model_type": "LINEAR_REG", **options})


def test_bigquery_rules_that_need_no_error() -> None:
    constant = parse_options(
        {"model_type": "LINEAR_REG", "learn_rate_strategy": "constant", "learn_rate": 0.5}
    )
    assert constant.learn_rate == 0.5
    # BigQuery ML keeps two decimals of the evaluation fraction.
    opts = parse_options({"model_type": "LINEAR_REG", "data_split_eval_fraction": 0.333})
    assert opts.data_split_eval_fraction == 0.33
    with pytest.raises(InvalidArgument, match=r"'min_tree_child_weight'.*INT64"):
        parse_options({"model_type": "BOOSTED_TREE_REGRESSOR", "min_tree_child_weight": 1.5})


def test_model_type_errors() -> None:
    with pytest.raises(
        Unsupported, match=r"'CONTRIBUTION_ANALYSIS'.*LINEAR_REG, LOGISTIC_REG.*KMEANS"
    ):
        parse_options({"model_type": "CONTRIBUTION_ANALYSIS"})
    with pytest.raises(InvalidArgument, match="'model_type' is required"):
        parse_options({"l2_reg": 1.0})


def test_unsupported_switches_say_so() -> None:
    # TARGET_ENCODING is supported for trees (tests/sql/test_target_encoding.py)
    assert parse_options(
        {"model_type": "BOOSTED_TREE_REGRESSOR", "category_encoding_method": "target_encoding"}
    )
    assert parse_options({"model_type": "LINEAR_REG", "enable_global_explain": True})
    # BigQuery ML options Shipyard knows but does not implement are Unsupported, not unknown.
    with pytest.raises(Unsupported, match=r"'num_trials' \(hyperparameter tuning\)"):
        parse_options({"model_type": "LOGISTIC_REG", "num_trials": 10})
    with pytest.raises(Unsupported, match="'xgboost_version'"):
        parse_options({"model_type": "BOOSTED_TREE_CLASSIFIER", "xgboost_version": "1.1"})
    with pytest.raises(InvalidArgument, match="unknown option 'xgboost_version'"):
        parse_options({"model_type": "LINEAR_REG", "xgboost_version": "1.1"})


def test_class_weights_forms_and_conflicts() -> None:
    as_pairs = parse_options(
        {"model_type": "LOGISTIC_REG", "class_weights": [("a", 0.5), (True, 2)]}
    )
    assert as_pairs.class_weights == {"a": 0.5, "true": 2.0}
    with pytest.raises(InvalidArgument, match="cannot both be set"):
        parse_options(
            {"model_type": "LOGISTIC_REG", "class_weights": {"a": 1.0}, "auto_class_weights": True}
        )


# -- training quality -------------------------------------------------------------------------


def test_linear_reg_matches_sklearn(diabetes: pa.Table) -> None:
    model = _train("LINEAR_REG", diabetes, data_split_method="NO_SPLIT")
    y = diabetes.column("label").to_numpy()
    reference = LinearRegression().fit(_standardized(diabetes), y)
    expected = r2_score(y, reference.predict(_standardized(diabetes)))
    assert model.eval_metrics["r2_score"] == pytest.approx(expected, abs=0.01)
    assert model.task == "regression" and model.flavor == "sklearn"
    assert model.feature_names == [f"f{i}" for i in range(10)]
    assert len(model.training_info) == 1 and model.training_info[0]["iteration"] == 0
    out = model.predictor().predict(diabetes)
    np.testing.assert_allclose(
        out.column("predicted_label").to_numpy(), reference.predict(_standardized(diabetes))
    )


def test_fit_intercept_false_fits_through_the_origin(diabetes: pa.Table, cancer: pa.Table) -> None:
    model = _train("LINEAR_REG", diabetes, data_split_method="NO_SPLIT", fit_intercept=False)
    assert model.model.intercept_ == 0.0
    y = diabetes.column("label").to_numpy()
    reference = LinearRegression(fit_intercept=False).fit(_standardized(diabetes), y)
    np.testing.assert_allclose(model.model.coef_, reference.coef_)
    logistic = _train("LOGISTIC_REG", cancer, data_split_method="NO_SPLIT", fit_intercept=False)
    assert np.all(logistic.model.intercept_ == 0.0)


def test_linear_reg_regularization_maps_to_ridge_and_elastic_net(diabetes: pa.Table) -> None:
    ridge = _train("LINEAR_REG", diabetes, data_split_method="NO_SPLIT", l2_reg=10.0)
    assert type(ridge.model).__name__ == "Ridge"
    y = diabetes.column("label").to_numpy()
    expected = Ridge(alpha=10.0).fit(_standardized(diabetes), y).coef_
    np.testing.assert_allclose(ridge.model.coef_, expected, rtol=1e-6)
    lasso = _train("LINEAR_REG", diabetes, data_split_method="NO_SPLIT", l1_reg=5000.0)
    assert type(lasso.model).__name__ == "ElasticNet"
    assert (lasso.model.coef_ == 0).sum() > 0  # L1 zeroes some weights


def test_logistic_reg_binary_matches_sklearn(cancer: pa.Table) -> None:
    model = _train("LOGISTIC_REG", cancer, data_split_method="NO_SPLIT", l2_reg=0.5)
    y = cancer.column("label").to_numpy()
    reference = LogisticRegression(C=1.0).fit(_standardized(cancer), y)  # C = 1/(2·l2_reg)
    expected = accuracy_score(y, reference.predict(_standardized(cancer)))
    assert model.task == "binary_classification"
    assert model.eval_metrics["accuracy"] == pytest.approx(expected, abs=0.01)
    assert model.eval_metrics["roc_auc"] > 0.99


def test_logistic_reg_multiclass_with_string_labels() -> None:
    iris = _table(load_iris, label=lambda d: pa.array(d.target_names[d.target].tolist()))
    model = _train("LOGISTIC_REG", iris)
    assert model.task == "multiclass_classification"
    assert model.data_split == {
        "method": "AUTO_SPLIT",
        "effective_method": "NO_SPLIT",
        "train_rows": 150,
        "eval_rows": 0,
    }
    assert model.eval_metrics["accuracy"] > 0.95
    out = model.predictor().predict(iris)
    assert out.schema.field("predicted_label").type == pa.string()
    assert set(out.column(0).to_pylist()) == {"setosa", "versicolor", "virginica"}


def test_boosted_tree_regressor_matches_xgboost(diabetes: pa.Table) -> None:
    fractions: list[float] = []
    model = MODEL_TYPES["BOOSTED_TREE_REGRESSOR"].train(
        diabetes,
        {
            "model_type": "BOOSTED_TREE_REGRESSOR",
            "data_split_method": "NO_SPLIT",
            "max_iterations": 15,
        },
        progress=lambda f, m: fractions.append(f),
    )
    x = np.column_stack([diabetes.column(f"f{i}").to_numpy() for i in range(10)]).astype(np.float32)
    y = diabetes.column("label").to_numpy()
    params = {"eta": 0.3, "max_depth": 6, "lambda": 1.0, "seed": 20240101, "tree_method": "hist"}
    reference = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=15)
    expected = r2_score(y, reference.predict(xgb.DMatrix(x)))
    assert model.eval_metrics["r2_score"] == pytest.approx(expected, abs=0.01)
    # No eval split: no early stop, one TRAINING_INFO row per round, loss decreasing.
    assert [r["iteration"] for r in model.training_info] == list(range(15))
    losses = [r["loss"] for r in model.training_info]
    assert losses == sorted(losses, reverse=True)
    assert model.training_info[0]["learning_rate"] == 0.3
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_boosted_tree_classifier_multiclass_and_binary(cancer: pa.Table) -> None:
    wine = _table(load_wine)
    model = _train("BOOSTED_TREE_CLASSIFIER", wine, data_split_method="NO_SPLIT")
    assert model.task == "multiclass_classification" and model.flavor == "xgboost"
    assert model.eval_metrics["accuracy"] > 0.97
    binary = _train("BOOSTED_TREE_CLASSIFIER", cancer, data_split_method="RANDOM")
    assert binary.task == "binary_classification"
    assert binary.data_split["eval_rows"] == round(569 * 0.2)
    assert binary.eval_metrics["accuracy"] > 0.9 and binary.eval_metrics["roc_auc"] > 0.95
    assert binary.training_info[0]["eval_loss"] is not None


def test_early_stop_uses_min_rel_progress_on_the_eval_split(cancer: pa.Table) -> None:
    stopped = _train(
        "BOOSTED_TREE_CLASSIFIER", cancer, data_split_method="RANDOM", min_rel_progress=0.2
    )
    assert len(stopped.training_info) < 20
    full = _train("BOOSTED_TREE_CLASSIFIER", cancer, data_split_method="RANDOM", early_stop=False)
    assert len(full.training_info) == 20


# -- label, features, NULLs -------------------------------------------------------------------


def test_label_resolution_and_missing_label() -> None:
    t = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": [1.0, 2.0, 3.1, 4.0]})
    with pytest.raises(InvalidArgument, match=r"'label'.*\['x', 'y'\]"):
        _train("LINEAR_REG", t)
    assert _train("LINEAR_REG", t, input_label_cols=["y"]).label == "y"
    assert MODEL_TYPES["LINEAR_REG"].train(t, {}, label="y").feature_names == ["x"]
    with pytest.raises(InvalidArgument, match="'z' from input_label_cols"):
        _train("LINEAR_REG", t, input_label_cols=["z"])


def test_null_labels_are_dropped_and_types_are_checked() -> None:
    t = pa.table({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "label": [1.0, None, 3.0, float("nan"), 5.0]})
    model = _train("LINEAR_REG", t)
    assert model.data_split["train_rows"] == 3
    words = pa.table({"x": [1.0, 2.0], "label": ["a", "b"]})
    with pytest.raises(
        InvalidArgument, match="'label' has type string; LINEAR_REG needs a numeric"
    ):
        _train("LINEAR_REG", words)
    one_class = pa.table({"x": [1.0, 2.0], "label": ["a", "a"]})
    with pytest.raises(InvalidArgument, match="at least 2 classes"):
        _train("LOGISTIC_REG", one_class)
    many = pa.table({"x": np.arange(51.0), "label": [f"c{i}" for i in range(51)]})
    with pytest.raises(InvalidArgument, match="at most 50"):
        _train("LOGISTIC_REG", many)
    with pytest.raises(InvalidArgument, match="no rows with a non-NULL label"):
        _train("LINEAR_REG", pa.table({"x": [1.0], "label": pa.array([None], pa.float64())}))
    infinite = pa.table({"x": [1.0, 2.0, 3.0], "label": [1.0, float("inf"), -float("inf")]})
    for model_type in ("LINEAR_REG", "BOOSTED_TREE_REGRESSOR"):
        with pytest.raises(InvalidArgument, match=r"infinity in 2 row\(s\)"):
            _train(model_type, infinite)
    too_many = pa.table({"x": np.arange(1001.0), "label": [f"c{i}" for i in range(1001)]})
    with pytest.raises(InvalidArgument, match="at most 1000"):
        _train("BOOSTED_TREE_CLASSIFIER", too_many)


def test_categorical_features_nulls_and_unseen_values_end_to_end() -> None:
    rng = np.random.default_rng(1)
    n = 400
    color = rng.choice(["red", "green", "blue"], size=n)
    x = rng.normal(size=n)
    y = x * 2 + np.select([color == "red", color == "green"], [5.0, -5.0], 0.0)
    color_col = pa.array([None if i % 10 == 0 else c for i, c in enumerate(color)])
    t = pa.table({"x": x, "color": color_col, "label": y})
    for model_type in ("LINEAR_REG", "BOOSTED_TREE_REGRESSOR"):
        model = _train(model_type, t, data_split_method="NO_SPLIT", max_iterations=40)
        assert model.eval_metrics["r2_score"] > 0.8
        new = pa.table({"x": [0.0, 0.0], "color": pa.array(["purple", None])})
        out = model.predictor().predict(new)
        assert out.num_rows == 2 and all(np.isfinite(out.column(0).to_numpy()))


def test_class_weights(cancer: pa.Table) -> None:
    heavy = _train(
        "LOGISTIC_REG", cancer, data_split_method="NO_SPLIT", class_weights={"0": 50.0, "1": 1.0}
    )
    plain = _train("LOGISTIC_REG", cancer, data_split_method="NO_SPLIT", l2_reg=1.0)
    weighted = _train(
        "LOGISTIC_REG",
        cancer,
        data_split_method="NO_SPLIT",
        l2_reg=1.0,
        class_weights=[("0", 50.0), ("1", 1.0)],
    )
    # Weighting class 0 trades recall of class 1 (the positive class) for precision.
    assert weighted.eval_metrics["precision"] >= plain.eval_metrics["precision"]
    assert weighted.eval_metrics["recall"] <= plain.eval_metrics["recall"]
    assert heavy.options["class_weights"] == {"0": 50.0, "1": 1.0}
    with pytest.raises(InvalidArgument, match=r"classes \['7'\].*classes: \['0', '1'\]"):
        _train("BOOSTED_TREE_CLASSIFIER", cancer, class_weights={"7": 2.0})
    with pytest.raises(InvalidArgument, match=r"no weight for classes \['1'\]"):
        _train("LOGISTIC_REG", cancer, class_weights={"0": 2.0})
    assert _train("BOOSTED_TREE_CLASSIFIER", cancer, auto_class_weights=True).eval_metrics


# -- data split -------------------------------------------------------------------------------


def _synthetic(n: int) -> pa.Table:
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    return pa.table({"x": x, "label": 3 * x + rng.normal(size=n)})


@pytest.mark.parametrize(
    ("rows", "eval_rows"), [(499, 0), (500, 100), (50_000, 10_000), (60_000, 10_000)]
)
def test_auto_split_thresholds(rows: int, eval_rows: int) -> None:
    model = _train("LINEAR_REG", _synthetic(rows))
    assert model.data_split["eval_rows"] == eval_rows
    assert model.data_split["train_rows"] == rows - eval_rows


def test_random_split_is_deterministic_and_honours_the_fraction() -> None:
    t = _synthetic(1000)
    a = _train("LINEAR_REG", t, data_split_method="RANDOM", data_split_eval_fraction=0.3)
    b = _train("LINEAR_REG", t, data_split_method="RANDOM", data_split_eval_fraction=0.3)
    assert a.data_split["eval_rows"] == 300
    assert a.eval_metrics == b.eval_metrics


@pytest.mark.parametrize(("rows", "eval_rows"), [(400, 0), (600, 120)])
def test_random_split_without_a_fraction_is_sized_like_auto_split(
    rows: int, eval_rows: int
) -> None:
    model = _train("LINEAR_REG", _synthetic(rows), data_split_method="RANDOM")
    assert model.data_split["eval_rows"] == eval_rows
    given = _train(
        "LINEAR_REG", _synthetic(rows), data_split_method="RANDOM", data_split_eval_fraction=0.2
    )
    assert given.data_split["eval_rows"] == round(rows * 0.2)


def test_custom_split_uses_a_bool_column_true_or_null_is_eval() -> None:
    t = _synthetic(100)
    flags = [True if i < 20 else (None if i < 30 else False) for i in range(100)]
    t = t.append_column("is_eval", pa.array(flags))
    model = _train("LINEAR_REG", t, data_split_method="CUSTOM", data_split_col="is_eval")
    assert model.data_split["eval_rows"] == 30 and model.data_split["train_rows"] == 70
    assert model.feature_names == ["x"]  # the split column is not a feature
    with pytest.raises(InvalidArgument, match=r"'x' has type double; .*CUSTOM needs a BOOL"):
        _train("LINEAR_REG", t, data_split_method="CUSTOM", data_split_col="x")
    with pytest.raises(InvalidArgument, match="data_split_col 'nope' is not in"):
        _train("LINEAR_REG", t, data_split_method="CUSTOM", data_split_col="nope")


def test_seq_split_sends_ties_at_the_cut_and_nulls_to_evaluation() -> None:
    t = _synthetic(10).append_column("k", pa.array([1, 2, 3, 4, 5, 6, 8, 8, 8, None]))
    model = _train(
        "LINEAR_REG", t, data_split_method="SEQ", data_split_col="k", data_split_eval_fraction=0.3
    )
    # The cut is the value 8 (the 7th of 10 in order); every 8 and the NULL evaluate.
    assert model.data_split["eval_rows"] == 4 and model.data_split["train_rows"] == 6


def test_seq_split_evaluates_the_last_rows_in_order() -> None:
    n = 100
    t = _synthetic(n).append_column("day", pa.array(np.arange(n)[::-1]))
    model = _train(
        "BOOSTED_TREE_REGRESSOR",
        t,
        data_split_method="SEQ",
        data_split_col="day",
        data_split_eval_fraction=0.25,
    )
    assert model.data_split["eval_rows"] == 25
    assert model.feature_names == ["x"]
    # The evaluation rows are the 25 latest days: metrics equal a predict on exactly those rows.
    latest = t.filter(pc.greater_equal(t.column("day"), 75))
    out = model.predictor().predict(latest)
    y = latest.column("label").to_numpy()
    mse = float(np.mean((out.column(0).to_numpy() - y) ** 2))
    assert model.eval_metrics["mean_squared_error"] == pytest.approx(mse, rel=1e-5)


# -- the trained model as a package ----------------------------------------------------------


@pytest.mark.parametrize("model_type", ["LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER"])
def test_save_load_round_trip_predicts_identically(tmp_path: Path, model_type: str) -> None:
    data = load_iris()
    t = _table(load_iris, label=lambda d: pa.array(d.target_names[d.target].tolist()))
    t = t.append_column("kind", pa.array(["a", "b", None] * 50))
    model = _train(model_type, t)
    meta = save_model(model.flavor, model.model, tmp_path)
    manifest = json.loads(json.dumps(model.predictor().to_dict()))
    loaded = Predictor.from_dict(manifest, load_model(model.flavor, tmp_path, meta))
    assert loaded.predict(t).equals(model.predictor().predict(t))
    json.dumps({"options": model.options, "info": model.training_info, "m": model.eval_metrics})
    assert model.options["model_type"] == model_type
    assert len(data.target) == t.num_rows


def test_warm_start_linear_models_reach_the_same_optimum(tmp_path: Path) -> None:
    ws = sy.connect(tmp_path / "home")
    try:
        ws.load_table(
            "demo.t", [{"x": float(i), "c": "ab"[i % 2], "y": 3.0 * i + 1} for i in range(40)]
        )
        create = (
            "CREATE {} MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']{}) "
            "AS SELECT * FROM demo.t WHERE x < {}"
        )
        ws.sql(create.format("", "", 20))
        ws.sql(create.format("OR REPLACE", ", warm_start=TRUE", 40))
        ws.sql(
            "CREATE MODEL demo.scratch OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
            "AS SELECT * FROM demo.t"
        )
        query = "SELECT predicted_y FROM ML.PREDICT(MODEL demo.{}, TABLE demo.t)"
        warm = ws.sql(query.format("m")).to_pylist()
        scratch = ws.sql(query.format("scratch")).to_pylist()
        assert [r["predicted_y"] for r in warm] == pytest.approx(
            [r["predicted_y"] for r in scratch]
        )
        assert ws.models.get("demo.m").latest_version == 2
        assert ws.models.get_version("demo.m").lineage.statement is not None
    finally:
        ws.close()
