"""Online prediction of models with STRUCT, BYTES and ARRAY<STRING> features: JSON objects,
base64 text and arrays of strings in the instances, the same answers as ML.PREDICT."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument

FEATURES = "STRUCT(x AS a, c AS b) AS s, CAST(c AS BYTES) AS raw, SPLIT(tags, ',') AS tags"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("nested"))
    workspace.load_table(
        "demo.t",
        [
            {
                "x": float(i % 7),
                "c": "abc"[i % 3],
                "tags": ["red,big", "blue", "red,small"][i % 3],
                "y": 2.0 * (i % 7) + (3.0 if i % 3 == 0 else 0.0) + 0.1 * (i % 5),
            }
            for i in range(120)
        ],
    )
    workspace.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        f"AS SELECT {FEATURES}, y FROM demo.t"
    )
    workspace.endpoints.create("nested")
    workspace.endpoints.deploy("nested", "demo.m")
    yield workspace
    workspace.close()


def _instance(x: float | None, c: str | None, tags: list[str | None] | None) -> dict[str, Any]:
    return {
        "s": None if x is None and c is None else {"a": x, "b": c},
        "raw": None if c is None else base64.b64encode(c.encode()).decode(),
        "tags": tags,
    }


def test_nested_instances_predict_as_ml_predict(ws: Any) -> None:
    cases = [(3.0, "a", ["red", "big"]), (6.0, "c", ["blue"]), (None, "b", None), (1.0, None, [])]
    got = ws.endpoints.predict("nested", [_instance(*case) for case in cases])["predictions"]
    rows = " UNION ALL ".join(
        f"SELECT {i} AS i, "
        + (
            "NULL"
            if x is None and c is None
            else f"STRUCT({x or 'NULL'} AS a, {repr(c) if c else 'NULL'} AS b)"
        )
        + f" AS s, CAST({repr(c) if c else 'NULL'} AS BYTES) AS raw, "
        + ("CAST(NULL AS STRING[])" if tags is None else f"{tags!r}::VARCHAR[]")
        + " AS tags"
        for i, (x, c, tags) in enumerate(cases)
    )
    expected = ws.sql(
        f"SELECT predicted_y FROM ML.PREDICT(MODEL demo.m, ({rows})) ORDER BY i"
    ).to_pylist()
    np.testing.assert_allclose(
        [p["predicted_y"] for p in got], [e["predicted_y"] for e in expected], rtol=1e-12
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("s", 3.0, "an object of the STRUCT's fields"),
        ("raw", "not base64!", "a base64 string"),
        ("raw", 7, "a base64 string"),
        ("tags", ["red", 2], "an array of strings"),
        ("tags", "red", "an array of strings"),
    ],
)
def test_bad_nested_values_are_named(ws: Any, field: str, value: Any, expected: str) -> None:
    instance = _instance(1.0, "a", ["red"])
    instance[field] = value
    with pytest.raises(InvalidArgument, match=rf"instances\[0\]\.{field} must be {expected}"):
        ws.endpoints.predict("nested", [instance])
    # the endpoint keeps serving
    assert len(ws.endpoints.predict("nested", [_instance(1.0, "a", ["red"])])["predictions"]) == 1
