"""The Predictor: ML.PREDICT's output shape, types and thresholds, and save/load fidelity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from shipyard.errors import InvalidArgument
from shipyard.registry.flavors import load_model, save_model
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor, LabelInfo


def _table(data: Any, label: Any) -> pa.Table:
    columns = {f"f{i}": data[:, i] for i in range(data.shape[1])}
    columns["label"] = label
    return pa.table(columns)


def _features(t: pa.Table) -> list[str]:
    return [c for c in t.column_names if c != "label"]


def _xgb_classifier(t: pa.Table) -> Predictor:
    info = LabelInfo.fit(t.column("label"), label="label")
    pre = FeaturePreprocessor.fit(t, _features(t), standardize=False, categorical_encoding="label")
    y = info.encode(t.column("label"))
    k = info.n_classes
    params: dict[str, Any] = {"max_depth": 3, "eta": 0.3}
    params["objective"] = "binary:logistic" if k == 2 else "multi:softprob"
    if k > 2:
        params["num_class"] = k
    booster = xgb.train(params, xgb.DMatrix(pre.transform(t), label=y), num_boost_round=10)
    task = "binary_classification" if k == 2 else "multiclass_classification"
    return Predictor(task, booster, "xgboost", pre, info, "label")


@pytest.fixture(scope="module")
def iris_strings() -> pa.Table:
    data = load_iris()
    return _table(data.data, pa.array(data.target_names[data.target].tolist()))


@pytest.fixture(scope="module")
def cancer() -> pa.Table:
    x, y = load_breast_cancer(return_X_y=True)
    return _table(x, pa.array(y.astype(bool)))


@pytest.fixture(scope="module")
def diabetes_linear() -> tuple[Predictor, pa.Table]:
    x, y = load_diabetes(return_X_y=True)
    t = _table(x, y)
    pre = FeaturePreprocessor.fit(t, _features(t), standardize=True)
    model = LinearRegression().fit(pre.transform(t, dtype=np.float64), y)
    return Predictor("regression", model, "sklearn", pre, None, "label"), t


def test_regression_output_columns_come_first_then_the_input(diabetes_linear: tuple) -> None:
    predictor, t = diabetes_linear
    out = predictor.predict(t)
    assert out.column_names == ["predicted_label", *t.column_names]
    assert out.schema.field("predicted_label").type == pa.float64()
    for name in t.column_names:
        assert out.column(name).equals(t.column(name))
    x = predictor.preprocessor.transform(t, dtype=np.float64)
    np.testing.assert_allclose(out.column(0).to_numpy(), predictor.model.predict(x))
    only = predictor.predict(t, keep_original_columns=False)
    assert only.column_names == ["predicted_label"]


def test_multiclass_string_labels(iris_strings: pa.Table) -> None:
    predictor = _xgb_classifier(iris_strings)
    out = predictor.predict(iris_strings)
    assert out.column_names[:2] == ["predicted_label", "predicted_label_probs"]
    assert out.schema.field("predicted_label").type == pa.string()
    probs_type = out.schema.field("predicted_label_probs").type
    assert probs_type == pa.list_(pa.struct([("label", pa.string()), ("prob", pa.float64())]))
    first = out.column("predicted_label_probs")[0].as_py()
    # Every class once, in descending class order.
    assert [p["label"] for p in first] == ["virginica", "versicolor", "setosa"]
    flat = pc.list_flatten(out.column("predicted_label_probs")).combine_chunks()
    probs = flat.field("prob").to_numpy().reshape(-1, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # The predicted label is the most probable one.
    labels = np.array(["virginica", "versicolor", "setosa"])
    assert out.column(0).to_pylist() == labels[probs.argmax(axis=1)].tolist()
    accuracy = pc.mean(pc.equal(out.column(0), iris_strings.column("label"))).as_py()
    assert accuracy > 0.95


def test_binary_bool_labels_and_threshold(cancer: pa.Table) -> None:
    predictor = _xgb_classifier(cancer)
    out = predictor.predict(cancer)
    assert out.schema.field("predicted_label").type == pa.bool_()
    first = out.column("predicted_label_probs")[0].as_py()
    assert [p["label"] for p in first] == [True, False]  # the positive class first
    positive = pc.list_flatten(out.column("predicted_label_probs")).combine_chunks().field("prob")
    positive = positive.to_numpy()[0::2]
    assert out.column(0).to_pylist() == (positive > 0.5).tolist()
    everyone = predictor.predict(cancer, threshold=0.0).column(0)
    assert everyone.to_pylist() == (positive > 0.0).tolist()
    nobody = predictor.predict(cancer, threshold=1.0).column(0)
    assert not any(nobody.to_pylist())
    custom = predictor.predict(cancer, threshold=0.9).column(0)
    assert custom.to_pylist() == (positive > 0.9).tolist()


def test_a_probability_at_the_threshold_is_negative(cancer: pa.Table) -> None:
    predictor = _xgb_classifier(cancer)
    codes, probs = predictor.interpret_scores(np.array([0.5, 0.5001, 0.25]))
    assert codes.tolist() == [0, 1, 0]  # only *above* the threshold is positive
    assert probs is not None and probs[:, 1].tolist() == [0.5, 0.5001, 0.25]
    codes, _ = predictor.interpret_scores(np.array([0.25, 0.3]), threshold=0.25)
    assert codes.tolist() == [0, 1]


def test_integer_labels_keep_their_type() -> None:
    data = load_iris()
    t = _table(data.data, pa.array(data.target.astype(np.int32)))
    out = _xgb_classifier(t).predict(t)
    assert out.schema.field("predicted_label").type == pa.int32()
    assert set(out.column(0).to_pylist()) == {0, 1, 2}


def test_threshold_errors(iris_strings: pa.Table, cancer: pa.Table, diabetes_linear: tuple) -> None:
    with pytest.raises(InvalidArgument, match="only to binary classification"):
        _xgb_classifier(iris_strings).predict(iris_strings, threshold=0.3)
    with pytest.raises(InvalidArgument, match="only to binary classification"):
        diabetes_linear[0].predict(diabetes_linear[1], threshold=0.3)
    with pytest.raises(InvalidArgument, match=r"\[0, 1\], got 1.5"):
        _xgb_classifier(cancer).predict(cancer, threshold=1.5)


def test_output_name_clash_is_refused(diabetes_linear: tuple) -> None:
    predictor, t = diabetes_linear
    clashing = t.append_column("predicted_label", pa.array(np.zeros(t.num_rows)))
    with pytest.raises(InvalidArgument, match="predicted_label"):
        predictor.predict(clashing)
    assert predictor.predict(clashing, keep_original_columns=False).num_rows == t.num_rows


def test_empty_input_gives_empty_typed_output(iris_strings: pa.Table) -> None:
    predictor = _xgb_classifier(iris_strings)
    out = predictor.predict(iris_strings.slice(0, 0))
    assert out.num_rows == 0
    assert out.schema.field("predicted_label_probs").type.value_type.field("label").type == (
        pa.string()
    )


def test_signature_lists_inputs_and_outputs(cancer: pa.Table) -> None:
    sig = _xgb_classifier(cancer).signature
    assert sig["inputs"][0] == {"name": "f0", "type": "double"}
    assert [o["name"] for o in sig["outputs"]] == ["predicted_label", "predicted_label_probs"]
    assert sig["outputs"][1]["type"] == "list<item: struct<label: bool, prob: double>>"


def test_predict_raw_returns_codes_and_probabilities(iris_strings: pa.Table) -> None:
    predictor = _xgb_classifier(iris_strings)
    x = predictor.preprocessor.transform(iris_strings)
    codes, probs = predictor.predict_raw(x)
    assert codes.dtype == np.int64 and probs is not None and probs.shape == (150, 3)
    np.testing.assert_array_equal(codes, probs.argmax(axis=1))


@pytest.mark.parametrize("flavor", ["xgboost", "sklearn"])
def test_save_and_load_give_identical_predictions(
    tmp_path: Path, iris_strings: pa.Table, flavor: str
) -> None:
    if flavor == "xgboost":
        predictor = _xgb_classifier(iris_strings)
    else:
        info = LabelInfo.fit(iris_strings.column("label"), label="label")
        t = iris_strings
        pre = FeaturePreprocessor.fit(t, _features(t), standardize=True)
        model = LogisticRegression().fit(
            pre.transform(t, dtype=np.float64), info.encode(t.column("label"))
        )
        predictor = Predictor("multiclass_classification", model, "sklearn", pre, info, "label")
    meta = save_model(flavor, predictor.model, tmp_path)
    manifest = json.loads(json.dumps(predictor.to_dict()))
    loaded = Predictor.from_dict(manifest, load_model(flavor, tmp_path, meta))
    assert loaded.predict(iris_strings).equals(predictor.predict(iris_strings))
    assert loaded.signature == predictor.signature


def test_sklearn_classifier_missing_a_class_still_reports_every_class() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    t = pa.table({"f0": x[:, 0], "label": ["a", "a", "c", "c"]})
    info = LabelInfo(pa.array(["a", "b", "c"]))  # "b" only existed in the evaluation split
    pre = FeaturePreprocessor.fit(t, ["f0"], standardize=True)
    model = LogisticRegression().fit(pre.transform(t, dtype=np.float64), [0, 0, 2, 2])
    out = Predictor("multiclass_classification", model, "sklearn", pre, info, "label").predict(t)
    rows = out.column("predicted_label_probs").to_pylist()
    assert [p["label"] for p in rows[0]] == ["c", "b", "a"]
    assert rows[0][1]["prob"] == 0.0
    assert out.column(0).to_pylist() == ["a", "a", "c", "c"]


def test_constructor_validates_its_arguments(diabetes_linear: tuple) -> None:
    predictor = diabetes_linear[0]
    with pytest.raises(InvalidArgument, match="valid tasks"):
        Predictor("ranking", None, "sklearn", predictor.preprocessor, None, "label")
    with pytest.raises(InvalidArgument, match="label_info"):
        Predictor("binary_classification", None, "sklearn", predictor.preprocessor, None, "y")
