"""EXPORT MODEL to ONNX of TRANSFORM clauses with text functions (ML.NGRAMS, ML.BAG_OF_WORDS,
ML.TF_IDF, ML.MULTI_HOT_ENCODER, ML.FEATURE_CROSS): onnxruntime on the exported graph gives
ML.PREDICT's values on the same rows — NULLs, empty tokens, unseen terms included — and what has
no standard ONNX form (ML.HASH_BUCKETIZE …) is refused by name, with the reason."""

from __future__ import annotations

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
from tests.sql.test_export_onnx_features import check_same_as_predict  # noqa: E402

_WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "café", "crème"]


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for i in range(120):
        words = rng.choices(_WORDS, k=rng.randint(1, 6))
        text = " ".join(words)
        if i % 9 == 0:
            text = text.replace(" ", "  ", 1)  # an empty token between two spaces
        if i % 13 == 0:
            text = " " + text  # an empty token first
        tags = rng.sample(["red", "green", "blue", "teal"], k=rng.randint(0, 3))
        if i % 10 == 0 and len(tags) > 1:
            tags = [tags[0], "", *tags[1:]]  # '' inside an array (trailing '' is padding)
        y = words.count("cat") - 0.5 * words.count("dog") + (0.7 if "red" in tags else 0.0)
        rows.append(
            {
                "t": None if i % 17 == 0 else "" if i % 19 == 0 else text,
                "tags": None if i % 23 == 0 else tags,
                "k": rng.choice(["p", "q", None]),
                "n": rng.choice([1, 2, 3, None]),
                "flag": rng.choice([True, False, None]),
                "y": y + 0.1 * rng.random(),
                "size": "big" if y > 0.5 else "small",
            }
        )
    return rows


_NEW = [  # rows no model saw: unseen terms and values, NULLs, empty lists
    {"t": "zebra cat the", "tags": ["violet", "red", "red"], "k": "r", "n": 9, "flag": None},
    {"t": None, "tags": None, "k": None, "n": None, "flag": None},
    {"t": "unseen", "tags": [], "k": "p", "n": 1, "flag": True},
    {"t": "cat  cat ", "tags": ["", "blue"], "k": "q", "n": 2, "flag": False},
    {"t": "dog", "tags": ["zz", "yy"], "k": "q", "n": 3, "flag": True},
]

_TRANSFORM = (
    "TRANSFORM(ML.BAG_OF_WORDS(SPLIT(t, ' '), 20, 1) OVER () AS bow, "
    "ML.TF_IDF(ML.NGRAMS(SPLIT(t, ' '), [1, 2]), 40, 2) OVER () AS tfidf, "
    "ML.BAG_OF_WORDS(ML.NGRAMS(SPLIT(t, ' '), 3, '+'), 10, 1) OVER () AS tri, "
    "ML.MULTI_HOT_ENCODER(tags, 10, 1) OVER () AS hot, "
    "ML.TF_IDF(tags, 10, 1) OVER () AS tags_tfidf, "
    "ML.FEATURE_CROSS(STRUCT(k, CAST(n AS STRING) AS n, CAST(flag AS STRING) AS f)) AS cross, "
    "ML.MULTI_HOT_ENCODER([k, CAST(n AS STRING), 'x'], 10, 1) OVER () AS pair, "
    "{label})"
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("onnx_text"))
    rows = _rows()
    workspace.load_table("demo.texts", rows)
    # '' reaches the graph as NULL (ONNX strings have no NULL): compare the other rows here
    workspace.load_table("demo.texts_cmp", [r for r in rows if r["t"] != ""])
    workspace.load_table("demo.texts_new", _NEW)
    yield workspace
    workspace.close()


def _feed(session: Any, table: pa.Table) -> dict[str, np.ndarray]:
    """The graph's inputs as docs/sql.md describes them: STRING [batch, 1] with '' for NULL,
    ARRAY<STRING> [batch, n] padded with '', numbers and BOOLs DOUBLE [batch, 1] (NaN = NULL)."""
    out = {}
    for spec in session.get_inputs():
        values = table[spec.name].to_pylist()
        if spec.shape[1] != 1:  # an ARRAY<STRING> column
            width = max([1] + [len(v or []) for v in values])
            padded = [(v or []) + [""] * (width - len(v or [])) for v in values]
            out[spec.name] = np.array(padded, dtype=object).reshape(len(values), width)
        elif spec.type == "tensor(string)":
            out[spec.name] = np.array(["" if v is None else v for v in values], dtype=object)
            out[spec.name] = out[spec.name].reshape(-1, 1)
        else:
            numbers = [np.nan if v is None else float(v) for v in values]
            out[spec.name] = np.array(numbers, dtype=np.float64).reshape(-1, 1)
    return out


