"""EXPORT MODEL to ONNX for models with STRING/BOOL/DATE/TIMESTAMP features and with a
TRANSFORM clause: onnxruntime on the exported graph gives ML.PREDICT's values on the same rows;
what cannot convert is named, and the native export still works."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

import shipyard as sy  # noqa: E402

_COLUMNS = "a, city, flag, d, ts"


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(3)
    rows = []
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for i in range(160):
        a = rng.random()
        city = rng.choice(["oslo", "rome", "lima", None])
        flag = rng.choice([True, False, None])
        y = 2 * a + (1.0 if city == "rome" else 0.0) + (0.5 if flag else 0.0) + 0.1 * rng.random()
        rows.append(
            {
                "a": a if i % 11 else None,
                "city": city,
                "flag": flag,
                "d": dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 3)),
                "ts": start + dt.timedelta(hours=i),
                "y": y,
                "size": "big" if y > 1.5 else "small",
            }
        )
    return rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("onnx_features"))
    workspace.load_table("demo.t", _rows())
    # rows the models never saw: an unseen city, NULLs everywhere, '' as a NULL string
    workspace.load_table(
        "demo.new",
        [
            {
                "a": 0.5,
                "city": "paris",
                "flag": None,
                "d": dt.date(2030, 5, 5),
                "ts": dt.datetime(2024, 2, 1, tzinfo=dt.UTC),
            },
            {"a": None, "city": None, "flag": True, "d": None, "ts": None},
            {
                "a": 2.5,
                "city": "rome",
                "flag": False,
                "d": dt.date(2024, 1, 2),
                "ts": dt.datetime(2023, 1, 1, tzinfo=dt.UTC),
            },
        ],
    )
    yield workspace
    workspace.close()


def _feed(session: Any, table: pa.Table) -> dict[str, np.ndarray]:
    """The graph's inputs, as the export documents them: one [batch, 1] tensor per column."""
    out = {}
    for spec in session.get_inputs():
        col = table[spec.name]
        if spec.type == "tensor(string)":
            values: list[Any] = ["" if v is None else v for v in col.to_pylist()]
            out[spec.name] = np.array(values, dtype=object).reshape(-1, 1)
            continue
        if pa.types.is_date(col.type):
            col = col.cast(pa.int32())  # days since 1970-01-01
        elif pa.types.is_timestamp(col.type):
            col = pc_seconds(col)
        numbers = [np.nan if v is None else float(v) for v in col.to_pylist()]
        out[spec.name] = np.array(numbers, dtype=np.float64).reshape(-1, 1)
    return out


def pc_seconds(col: Any) -> Any:
    return pa.array([None if v is None else v / 1e6 for v in col.cast(pa.int64()).to_pylist()])


def check_same_as_predict(
    ws: Any,
    model: str,
    label: str,
    target: Path,
    table: str,
    *,
    feed: Callable[[Any, pa.Table], dict[str, Any]] | None = None,
    atol32: float = 1e-6,
) -> None:
    """onnxruntime's outputs on the exported graph equal ML.PREDICT on the same rows."""
    session = ort.InferenceSession(str(target / "model.onnx"))
    rows = ws.sql(f"SELECT * FROM {table}").to_arrow()
    outputs = session.run(None, (feed or _feed)(session, rows))
    predicted = ws.sql(f"SELECT * FROM ML.PREDICT(MODEL {model}, TABLE {table})").to_arrow()
    if label == "CENTROID_ID":
        assert outputs[0].tolist() == predicted["CENTROID_ID"].to_pylist()
        return
    if len(outputs) == 1:
        float32 = session.get_outputs()[0].type == "tensor(float)"
        np.testing.assert_allclose(
            outputs[0][:, 0],
            predicted[f"predicted_{label}"].to_numpy(),
            rtol=1e-5 if float32 else 1e-12,
            atol=atol32 if float32 else 1e-12,
        )
        return
    assert outputs[0].tolist() == predicted[f"predicted_{label}"].to_pylist()
    probs = [
        [e["prob"] for e in sorted(r, key=lambda e: e["label"])]
        for r in predicted[f"predicted_{label}_probs"].to_pylist()
    ]
    np.testing.assert_allclose(outputs[1], np.array(probs), atol=1e-6)


CASES = [
    ("lin", "model_type='linear_reg', input_label_cols=['y']", "y"),
    (
        "dummy",
        "model_type='linear_reg', input_label_cols=['y'], "
        "category_encoding_method='dummy_encoding'",
        "y",
    ),
    ("log", "model_type='logistic_reg', input_label_cols=['size']", "size"),
    (
        "btc",
        "model_type='boosted_tree_classifier', input_label_cols=['size'], max_iterations=5",
        "size",
    ),
    (
        "btr",
        "model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=5, "
        "category_encoding_method='label_encoding'",
        "y",
    ),
]


@pytest.mark.parametrize(("name", "options", "label"), CASES)
def test_string_bool_date_timestamp_features_convert(
    ws: Any, tmp_path: Path, name: str, options: str, label: str
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} OPTIONS({options}) "
        f"AS SELECT {_COLUMNS}, {label} FROM demo.t"
    )
    ws.sql(f"EXPORT MODEL demo.{name} OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("a", "tensor(double)"),
        ("city", "tensor(string)"),
        ("flag", "tensor(double)"),
        ("d", "tensor(double)"),
        ("ts", "tensor(double)"),
    ]
    check_same_as_predict(ws, f"demo.{name}", label, tmp_path / "out", "demo.t")
    check_same_as_predict(ws, f"demo.{name}", label, tmp_path / "out", "demo.new")


