"""EXPORT MODEL to ONNX of TRANSFORM clauses that read numeric arrays (ML.NORMALIZER,
``v[OFFSET(i)]``): the graph takes an ARRAY<FLOAT64> column as DOUBLE ``[batch, n]`` padded with
NaN, and onnxruntime gives ML.TRANSFORM's and ML.PREDICT's values on the same rows — p = 1, 1.5,
2, 3 and +inf, zero vectors, NULL arrays and elements, empty arrays, any padding width; what the
padding would change (ARRAY_LENGTH, IS NULL of an array) is refused with the reason."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

import shipyard as sy  # noqa: E402
from shipyard.sql import onnx_graph  # noqa: E402
from shipyard.sql.onnx_ops import Builder  # noqa: E402
from tests.sql.test_export_onnx_features import check_same_as_predict  # noqa: E402


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(11)
    rows = []
    for i in range(120):
        v: list[float | None] | None = [rng.uniform(-5, 5) for _ in range(rng.randint(1, 4))]
        if i % 7 == 0:
            v[0] = None  # type: ignore[index]  # a NULL element
        if i % 9 == 0:
            v = None
        if i % 11 == 0:
            v = [0.0, 0.0, 0.0]  # the zero vector: divided by 1
        if i % 13 == 0:
            v = []
        a = rng.uniform(-2, 2)
        first = next((x for x in v or [] if x is not None), 0.0)
        y = 2 * first - a + 0.1 * rng.random()
        rows.append(
            {
                "v": v,
                "w": [rng.randint(-3, 3) for _ in range(3)],  # ARRAY<INT64>
                "a": a,
                "b": None if i % 5 == 0 else rng.uniform(-1, 1),
                "y": y,
                "size": "big" if y > 0 else "small",
            }
        )
    return rows


_NEW = [  # rows no model saw: wider and shorter arrays, NULLs, zeros, a huge and a tiny vector
    {"v": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "w": [1, 2, 3], "a": 0.5, "b": 0.25},
    {"v": None, "w": None, "a": None, "b": None},
    {"v": [], "w": [], "a": 0.0, "b": 0.0},
    {"v": [None, None], "w": [0, 0, 0], "a": 1.0, "b": None},
    {"v": [0.0, -0.0], "w": [5, None, -5], "a": -1.0, "b": 2.0},
    {"v": [1e200, -3e200], "w": [1, 1, 1], "a": 3.0, "b": -3.0},
    {"v": [1e-200, 2e-200, None], "w": [-1], "a": 1e-3, "b": 1e3},
]

# every p, element access with OFFSET / SAFE_OFFSET / ORDINAL, past the end, arrays of columns,
# an ARRAY<INT64>, ML.NORMALIZER inside an analytic function; POWER and ABS (POW(NULL, 0) is NULL)
_TRANSFORM = (
    "TRANSFORM(ML.NORMALIZER(v)[OFFSET(0)] AS l2_0, ML.NORMALIZER(v)[SAFE_OFFSET(1)] AS l2_1, "
    "ML.NORMALIZER(v, 1)[OFFSET(0)] AS l1_0, ML.NORMALIZER(v, 1.5)[ORDINAL(2)] AS l15_1, "
    "ML.NORMALIZER(v, 3)[SAFE_OFFSET(2)] AS l3_2, "
    "ML.NORMALIZER(v, IEEE_DIVIDE(1, 0))[OFFSET(0)] AS inf_0, "
    "ML.NORMALIZER(v, IEEE_DIVIDE(1, 0))[SAFE_OFFSET(3)] AS inf_3, "
    "v[SAFE_OFFSET(2)] AS v_2, ML.NORMALIZER(w, 1)[OFFSET(2)] AS w_2, "
    "ML.NORMALIZER([a, b, 2])[OFFSET(0)] AS ab_0, "
    "ML.STANDARD_SCALER(ML.NORMALIZER([a, b], 1)[OFFSET(1)]) OVER () AS ab_z, "
    "POW(b, 0) AS b_0, ABS(a) * POWER(ABS(b), 1.5) AS ab_p{label})"
)
_OUTPUTS = [
    "l2_0",
    "l2_1",
    "l1_0",
    "l15_1",
    "l3_2",
    "inf_0",
    "inf_3",
    "v_2",
    "w_2",
    "ab_0",
    "ab_z",
    "b_0",
    "ab_p",
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("onnx_arrays"))
    workspace.load_table("demo.vectors", _rows())
    workspace.load_table("demo.vectors_new", _NEW)
    yield workspace
    workspace.close()


def _feed(session: Any, table: pa.Table, extra: int = 0) -> dict[str, np.ndarray]:
    """The graph's inputs as docs/sql.md describes them: an ARRAY column DOUBLE [batch, n], each
    row's elements first, padded with NaN (``extra`` more columns of it); numbers [batch, 1]."""
    out = {}
    for spec in session.get_inputs():
        values = table[spec.name].to_pylist()
        if spec.shape[1] != 1:
            width = max([0] + [len(v or []) for v in values]) + extra
            padded = [
                [np.nan if e is None else float(e) for e in v or []]
                + [np.nan] * (width - len(v or []))
                for v in values
            ]
            out[spec.name] = np.array(padded, dtype=np.float64).reshape(len(values), width)
        else:
            numbers = [np.nan if v is None else float(v) for v in values]
            out[spec.name] = np.array(numbers, dtype=np.float64).reshape(-1, 1)
    return out


