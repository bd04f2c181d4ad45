"""BigQuery ML's mathematical functions ML.DISTANCE and ML.LP_NORM: values against SciPy and
NumPy (dense and sparse vectors, NULL and empty arrays), bad input, and use in a TRANSFORM."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial import distance

import shipyard as sy
from shipyard.errors import SQLError

_SCIPY = {
    "EUCLIDEAN": distance.euclidean,
    "MANHATTAN": distance.cityblock,
    "COSINE": distance.cosine,
}


def _vectors() -> list[dict[str, Any]]:
    """Pairs of vectors of several lengths and scales, ids 0.. in order."""
    rng = np.random.default_rng(11)
    rows = []
    for i, n in enumerate([1, 2, 3, 5, 8, 16, 16, 40]):
        scale = 10.0 ** (i % 4 - 1)
        rows.append(
            {
                "id": i,
                "a": [float(x) for x in rng.normal(0, scale, n)],
                "b": [float(x) for x in rng.normal(1, scale, n)],
                "k": [int(x) for x in rng.integers(-5, 6, n)],
            }
        )
    return rows


_ROWS = _vectors()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("math"))
    workspace.load_table("demo.vec", _ROWS)
    yield workspace
    workspace.close()


def rows(ws: Any, sql: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = ws.sql(sql).to_pylist()
    return out


def one(ws: Any, sql: str) -> Any:
    return next(iter(rows(ws, sql)[0].values()))


def _golden() -> list[tuple[str, str]]:
    lines = (Path(__file__).parent / "fixtures" / "math_functions.sql").read_text().splitlines()
    return [
        tuple(part.strip() for part in line.split(" => ", 1))  # type: ignore[misc]
        for line in lines
        if line.strip() and not line.startswith("--")
    ]


@pytest.mark.parametrize(("sql", "expected"), _golden())
def test_golden_fixtures(ws: Any, sql: str, expected: str) -> None:
    got = [list(r.values()) for r in rows(ws, sql)]
    assert _close(got, json.loads(expected)), (got, expected)


def _close(got: Any, want: Any) -> bool:
    """Equal structures, floats to 1e-12 relative (JSON drops the last ULP on some platforms)."""
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_close(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, float) and isinstance(got, float | Decimal):
        return bool(float(got) == pytest.approx(want, rel=1e-12))
    return bool(got == want)


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["EUCLIDEAN", "MANHATTAN", "COSINE"])
def test_distance_of_dense_vectors_matches_scipy(ws: Any, kind: str) -> None:
    got = rows(
        ws,
        f"SELECT id, ML.DISTANCE(a, b, '{kind}') AS d, ML.DISTANCE(k, a, '{kind}') AS dk "
        "FROM demo.vec ORDER BY id",
    )
    for row, r in zip(_ROWS, got, strict=True):
        assert r["d"] == pytest.approx(_SCIPY[kind](row["a"], row["b"]), rel=1e-12, abs=1e-15)
        if kind == "COSINE" and not any(row["k"]):
            assert math.isnan(r["dk"])
        else:
            want = _SCIPY[kind](np.array(row["k"], float), row["a"])
            assert r["dk"] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_euclidean_is_the_default_and_the_type_is_case_insensitive(ws: Any) -> None:
    got = rows(
        ws,
        "SELECT ML.DISTANCE(a, b) AS d, ML.DISTANCE(a, b, 'euclidean') AS e, "
        "ML.DISTANCE(a, b, 'Manhattan') AS m FROM demo.vec ORDER BY id",
    )
    for row, r in zip(_ROWS, got, strict=True):
        assert r["d"] == r["e"] == pytest.approx(distance.euclidean(row["a"], row["b"]))
        assert r["m"] == pytest.approx(distance.cityblock(row["a"], row["b"]))


@pytest.mark.parametrize(
    ("degree", "order"),
    [("0.0", 0), ("1.0", 1), ("2", 2), ("3.5", 3.5), ("CAST('INF' AS FLOAT64)", np.inf),
     ("CAST('+inf' AS FLOAT64)", np.inf), ("IEEE_DIVIDE(1, 0)", np.inf)],
)  # fmt: skip
def test_lp_norm_matches_numpy(ws: Any, degree: str, order: float) -> None:
    got = rows(
        ws,
        f"SELECT ML.LP_NORM(a, {degree}) AS n, ML.LP_NORM(k, {degree}) AS nk "
        "FROM demo.vec ORDER BY id",
    )
    for row, r in zip(_ROWS, got, strict=True):
        for values, value in ((row["a"], r["n"]), (row["k"], r["nk"])):
            vector = np.array(values, float)
            want = (
                float(np.sum(np.abs(vector) ** order) ** (1 / order))
                if order == 3.5
                else float(np.linalg.norm(vector, ord=order))
            )
            assert value == pytest.approx(want, rel=1e-12)


def test_output_is_float64_for_integer_and_numeric_vectors(ws: Any) -> None:
    table = ws.sql(
        "SELECT ML.DISTANCE([1, 2], [4, 6]) AS d, ML.LP_NORM(CAST([3, 4] AS ARRAY<NUMERIC>), 2) "
        "AS n, ML.DISTANCE([('a', 1)], [('a', 4)]) AS s"
    )
    assert [str(f.type) for f in table.schema] == ["double", "double", "double"]
    assert table.to_pylist() == [{"d": 5.0, "n": 5.0, "s": 3.0}]


def test_null_vectors_and_null_elements_give_null(ws: Any) -> None:
    got = rows(
        ws,
        "SELECT ML.DISTANCE(NULL, [1.0]) AS a, ML.DISTANCE([1.0], NULL, 'COSINE') AS b, "
        "ML.DISTANCE([1.0, NULL], [1.0, 2.0], 'MANHATTAN') AS c, "
        "ML.DISTANCE(CAST(NULL AS ARRAY<FLOAT64>), CAST(NULL AS ARRAY<FLOAT64>)) AS d, "
        "ML.LP_NORM(NULL, 2.0) AS e, ML.LP_NORM([1.0, NULL], 1.0) AS f, "
        "ML.DISTANCE([('a', 1.0), ('b', NULL)], [('a', 2.0)]) AS g, "
        "ML.DISTANCE([('a', 1.0)], [(NULL, 2.0)]) AS h",
    )
    assert got == [dict.fromkeys("abcdefgh")]


@pytest.mark.parametrize("kind", ["EUCLIDEAN", "MANHATTAN", "COSINE"])
def test_dense_null_handling_for_every_type(ws: Any, kind: str) -> None:
    """A NULL element or vector gives NULL for each metric (not DuckDB's list_distance error),
    even where the lengths differ: a NULL vector has no length to compare."""
    got = rows(
        ws,
        f"SELECT ML.DISTANCE([1.0, NULL], [1.0, 2.0], '{kind}') AS e1, "
        f"ML.DISTANCE([1.0, 2.0], [NULL, 2.0], '{kind}') AS e2, "
        f"ML.DISTANCE(CAST(NULL AS ARRAY<FLOAT64>), [1.0, 2.0, 3.0], '{kind}') AS v1, "
        f"ML.DISTANCE([1, 2], CAST(NULL AS ARRAY<INT64>), '{kind}') AS v2",
    )
    assert got == [dict.fromkeys(["e1", "e2", "v1", "v2"])]


@pytest.mark.parametrize("kind", ["EUCLIDEAN", "MANHATTAN", "COSINE"])
def test_integer_float32_and_mixed_arrays_match_scipy(ws: Any, kind: str) -> None:
    import pyarrow as pa

    f32 = pa.table({"f": pa.array([[0.5, 1.5, -2.0]], pa.list_(pa.float32()))})
    ws.load_table("demo.f32", f32)
    got = rows(
        ws,
        f"SELECT ML.DISTANCE([3, -1, 4], [1, 5, -9], '{kind}') AS ints, "
        f"(SELECT ML.DISTANCE(f, [1, 5, -9], '{kind}') FROM demo.f32) AS f32, "
        f"ML.DISTANCE(CAST([1.25, 2] AS ARRAY<NUMERIC>), [0.5, -1.0], '{kind}') AS num",
    )[0]
    fn = _SCIPY[kind]
    assert got["ints"] == pytest.approx(fn([3, -1, 4], [1, 5, -9]), rel=1e-12)
    assert got["f32"] == pytest.approx(fn([0.5, 1.5, -2.0], [1, 5, -9]), rel=1e-12)
    assert got["num"] == pytest.approx(fn([1.25, 2.0], [0.5, -1.0]), rel=1e-12)


@pytest.mark.parametrize("kind", ["EUCLIDEAN", "MANHATTAN", "COSINE"])
def test_length_mismatch_names_both_lengths_for_every_type(ws: Any, kind: str) -> None:
    for v1, v2, lengths in (("[1, 2]", "[1, 2, 3]", "2 and 3"),
                            ("CAST([] AS ARRAY<FLOAT64>)", "[1.5]", "0 and 1")):  # fmt: skip
        with pytest.raises(SQLError, match=f"vector1 and vector2 must have the same length, "
                           f"got {lengths}"):  # fmt: skip
            ws.sql(f"SELECT ML.DISTANCE({v1}, {v2}, '{kind}')")


def test_sparse_null_element_field_and_unnamed_structs(ws: Any) -> None:
    got = rows(
        ws,
        "SELECT ML.DISTANCE([('a', 1.0), NULL], [('a', 2.0)]) AS null_element, "
        "ML.DISTANCE([('a', 1.0)], [('b', CAST(NULL AS FLOAT64))]) AS null_value, "
        "ML.DISTANCE([(1, 3.0), (2, 4.0)], [(2, 4.0)], 'COSINE') AS tuples, "
        "ML.DISTANCE([STRUCT('x' AS k, 1.0 AS v)], CAST([] AS ARRAY<STRUCT<k STRING, v FLOAT64>>),"
        " 'MANHATTAN') AS one_empty",
    )[0]
    assert got["null_element"] is None and got["null_value"] is None
    assert got["tuples"] == pytest.approx(distance.cosine([3.0, 4.0], [0.0, 4.0]), rel=1e-12)
    assert got["one_empty"] == 1.0


def test_the_sql_stays_cheap_to_plan() -> None:
    """DuckDB parses and binds both forms on every statement (the rows are the cheap part):
    the earlier SQL's 14 regular expressions and 8 KB planned in ~12 ms, 3x list_distance."""
    from shipyard.sql.dialect import parse, to_duckdb

    sql = to_duckdb(parse("SELECT ML.DISTANCE(a, b) AS d FROM t")[0])
    assert sql.count("regexp_full_match") <= 6 and len(sql) < 6000, (len(sql), sql)


def test_empty_vectors(ws: Any) -> None:
    got = rows(
        ws,
        "SELECT ML.DISTANCE(CAST([] AS ARRAY<FLOAT64>), CAST([] AS ARRAY<FLOAT64>)) AS e, "
        "ML.DISTANCE(CAST([] AS ARRAY<INT64>), CAST([] AS ARRAY<INT64>), 'MANHATTAN') AS m, "
        "ML.DISTANCE(CAST([] AS ARRAY<FLOAT64>), CAST([] AS ARRAY<FLOAT64>), 'COSINE') AS c, "
        "ML.LP_NORM(CAST([] AS ARRAY<FLOAT64>), 1.0) AS l1, "
        "ML.LP_NORM(CAST([] AS ARRAY<FLOAT64>), CAST('INF' AS FLOAT64)) AS linf",
    )[0]
    assert (got["e"], got["m"], got["l1"], got["linf"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(got["c"])  # a zero-norm vector's cosine is undefined, as in SciPy


def test_sparse_vectors_match_by_identifier_with_missing_ones_zero(ws: Any) -> None:
    rng = np.random.default_rng(3)
    table = []
    for i in range(12):
        ids1 = rng.choice(30, size=int(rng.integers(0, 10)), replace=False)
        ids2 = rng.choice(30, size=int(rng.integers(1, 10)), replace=False)
        table.append(
            {
                "i": i,
                "s1": [{"name": f"f{j}", "value": float(rng.normal())} for j in ids1],
                "s2": [{"name": f"f{j}", "value": float(rng.normal())} for j in ids2],
                "n1": [{"idx": int(j), "weight": float(rng.normal())} for j in ids1],
                "n2": [{"idx": int(j), "weight": float(rng.normal())} for j in ids2],
            }
        )
    ws.load_table("demo.sparse", table)

    def dense(entries: list[dict[str, Any]], keys: list[Any]) -> np.ndarray:
        values = {e["name" if "name" in e else "idx"]: e["value" if "value" in e else "weight"]
                  for e in entries}  # fmt: skip
        return np.array([values.get(k, 0.0) for k in keys])

    for kind, fn in _SCIPY.items():
        got = rows(
            ws,
            f"SELECT ML.DISTANCE(s1, s2, '{kind}') AS s, ML.DISTANCE(n1, n2, '{kind}') AS n "
            "FROM demo.sparse ORDER BY i",
        )
        for row, r in zip(table, got, strict=True):
            for a, b, value in (("s1", "s2", r["s"]), ("n1", "n2", r["n"])):
                field = "name" if a == "s1" else "idx"
                keys = sorted({e[field] for e in row[a]} | {e[field] for e in row[b]})
                u, v = dense(row[a], keys), dense(row[b], keys)
                if kind == "COSINE" and not u.any():
                    assert math.isnan(value)
                else:
                    assert value == pytest.approx(fn(u, v), rel=1e-12, abs=1e-15)


def test_a_query_that_aggregates_distances(ws: Any) -> None:
    got = one(ws, "SELECT SUM(ML.DISTANCE(a, b, 'MANHATTAN')) AS total FROM demo.vec")
    assert got == pytest.approx(sum(distance.cityblock(r["a"], r["b"]) for r in _ROWS))


def test_they_compose_with_the_preprocessing_functions(ws: Any) -> None:
    """Arguments may be other ML functions, analytic ones included (each vector is evaluated
    once, outside DuckDB's lambdas), and a sparse ML.* output is a sparse vector."""
    ws.load_table(
        "demo.docs",
        [{"i": 1, "c": "x", "t": ["a", "b", "a"]}, {"i": 2, "c": "y", "t": ["b", "c"]}],
    )
    got = rows(
        ws,
        "SELECT i, ML.LP_NORM(ML.NORMALIZER([i, 2.0]), 2.0) AS unit, "
        "ML.DISTANCE(ML.BAG_OF_WORDS(t, 10, 1) OVER (), "
        "[STRUCT(1 AS index, 2.0 AS value)], 'MANHATTAN') AS from_two_a, "
        "ML.DISTANCE(ML.ONE_HOT_ENCODER(c, 'none', 10, 1) OVER (), "
        "ML.ONE_HOT_ENCODER(c, 'none', 10, 1) OVER ()) AS self "
        "FROM demo.docs ORDER BY i",
    )
    # vocabulary a=1, b=2, c=3: row 1 counts {a: 2, b: 1}, row 2 {b: 1, c: 1}
    assert got == [
        {"i": 1, "unit": pytest.approx(1.0), "from_two_a": 1.0, "self": 0.0},
        {"i": 2, "unit": pytest.approx(1.0), "from_two_a": 4.0, "self": 0.0},
    ]


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT ML.DISTANCE(a, k[OFFSET(0)]) FROM demo.vec",
         "ML.DISTANCE argument vector2 must be an ARRAY<numerical type>, "
         "ARRAY<STRUCT<STRING, numerical type>> or ARRAY<STRUCT<INT64, numerical type>> "
         "expression, got BIGINT"),
        ("SELECT ML.DISTANCE(['x'], a) FROM demo.vec",
         "ML.DISTANCE argument vector1 must be an ARRAY<numerical type>"),
        ("SELECT ML.DISTANCE(a, b, 'HAMMING') FROM demo.vec",
         "ML.DISTANCE type 'HAMMING' is not valid; valid: EUCLIDEAN, MANHATTAN, COSINE"),
        ("SELECT ML.DISTANCE(a, b, 3) FROM demo.vec", "ML.DISTANCE argument type must be a STRING"),
        ("SELECT ML.DISTANCE(a) FROM demo.vec", "ML.DISTANCE takes 2 to 3 arguments, got 1"),
        ("SELECT ML.DISTANCE(a, b) OVER () FROM demo.vec", "not an analytic function"),
        ("SELECT ML.DISTANCE(a, [('x', 1.0)]) FROM demo.vec",
         "vector2 must have the same type as vector1: vector1 is ARRAY<numerical type>, "
         "vector2 is ARRAY<STRUCT<STRING, numerical type>>"),
        ("SELECT ML.DISTANCE([(1, 1.0)], [('x', 1.0)])",
         "vector1 is ARRAY<STRUCT<INT64, numerical type>>, "
         "vector2 is ARRAY<STRUCT<STRING, numerical type>>"),
        ("SELECT ML.DISTANCE(a, b) FROM demo.vec WHERE id = 0 OR id = 1 ORDER BY id",
         None),  # same lengths: no error
        ("SELECT ML.DISTANCE(a, k) FROM (SELECT a, [1, 2, 3] AS k FROM demo.vec WHERE id = 0)",
         "ML.DISTANCE: vector1 and vector2 must have the same length, got 1 and 3"),
        ("SELECT ML.DISTANCE([('a', 1.0), ('b', 2.0), ('a', 3.0)], [('a', 1.0)])",
         "ML.DISTANCE: vector1 has the identifier a more than once"),
        ("SELECT ML.DISTANCE([(1, 1.0)], [(2, 1.0), (2, 3.0)])",
         "ML.DISTANCE: vector2 has the identifier 2 more than once"),
        ("SELECT ML.LP_NORM(a, 0.5) FROM demo.vec",
         "ML.LP_NORM degree must be 0.0, >= 1.0 or CAST('INF' AS FLOAT64), got 0.5"),
        ("SELECT ML.LP_NORM(a, -1) FROM demo.vec", "ML.LP_NORM degree must be 0.0, >= 1.0"),
        ("SELECT ML.LP_NORM(a, id) FROM demo.vec",
         "ML.LP_NORM argument degree must be an INT64 or a FLOAT64 literal"),
        ("SELECT ML.LP_NORM(a) FROM demo.vec", "ML.LP_NORM takes 2 arguments, got 1"),
        ("SELECT ML.LP_NORM(id, 2.0) FROM demo.vec",
         "ML.LP_NORM argument vector must be an ARRAY of numbers, got BIGINT"),
        ("SELECT ML.LP_NORM([('a', 1.0)], 2.0)",
         "ML.LP_NORM argument vector must be an ARRAY of numbers"),
    ],
)  # fmt: skip
def test_bad_calls_are_sql_errors_naming_the_function(
    ws: Any, sql: str, message: str | None
) -> None:
    if message is None:
        assert len(rows(ws, sql)) == 2
        return
    with pytest.raises(SQLError) as info:
        ws.sql(sql)
    assert message in str(info.value)
    assert len(rows(ws, "SELECT * FROM demo.vec")) == len(_ROWS)  # state intact