_TRANSFORM = (
    "TRANSFORM(ML.STANDARD_SCALER(a) OVER () AS a_s, ML.MIN_MAX_SCALER(a) OVER () AS a_mm, "
    "ML.MAX_ABS_SCALER(a) OVER () AS a_ma, ML.ROBUST_SCALER(a) OVER () AS a_r, "
    "ML.BUCKETIZE(a, [0.3, 0.6]) AS a_b, ML.QUANTILE_BUCKETIZE(a, 4) OVER () AS a_q, "
    "ML.IMPUTER(a, 'median') OVER () AS a_i, "
    "ML.POLYNOMIAL_EXPAND(STRUCT(a, ML.IMPUTER(a, 'mean') OVER () AS b), 2) AS poly, "
    "ML.LABEL_ENCODER(city) OVER () AS c_l, ML.ONE_HOT_ENCODER(city) OVER () AS c_oh, "
    "ML.IMPUTER(city, 'most_frequent') OVER () AS c_i, a * 2 + 1 AS a2, "
    "CASE WHEN city = 'rome' THEN 1.0 ELSE 0.0 END AS is_rome, flag, {label})"
)


@pytest.mark.parametrize(
    ("name", "options", "column", "output"),
    [
        ("km", "model_type='kmeans', num_clusters=3", "CENTROID_ID", 0),
        ("pc", "model_type='pca', num_principal_components=2", "principal_component_1", 0),
    ],
)
def test_unsupervised_models_with_categories_convert(
    ws: Any, tmp_path: Path, name: str, options: str, column: str, output: int
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} OPTIONS({options}) AS SELECT {_COLUMNS} FROM demo.t"
    )
    ws.sql(f"EXPORT MODEL demo.{name} OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    rows = ws.sql("SELECT * FROM demo.t").to_arrow()
    got = session.run(None, _feed(session, rows))[output]
    expected = ws.sql(f"SELECT * FROM ML.PREDICT(MODEL demo.{name}, TABLE demo.t)").to_arrow()
    if column == "CENTROID_ID":
        assert got.tolist() == expected[column].to_pylist()
    else:
        np.testing.assert_allclose(got[:, 0], expected[column].to_numpy(), atol=1e-9)


@pytest.mark.parametrize(
    ("name", "options", "label"),
    [
        ("tlin", "model_type='linear_reg', input_label_cols=['y']", "y"),
        ("tlog", "model_type='logistic_reg', input_label_cols=['size']", "size"),
        (
            "tbt",
            "model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=5",
            "y",
        ),
    ],
)
def test_transform_clauses_convert(
    ws: Any, tmp_path: Path, name: str, options: str, label: str
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} {_TRANSFORM.format(label=label)} "
        f"OPTIONS({options}) AS SELECT * FROM demo.t"
    )
    ws.sql(f"EXPORT MODEL demo.{name} OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    # the graph takes the TRANSFORM's raw inputs, not its outputs
    assert [i.name for i in session.get_inputs()] == ["a", "city", "flag"]
    check_same_as_predict(ws, f"demo.{name}", label, tmp_path / "out", "demo.t")
    check_same_as_predict(ws, f"demo.{name}", label, tmp_path / "out", "demo.new")


@pytest.mark.parametrize(
    ("clause", "named"),
    [
        # the text functions convert (tests/sql/test_export_onnx_text.py); these cannot
        ("ML.HASH_BUCKETIZE(city, 5) AS words", "ML.HASH_BUCKETIZE"),
        (
            "ML.BAG_OF_WORDS(ML.NGRAMS(SPLIT(UPPER(city), ' '), [1, 2])) OVER () AS words",
            "ML.BAG_OF_WORDS, ML.NGRAMS",
        ),
        ("ML.FEATURE_CROSS(STRUCT(city, CAST(a AS STRING) AS f)) AS words", "ML.FEATURE_CROSS"),
    ],
)
def test_what_cannot_convert_is_named_and_native_export_still_works(
    ws: Any, tmp_path: Path, clause: str, named: str
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.words TRANSFORM(a, {clause}, y) "
        "OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM demo.t"
    )
    with pytest.raises(sy.Unsupported) as info:
        ws.sql(f"EXPORT MODEL demo.words OPTIONS(uri='{tmp_path}/onnx', format='ONNX')")
    message = str(info.value)
    assert f"TRANSFORM output 'words' ({named})" in message
    assert "format='NATIVE'" in message
    assert not (tmp_path / "onnx").exists()
    result = ws.sql(f"EXPORT MODEL demo.words OPTIONS(uri='{tmp_path}/native')")
    assert "no ONNX" in (result.message or "") and named in (result.message or "")
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == [
        "manifest.json",
        "model.skops",
    ]


def test_an_empty_string_category_does_not_convert(ws: Any, tmp_path: Path) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.blank OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y']) AS SELECT a, COALESCE(city, '') AS city, y FROM demo.t"
    )
    with pytest.raises(sy.Unsupported, match="'' as a category"):
        ws.sql(f"EXPORT MODEL demo.blank OPTIONS(uri='{tmp_path}/onnx', format='ONNX')")