def _assert_same_as_predict(ws: Any, model: str, label: str, folder: Path, table: str) -> None:
    check_same_as_predict(ws, model, label, folder, table, feed=_feed, atol32=1e-5)


@pytest.mark.parametrize(
    ("name", "options", "label"),
    [
        ("text_lin", "model_type='linear_reg', input_label_cols=['y']", "y"),
        ("text_log", "model_type='logistic_reg', input_label_cols=['size']", "size"),
        (
            "text_btc",
            "model_type='boosted_tree_classifier', input_label_cols=['size'], max_iterations=5",
            "size",
        ),
        ("text_km", "model_type='kmeans', num_clusters=3", "CENTROID_ID"),
    ],
)
def test_text_functions_give_ml_predict_values(
    ws: Any, tmp_path: Path, name: str, options: str, label: str
) -> None:
    transform = _TRANSFORM.format(label="" if label == "CENTROID_ID" else f", {label}")
    transform = transform.replace(", )", ")")
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.{name} {transform} OPTIONS({options}) "
        "AS SELECT * FROM demo.texts"
    )
    ws.sql(f"EXPORT MODEL demo.{name} OPTIONS(uri='{tmp_path}/out', format='ONNX')")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    # the raw columns: text as STRING [batch, 1], the ARRAY<STRING> as [batch, n]
    inputs = {i.name: (i.type, i.shape[1]) for i in session.get_inputs()}
    assert list(inputs) == ["t", "tags", "k", "n", "flag"]
    assert inputs["t"] == inputs["k"] == ("tensor(string)", 1)
    assert inputs["tags"][0] == "tensor(string)" and not isinstance(inputs["tags"][1], int)
    assert inputs["n"] == inputs["flag"] == ("tensor(double)", 1)
    for table in ("demo.texts_cmp", "demo.texts_new"):
        _assert_same_as_predict(ws, f"demo.{name}", label, tmp_path / "out", table)


def _export_lin(ws: Any, folder: Path) -> Any:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.text_one {_TRANSFORM.format(label=', y')} "
        "OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM demo.texts"
    )
    ws.sql(f"EXPORT MODEL demo.text_one OPTIONS(uri='{folder}', format='ONNX')")
    return ort.InferenceSession(str(folder / "model.onnx"))


def _predict_one(ws: Any, row: dict[str, Any]) -> float:
    select = ", ".join(
        f"{_sql(row[c])} AS {c}" for c in ("t", "tags", "k", "n", "flag")
    )  # typed literals
    result = ws.sql(f"SELECT * FROM ML.PREDICT(MODEL demo.text_one, (SELECT {select}))")
    return float(result.to_arrow()["predicted_y"][0].as_py())


def _sql(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "CAST([" + ", ".join(_sql(v) for v in value) + "] AS ARRAY<STRING>)"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def test_conventions_empty_text_is_null_and_trailing_padding_is_dropped(
    ws: Any, tmp_path: Path
) -> None:
    session = _export_lin(ws, tmp_path / "one")
    base = {"k": "p", "n": 1, "flag": True}

    def graph(t: str, tags: list[str]) -> float:
        feed = _feed(session, pa.Table.from_pylist([{"t": t, "tags": tags, **base}]))
        return float(session.run(None, feed)[0][0, 0])

    # '' is NULL for every STRING input: an empty text gets NULL's (no) tokens, where
    # ML.PREDICT splits '' into one empty token
    assert graph("", ["red"]) == pytest.approx(
        _predict_one(ws, {"t": None, "tags": ["red"], **base}), abs=1e-12
    )
    # an ARRAY row ends at its last non-'' entry: ['red', ''] is read as ['red']; '' inside
    # a row stays a term
    assert graph("cat", ["red", ""]) == pytest.approx(
        _predict_one(ws, {"t": "cat", "tags": ["red"], **base}), abs=1e-12
    )
    assert graph("cat", ["", "red"]) == pytest.approx(
        _predict_one(ws, {"t": "cat", "tags": ["", "red"], **base}), abs=1e-12
    )
    # a wider padding changes nothing
    wide = _feed(session, pa.Table.from_pylist([{"t": "the cat", "tags": ["blue"], **base}]))
    wide["tags"] = np.array([["blue", "", "", ""]], dtype=object)
    assert float(session.run(None, wide)[0][0, 0]) == pytest.approx(
        _predict_one(ws, {"t": "the cat", "tags": ["blue"], **base}), abs=1e-12
    )


def test_a_batch_without_any_token_runs(ws: Any, tmp_path: Path) -> None:
    session = _export_lin(ws, tmp_path / "one")
    blank = [{"t": None, "tags": None, "k": None, "n": None, "flag": None}] * 3
    ws.load_table("demo.texts_blank", blank)
    rows = ws.sql("SELECT * FROM demo.texts_blank").to_arrow()
    got = session.run(None, _feed(session, rows))[0][:, 0]
    expected = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.text_one, TABLE demo.texts_blank)")
    np.testing.assert_allclose(got, expected.to_arrow()["predicted_y"].to_numpy(), atol=1e-12)


