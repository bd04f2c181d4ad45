"""Predictor.explain (ML.EXPLAIN_PREDICT): exact attributions per input feature, per model type."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from shipyard.errors import InvalidArgument
from shipyard.registry.explain import ATTRIBUTION_TYPE, global_explanation
from shipyard.registry.predictor import Predictor
from shipyard.sql.modeltypes import MODEL_TYPES

rng = np.random.default_rng(11)
N = 400


def _table(n: int = N, *, extra: int = 0) -> pa.Table:
    x = rng.normal(size=n)
    z = rng.normal(size=n) * 3 + 1
    c = rng.choice(["a", "b", "c"], size=n)
    y = 2 * x - 0.5 * z + np.where(c == "b", 3.0, 0.0) + rng.normal(size=n) * 0.1
    cols: dict[str, Any] = {"x": x, "z": z, "c": c}
    for i in range(extra):
        cols[f"e{i}"] = rng.normal(size=n)
    cols["y"] = y
    cols["flag"] = y > 0.5
    cols["band"] = np.where(y > 1.5, "hi", np.where(y < -1.0, "lo", "mid"))
    return pa.table(cols)


DATA = _table()


def _train(model_type: str, label: str, **options: Any) -> Predictor:
    drop = {"y", "flag", "band"} - {label}
    table = DATA.drop_columns(list(drop))
    opts = {"model_type": model_type, "input_label_cols": [label], **options}
    return MODEL_TYPES[model_type].train(table, opts).predictor()


@pytest.fixture(scope="module")
def models() -> dict[str, Predictor]:
    return {
        "linear": _train("LINEAR_REG", "y"),
        "logistic": _train("LOGISTIC_REG", "flag"),
        "logistic_multi": _train("LOGISTIC_REG", "band"),
        "tree_reg": _train("BOOSTED_TREE_REGRESSOR", "y", max_iterations=10),
        "tree_bin": _train("BOOSTED_TREE_CLASSIFIER", "flag", max_iterations=10),
        "tree_multi": _train("BOOSTED_TREE_CLASSIFIER", "band", max_iterations=10),
    }


def _attributions(out: pa.Table) -> list[dict[str, float]]:
    return [
        {a["feature"]: a["attribution"] for a in row}
        for row in out["top_feature_attributions"].to_pylist()
    ]


def test_output_columns_follow_bigquery_ml(models: dict[str, Predictor]) -> None:
    out = models["tree_bin"].explain(DATA.slice(0, 5))
    assert out.column_names[:6] == [
        "predicted_flag",
        "predicted_flag_probs",
        "top_feature_attributions",
        "baseline_prediction_value",
        "prediction_value",
        "approximation_error",
    ]
    assert out.column_names[6:] == DATA.column_names  # the input columns, unchanged
    assert out.schema.field("top_feature_attributions").type == ATTRIBUTION_TYPE
    for name in ("baseline_prediction_value", "prediction_value", "approximation_error"):
        assert out.schema.field(name).type == pa.float64()
    reg = models["linear"].explain(DATA.slice(0, 5))
    assert reg.column_names[:5] == ["predicted_y", *out.column_names[2:6]]
    bare = models["tree_bin"].explain(DATA.slice(0, 5), keep_original_columns=False)
    assert bare.column_names == out.column_names[:6]
    # Same predictions as ML.PREDICT.
    assert reg["predicted_y"].equals(models["linear"].predict(DATA.slice(0, 5))["predicted_y"])


def test_linear_attributions_are_coef_times_x_per_input_feature(
    models: dict[str, Predictor],
) -> None:
    p = models["linear"]
    rows = DATA.slice(0, 50)
    out = p.explain(rows, top_k_features=10)
    matrix = p.preprocessor.transform(rows, dtype=np.float64)
    coef, names = p.model.coef_, p.preprocessor.feature_names_out
    expected = matrix * coef
    got = _attributions(out)
    for i in range(50):
        assert got[i]["x"] == pytest.approx(expected[i, names.index("x")], abs=1e-12)
        assert got[i]["z"] == pytest.approx(expected[i, names.index("z")], abs=1e-12)
        onehot = [j for j, n in enumerate(names) if n.startswith("c=")]
        assert got[i]["c"] == pytest.approx(expected[i, onehot].sum(), abs=1e-12)  # summed
    baseline = out["baseline_prediction_value"].to_numpy()
    assert np.allclose(baseline, p.model.intercept_)
    assert np.allclose(out["prediction_value"].to_numpy(), out["predicted_y"].to_numpy())
    assert out["approximation_error"].to_numpy().max() < 1e-9


def test_logistic_explains_the_logit_of_the_predicted_class(models: dict[str, Predictor]) -> None:
    p = models["logistic"]
    out = p.explain(DATA, top_k_features=3)
    positive = np.asarray(out["predicted_flag"].to_pylist())
    value = out["prediction_value"].to_numpy()
    prob_true = np.array([probs[0]["prob"] for probs in out["predicted_flag_probs"].to_pylist()])
    with np.errstate(divide="ignore"):
        logit = np.log(prob_true / (1 - prob_true))
    ok = (prob_true > 1e-9) & (prob_true < 1 - 1e-9)
    # The positive class's log-odds when it is predicted; the negative class's (-logit) if not.
    assert np.allclose(value[ok], np.where(positive, logit, -logit)[ok], atol=1e-6)
    assert {True, False} <= set(positive.tolist())
    assert out["approximation_error"].to_numpy().max() < 1e-9
    baseline = out["baseline_prediction_value"].to_numpy()
    assert np.allclose(baseline, np.where(positive, 1, -1) * p.model.intercept_[0])


def test_multiclass_logistic_explains_the_predicted_class_logit(
    models: dict[str, Predictor],
) -> None:
    p = models["logistic_multi"]
    out = p.explain(DATA)
    matrix = p.preprocessor.transform(DATA, dtype=np.float64)
    logits = p.model.decision_function(matrix)
    codes = p.label_info.encode(out["predicted_band"])
    assert np.allclose(out["prediction_value"].to_numpy(), logits[np.arange(N), codes])
    total = out["baseline_prediction_value"].to_numpy() + np.array(
        [sum(a.values()) for a in _attributions(p.explain(DATA, top_k_features=99))]
    )
    assert np.allclose(total, out["prediction_value"].to_numpy())


def test_xgboost_contributions_sum_to_the_margin(models: dict[str, Predictor]) -> None:
    for key, label in (("tree_reg", "y"), ("tree_bin", "flag")):
        p = models[key]
        out = p.explain(DATA, top_k_features=10)
        matrix = p.preprocessor.transform(DATA, dtype=np.float32)
        contribs = p.model.predict(xgb.DMatrix(matrix), pred_contribs=True)
        margin = p.model.predict(xgb.DMatrix(matrix), output_margin=True)
        sign = np.ones(N)
        if key == "tree_bin":
            sign = np.where(np.asarray(out["predicted_flag"].to_pylist()), 1.0, -1.0)
        got = _attributions(out)
        names = p.preprocessor.feature_names_out  # label-encoded: one column per input
        for i in range(0, N, 37):
            for j, name in enumerate(names):
                assert got[i][name] == pytest.approx(sign[i] * contribs[i, j], abs=1e-6)
        assert np.allclose(out["prediction_value"].to_numpy(), sign * margin, atol=1e-5)
        assert np.allclose(out["baseline_prediction_value"].to_numpy(), sign * contribs[:, -1])
        assert out["approximation_error"].to_numpy().max() < 1e-4
        if key == "tree_reg":
            assert np.allclose(out["prediction_value"].to_numpy(), out[f"predicted_{label}"])


def test_xgboost_multiclass_uses_the_predicted_class_margin(models: dict[str, Predictor]) -> None:
    p = models["tree_multi"]
    out = p.explain(DATA)
    matrix = p.preprocessor.transform(DATA, dtype=np.float32)
    margin = p.model.predict(xgb.DMatrix(matrix), output_margin=True)
    codes = p.label_info.encode(out["predicted_band"])
    assert np.allclose(out["prediction_value"].to_numpy(), margin[np.arange(N), codes], atol=1e-5)
    assert out["approximation_error"].to_numpy().max() < 1e-4


def test_approximate_tree_contributions_are_additive_too(models: dict[str, Predictor]) -> None:
    p = models["tree_reg"]
    exact = p.explain(DATA, top_k_features=3)
    approx = p.explain(DATA, top_k_features=3, approx_feature_contrib=True)
    assert approx["approximation_error"].to_numpy().max() < 1e-4
    assert approx["prediction_value"].equals(exact["prediction_value"])
    assert _attributions(approx) != _attributions(exact)  # Saabas differs from TreeSHAP


def test_top_k_features_sorted_by_magnitude_default_five() -> None:
    table = _table(60, extra=6)
    p = (
        MODEL_TYPES["LINEAR_REG"]
        .train(
            table.drop_columns(["flag", "band"]),
            {"model_type": "LINEAR_REG", "input_label_cols": ["y"]},
        )
        .predictor()
    )
    out = p.explain(table)
    lists = out["top_feature_attributions"].to_pylist()
    assert all(len(row) == 5 for row in lists)  # BigQuery ML's default
    for row in lists:
        sizes = [abs(a["attribution"]) for a in row]
        assert sizes == sorted(sizes, reverse=True)
    assert all(
        len(r) == 9
        for r in p.explain(table, top_k_features=50)["top_feature_attributions"].to_pylist()
    )
    assert all(
        len(r) == 1
        for r in p.explain(table, top_k_features=1)["top_feature_attributions"].to_pylist()
    )


def test_threshold_changes_the_explained_class(models: dict[str, Predictor]) -> None:
    p = models["tree_bin"]
    low = p.explain(DATA, threshold=0.0)
    high = p.explain(DATA, threshold=1.0)
    assert set(low["predicted_flag"].to_pylist()) == {True}
    assert set(high["predicted_flag"].to_pylist()) == {False}
    assert np.allclose(low["prediction_value"].to_numpy(), -high["prediction_value"].to_numpy())


def test_bad_input_is_refused(models: dict[str, Predictor]) -> None:
    p = models["linear"]
    with pytest.raises(InvalidArgument, match="top_k_features"):
        p.explain(DATA, top_k_features=0)
    with pytest.raises(InvalidArgument, match="binary classification"):
        p.explain(DATA, threshold=0.3)
    with pytest.raises(InvalidArgument, match="prediction_value"):
        p.explain(DATA.append_column("prediction_value", pa.array(np.zeros(N))))
    with pytest.raises(InvalidArgument, match="missing feature columns"):
        p.explain(DATA.select(["x"]))
    from sklearn.tree import DecisionTreeRegressor

    matrix = p.preprocessor.transform(DATA, dtype=np.float64)
    tree = DecisionTreeRegressor(max_depth=2).fit(matrix, DATA["y"].to_numpy())
    other = Predictor("regression", tree, "sklearn", p.preprocessor, None, "y", {"model_type": "X"})
    with pytest.raises(InvalidArgument, match="do not apply to X"):
        other.explain(DATA)


def test_no_rows_give_an_empty_table_with_the_schema(models: dict[str, Predictor]) -> None:
    out = models["tree_multi"].explain(DATA.slice(0, 0))
    assert out.num_rows == 0
    assert out.schema.field("top_feature_attributions").type == ATTRIBUTION_TYPE


def test_global_explanation_is_mean_absolute_attribution(models: dict[str, Predictor]) -> None:
    p = models["tree_multi"]
    matrix = p.preprocessor.transform(DATA, dtype=np.float32)
    summary = global_explanation(p, matrix)
    full = _attributions(p.explain(DATA, top_k_features=10))
    for feature in ("x", "z", "c"):
        expected = np.mean([abs(row[feature]) for row in full])
        assert summary["attributions"][feature] == pytest.approx(expected, rel=1e-9)
    assert set(summary["class_attributions"]) == {"hi", "lo", "mid"}


@pytest.mark.slow
def test_ten_thousand_rows_are_explained_quickly() -> None:
    table = _table(10_000, extra=5)
    linear = (
        MODEL_TYPES["LOGISTIC_REG"]
        .train(
            table.drop_columns(["y", "band"]),
            {"model_type": "LOGISTIC_REG", "input_label_cols": ["flag"]},
        )
        .predictor()
    )
    trees = (
        MODEL_TYPES["BOOSTED_TREE_REGRESSOR"]
        .train(
            table.drop_columns(["flag", "band"]),
            {
                "model_type": "BOOSTED_TREE_REGRESSOR",
                "input_label_cols": ["y"],
                "max_iterations": 10,
            },
        )
        .predictor()
    )
    # Linear models and Saabas tree contributions are well under a second (~15 ms and ~30 ms
    # here). Exact TreeSHAP costs rows x leaves x depth^2: timed, but not bounded, below.
    for run, limit in (
        (lambda: linear.explain(table), 1.0),
        (lambda: trees.explain(table, approx_feature_contrib=True), 1.0),
        (lambda: trees.explain(table), 30.0),
    ):
        run()  # warm
        start = time.perf_counter()
        out = run()
        elapsed = time.perf_counter() - start
        assert out.num_rows == 10_000
        assert elapsed < limit, elapsed


def test_global_explanation_in_chunks_gives_the_same_numbers(
    models: dict[str, Predictor], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shipyard.registry.explain as explain_module

    for key in ("tree_multi", "logistic_multi"):
        p = models[key]
        matrix = p.preprocessor.transform(DATA, dtype=p._dtype)
        whole = global_explanation(p, matrix)
        monkeypatch.setattr(explain_module, "_GLOBAL_CHUNK_VALUES", 50)  # a few rows at a time
        chunked = global_explanation(p, matrix)
        monkeypatch.undo()
        for feature, value in whole["attributions"].items():
            assert chunked["attributions"][feature] == pytest.approx(value, rel=1e-9)
        for cls, values in whole["class_attributions"].items():
            for feature, value in values.items():
                assert chunked["class_attributions"][cls][feature] == pytest.approx(value, rel=1e-9)