# -- TRANSFORM ---------------------------------------------------------------------------------

_ORIGIN = "[1.0, 0.0, 0.0]"
_TRANSFORM = f"TRANSFORM(ML.DISTANCE(v, {_ORIGIN}) AS d, ML.LP_NORM(v, 1.0) AS n, label)"


@pytest.fixture(scope="module")
def trained(ws: Any) -> Any:
    rng = np.random.default_rng(5)
    data = []
    for _ in range(40):
        v = rng.integers(-5, 6, 3).astype(float)
        d, n = float(np.linalg.norm(v - [1.0, 0.0, 0.0])), float(np.abs(v).sum())
        data.append({"v": v.tolist(), "label": 2.0 * d + 3.0 * n + 1.0})
    ws.load_table("demo.train", data)
    ws.sql(
        f"CREATE MODEL demo.dist {_TRANSFORM} OPTIONS(model_type='linear_reg') "
        "AS SELECT v, label FROM demo.train"
    )
    return ws


def test_transform_applies_the_functions_at_training_and_prediction(trained: Any) -> None:
    ws = trained
    transformed = rows(ws, "SELECT d, n FROM ML.TRANSFORM(MODEL demo.dist, TABLE demo.train)")
    plain = rows(
        ws,
        f"SELECT ML.DISTANCE(v, {_ORIGIN}) AS d, ML.LP_NORM(v, 1.0) AS n FROM demo.train",
    )
    assert transformed == plain
    new = "(SELECT [4.0, 4.0, 0.0] AS v UNION ALL SELECT [-2.0, 0.0, 4.0] AS v)"
    predicted = rows(ws, f"SELECT v, predicted_label FROM ML.PREDICT(MODEL demo.dist, {new})")
    for r in predicted:
        v = np.array(r["v"], dtype=float)
        want = 2.0 * np.linalg.norm(v - [1.0, 0.0, 0.0]) + 3.0 * np.abs(v).sum() + 1.0
        assert r["predicted_label"] == pytest.approx(want, rel=1e-6)


