"""BigQuery ML's preprocessing functions in plain SQL: the reference's documented examples,
parity with scikit-learn's equivalents, and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

import shipyard as sy
from shipyard.errors import SQLError
from shipyard.sql.dialect import parse, to_duckdb
from shipyard.warehouse.functions import connect


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect()  # with FARM_FINGERPRINT, as every Shipyard connection
    rng = np.random.default_rng(7)
    c.execute("CREATE TABLE r AS SELECT unnest($1) AS v", [list(rng.normal(3, 2, 200))])
    yield c
    c.close()


def run(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.sql(to_duckdb(parse(sql)[0])).fetchall()


def column(con: duckdb.DuckDBPyConnection, sql: str) -> np.ndarray:
    return np.array([r[0] for r in run(con, sql)], dtype=float)


def _golden() -> list[tuple[str, str]]:
    lines = (Path(__file__).parent / "fixtures" / "preprocessing.sql").read_text().splitlines()
    return [
        tuple(part.strip() for part in line.split(" => ", 1))  # type: ignore[misc]
        for line in lines
        if line.strip() and not line.startswith("--")
    ]


@pytest.mark.parametrize(("sql", "rows"), _golden())
def test_golden_fixtures(con: Any, sql: str, rows: str) -> None:
    got = [list(r) for r in run(con, sql)]
    assert json.loads(json.dumps(got, default=float)) == json.loads(rows)


# -- the reference's examples -----------------------------------------------------------------

FIVE = "FROM UNNEST([1, 2, 3, 4, 5]) AS f ORDER BY f"


def test_min_max_standard_and_max_abs_scalers_match_the_reference(con: Any) -> None:
    assert column(con, f"SELECT ML.MIN_MAX_SCALER(f) OVER () {FIVE}").tolist() == [
        0.0, 0.25, 0.5, 0.75, 1.0
    ]  # fmt: skip
    standard = column(con, f"SELECT ML.STANDARD_SCALER(f) OVER () {FIVE}")
    assert standard.tolist() == pytest.approx(
        [-1.2649110640673518, -0.6324555320336759, 0.0, 0.6324555320336759, 1.2649110640673518]
    )
    rows = run(
        con,
        "SELECT f, ML.MAX_ABS_SCALER(f) OVER () FROM UNNEST([NULL, -3, 1, 2, 3, 4, 5]) AS f "
        "ORDER BY f NULLS FIRST",
    )
    assert [r[1] for r in rows] == [None, -0.6, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_bucketize_and_quantile_bucketize_match_the_reference(con: Any) -> None:
    assert run(con, "SELECT ML.BUCKETIZE(2.5, [1, 2, 3]), ML.BUCKETIZE(2.5, [1, 2, 3], TRUE)") == [
        ("bin_3", "bin_2")
    ]
    assert [r[0] for r in run(con, f"SELECT ML.QUANTILE_BUCKETIZE(f, 3) OVER () {FIVE}")] == [
        "bin_1", "bin_2", "bin_2", "bin_3", "bin_3"
    ]  # fmt: skip
    ranges = run(con, "SELECT ML.BUCKETIZE(x, [2.5, 4.6], FALSE, 'bucket_ranges') "
                 "FROM UNNEST([1.0, 3.0, 9.0]) AS x ORDER BY x")  # fmt: skip
    assert [r[0] for r in ranges] == ["(-inf, 2.5)", "[2.5, 4.6)", "[4.6, +inf)"]
    assert run(con, "SELECT ML.BUCKETIZE(NULL, [1, 2])") == [(None,)]


def test_encoders_match_the_reference(con: Any) -> None:
    labels = run(
        con,
        "SELECT f, ML.LABEL_ENCODER(f, 2, 2) OVER () FROM UNNEST([NULL, 'a', 'b', 'b', 'c', "
        "'c', 'c', 'd', 'd']) AS f ORDER BY f NULLS FIRST",
    )
    assert [r[1] for r in labels] == [0, 0, 1, 1, 2, 2, 2, 0, 0]
    multi = run(
        con,
        "SELECT f[1], ML.MULTI_HOT_ENCODER(f, 3, 1) OVER () FROM (SELECT ['a', 'b', 'b', 'c', "
        "NULL] AS f UNION ALL SELECT ['c', 'c', 'd', 'd', NULL]) ORDER BY 1",
    )
    assert [[e["index"] for e in r[1]] for r in multi] == [[1, 2, 3, 0], [3, 0]]
    one_hot = run(
        con,
        "SELECT f, ML.ONE_HOT_ENCODER(f, 'most_frequent', 10, 1) OVER () FROM UNNEST([NULL, 'a', "
        "'b', 'b']) AS f ORDER BY f NULLS FIRST",
    )
    assert [r[1] for r in one_hot] == [
        [{"index": 0, "value": 1.0}],
        [{"index": 1, "value": 1.0}],
        [{"index": 2, "value": 0.0}],  # the dropped (most frequent) category
        [{"index": 2, "value": 0.0}],
    ]


def test_imputer_matches_the_reference(con: Any) -> None:
    mean = run(con, "SELECT ML.IMPUTER(f, 'mean') OVER () FROM UNNEST([NULL, -3, -3, -3, 1, 2, "
               "3, 4, 5]) AS f ORDER BY f NULLS FIRST")  # fmt: skip
    assert mean[0] == (0.75,)
    frequent = run(con, "SELECT ML.IMPUTER(f, 'most_frequent') OVER () FROM UNNEST([NULL, NULL, "
                   "'a', 'a', 'b', 'b', 'c', 'c', 'c']) AS f ORDER BY f NULLS FIRST")  # fmt: skip
    assert [r[0] for r in frequent[:2]] == ["c", "c"]


def test_scalar_struct_and_array_functions_match_the_reference(con: Any) -> None:
    assert run(con, "SELECT ML.FEATURE_CROSS(STRUCT('a' AS f1, 'b' AS f2, 'c' AS f3))") == [
        ({"f1_f2": "a_b", "f1_f3": "a_c", "f2_f3": "b_c"},)
    ]
    assert run(con, "SELECT ML.POLYNOMIAL_EXPAND(STRUCT(2 AS f1, 3 AS f2))") == [
        ({"f1": 2.0, "f1_f1": 4.0, "f1_f2": 6.0, "f2": 3.0, "f2_f2": 9.0},)
    ]
    assert run(con, "SELECT ML.NGRAMS(['a', 'b', 'c'], [2, 3], '#')") == [
        (["a#b", "a#b#c", "b#c"],)
    ]
    assert run(con, "SELECT ML.NGRAMS(['a', 'b'], 1)") == [(["a", "b"],)]
    buckets = run(con, "SELECT ML.HASH_BUCKETIZE(s, 10) FROM UNNEST(['x', 'y', 'x', NULL]) AS s")
    assert buckets[0] == buckets[2] and buckets[3] == (None,)
    assert all(0 <= b[0] < 10 for b in buckets[:3])


def _rows_table(con: duckdb.DuckDBPyConnection, name: str, values: list[Any]) -> None:
    """A table (i, v) holding ``values`` in order."""
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS SELECT i, v FROM (SELECT unnest(range(len($1))) AS i, "
        "unnest($1) AS v)",
        [values],
    )


# -- parity with scikit-learn -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "scaler"),
    [
        ("MIN_MAX_SCALER", MinMaxScaler()),
        ("MAX_ABS_SCALER", MaxAbsScaler()),
        ("ROBUST_SCALER", RobustScaler()),
        (
            "ROBUST_SCALER(v, [10, 90], FALSE, TRUE",
            RobustScaler(with_centering=False, quantile_range=(10, 90)),
        ),
    ],
)
def test_scalers_equal_scikit_learns(con: Any, function: str, scaler: Any) -> None:
    call = f"ML.{function})" if "(" in function else f"ML.{function}(v)"
    ours = column(con, f"SELECT {call} OVER () FROM r ORDER BY v")
    x = np.sort(column(con, "SELECT v FROM r")).reshape(-1, 1)
    np.testing.assert_allclose(ours, scaler.fit_transform(x).ravel(), rtol=1e-12, atol=1e-12)


def test_standard_scaler_uses_the_sample_standard_deviation(con: Any) -> None:
    x = np.sort(column(con, "SELECT v FROM r")).reshape(-1, 1)
    theirs = StandardScaler().fit_transform(x).ravel() * np.sqrt((len(x) - 1) / len(x))
    ours = column(con, "SELECT ML.STANDARD_SCALER(v) OVER () FROM r ORDER BY v")
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_imputer_median_equals_simple_imputer(con: Any) -> None:
    values = [1.0, None, 7.0, 2.0, None, 10.0]
    _rows_table(con, "m", values)
    ours = [r[0] for r in run(con, "SELECT ML.IMPUTER(v, 'median') OVER () FROM m ORDER BY i")]
    theirs = SimpleImputer(strategy="median").fit_transform(
        np.array(values, dtype=float).reshape(-1, 1)
    )
    assert ours == theirs.ravel().tolist()


def test_polynomial_expand_and_normalizer_equal_scikit_learns(con: Any) -> None:
    (row,) = run(con, "SELECT ML.POLYNOMIAL_EXPAND(STRUCT(2.0 AS a, 3.0 AS b, 5.0 AS c), 3)")
    expected = PolynomialFeatures(3, include_bias=False).fit_transform([[2.0, 3.0, 5.0]])[0]
    assert sorted(row[0].values()) == pytest.approx(sorted(expected))
    for p, norm in ((1, "l1"), (2, "l2")):
        (out,) = run(con, f"SELECT ML.NORMALIZER([3.0, -4.0, 12.0], {p})")
        assert out[0] == pytest.approx(Normalizer(norm).fit_transform([[3.0, -4.0, 12.0]])[0])


def test_bag_of_words_counts_equal_count_vectorizer(con: Any) -> None:
    docs = [["a", "b", "b", "c"], ["c", "d"], ["a", "c", "c"]]
    _rows_table(con, "bow", docs)
    ours = [r[0] for r in run(con, "SELECT ML.BAG_OF_WORDS(v, 10, 1) OVER () FROM bow ORDER BY i")]
    vectorizer = CountVectorizer(analyzer=lambda d: d)
    counts = vectorizer.fit_transform(docs).toarray()
    for row, bag in zip(counts, ours, strict=True):
        # vocabulary sorted alphabetically from index 1 (0 is the unknown term)
        assert {e["index"]: e["value"] for e in bag} == {
            i + 1: float(c) for i, c in enumerate(row) if c
        }


def test_tf_idf_follows_the_reference_formula(con: Any) -> None:
    docs = [["a", "b", "b"], ["b", "c"], ["z"]]
    _rows_table(con, "tfidf", docs)
    ours = [r[0] for r in run(con, "SELECT ML.TF_IDF(v, 2, 1) OVER () FROM tfidf ORDER BY i")]
    # vocabulary: b (2 documents), then a (1; ties by name) -> a=1, b=2; c and z are unknown
    idf = {1: np.log(1 + 3 / 2), 2: np.log(1 + 3 / 3), 0: np.log(1 + 3 / 4)}
    assert ours[0] == [
        {"index": 1, "value": pytest.approx(1 / 3 * idf[1])},
        {"index": 2, "value": pytest.approx(2 / 3 * idf[2])},
    ]
    assert ours[2] == [{"index": 0, "value": pytest.approx(idf[0])}]


def test_functions_run_through_the_workspace(tmp_path: Any) -> None:
    ws = sy.connect(tmp_path)
    try:
        ws.load_table("d.t", [{"x": float(i)} for i in range(5)])
        rows = ws.sql(
            "SELECT x, ML.MIN_MAX_SCALER(x) OVER () AS s, ML.BUCKETIZE(x, [2]) AS b "
            "FROM d.t WHERE x > 0 ORDER BY x"
        ).to_pylist()
        assert [(r["s"], r["b"]) for r in rows] == [
            (0.0, "bin_1"), (1 / 3, "bin_2"), (2 / 3, "bin_2"), (1.0, "bin_2")
        ]  # fmt: skip
    finally:
        ws.close()


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT ML.NOT_A_FUNCTION(v) FROM r", "unknown function ML.NOT_A_FUNCTION"),
        ("SELECT ML.MIN_MAX_SCALER(v) FROM r", "ML.MIN_MAX_SCALER is an analytic function"),
        ("SELECT ML.BUCKETIZE(v, [1]) OVER () FROM r", "not an analytic function"),
        ("SELECT ML.STANDARD_SCALER(v) OVER (ORDER BY v) FROM r", "empty OVER"),
        ("SELECT ML.BUCKETIZE(v, 'x') FROM r", "array_split_points must be an ARRAY"),
        ("SELECT ML.BUCKETIZE(v, [3, 1]) FROM r", "finite and ascending"),
        ("SELECT ML.IMPUTER(v, 'mode') OVER () FROM r", "strategy 'mode' is not valid"),
        ("SELECT ML.QUANTILE_BUCKETIZE(v, 'four') OVER () FROM r", "num_buckets must be an INT64"),
        ("SELECT ML.HASH_BUCKETIZE(v) FROM r", "takes 2 arguments, got 1"),
        ("SELECT ML.FEATURE_CROSS(STRUCT(v AS a, v AS b), 7) FROM r", "degree must be in [2, 4]"),
        ("SELECT ML.LABEL_ENCODER(v, 0) OVER () FROM r", "top_k must be in"),
    ],
)
def test_bad_calls_are_sql_errors_naming_the_function(con: Any, sql: str, message: str) -> None:
    with pytest.raises(SQLError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(con, sql)
