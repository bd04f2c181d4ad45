"""An INT64 0..K-1 label (a 0/1 label) decodes without a gather, to the values a gather gives;
other labels keep the gather."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor, LabelInfo

FEATURES = ["a", "b", "c"]


def _table(n: int = 5000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) * 5
    return pa.table({name: x[:, i].copy() for i, name in enumerate(FEATURES)})


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("rows", [0, 1, 64, 65, 1000])
def test_int64_classes_zero_to_k_decode_as_take_does(k, rows):
    classes = pa.array(np.arange(k), type=pa.int64())
    info = LabelInfo(classes)
    codes = np.random.default_rng(rows).integers(0, k, rows)
    got = info.decode(codes)
    want = classes.take(pa.array(codes, type=pa.int64()))
    assert got.type == pa.int64() and got.equals(want)


@pytest.mark.parametrize(
    "classes",
    [
        pa.array([1, 2], type=pa.int64()),  # not 0..K-1
        pa.array([0, 1], type=pa.int32()),  # not INT64
        pa.array([-1, 0, 1], type=pa.int64()),
    ],
)
def test_other_integer_classes_decode_to_their_values(classes):
    info = LabelInfo(classes)
    codes = np.array([0, 1, 1, 0])
    got = info.decode(codes)
    assert got.type == classes.type
    assert got.to_pylist() == [classes[int(c)].as_py() for c in codes]


def test_a_binary_zero_one_classifier_predicts_its_labels():
    classes = pa.array([0, 1], type=pa.int64())
    pre = FeaturePreprocessor.fit(_table(500), FEATURES, standardize=False)

    class Model:
        def inplace_predict(self, matrix: np.ndarray) -> np.ndarray:
            return (matrix[:, 0] > 0).astype(np.float32) * 0.5 + 0.25

    predictor = Predictor(
        "binary_classification", Model(), "xgboost", pre, LabelInfo(classes), "label"
    )
    table = _table()
    out = predictor.predict(table, keep_original_columns=False)
    want = (table["a"].to_numpy() > 0).astype(np.int64)
    assert out.column(0).type == pa.int64()
    assert np.array_equal(out.column(0).to_numpy(), want)
    first = out.column(1).to_pylist()[0]
    assert [entry["label"] for entry in first] == [1, 0]