def test_prediction_rows_of_another_length_are_refused(trained: Any) -> None:
    with pytest.raises(SQLError, match="same length, got 2 and 3"):
        trained.sql("SELECT * FROM ML.PREDICT(MODEL demo.dist, (SELECT [1.0, 2.0] AS v))")


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ("ML.DISTANCE(v, ['a']) AS d", "ML.DISTANCE argument vector2 must be an ARRAY"),
        ("ML.DISTANCE(v, [(1, 2.0)]) AS d", "vector2 must have the same type as vector1"),
        ("ML.DISTANCE(v, v, 'CHEBYSHEV') AS d", "type 'CHEBYSHEV' is not valid"),
        ("ML.LP_NORM(v, 0.5) AS d", "degree must be 0.0, >= 1.0"),
        ("ML.LP_NORM(CAST(label AS STRING), 2) AS d", "must be an ARRAY of numbers, got VARCHAR"),
    ],
)
def test_bad_transforms_are_refused_and_create_no_model(
    trained: Any, transform: str, message: str
) -> None:
    ws = trained
    with pytest.raises(SQLError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ws.sql(
            f"CREATE MODEL demo.bad TRANSFORM({transform}, label) "
            "OPTIONS(model_type='linear_reg') AS SELECT v, label FROM demo.train"
        )
    with pytest.raises(sy.NotFound):
        ws.models.get("demo.bad")


def test_onnx_export_refuses_them_by_name(trained: Any, tmp_path: Path) -> None:
    with pytest.raises(sy.Unsupported) as info:
        trained.sql(f"EXPORT MODEL demo.dist OPTIONS(uri='{tmp_path}/onnx', format='ONNX')")
    assert "ML.DISTANCE" in str(info.value) and "format='NATIVE'" in str(info.value)
    trained.sql(f"EXPORT MODEL demo.dist OPTIONS(uri='{tmp_path}/native')")  # still exports


def test_the_docs_example_runs_and_gives_what_it_says(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text()
    section = doc.split("### Vector functions: ML.DISTANCE, ML.LP_NORM", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    ws = sy.connect(tmp_path)
    try:
        *setup, last = block.strip().split("\nws.sql(")
        exec("\n".join(setup), {"ws": ws})
        got = eval("ws.sql(" + last.split("\n#", 1)[0], {"ws": ws})
    finally:
        ws.close()
    assert got == [
        {"id": 1, "euclidean": pytest.approx(1.926136028425822), "cosine": pytest.approx(
            0.10819907071029489), "sparse_l1": 5.0, "l2": pytest.approx(4.249705872175156),
         "linf": 4.1},
        {"id": 2, "euclidean": 0.0, "cosine": 0.0, "sparse_l1": 1.0, "l2": 3.0, "linf": 2.0},
    ]  # fmt: skip
