"""CREATE MODEL … TRANSFORM(…): statistics learnt once at training and applied unchanged by
ML.PREDICT, ML.TRANSFORM, ML.EVALUATE and online serving; and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound, SQLError

_ROWS = [
    {"x": float(i), "c": "abc"[i % 3], "label": 3.0 * i + (5.0 if i % 3 == 0 else 0.0)}
    for i in range(60)
]
_TRANSFORM = (
    "TRANSFORM(ML.STANDARD_SCALER(x) OVER () AS x_s, ML.MIN_MAX_SCALER(x) OVER () AS x_m, "
    "ML.QUANTILE_BUCKETIZE(x, 4) OVER () AS x_b, ML.LABEL_ENCODER(c, 10, 1) OVER () AS c_e, "
    "label)"
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("transform"))
    workspace.load_table("demo.t", _ROWS)
    workspace.sql(
        f"CREATE MODEL demo.m {_TRANSFORM} OPTIONS(model_type='linear_reg') "
        "AS SELECT x, c, label FROM demo.t"
    )
    yield workspace
    workspace.close()


def test_training_statistics_are_applied_unchanged_to_new_rows(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.TRANSFORM(MODEL demo.m, (SELECT 1000.0 AS x, 'b' AS c "
        "UNION ALL SELECT -5.0, 'zzz'))"
    ).to_pylist()
    x = np.array([r["x"] for r in _ROWS])
    assert out[0]["x_s"] == pytest.approx((1000.0 - x.mean()) / x.std(ddof=1))
    assert [r["x_m"] for r in out] == [1.0, 0.0]  # capped to [0, 1] with the training min/max
    assert [r["x_b"] for r in out] == ["bin_4", "bin_1"]
    assert [r["c_e"] for r in out] == [2, 0]  # 'b' is the 2nd training category; unseen → 0
    assert "label" not in out[0]  # no label in the input: the label output is left out


def test_ml_predict_equals_the_transform_by_hand_then_the_model(ws: Any) -> None:
    ws.sql("CREATE TABLE demo.tx AS SELECT * FROM ML.TRANSFORM(MODEL demo.m, TABLE demo.t)")
    assert ws.sql("SELECT * FROM demo.tx LIMIT 1").column_names == [
        "x_s", "x_m", "x_b", "c_e", "label"
    ]  # fmt: skip
    ws.sql("CREATE MODEL demo.by_hand OPTIONS(model_type='linear_reg') AS SELECT * FROM demo.tx")
    raw = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.m, TABLE demo.t)").to_pylist()
    by_hand = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.by_hand, TABLE demo.tx)").to_pylist()
    assert [r["predicted_label"] for r in raw] == pytest.approx(
        [r["predicted_label"] for r in by_hand], rel=1e-9
    )
    assert raw[0]["x"] == 0.0 and "x_s" not in raw[0]  # ML.PREDICT passes the raw columns through


def test_the_model_describes_raw_inputs_and_transformed_features(ws: Any) -> None:
    version = ws.models.get_version("demo.m")
    assert [c.name for c in version.signature.inputs] == ["x", "c"]
    # BigQuery ML: ML.FEATURE_INFO describes the query's pre-transform columns
    info = ws.sql("SELECT * FROM ML.FEATURE_INFO(MODEL demo.m)").to_pylist()
    assert [r["input"] for r in info] == ["x", "c"]
    raw = ws.sql("SELECT MIN(x) AS lo, MAX(x) AS hi FROM demo.t").to_pylist()[0]
    assert (info[0]["min"], info[0]["max"]) == (raw["lo"], raw["hi"])
    assert info[1]["category_count"] == 3 and info[1]["mean"] is None
    metrics = ws.sql("SELECT r2_score FROM ML.EVALUATE(MODEL demo.m, TABLE demo.t)").to_pylist()
    assert metrics[0]["r2_score"] > 0.95


def test_online_serving_applies_the_transform(ws: Any) -> None:
    ws.endpoints.create("transformed")
    ws.endpoints.deploy("transformed", "demo.m")
    response = ws.endpoints.predict("transformed", [{"x": 1000.0, "c": "b"}])
    served = response["predictions"][0]
    sql = ws.sql(
        "SELECT predicted_label FROM ML.PREDICT(MODEL demo.m, (SELECT 1000.0 AS x, 'b' AS c))"
    ).to_pylist()[0]["predicted_label"]
    value = served["predicted_label"] if isinstance(served, dict) else served
    assert value == pytest.approx(sql, rel=1e-9)


def test_star_passes_query_columns_through(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.star TRANSFORM(* EXCEPT (c), ML.IMPUTER(c, 'most_frequent') OVER () "
        "AS c2) OPTIONS(model_type='linear_reg') AS SELECT x, c, label FROM demo.t"
    )
    names = [r["input"] for r in ws.sql("SELECT input FROM ML.FEATURE_INFO(MODEL demo.star)")
             .to_pylist()]  # fmt: skip
    assert names == ["x", "c"]  # the raw columns the TRANSFORM's outputs read


def _exists(ws: Any, name: str) -> bool:
    try:
        ws.models.get(name)
    except NotFound:
        return False
    return True


# -- bad input --------------------------------------------------------------------------------


def test_a_transform_reading_a_missing_column_names_it(ws: Any) -> None:
    with pytest.raises(SQLError, match="TRANSFORM column 'y_s' reads y"):
        ws.sql(
            "CREATE MODEL demo.bad TRANSFORM(ML.STANDARD_SCALER(y) OVER () AS y_s, label) "
            "OPTIONS(model_type='linear_reg') AS SELECT x, label FROM demo.t"
        )
    assert not _exists(ws, "demo.bad")


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ("ML.STANDARD_SCALER(x) AS x_s, label", "ML.STANDARD_SCALER is an analytic function"),
        ("ML.SCALE_IT(x) AS x_s, label", "unknown function ML.SCALE_IT"),
        ("x + 1, label", "every TRANSFORM expression needs a name"),
        ("x AS a, x AS a, label", "outputs the column 'a' twice"),
    ],
)
def test_bad_transform_clauses_are_sql_errors(ws: Any, transform: str, message: str) -> None:
    with pytest.raises(SQLError, match=message):
        ws.sql(
            f"CREATE MODEL demo.bad TRANSFORM({transform}) OPTIONS(model_type='linear_reg') "
            "AS SELECT x, label FROM demo.t"
        )
    assert not _exists(ws, "demo.bad")


def test_prediction_rows_without_a_transform_input_are_refused(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="needs input column\\(s\\) c"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.m, (SELECT 1.0 AS x))")


def test_ml_transform_needs_a_transform_model(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.plain OPTIONS(model_type='linear_reg') AS SELECT x, label FROM demo.t"
    )
    with pytest.raises(InvalidArgument, match="trained without a TRANSFORM clause"):
        ws.sql("SELECT * FROM ML.TRANSFORM(MODEL demo.plain, TABLE demo.t)")


def test_struct_and_sparse_outputs_become_one_feature_per_field_or_index(ws: Any) -> None:
    ws.load_table(
        "demo.docs",
        [
            {"x": float(i), "y": float(i % 7), "c": "abc"[i % 3], "label": 2.0 * i + i % 3}
            for i in range(30)
        ],
    )
    ws.sql(
        "CREATE MODEL demo.wide TRANSFORM(ML.ONE_HOT_ENCODER(c, 'none', 10, 1) OVER () AS c_1h, "
        "ML.POLYNOMIAL_EXPAND(STRUCT(x, y)) AS p, label) OPTIONS(model_type='linear_reg') "
        "AS SELECT * FROM demo.docs"
    )
    info = ws.sql("SELECT input FROM ML.FEATURE_INFO(MODEL demo.wide)").to_pylist()
    assert [r["input"] for r in info] == ["x", "y", "c"]  # pre-transform, as BigQuery ML
    row = "(SELECT 2.0 AS x, 3.0 AS y, 'b' AS c)"
    declared = ws.sql(f"SELECT * FROM ML.TRANSFORM(MODEL demo.wide, {row})").to_pylist()[0]
    assert declared["c_1h"] == [{"index": 2, "value": 1.0}]  # ML.TRANSFORM: as declared
    assert declared["p"]["x_y"] == 6.0
    predicted = ws.sql(f"SELECT * FROM ML.PREDICT(MODEL demo.wide, {row})").to_pylist()[0]
    assert predicted["predicted_label"] == pytest.approx(2.0 * 2 + 1, abs=1e-6)