def test_graphs_without_text_keep_their_opset(ws: Any, tmp_path: Path) -> None:
    """Only the text operators need opset 20; other exports are not converted."""
    import onnx

    ws.sql(
        "CREATE OR REPLACE MODEL demo.no_text TRANSFORM(ML.LABEL_ENCODER(k) OVER () AS kc, y) "
        "OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM demo.texts"
    )
    ws.sql(f"EXPORT MODEL demo.no_text OPTIONS(uri='{tmp_path}/plain', format='ONNX')")
    _export_lin(ws, tmp_path / "text")
    opset = {
        folder: {
            o.domain: o.version
            for o in onnx.load(str(tmp_path / folder / "model.onnx")).opset_import
        }
        for folder in ("plain", "text")
    }
    assert opset["plain"][""] < 20
    assert opset["text"][""] == 20


@pytest.mark.parametrize(
    ("clause", "named", "why"),
    [
        ("ML.HASH_BUCKETIZE(k, 4) AS h", "ML.HASH_BUCKETIZE", "no hash operator"),
        (
            "ML.FEATURE_CROSS(STRUCT(k, CAST(y AS STRING) AS y2)) AS h",
            "ML.FEATURE_CROSS",
            "shortest round-trip digits",
        ),
        ("ML.BAG_OF_WORDS(SPLIT(LOWER(t), ' ')) OVER () AS h", "ML.BAG_OF_WORDS", "locale"),
        ("ML.MULTI_HOT_ENCODER(SPLIT(t, '')) OVER () AS h", "ML.MULTI_HOT_ENCODER", "SPLIT by ''"),
        (
            "ML.BAG_OF_WORDS(ML.NGRAMS([k, k], 2)) OVER () AS h",
            "ML.BAG_OF_WORDS, ML.NGRAMS",
            "ML.NGRAMS of an ARRAY built from columns",
        ),
    ],
)
def test_what_has_no_onnx_form_is_refused_with_the_reason(
    ws: Any, tmp_path: Path, clause: str, named: str, why: str
) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.refused TRANSFORM({clause}, n, y) "
        "OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM demo.texts"
    )
    with pytest.raises(sy.Unsupported) as info:
        ws.sql(f"EXPORT MODEL demo.refused OPTIONS(uri='{tmp_path}/onnx', format='ONNX')")
    message = str(info.value)
    assert f"TRANSFORM output 'h' ({named})" in message
    assert why in message
    assert not (tmp_path / "onnx").exists()  # nothing written
    # the default (NATIVE) export still writes the model, and says why there is no ONNX
    result = ws.sql(f"EXPORT MODEL demo.refused OPTIONS(uri='{tmp_path}/native')")
    assert "no ONNX" in result.message and why in result.message
    files = {p.name for p in (tmp_path / "native").iterdir()}
    assert "manifest.json" in files and "model.onnx" not in files


def test_tf_idf_of_ngrams_fits_with_the_documented_weights(ws: Any) -> None:
    """ML.TF_IDF over ML.NGRAMS in a TRANSFORM (DuckDB could not plan its document frequencies
    before): tf = count / n-grams in the row, idf = ln(1 + rows / (1 + rows holding the term))."""
    ws.load_table("demo.three", [{"t": "a b"}, {"t": "a"}, {"t": "b c"}])
    ws.sql(
        "CREATE OR REPLACE MODEL demo.grams "
        "TRANSFORM(ML.TF_IDF(ML.NGRAMS(SPLIT(t, ' '), [1, 2]), 10, 1) OVER () AS w) "
        "OPTIONS(model_type='transform_only') AS SELECT t FROM demo.three"
    )
    out = ws.sql("SELECT w FROM ML.TRANSFORM(MODEL demo.grams, (SELECT 'a b z' AS t))")
    # vocabulary a, a b, b, b c, c (indexes 1-5); 'a b z' has 5 n-grams, 'z', 'b z' unknown
    got = {e["index"]: e["value"] for e in out.to_arrow()["w"][0].as_py()}
    idf = {0: np.log(1 + 3 / 4), 1: np.log(1 + 3 / 3), 2: np.log(1 + 3 / 2), 3: np.log(2.0)}
    expected = {0: 2 / 5 * idf[0], 1: idf[1] / 5, 2: idf[2] / 5, 3: idf[3] / 5}
    assert got.keys() == expected.keys()
    for index, value in expected.items():
        assert got[index] == pytest.approx(value, rel=1e-12)
