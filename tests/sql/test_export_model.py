"""EXPORT MODEL: the native files and manifest, an ONNX graph that predicts what ML.PREDICT does
(onnxruntime), round trips through CREATE MODEL … model_type='ONNX'/'XGBOOST', and bad input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

import shipyard as sy  # noqa: E402

_FEATURES = ("a", "b", "c")


def _rows() -> list[dict[str, Any]]:
    rng = np.random.RandomState(3)
    rows = []
    for i in range(150):
        a, b = float(rng.rand()), float(rng.rand() * 10)
        c = None if i % 9 == 0 else float(rng.rand())
        y = 2 * a - 0.3 * b + (c or 0.0) + 0.05 * float(rng.rand())
        rows.append(
            {
                "a": a,
                "b": b,
                "c": c,
                "y": y,
                "size": "big" if y > -0.5 else "small",
                "k": int(abs(y) * 2) % 3,
                "flag": y > -0.5,
                "city": "xyz"[i % 3],
            }
        )
    return rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("export"))
    workspace.load_table("demo.t", _rows())
    yield workspace
    workspace.close()


def _inputs(ws: Any, dtype: Any) -> np.ndarray:
    t = ws.sql("SELECT a, b, c FROM demo.t").to_arrow()
    return np.column_stack(
        [t[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in _FEATURES]
    ).astype(dtype)


def _class_probs(rows: Any, column: str) -> np.ndarray:
    """ML.PREDICT's _probs column in ascending class order."""
    return np.array(
        [[e["prob"] for e in sorted(r, key=lambda e: e["label"])] for r in rows[column].to_pylist()]
    )


CASES = [
    ("linear", "model_type='linear_reg', input_label_cols=['y']", "y", "model.skops"),
    ("logistic", "model_type='logistic_reg', input_label_cols=['size']", "size", "model.skops"),
    (
        "boosted3",
        "model_type='boosted_tree_classifier', input_label_cols=['k'], max_iterations=6",
        "k",
        "model.ubj",
    ),
    (
        "boosted2",
        "model_type='boosted_tree_classifier', input_label_cols=['flag'], max_iterations=6",
        "flag",
        "model.ubj",
    ),
    (
        "forest",
        "model_type='random_forest_regressor', input_label_cols=['y'], num_parallel_tree=5",
        "y",
        "model.ubj",
    ),
]


@pytest.mark.parametrize(("name", "options", "label", "native"), CASES)
def test_export_writes_native_files_manifest_and_an_equivalent_onnx_graph(
    ws: Any, tmp_path: Path, name: str, options: str, label: str, native: str
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} OPTIONS({options}) "
        f"AS SELECT a, b, c, {label} FROM demo.t"
    )
    target = tmp_path / "out"
    result = ws.sql(f"EXPORT MODEL demo.{name} OPTIONS(uri='file://{target}')")
    assert result.statement_type == "EXPORT_MODEL"
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["manifest.json", "model.onnx", native]
    )
    stored = ws.models.manifest(f"demo.{name}")
    assert hashlib.sha256((target / native).read_bytes()).hexdigest() == stored.files[native]
    assert json.loads((target / "manifest.json").read_text())["feature_columns"] == list(_FEATURES)

    session = ort.InferenceSession(str(target / "model.onnx"))
    (graph_input,) = session.get_inputs()
    dtype = np.float64 if graph_input.type == "tensor(double)" else np.float32
    outputs = session.run(None, {"input": _inputs(ws, dtype)})
    predicted = ws.sql(
        f"SELECT * FROM ML.PREDICT(MODEL demo.{name}, (SELECT a, b, c FROM demo.t))"
    ).to_arrow()
    if len(outputs) == 1:  # regression: variable [batch, 1]
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(
            outputs[0][:, 0], predicted[f"predicted_{label}"].to_numpy(), rtol=rtol, atol=1e-6
        )
    else:  # classification: label (the class itself) and probabilities (ascending classes)
        assert outputs[0].tolist() == predicted[f"predicted_{label}"].to_pylist()
        np.testing.assert_allclose(
            outputs[1], _class_probs(predicted, f"predicted_{label}_probs"), atol=1e-6
        )


def test_exported_onnx_and_xgboost_files_import_back(ws: Any, tmp_path: Path) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.forest OPTIONS(model_type='random_forest_regressor', "
        "input_label_cols=['y'], num_parallel_tree=5) AS SELECT a, b, c, y FROM demo.t"
    )
    ws.sql(f"EXPORT MODEL demo.forest OPTIONS(uri='{tmp_path}/forest')")
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.forest_onnx OPTIONS(model_type='ONNX', "
        f"model_path='{tmp_path}/forest/model.onnx')"
    )
    ws.sql(
        "CREATE OR REPLACE MODEL demo.forest_xgb INPUT(a FLOAT64, b FLOAT64, c FLOAT64) "
        f"OPTIONS(model_type='XGBOOST', model_path='{tmp_path}/forest/model.ubj')"
    )
    original = ws.sql("SELECT predicted_y FROM ML.PREDICT(MODEL demo.forest, TABLE demo.t)")
    expected = original.to_arrow()["predicted_y"].to_numpy()
    via_onnx = ws.sql(
        "SELECT variable FROM ML.PREDICT(MODEL demo.forest_onnx, "
        "(SELECT [a, b, c] AS input FROM demo.t))"
    ).to_arrow()["variable"]
    # NULL c: Shipyard imputes the training mean; the ONNX graph does the same from NaN.
    np.testing.assert_allclose(via_onnx.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    via_xgb = ws.sql(
        "SELECT predicted_label FROM ML.PREDICT(MODEL demo.forest_xgb, "
        "(SELECT a, b, COALESCE(c, 0.0) AS c FROM demo.t WHERE c IS NOT NULL))"
    ).to_arrow()["predicted_label"]
    kept = ws.sql(
        "SELECT predicted_y FROM ML.PREDICT(MODEL demo.forest, "
        "(SELECT * FROM demo.t WHERE c IS NOT NULL))"
    ).to_arrow()["predicted_y"]
    np.testing.assert_allclose(via_xgb.to_numpy(), kept.to_numpy(), rtol=1e-6)


def test_imported_onnx_exports_byte_for_byte(ws: Any, tmp_path: Path) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.linear OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y']) AS SELECT a, b, c, y FROM demo.t"
    )
    ws.sql(f"EXPORT MODEL demo.linear OPTIONS(uri='{tmp_path}/first')")
    original = (tmp_path / "first" / "model.onnx").read_bytes()
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.reimported OPTIONS(model_type='ONNX', "
        f"model_path='{tmp_path}/first/model.onnx')"
    )
    ws.sql(f"EXPORT MODEL demo.reimported OPTIONS(uri='{tmp_path}/second')")
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == [
        "manifest.json",
        "model.onnx",
    ]
    assert (tmp_path / "second" / "model.onnx").read_bytes() == original


