"""TIMESTAMP features of LINEAR_REG / LOGISTIC_REG: the Unix seconds plus one-hot calendar
components (_TS_DOM_<col> …), through every ML function that reads the preprocessing."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument

START = dt.datetime(2024, 3, 3, tzinfo=dt.UTC)  # a Sunday
PARTS = [
    "_TS_DOM_ts",
    "_TS_DOW_ts",
    "_TS_MOY_ts",
    "_TS_HOD_ts",
    "_TS_MOH_ts",
    "_TS_WOY_ts",
    "_TS_YEAR_ts",
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("ts_parts"))
    rng = np.random.default_rng(5)
    rows = []
    for i in range(210):
        ts = START + dt.timedelta(hours=13 * i)
        weekend = ts.isoweekday() in (6, 7)
        x = float(rng.normal())
        # The label depends on the day of the week: only the components can fit it.
        y = 2.0 * x + (10.0 if weekend else 0.0) + 1.0
        rows.append({"x": x, "ts": None if i == 7 else ts, "y": y, "hit": weekend})
    rows[7]["y"] = 2.0 * rows[7]["x"] + 1.0
    workspace.load_table("demo.t", rows)
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "data_split_method='NO_SPLIT', enable_global_explain=TRUE) AS SELECT x, ts, y FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.logit OPTIONS(model_type='logistic_reg', input_label_cols=['hit'], "
        "data_split_method='NO_SPLIT', category_encoding_method='DUMMY_ENCODING', "
        "calculate_p_values=TRUE) AS SELECT x, ts, hit FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.trees OPTIONS(model_type='boosted_tree_regressor', "
        "input_label_cols=['y'], max_iterations=3) AS SELECT x, ts, y FROM demo.t"
    )
    yield workspace
    workspace.close()


def test_linear_model_fits_a_day_of_week_effect(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.lin, (SELECT x, ts, y FROM demo.t))"
    ).to_pylist()[0]
    assert out["r2_score"] > 0.999  # the Unix seconds alone cannot (weekends alternate)
    preds = ws.sql(
        "SELECT y, predicted_y FROM ML.PREDICT(MODEL demo.lin, (SELECT x, ts, y FROM demo.t))"
    ).to_arrow()
    np.testing.assert_allclose(preds["predicted_y"], preds["y"], atol=0.05)


def test_weights_list_each_component_with_category_weights(ws: Any) -> None:
    rows = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.lin)").to_pylist()
    names = [r["processed_input"] for r in rows]
    assert names == ["x", "ts", *PARTS, "__INTERCEPT__"]
    dow = rows[names.index("_TS_DOW_ts")]
    assert dow["weight"] is None
    weights = {c["category"]: c["weight"] for c in dow["category_weights"]}
    assert set(weights) == {"1", "2", "3", "4", "5", "6", "7", "<NULL>"}
    # Saturday (7) and Sunday (1) carry the +10 against the week days
    assert weights["7"] - weights["3"] == pytest.approx(10.0, abs=0.05)
    assert weights["1"] - weights["4"] == pytest.approx(10.0, abs=0.05)
    assert rows[names.index("ts")]["category_weights"] is None


def test_feature_info_keeps_one_row_per_input_column(ws: Any) -> None:
    rows = ws.sql("SELECT * FROM ML.FEATURE_INFO(MODEL demo.lin)").to_pylist()
    assert [r["input"] for r in rows] == ["x", "ts"]
    assert rows[1]["null_count"] == 1


def test_explanations_fold_the_components_into_their_column(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.lin, (SELECT x, ts FROM demo.t LIMIT 20), "
        "STRUCT(5 AS top_k_features))"
    ).to_pylist()
    for row in out:
        features = {a["feature"] for a in row["top_feature_attributions"]}
        assert features == {"x", "ts"}
        total = row["baseline_prediction_value"] + sum(
            a["attribution"] for a in row["top_feature_attributions"]
        )
        assert total == pytest.approx(row["predicted_y"], abs=1e-9)
    glob = ws.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL demo.lin)").to_pylist()
    assert sorted(r["feature"] for r in glob) == ["ts", "x"]


def test_advanced_weights_with_dummy_encoding(ws: Any) -> None:
    rows = ws.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.logit)").to_pylist()
    inputs = {r["processed_input"] for r in rows}
    assert {"x", "ts", "_TS_DOW_ts", "__INTERCEPT__"} <= inputs
    dow = [r for r in rows if r["processed_input"] == "_TS_DOW_ts"]
    assert {r["category"] for r in dow} >= {"1", "2", "3", "4", "5", "6", "7"}
    # "1" (Sunday) is the category DUMMY_ENCODING dropped: weight 0.0, NaN statistics
    (sunday,) = [r for r in dow if r["category"] == "1"]
    assert sunday["weight"] == 0.0 and math.isnan(sunday["standard_error"])
    assert all(
        r["standard_error"] is None or math.isnan(r["standard_error"]) or r["standard_error"] >= 0
        for r in rows
    )


def test_p_values_with_one_hot_components_are_refused_as_for_categories(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="_TS_DOM_ts"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
            "calculate_p_values=TRUE) AS SELECT x, ts, y FROM demo.t"
        )
    with pytest.raises(Exception, match="demo.bad|not found|does not exist"):
        ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.bad)")


def test_trees_keep_the_unix_seconds_only(ws: Any) -> None:
    rows = ws.sql("SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL demo.trees)").to_pylist()
    assert sorted(r["feature"] for r in rows) == ["ts", "x"]
    pred = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.trees, (SELECT x, ts FROM demo.t))")
    assert pred.to_arrow().num_rows == 210


def test_prediction_takes_the_timestamp_and_null(ws: Any) -> None:
    out = ws.sql(
        "SELECT predicted_y FROM ML.PREDICT(MODEL demo.lin, (SELECT 0.0 AS x, "
        "TIMESTAMP '2030-06-01 10:00:00+00' AS ts UNION ALL SELECT 0.0, NULL))"
    ).to_arrow()
    assert out.num_rows == 2
    assert all(np.isfinite(out["predicted_y"].to_numpy()))


def test_onnx_export_equals_predict(ws: Any, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    ws.sql(f"EXPORT MODEL demo.lin OPTIONS(uri='{tmp_path}/lin', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "lin" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["x", "ts"]
    rows = ws.sql("SELECT x, ts FROM demo.t").to_arrow()
    seconds = rows["ts"].cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    (got,) = session.run(
        None,
        {
            "x": rows["x"].to_numpy().reshape(-1, 1),
            "ts": np.where(np.isnan(seconds), np.nan, seconds).reshape(-1, 1),
        },
    )
    want = ws.sql("SELECT predicted_y FROM ML.PREDICT(MODEL demo.lin, TABLE demo.t)").to_arrow()
    np.testing.assert_allclose(got[:, 0], want["predicted_y"].to_numpy(), rtol=1e-12, atol=1e-9)


def test_serving_instances_send_the_timestamp(ws: Any) -> None:
    from shipyard.serving.runtime import InstanceSchema

    predictor = ws.models.load("demo.lin")
    schema = InstanceSchema(predictor.signature["inputs"])
    assert [c["name"] for c in predictor.signature["inputs"]] == ["x", "ts"]
    table = schema.to_table([{"x": 0.5, "ts": "2024-03-09T12:00:00+00:00"}, {"x": 0.5, "ts": None}])
    served = predictor.predict(table)["predicted_y"].to_pylist()
    sql = (
        ws.sql(
            "SELECT predicted_y FROM ML.PREDICT(MODEL demo.lin, (SELECT 0.5 AS x, "
            "TIMESTAMP '2024-03-09 12:00:00+00' AS ts UNION ALL SELECT 0.5, NULL))"
        )
        .to_arrow()["predicted_y"]
        .to_pylist()
    )
    assert served == pytest.approx(sql, rel=1e-12)
    assert served[0] - served[1] != pytest.approx(0.0)  # a Saturday: the weekend effect
