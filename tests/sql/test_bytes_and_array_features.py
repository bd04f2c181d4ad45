"""BYTES (one-hot) and ARRAY<STRING> (multi-hot) features through CREATE MODEL and ML.*."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard as sy
from shipyard.errors import Unsupported


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("multi_hot"))
    rows = [
        {
            "x": float(i % 7),
            "tags": ["red", "big"] if i % 3 == 0 else (["small"] if i % 3 == 1 else None),
            "y": 2.0 * (i % 7) + (3.0 if i % 3 == 0 else 0.0),
        }
        for i in range(90)
    ]
    workspace.load_table("demo.raw", rows)
    workspace.sql(
        "CREATE TABLE demo.t AS SELECT x, tags, CAST(CAST(x AS INT64) AS STRING)::BLOB AS b, y "
        "FROM demo.raw"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "data_split_method='NO_SPLIT') AS SELECT x, tags, b, y FROM demo.t"
    )
    yield workspace
    workspace.close()


def test_linear_model_weights_each_element_and_byte_string(ws: Any) -> None:
    rows = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.lin)").to_pylist()
    by_input = {r["processed_input"]: r for r in rows}
    tags = [c["category"] for c in by_input["tags"]["category_weights"]]
    assert tags == ["big", "red", "small", "<NULL>"]
    blobs = [c["category"] for c in by_input["b"]["category_weights"]]
    assert blobs[:2] == ["MA==", "MQ=="]  # base64 of b'0', b'1'
    metrics = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.lin)").to_pylist()[0]
    assert metrics["r2_score"] == pytest.approx(1.0)
    info = ws.sql("SELECT input, category_count FROM ML.FEATURE_INFO(MODEL demo.lin)").to_pylist()
    assert info[1:] == [{"input": "tags", "category_count": 3}, {"input": "b", "category_count": 7}]


@pytest.mark.parametrize(
    "options",
    [
        "model_type='boosted_tree_regressor', max_iterations=3",
        "model_type='kmeans', num_clusters=2",
    ],
)
def test_other_model_types_take_them(ws: Any, options: str) -> None:
    label = ", input_label_cols=['y']" if "boosted" in options else ""
    cols = "x, tags, b" + (", y" if label else "")
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.other OPTIONS({options}{label}) AS SELECT {cols} FROM demo.t"
    )
    out = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.other, (SELECT 1.0 AS x, ['never', 'red'] AS tags, "
        "CAST('zz' AS BLOB) AS b))"
    ).to_arrow()
    assert out.num_rows == 1


def test_onnx_export_refuses_naming_the_column(ws: Any, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    with pytest.raises(Unsupported, match="'tags'.*does not convert to ONNX"):
        ws.sql(f"EXPORT MODEL demo.lin OPTIONS(uri='{tmp_path}/x', format='ONNX')")
    assert not (tmp_path / "x").exists()