def test_categorical_model_exports_onnx_with_one_input_per_column(ws: Any, tmp_path: Path) -> None:
    # STRING features convert too (tests/sql/test_export_onnx_features.py checks the values)
    ws.sql(
        "CREATE OR REPLACE MODEL demo.cat OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT a, city, y FROM demo.t"
    )
    result = ws.sql(f"EXPORT MODEL demo.cat OPTIONS(uri='{tmp_path}/native')")
    assert "no ONNX" not in (result.message or "")
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == [
        "manifest.json",
        "model.onnx",
        "model.skops",
    ]
    session = ort.InferenceSession(str(tmp_path / "native" / "model.onnx"))
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("a", "tensor(double)"),
        ("city", "tensor(string)"),
    ]


def test_export_into_an_empty_folder_but_never_over_files(ws: Any, tmp_path: Path) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.linear OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y']) AS SELECT a, b, c, y FROM demo.t"
    )
    (tmp_path / "empty").mkdir()
    ws.sql(f"EXPORT MODEL demo.linear OPTIONS(uri='{tmp_path}/empty/')")
    assert (tmp_path / "empty" / "model.onnx").is_file()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(sy.FailedPrecondition, match="non-empty folder"):
        ws.sql(f"EXPORT MODEL demo.linear OPTIONS(uri='{busy}')")
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert (busy / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ("OPTIONS(uri='{d}/x', format='PMML')", sy.InvalidArgument, "NATIVE, ONNX"),
        ("OPTIONS(uri='{d}/x', colour='red')", sy.InvalidArgument, "valid options: uri, format"),
        ("OPTIONS(uri='{d}/x', uri='{d}/y')", sy.InvalidArgument, "twice"),
        ("OPTIONS(uri='{d}/x', trial_id=1)", sy.Unsupported, "trial_id"),
        ("OPTIONS(uri='s3://bucket/x')", sy.Unsupported, "local folder"),
    ],
)
def test_bad_export_options(
    ws: Any, tmp_path: Path, options: str, error: type[Exception], fragment: str
) -> None:
    ws.sql(
        "CREATE MODEL IF NOT EXISTS demo.linear OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y']) AS SELECT a, b, c, y FROM demo.t"
    )
    with pytest.raises(error, match=fragment):
        ws.sql("EXPORT MODEL demo.linear " + options.format(d=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_kmeans_and_pca_export_to_onnx(ws: Any, tmp_path: Path) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.km OPTIONS(model_type='KMEANS', num_clusters=3) "
        "AS SELECT a, b, c FROM demo.t"
    )
    ws.sql(
        "CREATE OR REPLACE MODEL demo.pca OPTIONS(model_type='PCA', num_principal_components=2) "
        "AS SELECT a, b, c FROM demo.t"
    )
    x = _inputs(ws, np.float64)
    ws.sql(f"EXPORT MODEL demo.km OPTIONS(uri='{tmp_path}/km', format='ONNX')")
    label, scores = ort.InferenceSession(str(tmp_path / "km" / "model.onnx")).run(
        None, {"input": x}
    )
    rows = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.km, TABLE demo.t)").to_arrow()
    assert label.tolist() == rows["CENTROID_ID"].to_pylist()  # 1-based, as ML.PREDICT
    nearest = [
        min(e["DISTANCE"] for e in r) for r in rows["NEAREST_CENTROIDS_DISTANCE"].to_pylist()
    ]
    np.testing.assert_allclose(scores.min(axis=1), nearest, rtol=1e-9)

    ws.sql(f"EXPORT MODEL demo.pca OPTIONS(uri='{tmp_path}/pca', format='ONNX')")
    (projected,) = ort.InferenceSession(str(tmp_path / "pca" / "model.onnx")).run(
        None, {"input": x}
    )
    rows = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.pca, TABLE demo.t)").to_arrow()
    expected = np.column_stack([rows[f"principal_component_{i}"].to_numpy() for i in (1, 2)])
    np.testing.assert_allclose(projected, expected, rtol=1e-9, atol=1e-12)

    ws.sql(
        "CREATE OR REPLACE MODEL demo.km_cos OPTIONS(model_type='KMEANS', num_clusters=2, "
        "distance_type='COSINE') AS SELECT a, b, c FROM demo.t"
    )
    with pytest.raises(sy.Unsupported, match="COSINE"):
        ws.sql(f"EXPORT MODEL demo.km_cos OPTIONS(uri='{tmp_path}/cos', format='ONNX')")
