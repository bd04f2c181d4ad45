"""STRUCT features in CREATE MODEL: expanded into <struct>_<field> for every model type with
automatic preprocessing; ML.PREDICT takes the STRUCT column."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument

STRUCT = "STRUCT(x AS a, c AS b) AS s"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("structs"))
    workspace.load_table(
        "demo.t",
        [
            {"x": float(i % 7), "c": "abc"[i % 3], "y": 2.0 * (i % 7) + (3.0 if i % 3 == 0 else 0)}
            for i in range(90)
        ],
    )
    yield workspace
    workspace.close()


@pytest.mark.parametrize(
    ("model_type", "options", "output"),
    [
        ("linear_reg", "input_label_cols=['y']", "predicted_y"),
        ("boosted_tree_regressor", "input_label_cols=['y'], max_iterations=3", "predicted_y"),
        ("kmeans", "num_clusters=2", "CENTROID_ID"),
        ("pca", "num_principal_components=2", "principal_component_1"),
    ],
)
def test_struct_fields_are_features(ws: Any, model_type: str, options: str, output: str) -> None:
    label = ", y" if "label" in options else ""
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{model_type} OPTIONS(model_type='{model_type}', "
        f"{options}) AS SELECT {STRUCT}{label} FROM demo.t"
    )
    info = ws.sql(f"SELECT input FROM ML.FEATURE_INFO(MODEL demo.{model_type})").to_pylist()
    assert [r["input"] for r in info] == ["s_a", "s_b"]
    out = ws.sql(
        f"SELECT * FROM ML.PREDICT(MODEL demo.{model_type}, (SELECT {STRUCT} FROM demo.t))"
    ).to_arrow()
    assert out.num_rows == 90 and output in out.column_names


def test_linear_model_on_a_struct_equals_the_flat_columns(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.flat OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y']) AS SELECT x AS s_a, c AS s_b, y FROM demo.t"
    )
    ws.sql(
        "CREATE OR REPLACE MODEL demo.nested OPTIONS(model_type='linear_reg', "
        f"input_label_cols=['y']) AS SELECT {STRUCT}, y FROM demo.t"
    )
    flat = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.flat)").to_pylist()
    nested = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.nested)").to_pylist()
    assert [r["processed_input"] for r in nested] == ["s_a", "s_b", "__INTERCEPT__"]
    assert nested == flat
    a = ws.sql(
        "SELECT predicted_y FROM ML.PREDICT(MODEL demo.flat, "
        "(SELECT x AS s_a, c AS s_b FROM demo.t))"
    ).to_arrow()
    b = ws.sql(
        f"SELECT predicted_y FROM ML.PREDICT(MODEL demo.nested, (SELECT {STRUCT} FROM demo.t))"
    ).to_arrow()
    np.testing.assert_array_equal(a["predicted_y"].to_numpy(), b["predicted_y"].to_numpy())
    explained = ws.sql(
        f"SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.nested, (SELECT {STRUCT} FROM demo.t "
        "LIMIT 2))"
    ).to_pylist()
    assert {a["feature"] for a in explained[0]["top_feature_attributions"]} == {"s_a", "s_b"}


def test_prediction_needs_the_struct_column(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.nested OPTIONS(model_type='linear_reg', "
        f"input_label_cols=['y']) AS SELECT {STRUCT}, y FROM demo.t"
    )
    with pytest.raises(InvalidArgument, match=r"\['s'\]"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.nested, (SELECT x, c FROM demo.t))")
    with pytest.raises(InvalidArgument, match="lacks the fields"):
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.nested, (SELECT STRUCT(x AS a) AS s FROM demo.t))"
        )


def test_nested_struct_is_refused(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="nested STRUCT"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
            "AS SELECT STRUCT(STRUCT(x AS a) AS inner, c AS b) AS s, y FROM demo.t"
        )