def _outputs_graph(manifest: dict[str, Any]) -> Any:
    """An ONNX graph of the TRANSFORM's outputs themselves (before the model's standardization),
    compiled the way EXPORT MODEL compiles them: raw columns in, one output per TRANSFORM column."""
    from onnx import helper

    transform = manifest["predictor_config"]["transform"]
    b = Builder()
    raw = {
        c["name"]: onnx_graph.Value(
            **{**vars(b.input(c["name"], onnx_graph._raw_kind(c["type"]))), "raw_type": c["type"]}
        )
        for c in onnx_graph._feature_inputs(transform)
    }
    values = onnx_graph._transform_values(b, transform, set(_OUTPUTS), raw)
    outputs = []
    for name in _OUTPUTS:
        b.nodes.append(helper.make_node("Identity", [b.double(values[name])], [name]))
        outputs.append(helper.make_tensor_value_info(name, b.tp.DOUBLE, [None, 1]))
    graph = helper.make_graph(b.nodes, "outputs", b.inputs, outputs, initializer=b.initializers)
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", b.opset), helper.make_opsetid("ai.onnx.ml", 2)],
    )


def _manifest(ws: Any, model: str, folder: Path) -> dict[str, Any]:
    ws.sql(f"EXPORT MODEL {model} OPTIONS(uri='{folder}')")
    return json.loads((folder / "manifest.json").read_text())  # type: ignore[no-any-return]


def _create(ws: Any, name: str, options: str, label: str) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} {_TRANSFORM.format(label=label and ', ' + label)} "
        f"OPTIONS({options}) AS SELECT * FROM demo.vectors"
    )


@pytest.mark.parametrize("extra", [0, 3])
def test_normalizer_values_equal_ml_transform(ws: Any, tmp_path: Path, extra: int) -> None:
    """Output by output, NULL for NULL (NaN), to 1e-12 relative: p = 1, 1.5, 2, 3, +inf; zero
    vectors; NULL / empty arrays; NULL elements; past a row's end; any padding width."""
    _create(ws, "norm_lin", "model_type='linear_reg', input_label_cols=['y']", "y")
    manifest = _manifest(ws, "demo.norm_lin", tmp_path / "native")
    session = ort.InferenceSession(_outputs_graph(manifest).SerializeToString())
    for table in ("demo.vectors", "demo.vectors_new"):
        rows = ws.sql(f"SELECT * FROM {table}").to_arrow()
        got = dict(zip(_OUTPUTS, session.run(_OUTPUTS, _feed(session, rows, extra)), strict=True))
        expected = ws.sql(f"SELECT * FROM ML.TRANSFORM(MODEL demo.norm_lin, TABLE {table})")
        columns = expected.to_arrow()
        for name in _OUTPUTS:
            want = np.array(
                [np.nan if x is None else x for x in columns[name].to_pylist()], dtype=np.float64
            )
            np.testing.assert_allclose(got[name][:, 0], want, rtol=1e-12, atol=0, err_msg=name)
    # the cases the rows hold, seen in ML.TRANSFORM: the zero vector stays 0, a NULL array and
    # an empty one give NULL, the infinity norm divides by the largest |v|
    new = ws.sql("SELECT * FROM ML.TRANSFORM(MODEL demo.norm_lin, TABLE demo.vectors_new)")
    out = new.to_arrow().to_pylist()
    assert out[4]["l2_0"] == 0.0 and out[1]["l2_0"] is None and out[2]["l1_0"] is None
    assert out[0]["inf_0"] == pytest.approx(1 / 6) and out[0]["inf_3"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("name", "options", "label"),
    [
        ("arr_lin", "model_type='linear_reg', input_label_cols=['y']", "y"),
        ("arr_log", "model_type='logistic_reg', input_label_cols=['size']", "size"),
        (
            "arr_btr",
            "model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=5",
            "y",
        ),
        ("arr_km", "model_type='kmeans', num_clusters=3", "CENTROID_ID"),
    ],
)
def test_exported_graph_gives_ml_predict_values(
    ws: Any, tmp_path: Path, name: str, options: str, label: str
) -> None:
    _create(ws, name, options, "" if label == "CENTROID_ID" else label)
    ws.sql(f"EXPORT MODEL demo.{name} OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    inputs = [(i.name, i.type, i.shape[1]) for i in session.get_inputs()]
    assert [(n, t) for n, t, _ in inputs] == [
        ("v", "tensor(double)"),
        ("w", "tensor(double)"),
        ("a", "tensor(double)"),
        ("b", "tensor(double)"),
    ]
    assert not isinstance(inputs[0][2], int) and not isinstance(inputs[1][2], int)  # any width
    assert inputs[2][2] == inputs[3][2] == 1
    for table in ("demo.vectors", "demo.vectors_new"):
        check_same_as_predict(ws, f"demo.{name}", label, tmp_path / "out", table, feed=_feed)


def test_a_batch_without_any_element_runs(ws: Any, tmp_path: Path) -> None:
    """Every array NULL or empty: the ARRAY inputs are [batch, 0]."""
    _create(ws, "arr_one", "model_type='linear_reg', input_label_cols=['y']", "y")
    ws.sql(f"EXPORT MODEL demo.arr_one OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    ws.load_table(
        "demo.vectors_blank",
        [{"v": None, "w": [], "a": 1.0, "b": None}, {"v": [], "w": None, "a": None, "b": 2.0}],
    )
    rows = ws.sql("SELECT * FROM demo.vectors_blank").to_arrow()
    feed = _feed(session, rows)
    assert feed["v"].shape == (2, 0) and feed["w"].shape == (2, 0)
    got = session.run(None, feed)[0][:, 0]
    expected = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.arr_one, TABLE demo.vectors_blank)")
    np.testing.assert_allclose(got, expected.to_arrow()["predicted_y"].to_numpy(), rtol=1e-12)


