"""The inspection and explanation ML.* functions through SQL, on a real workspace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import confusion_matrix

import shipyard as sy
from shipyard.sql.inspection import _column_names

rng = np.random.default_rng(5)


def _rows(n: int) -> list[dict[str, Any]]:
    x = rng.normal(size=n)
    z = rng.normal(size=n) * 2 + 3
    c = rng.choice(["a", "b", "c"], size=n)
    y = 2 * x - 0.5 * z + np.where(c == "b", 1.5, 0.0) + rng.normal(size=n) * 0.3
    band = np.where(y > 0.0, "hi", np.where(y < -2.0, "lo", "mid"))
    return [
        {
            "x": float(a),
            "z": float(b),
            "c": str(k),
            "y": float(v),
            "flag": bool(v > -0.8),
            "band": str(d),
        }
        for a, b, k, v, d in zip(x, z, c, y, band, strict=True)
    ]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("inspection"))
    workspace.load_table("demo.t", _rows(300))  # < 500 rows: AUTO_SPLIT trains on every row
    workspace.load_table("demo.big", _rows(700))  # an evaluation split of 20 %
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "enable_global_explain=TRUE) AS SELECT x, z, c, y FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.bt OPTIONS(model_type='boosted_tree_classifier', "
        "input_label_cols=['flag'], max_iterations=5, enable_global_explain=TRUE) "
        "AS SELECT x, z, c, flag FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.btr OPTIONS(model_type='boosted_tree_regressor', "
        "input_label_cols=['y'], max_iterations=5, early_stop=FALSE) "
        "AS SELECT x, z, c, y FROM demo.big"
    )
    workspace.sql(
        "CREATE MODEL demo.lg OPTIONS(model_type='logistic_reg', input_label_cols=['band']) "
        "AS SELECT x, z, c, band FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.lgb OPTIONS(model_type='logistic_reg', input_label_cols=['flag'], "
        "l2_reg=0.1) AS SELECT x, z, c, flag FROM demo.big"
    )
    yield workspace
    workspace.close()


def _q(ws: Any, sql: str) -> pa.Table:
    return ws.sql(sql).to_arrow()  # type: ignore[no-any-return]


def _predictor(ws: Any, name: str) -> Any:
    return ws.models.load(name)


# -- ML.FEATURE_IMPORTANCE -------------------------------------------------------------------


def test_feature_importance_equals_the_booster_scores(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL demo.btr)")
    assert out.column_names == [
        "feature",
        "importance_weight",
        "importance_gain",
        "importance_cover",
    ]
    assert out.schema.types == [pa.string(), pa.float64(), pa.float64(), pa.float64()]
    booster = _predictor(ws, "demo.btr").model
    names = {"x": "f0", "z": "f1", "c": "f2"}  # label-encoded: one matrix column per input
    by_feature = {row["feature"]: row for row in out.to_pylist()}
    assert set(by_feature) == set(names)
    for kind, column in (
        ("weight", "importance_weight"),
        ("gain", "importance_gain"),
        ("cover", "importance_cover"),
    ):
        scores = booster.get_score(importance_type=kind)
        for feature, f in names.items():
            assert by_feature[feature][column] == pytest.approx(scores.get(f, 0.0))


# -- ML.WEIGHTS ------------------------------------------------------------------------------


def test_weights_reproduce_the_prediction_in_the_raw_scale(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.WEIGHTS(MODEL demo.lin)")
    assert out.column_names == ["processed_input", "weight", "category_weights"]
    assert out.schema.field("category_weights").type == pa.list_(
        pa.struct([("category", pa.string()), ("weight", pa.float64())])
    )
    rows = {r["processed_input"]: r for r in out.to_pylist()}
    assert rows["c"]["weight"] is None
    categories = {cw["category"]: cw["weight"] for cw in rows["c"]["category_weights"]}
    assert set(categories) == {"a", "b", "c"}
    predicted = _q(ws, "SELECT * FROM ML.PREDICT(MODEL demo.lin, TABLE demo.t)").to_pylist()
    for r in predicted[:20]:
        by_hand = (
            rows["__INTERCEPT__"]["weight"]
            + rows["x"]["weight"] * r["x"]
            + rows["z"]["weight"] * r["z"]
            + categories[r["c"]]
        )
        assert by_hand == pytest.approx(r["predicted_y"], abs=1e-9)
    # The true slopes (2 and -0.5) show in the raw scale, not in the standardised one.
    assert rows["x"]["weight"] == pytest.approx(2.0, abs=0.1)
    assert rows["z"]["weight"] == pytest.approx(-0.5, abs=0.1)


def test_standardized_weights_are_the_fitted_coefficients(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.WEIGHTS(MODEL demo.lin, STRUCT(TRUE AS standardize))")
    model = _predictor(ws, "demo.lin").model
    names = _predictor(ws, "demo.lin").preprocessor.feature_names_out
    rows = {r["processed_input"]: r for r in out.to_pylist()}
    assert rows["x"]["weight"] == pytest.approx(model.coef_[names.index("x")])
    assert rows["z"]["weight"] == pytest.approx(model.coef_[names.index("z")])
    assert rows["__INTERCEPT__"]["weight"] == pytest.approx(model.intercept_)


def test_multiclass_weights_have_a_class_label_per_row(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.WEIGHTS(MODEL demo.lg)")
    assert out.column_names == ["processed_input", "weight", "category_weights", "class_label"]
    labels = out["class_label"].to_pylist()
    assert sorted(set(labels)) == ["hi", "lo", "mid"]
    assert all(labels.count(k) == 4 for k in ("hi", "lo", "mid"))  # x, z, c, __INTERCEPT__


# -- ML.FEATURE_INFO, ML.TRAINING_INFO -------------------------------------------------------


def test_feature_info_describes_the_training_columns(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.FEATURE_INFO(MODEL demo.lin)")
    assert out.column_names == [
        "input", "min", "max", "mean", "median", "stddev",
        "category_count", "null_count", "dimension",
    ]  # fmt: skip
    assert out.schema.field("category_count").type == pa.int64()
    rows = {r["input"]: r for r in out.to_pylist()}
    truth = _q(ws, "SELECT min(x) AS lo, max(x) AS hi, avg(x) AS m FROM demo.t").to_pylist()[0]
    assert rows["x"]["min"] == pytest.approx(truth["lo"])
    assert rows["x"]["max"] == pytest.approx(truth["hi"])
    assert rows["x"]["mean"] == pytest.approx(truth["m"])
    assert rows["c"]["category_count"] == 3 and rows["c"]["mean"] is None
    assert rows["x"]["null_count"] == 0


def test_training_info_has_one_row_per_iteration(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.TRAINING_INFO(MODEL demo.btr) ORDER BY iteration")
    assert out.column_names == [
        "training_run", "iteration", "loss", "eval_loss", "learning_rate", "duration_ms",
    ]  # fmt: skip
    assert out.schema.field("iteration").type == pa.int64()
    assert out["iteration"].to_pylist() == [0, 1, 2, 3, 4]
    losses = out["loss"].to_pylist()
    assert losses == sorted(losses, reverse=True)  # boosting lowers the training loss
    assert all(v is not None for v in out["eval_loss"].to_pylist())  # 700 rows: a split
    linear = _q(ws, "SELECT * FROM ML.TRAINING_INFO(MODEL demo.lin)")
    assert linear.num_rows == 1 and linear["eval_loss"].to_pylist() == [None]


# -- ML.CONFUSION_MATRIX, ML.ROC_CURVE -------------------------------------------------------


def test_confusion_matrix_counts_predictions(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.CONFUSION_MATRIX(MODEL demo.lg, TABLE demo.t)")
    assert out.column_names == ["expected_label", "hi", "lo", "mid"]
    assert out.schema.field("hi").type == pa.int64()
    predicted = _q(ws, "SELECT band, predicted_band FROM ML.PREDICT(MODEL demo.lg, TABLE demo.t)")
    expected = confusion_matrix(
        predicted["band"].to_pylist(),
        predicted["predicted_band"].to_pylist(),
        labels=["hi", "lo", "mid"],
    )
    assert np.array_equal(np.array([out[c].to_pylist() for c in ("hi", "lo", "mid")]).T, expected)
    # Without input: the evaluation data of training (here every row, there was no split).
    stored = _q(ws, "SELECT * FROM ML.CONFUSION_MATRIX(MODEL demo.lg)")
    assert stored.equals(out)


def test_confusion_matrix_threshold_moves_binary_predictions(ws: Any) -> None:
    low = _q(
        ws,
        "SELECT * FROM ML.CONFUSION_MATRIX(MODEL demo.bt, TABLE demo.t, STRUCT(0.0 AS threshold))",
    )
    # BigQuery ML: expected_label keeps the label column's type (BOOL here); the count
    # columns are named after the classes' text
    assert low["expected_label"].to_pylist() == [False, True]
    assert low.schema.field("expected_label").type == pa.bool_()
    assert low["false"].to_pylist() == [0, 0]  # everything predicted positive
    assert sum(low["true"].to_pylist()) == 300
    default = _q(ws, "SELECT * FROM ML.CONFUSION_MATRIX(MODEL demo.bt)")  # threshold 0.5
    assert default["false"].to_pylist()[0] > 0


def test_roc_curve_with_thresholds(ws: Any) -> None:
    out = _q(
        ws,
        "SELECT * FROM ML.ROC_CURVE(MODEL demo.lgb, TABLE demo.big, GENERATE_ARRAY(0.1, 0.9, 0.2))",
    )
    assert out.column_names == [
        "threshold", "recall", "false_positive_rate",
        "true_positives", "false_positives", "true_negatives", "false_negatives",
    ]  # fmt: skip
    assert out["threshold"].to_pylist() == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    predicted = _q(ws, "SELECT * FROM ML.PREDICT(MODEL demo.lgb, TABLE demo.big)").to_pylist()
    truth = np.array([r["flag"] for r in predicted])
    p_true = np.array([r["predicted_flag_probs"][0]["prob"] for r in predicted])
    for row in out.to_pylist():
        hit = p_true > row["threshold"]
        assert row["true_positives"] == int((hit & truth).sum())
        assert row["false_positives"] == int((hit & ~truth).sum())
        assert row["false_negatives"] == int((~hit & truth).sum())
        assert row["recall"] == pytest.approx(truth[hit].sum() / truth.sum())
    # Without input: percentile thresholds on the evaluation split (20 % of 700 rows).
    stored = _q(ws, "SELECT * FROM ML.ROC_CURVE(MODEL demo.lgb)")
    assert stored.num_rows > 10
    assert {
        r["true_positives"] + r["false_positives"] + r["true_negatives"] + r["false_negatives"]
        for r in stored.to_pylist()
    } == {140}


def test_roc_curve_bad_thresholds(ws: Any) -> None:
    for arg, fragment in (
        ("GENERATE_ARRAY(0.5, 1.5, 0.5)", "[0, 1]"),
        ("GENERATE_ARRAY(0.9, 0.1, 0.1)", "greater than end"),
        ("GENERATE_ARRAY(0.1, 0.9, 0)", "positive"),
    ):
        with pytest.raises(
            sy.InvalidArgument, match=fragment.replace("[", r"\[").replace("]", r"\]")
        ):
            ws.sql(f"SELECT * FROM ML.ROC_CURVE(MODEL demo.lgb, TABLE demo.big, {arg})")
    with pytest.raises(sy.InvalidArgument, match="needs the evaluation rows"):
        ws.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL demo.bt, STRUCT(0.3 AS threshold))")


def test_class_column_names() -> None:
    assert _column_names(["0", "1"]) == ["_0", "_1"]
    assert _column_names(["a b", "a-b", "expected_label"]) == ["a_b", "a_b_2", "expected_label_2"]


# -- ML.GLOBAL_EXPLAIN, ML.EXPLAIN_PREDICT ---------------------------------------------------


def test_global_explain_is_the_mean_absolute_attribution(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL demo.lin)")
    assert out.column_names == ["feature", "attribution"]
    values = out["attribution"].to_pylist()
    assert values == sorted(values, reverse=True)
    by_hand = _q(
        ws,
        "SELECT a.feature, avg(abs(a.attribution)) AS m FROM ML.EXPLAIN_PREDICT(MODEL demo.lin, "
        "TABLE demo.t, STRUCT(10 AS top_k_features)) AS e, UNNEST(e.top_feature_attributions) AS a "
        "GROUP BY a.feature",
    ).to_pylist()
    expected = {r["feature"]: r["m"] for r in by_hand}
    for row in out.to_pylist():
        assert row["attribution"] == pytest.approx(expected[row["feature"]], rel=1e-9)


def test_class_level_global_explain(ws: Any) -> None:
    out = _q(
        ws, "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL demo.bt, STRUCT(TRUE AS class_level_explain))"
    )
    assert out.column_names == ["flag", "feature", "attribution"]  # the label column's name
    assert sorted(set(out["flag"].to_pylist())) == ["false", "true"]
    with pytest.raises(sy.InvalidArgument, match="classification"):
        ws.sql(
            "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL demo.lin, STRUCT(TRUE AS class_level_explain))"
        )


def test_explain_predict_inside_a_larger_query(ws: Any) -> None:
    out = _q(
        ws,
        "WITH few AS (SELECT * FROM demo.t WHERE x > 1) "
        "SELECT e.predicted_flag, a.feature, a.attribution "
        "FROM ML.EXPLAIN_PREDICT(MODEL demo.bt, TABLE few, STRUCT(1 AS top_k_features)) AS e, "
        "UNNEST(e.top_feature_attributions) AS a ORDER BY a.attribution DESC",
    )
    n = _q(ws, "SELECT count(*) AS n FROM demo.t WHERE x > 1")["n"][0].as_py()
    assert out.num_rows == n  # one attribution per row
    assert set(out["feature"].to_pylist()) <= {"x", "z", "c"}
    ws.sql(
        "CREATE OR REPLACE TABLE demo.importance AS "
        "SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL demo.bt) WHERE importance_weight > 0"
    )
    assert _q(ws, "SELECT count(*) AS n FROM demo.importance")["n"][0].as_py() >= 1
