"""Imported models: CREATE MODEL … OPTIONS(model_type='ONNX' | 'XGBOOST', model_path=…),
ML.PREDICT against the original library, and every bad input refused with state intact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

import xgboost as xgb
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.linear_model import LinearRegression, LogisticRegression

import shipyard as sy

_ROWS = 60


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.RandomState(7)
    x = rng.rand(_ROWS, 3)
    binary = (x[:, 0] + x[:, 1] > 1.0).astype(np.int64)
    three = np.digitize(x[:, 0] + x[:, 2], [0.7, 1.3]).astype(np.int64)
    return x, binary, three


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("imported-files")
    x, binary, three = _data()
    out: dict[str, Any] = {"dir": folder}

    logistic = LogisticRegression().fit(x, binary)
    onx = convert_sklearn(
        logistic,
        initial_types=[("X", DoubleTensorType([None, 3]))],
        options={id(logistic): {"zipmap": False}},
    )
    (folder / "logistic.onnx").write_bytes(onx.SerializeToString())
    out["logistic"] = logistic

    zipmap = convert_sklearn(logistic, initial_types=[("X", FloatTensorType([None, 3]))])
    (folder / "zipmap.onnx").write_bytes(zipmap.SerializeToString())

    linear = LinearRegression().fit(x, x @ np.array([1.0, -2.0, 0.5]) + 3.0)
    lin = convert_sklearn(linear, initial_types=[("X", FloatTensorType([None, 3]))])
    (folder / "linear.onnx").write_bytes(lin.SerializeToString())
    out["linear"] = linear

    # One input per column: total = a + float(b), flag = b > 2
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_double"], to=TensorProto.DOUBLE),
            helper.make_node("Reshape", ["b_double", "shape"], ["b_col"]),
            helper.make_node("Add", ["a", "b_col"], ["total"]),
            helper.make_node("Greater", ["b", "two"], ["flag"]),
        ],
        "columns",
        [
            helper.make_tensor_value_info("a", TensorProto.DOUBLE, [None, 1]),
            helper.make_tensor_value_info("b", TensorProto.INT64, [None]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.DOUBLE, [None, 1]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, [None]),
        ],
        initializer=[
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
            helper.make_tensor("two", TensorProto.INT64, [], [2]),
        ],
    )
    columns = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (folder / "columns.onnx").write_bytes(columns.SerializeToString())

    (folder / "broken.onnx").write_bytes(b"this is not an onnx graph")

    plain = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(x, binary), 8)
    plain.save_model(str(folder / "plain.bst"))
    out["plain"] = plain
    named = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
        xgb.DMatrix(x, three, feature_names=["f1", "f2", "f3"], feature_types=["float"] * 3),
        6,
    )
    named.save_model(str(folder / "named.json"))
    out["named"] = named
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Any]) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("imported"))
    x, _, _ = _data()
    workspace.load_table(
        "demo.t",
        [
            {"f1": float(r[0]), "f2": float(r[1]), "f3": float(r[2]), "n": i % 5}
            for i, r in enumerate(x)
        ],
    )
    yield workspace
    workspace.close()


def _matrix(ws: Any) -> np.ndarray:
    rows = ws.sql("SELECT f1, f2, f3 FROM demo.t").to_arrow()
    return np.column_stack([rows[c].to_numpy() for c in ("f1", "f2", "f3")])


def _names(ws: Any) -> list[str]:
    return [m.name for m in ws.models.list().items]


# -- ONNX ---------------------------------------------------------------------------------------


def test_onnx_logistic_regression_predicts_as_scikit_learn(ws: Any, files: dict[str, Any]) -> None:
    path = files["dir"] / "logistic.onnx"
    result = ws.sql(f"CREATE MODEL demo.lr OPTIONS(model_type='ONNX', model_path='{path}')")
    assert "imported ONNX" in result.message
    rows = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.lr, (SELECT [f1, f2, f3] AS X, n FROM demo.t))"
    ).to_arrow()
    # Output columns are named after the graph's outputs, then the input columns.
    assert rows.column_names == ["label", "probabilities", "X", "n"]
    assert rows.schema.field("label").type == pa.int64()
    assert rows.schema.field("probabilities").type == pa.list_(pa.float64())
    x = _matrix(ws)
    model = files["logistic"]
    assert rows["label"].to_pylist() == model.predict(x).tolist()
    np.testing.assert_allclose(
        np.array(rows["probabilities"].to_pylist()), model.predict_proba(x), rtol=1e-12
    )
    version = ws.models.get_version("demo.lr")
    assert version.model_type == "ONNX" and version.flavor == "onnx"


def test_onnx_file_is_stored_verbatim(ws: Any, files: dict[str, Any]) -> None:
    import hashlib

    path = files["dir"] / "logistic.onnx"
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.lr OPTIONS(model_type='ONNX', model_path='file://{path}')"
    )
    manifest = ws.models.manifest("demo.lr")
    assert manifest.files["model.onnx"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_onnx_input_clause_stacks_named_columns(ws: Any, files: dict[str, Any]) -> None:
    path = files["dir"] / "logistic.onnx"
    ws.sql(
        "CREATE MODEL demo.lr_cols INPUT(f1 FLOAT64, f2 FLOAT64, f3 FLOAT64) "
        f"OPTIONS(model_type='ONNX', model_path='{path}')"
    )
    rows = ws.sql("SELECT label FROM ML.PREDICT(MODEL demo.lr_cols, TABLE demo.t)").to_arrow()
    assert rows["label"].to_pylist() == files["logistic"].predict(_matrix(ws)).tolist()
    signature = ws.models.get_version("demo.lr_cols").signature
    assert [c.name for c in signature.inputs] == ["f1", "f2", "f3"]


def test_onnx_float_regression_and_folder_path(
    ws: Any, files: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "model.onnx").write_bytes((files["dir"] / "linear.onnx").read_bytes())
    ws.sql(f"CREATE MODEL demo.lin OPTIONS(model_type='ONNX', model_path='{tmp_path}/*')")
    rows = ws.sql(
        "SELECT variable FROM ML.PREDICT(MODEL demo.lin, (SELECT [f1, f2, f3] AS X FROM demo.t))"
    ).to_arrow()
    assert rows.schema.field("variable").type == pa.float64()  # [batch, 1] → a scalar
    expected = files["linear"].predict(_matrix(ws))
    np.testing.assert_allclose(rows["variable"].to_numpy(), expected, rtol=1e-5)


def test_onnx_one_input_per_column(ws: Any, files: dict[str, Any]) -> None:
    path = files["dir"] / "columns.onnx"
    ws.sql(f"CREATE MODEL demo.cols OPTIONS(model_type='ONNX', model_path='{path}')")
    rows = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.cols, (SELECT f1 AS a, n AS b FROM demo.t))"
    ).to_arrow()
    assert rows.column_names == ["total", "flag", "a", "b"]
    np.testing.assert_allclose(
        rows["total"].to_numpy(), rows["a"].to_numpy() + rows["b"].to_numpy()
    )
    assert rows["flag"].to_pylist() == [b > 2 for b in rows["b"].to_pylist()]


def test_onnx_model_from_the_artifact_store(ws: Any, files: dict[str, Any]) -> None:
    digest = ws.ctx.artifacts.put_file(files["dir"] / "columns.onnx")
    ws.sql(
        f"CREATE MODEL demo.cols_art OPTIONS(model_type='ONNX', model_path='artifacts://{digest}')"
    )
    rows = ws.sql(
        "SELECT total FROM ML.PREDICT(MODEL demo.cols_art, (SELECT 1.5 AS a, 2 AS b))"
    ).to_arrow()
    assert rows["total"].to_pylist() == [3.5]


@pytest.mark.parametrize(
    ("statement", "error", "fragment"),
    [
        (
            "OPTIONS(model_type='ONNX', model_path='{dir}/zipmap.onnx')",
            sy.InvalidArgument,
            "zipmap=False",
        ),
        (
            "OPTIONS(model_type='ONNX', model_path='{dir}/broken.onnx')",
            sy.InvalidArgument,
            "not an ONNX model",
        ),
        ("OPTIONS(model_type='ONNX')", sy.InvalidArgument, "model_path"),
        ("OPTIONS(model_type='ONNX', model_path='{dir}/nope.onnx')", sy.NotFound, "no such file"),
        (
            "OPTIONS(model_type='ONNX', model_path='artifacts://{zeros}')",
            sy.NotFound,
            "no artifact",
        ),
        ("OPTIONS(model_type='ONNX', model_path='{dir}')", sy.InvalidArgument, "exactly one"),
        (
            "OPTIONS(model_type='ONNX', model_path='{dir}/logistic.onnx', colour='red')",
            sy.InvalidArgument,
            "colour",
        ),
        (
            "INPUT(f1 STRING, f2 FLOAT64, f3 FLOAT64) {lr}",
            sy.InvalidArgument,
            "'f1' is STRING",
        ),
        (
            "INPUT(f1 FLOAT64, f2 FLOAT64) {lr}",
            sy.InvalidArgument,
            "takes 3 values",
        ),
        (
            "INPUT(a FLOAT64, b STRING) {cols}",
            sy.InvalidArgument,
            "'b' is STRING",
        ),
        (
            "INPUT(a FLOAT64, c INT64) {cols}",
            sy.InvalidArgument,
            "must name the ONNX graph's inputs",
        ),
        (
            "OUTPUT(score FLOAT64) OPTIONS(model_type='ONNX', model_path='{dir}/columns.onnx')",
            sy.InvalidArgument,
            "not an output",
        ),
        (
            "OPTIONS(model_type='ONNX', model_path='{dir}/columns.onnx') AS SELECT 1 AS a",
            sy.InvalidArgument,
            "no AS SELECT",
        ),
        (
            "OPTIONS(model_type='XGBOOST', model_path='{dir}/plain.bst')",
            sy.InvalidArgument,
            "INPUT(f1 FLOAT64",
        ),
        (
            "INPUT(f1 FLOAT64) OPTIONS(model_type='XGBOOST', model_path='{dir}/plain.bst')",
            sy.InvalidArgument,
            "takes 3 features",
        ),
        (
            "INPUT(f1 FLOAT64, f2 STRING, f3 FLOAT64) {plain}",
            sy.InvalidArgument,
            "numeric",
        ),
        (
            "INPUT(x1 FLOAT64, x2 FLOAT64, x3 FLOAT64) {named}",
            sy.InvalidArgument,
            "f1, f2, f3",
        ),
        (
            "INPUT(f1 FLOAT64, f2 FLOAT64, f3 FLOAT64) OUTPUT(p FLOAT64) {named}",
            sy.InvalidArgument,
            "ARRAY<FLOAT64>",
        ),
        (
            "OPTIONS(model_type='XGBOOST', model_path='{dir}/broken.onnx')",
            sy.InvalidArgument,
            "not an XGBoost model",
        ),
    ],
)
def test_bad_imports_are_refused_and_change_nothing(
    ws: Any, files: dict[str, Any], statement: str, error: type[Exception], fragment: str
) -> None:
    before = _names(ws)
    d = files["dir"]
    sql = "CREATE MODEL demo.bad " + statement.format(
        dir=d,
        zeros="0" * 64,
        lr=f"OPTIONS(model_type='ONNX', model_path='{d}/logistic.onnx')",
        cols=f"OPTIONS(model_type='ONNX', model_path='{d}/columns.onnx')",
        plain=f"OPTIONS(model_type='XGBOOST', model_path='{d}/plain.bst')",
        named=f"OPTIONS(model_type='XGBOOST', model_path='{d}/named.json')",
    )
    with pytest.raises(error) as info:
        ws.sql(sql)
    assert fragment in str(info.value)
    assert _names(ws) == before


def test_predict_input_errors_name_the_columns(ws: Any, files: dict[str, Any]) -> None:
    path = files["dir"] / "logistic.onnx"
    ws.sql(f"CREATE OR REPLACE MODEL demo.lr OPTIONS(model_type='ONNX', model_path='{path}')")
    with pytest.raises(sy.InvalidArgument, match=r"lacks the model's input columns \['X'\]"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.lr, TABLE demo.t)")
    with pytest.raises(sy.InvalidArgument, match="ARRAY<FLOAT64>"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.lr, (SELECT f1 AS X FROM demo.t))")
    with pytest.raises(sy.InvalidArgument, match="takes 3 values per row"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.lr, (SELECT [f1, f2] AS X FROM demo.t))")


@pytest.mark.parametrize(
    "function",
    [
        "ML.EVALUATE(MODEL demo.lr, (SELECT [f1, f2, f3] AS X FROM demo.t))",
        "ML.EXPLAIN_PREDICT(MODEL demo.lr, (SELECT [f1, f2, f3] AS X FROM demo.t))",
        "ML.FEATURE_INFO(MODEL demo.lr)",
        "ML.TRAINING_INFO(MODEL demo.lr)",
    ],
)
def test_other_ml_functions_are_refused(ws: Any, files: dict[str, Any], function: str) -> None:
    path = files["dir"] / "logistic.onnx"
    ws.sql(f"CREATE OR REPLACE MODEL demo.lr OPTIONS(model_type='ONNX', model_path='{path}')")
    with pytest.raises(
        sy.InvalidArgument, match="imported ONNX model, which supports only ML.PREDICT"
    ):
        ws.sql(f"SELECT * FROM {function}")


# -- XGBoost ------------------------------------------------------------------------------------


def test_xgboost_with_input_output_predicts_as_the_booster(ws: Any, files: dict[str, Any]) -> None:
    path = files["dir"] / "plain.bst"
    ws.sql(
        "CREATE MODEL demo.xgb INPUT(f1 FLOAT64, f2 FLOAT64, f3 FLOAT64) "
        f"OUTPUT(predicted_label FLOAT64) OPTIONS(model_type='XGBOOST', model_path='{path}')"
    )
    rows = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.xgb, TABLE demo.t)").to_arrow()
    assert rows.column_names == ["predicted_label", "f1", "f2", "f3", "n"]
    assert rows.schema.field("predicted_label").type == pa.float64()
    expected = files["plain"].predict(xgb.DMatrix(_matrix(ws).astype(np.float32)))
    np.testing.assert_allclose(rows["predicted_label"].to_numpy(), expected, rtol=1e-6)
    version = ws.models.get_version("demo.xgb")
    assert (version.model_type, version.flavor) == ("XGBOOST", "xgboost")


def test_xgboost_feature_names_from_the_file_and_array_output(
    ws: Any, files: dict[str, Any]
) -> None:
    path = files["dir"] / "named.json"
    ws.sql(f"CREATE MODEL demo.xgb3 OPTIONS(model_type='XGBOOST', model_path='{path}')")
    rows = ws.sql(
        "SELECT predicted_label FROM ML.PREDICT(MODEL demo.xgb3, (SELECT f3, f2, f1 FROM demo.t))"
    ).to_arrow()
    assert rows.schema.field("predicted_label").type == pa.list_(pa.float64())
    dm = xgb.DMatrix(_matrix(ws).astype(np.float32), feature_names=["f1", "f2", "f3"])
    np.testing.assert_allclose(
        np.array(rows["predicted_label"].to_pylist()), files["named"].predict(dm), rtol=1e-6
    )


def test_xgboost_null_is_missing_and_other_functions_are_refused(
    ws: Any, files: dict[str, Any]
) -> None:
    path = files["dir"] / "plain.bst"
    ws.sql(
        "CREATE OR REPLACE MODEL demo.xgb INPUT(f1 FLOAT64, f2 FLOAT64, f3 FLOAT64) "
        f"OPTIONS(model_type='XGBOOST', model_path='{path}')"
    )
    rows = ws.sql(
        "SELECT predicted_label FROM ML.PREDICT(MODEL demo.xgb, "
        "(SELECT CAST(NULL AS FLOAT64) AS f1, 0.5 AS f2, 0.5 AS f3))"
    ).to_arrow()
    expected = files["plain"].predict(xgb.DMatrix(np.array([[np.nan, 0.5, 0.5]], np.float32)))
    np.testing.assert_allclose(rows["predicted_label"].to_numpy(), expected, rtol=1e-6)
    with pytest.raises(sy.InvalidArgument, match="imported XGBOOST model"):
        ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.xgb, TABLE demo.t)")
    with pytest.raises(sy.InvalidArgument, match="numeric"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.xgb, (SELECT 'a' AS f1, 1.0 AS f2, 1.0 AS f3))")


def test_xgboost_feature_importance_is_the_boosters(ws: Any, files: dict[str, Any]) -> None:
    path = files["dir"] / "plain.bst"
    ws.sql(
        "CREATE OR REPLACE MODEL demo.xgb INPUT(f1 FLOAT64, f2 FLOAT64, f3 FLOAT64) "
        f"OPTIONS(model_type='XGBOOST', model_path='{path}')"
    )
    rows = ws.sql("SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL demo.xgb)").to_pylist()
    booster = files["plain"]
    weight = booster.get_score(importance_type="weight")
    gain = booster.get_score(importance_type="gain")
    for row, name in zip(rows, ("f0", "f1", "f2"), strict=True):
        assert row["importance_weight"] == weight.get(name, 0.0)
        assert row["importance_gain"] == pytest.approx(gain.get(name, 0.0))
    assert [r["feature"] for r in rows] == ["f1", "f2", "f3"]
    with pytest.raises(sy.InvalidArgument, match="supports only ML.PREDICT"):
        ws.sql(
            f"CREATE OR REPLACE MODEL demo.lr OPTIONS(model_type='ONNX', "
            f"model_path='{files['dir'] / 'logistic.onnx'}'); "
            "SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL demo.lr)"
        )


def test_imported_models_serve_from_the_sdk_and_an_endpoint(ws: Any, files: dict[str, Any]) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.xgb INPUT(f1 FLOAT64, f2 FLOAT64, f3 FLOAT64) "
        f"OPTIONS(model_type='XGBOOST', model_path='{files['dir'] / 'plain.bst'}')"
    )
    row = {"f1": 0.9, "f2": 0.8, "f3": 0.1}
    expected = float(
        files["plain"].predict(xgb.DMatrix(np.array([[0.9, 0.8, 0.1]], np.float32)))[0]
    )
    table = ws.models.predict("demo.xgb", [row])
    assert table["predicted_label"].to_pylist() == pytest.approx([expected])
    ws.endpoints.create("imported-xgb")
    ws.endpoints.deploy("imported-xgb", "demo.xgb")
    response = ws.endpoints.predict("imported-xgb", [row])
    assert response["predictions"][0]["predicted_label"] == pytest.approx(expected)
    ws.sql(
        "CREATE OR REPLACE MODEL demo.cols OPTIONS(model_type='ONNX', "
        f"model_path='{files['dir'] / 'columns.onnx'}')"
    )
    out = ws.models.predict("demo.cols", [{"a": 1.25, "b": 3}])
    assert (out["total"].to_pylist(), out["flag"].to_pylist()) == ([4.25], [True])
    with pytest.raises(sy.InvalidArgument, match="explanations do not apply"):
        ws.models.load("demo.cols").explain(pa.table({"a": [1.0], "b": [3]}))


def test_if_not_exists_and_relative_paths(
    ws: Any, files: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files["dir"])
    ws.sql("CREATE MODEL demo.rel OPTIONS(model_type='ONNX', model_path='columns.onnx')")
    digest = ws.models.manifest("demo.rel").files["model.onnx"]
    result = ws.sql(
        "CREATE MODEL IF NOT EXISTS demo.rel OPTIONS(model_type='ONNX', model_path='linear.onnx')"
    )
    assert "already exists" in (result.message or "")
    assert ws.models.manifest("demo.rel").files["model.onnx"] == digest
    with pytest.raises(sy.AlreadyExists, match="CREATE OR REPLACE"):
        ws.sql("CREATE MODEL demo.rel OPTIONS(model_type='ONNX', model_path='linear.onnx')")
    ws.sql("CREATE OR REPLACE MODEL demo.rel OPTIONS(model_type='ONNX', model_path='linear.onnx')")
    assert ws.models.get("demo.rel").latest_version == 2


def test_per_column_inputs_check_shapes_and_nulls(ws: Any, files: dict[str, Any]) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.cols OPTIONS(model_type='ONNX', "
        f"model_path='{files['dir'] / 'columns.onnx'}')"
    )
    with pytest.raises(sy.InvalidArgument, match="must be a scalar INT64"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.cols, (SELECT 1.0 AS a, [1, 2] AS b))")
    with pytest.raises(sy.InvalidArgument, match="'b' must be INT64"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.cols, (SELECT 1.0 AS a, 2.5 AS b))")
    with pytest.raises(sy.InvalidArgument, match="'b' has NULL values"):
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.cols, (SELECT 1.0 AS a, CAST(NULL AS INT64) AS b))"
        )
    with pytest.raises(sy.InvalidArgument, match="threshold does not apply"):
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.cols, (SELECT 1.0 AS a, 2 AS b), "
            "STRUCT(0.3 AS threshold))"
        )
    empty = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.cols, (SELECT 1.0 AS a, 2 AS b WHERE FALSE))"
    ).to_arrow()
    assert empty.num_rows == 0 and empty.column_names == ["total", "flag", "a", "b"]