def test_the_exported_graph_imports_back_with_array_columns(ws: Any, tmp_path: Path) -> None:
    """BigQuery ML's convention for imported ONNX models: a [batch, n] input reads an
    ARRAY<FLOAT64> column of n values; rows padded with NULL to one length predict the same."""
    _create(ws, "arr_one", "model_type='linear_reg', input_label_cols=['y']", "y")
    ws.sql(f"EXPORT MODEL demo.arr_one OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    ws.sql(
        "CREATE OR REPLACE MODEL demo.arr_back OPTIONS(model_type='ONNX', "
        f"model_path='{tmp_path}/out/model.onnx')"
    )
    ws.load_table(
        "demo.vectors_even",  # one length per column, NULL elements as padding
        [
            {"v": [3.0, 4.0, None, None], "w": [1, 2, 3], "a": 1.0, "b": None},
            {"v": [1.0, -2.0, 2.0, 0.5], "w": [0, 0, 0], "a": None, "b": 0.5},
            {"v": [None, None, None, None], "w": [1, -1, 1], "a": 0.0, "b": 0.0},
        ],
    )
    back = ws.sql("SELECT variable FROM ML.PREDICT(MODEL demo.arr_back, TABLE demo.vectors_even)")
    original = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.arr_one, TABLE demo.vectors_even)")
    np.testing.assert_allclose(
        back.to_arrow()["variable"].to_numpy(),
        original.to_arrow()["predicted_y"].to_numpy(),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("clause", "named", "why"),
    [
        ("ARRAY_LENGTH(v) AS h", "", "length is not known"),
        ("CASE WHEN v IS NULL THEN 1.0 ELSE 0.0 END AS h", "", "an ARRAY tested for NULL"),
        ("ARRAY_LENGTH(ML.NORMALIZER(v)) AS h", "ML.NORMALIZER", "length is not known"),
        ("ML.HASH_BUCKETIZE(CAST(v[OFFSET(0)] AS STRING), 4) AS h", "ML.HASH_BUCKETIZE", "hash"),
    ],
)
def test_what_the_padding_would_change_is_refused_with_the_reason(
    ws: Any, tmp_path: Path, clause: str, named: str, why: str
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.arr_refused TRANSFORM({clause}, a, y) "
        "OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM demo.vectors"
    )
    with pytest.raises(sy.Unsupported) as info:
        ws.sql(f"EXPORT MODEL demo.arr_refused OPTIONS(uri='{tmp_path}/onnx', format='ONNX')")
    message = str(info.value)
    assert "TRANSFORM output 'h'" + (f" ({named})" if named else " does not") in message
    assert why in message and "format='NATIVE'" in message
    assert not (tmp_path / "onnx").exists()  # nothing written
    result = ws.sql(f"EXPORT MODEL demo.arr_refused OPTIONS(uri='{tmp_path}/native')")
    assert "no ONNX" in (result.message or "") and why in (result.message or "")
    assert "model.onnx" not in {p.name for p in (tmp_path / "native").iterdir()}


def test_element_indexes_below_one_are_refused() -> None:
    """DuckDB counts ``v[0]`` / ``v[-1]`` from the end (or gives NULL): no ONNX form."""
    b = Builder()
    compiler = onnx_graph.SqlToOnnx(b, {"v": onnx_graph.Value(b.input("v", "array").name, "array")})
    for sql in ("v[-1]", "v[0]"):
        with pytest.raises(onnx_graph.NotConvertible) as info:
            compiler.compile(onnx_graph._top(sql))
        assert "from the end" in info.value.why
    assert compiler.compile(onnx_graph._top("v[2]")).kind == "double"
