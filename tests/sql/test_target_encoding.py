"""category_encoding_method='TARGET_ENCODING' for boosted trees and random forests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("target"))
    rows = [
        {
            "x": float(i % 7),
            "c": None if i % 11 == 0 else "abcd"[i % 4],
            "y": 2.0 * (i % 7) + (3.0 if i % 4 == 0 else 0.0),
            "hit": i % 4 == 0,
            "k": "pqr"[i % 3],
        }
        for i in range(200)
    ]
    workspace.load_table("demo.t", rows)
    yield workspace
    workspace.close()


def _create(ws: Any, name: str, model_type: str, label: str, extra: str = "") -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} OPTIONS(model_type='{model_type}', "
        f"input_label_cols=['{label}'], category_encoding_method='TARGET_ENCODING', "
        f"data_split_method='NO_SPLIT'{extra}) AS SELECT x, c, {label} FROM demo.t"
    )


def test_regression_encodes_the_category_mean(ws: Any) -> None:
    _create(ws, "reg", "boosted_tree_regressor", "y", ", max_iterations=5")
    predictor = ws.models.load("demo.reg")
    columns = predictor.preprocessor.to_dict()["columns"]
    c = next(col for col in columns if col["name"] == "c")
    assert c["encoding"] == "target"
    rows = ws.sql("SELECT c, AVG(y) AS m FROM demo.t GROUP BY c").to_pylist()
    means = {r["c"]: r["m"] for r in rows}
    got = dict(zip(c["categories"], np.ravel(c["target"]["values"]), strict=True))
    for category, value in got.items():
        assert value == pytest.approx(means[category])
    assert c["target"]["null"] == [pytest.approx(means[None])]
    metrics = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.reg)").to_pylist()[0]
    assert metrics["r2_score"] > 0.8
    importance = ws.sql("SELECT feature FROM ML.FEATURE_IMPORTANCE(MODEL demo.reg)").to_pylist()
    assert sorted(r["feature"] for r in importance) == ["c", "x"]


def test_binary_and_multiclass_classifiers_and_forests(ws: Any) -> None:
    _create(ws, "bin", "boosted_tree_classifier", "hit", ", max_iterations=5")
    c = next(
        col
        for col in ws.models.load("demo.bin").preprocessor.to_dict()["columns"]
        if col["name"] == "c"
    )
    shares = dict(zip(c["categories"], np.ravel(c["target"]["values"]), strict=True))
    assert shares["a"] == 1.0 and shares["b"] == 0.0  # share of TRUE ('a' rows: i % 4 == 0)
    _create(ws, "multi", "boosted_tree_classifier", "k", ", max_iterations=3")
    names = ws.models.load("demo.multi").preprocessor.feature_names_out
    assert names == ["x", "c=p", "c=q", "c=r"]
    _create(ws, "forest", "random_forest_regressor", "y", ", num_parallel_tree=5")
    for name in ("bin", "multi", "forest"):
        out = ws.sql(
            f"SELECT * FROM ML.PREDICT(MODEL demo.{name}, (SELECT x, c FROM demo.t "
            "UNION ALL SELECT 1.0, 'never seen'))"
        ).to_arrow()
        assert out.num_rows == 201
    explained = ws.sql(
        "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.multi, (SELECT x, c FROM demo.t LIMIT 3))"
    ).to_pylist()
    assert {a["feature"] for a in explained[0]["top_feature_attributions"]} == {"x", "c"}


def test_linear_models_refuse_target_encoding(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="category_encoding_method"):
        ws.sql(
            "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
            "category_encoding_method='TARGET_ENCODING') AS SELECT x, c, y FROM demo.t"
        )


def test_onnx_export_equals_predict(ws: Any, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    _create(ws, "reg", "boosted_tree_regressor", "y", ", max_iterations=5")
    ws.sql(f"EXPORT MODEL demo.reg OPTIONS(uri='{tmp_path}/reg', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "reg" / "model.onnx"))
    rows = ws.sql("SELECT x, c FROM demo.t UNION ALL SELECT 2.0, 'zz'").to_arrow()
    feed = {
        "x": rows["x"].to_numpy().reshape(-1, 1),
        "c": np.array(
            ["" if v is None else v for v in rows["c"].to_pylist()], dtype=object
        ).reshape(-1, 1),
    }
    (got,) = session.run(None, feed)
    want = ws.sql(
        "SELECT predicted_y FROM ML.PREDICT(MODEL demo.reg, "
        "(SELECT x, c FROM demo.t UNION ALL SELECT 2.0, 'zz'))"
    ).to_arrow()
    np.testing.assert_allclose(got[:, 0], want["predicted_y"].to_numpy(), rtol=1e-5, atol=1e-5)
