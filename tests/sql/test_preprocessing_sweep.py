"""Every BigQuery ML preprocessing function, alone and in the compositions users write, three
ways: the plain-SQL value, the same expression in TRANSFORM (ML.TRANSFORM on the training rows
gives the same values), and bad arguments (a SQLError naming the function, nothing created)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy
from shipyard.errors import SQLError

# i: row id; x: FLOAT64 with a NULL; y: INT64; c: STRING with a NULL; t: text; tags: ARRAY<STRING>
_WORDS = ["red fox", "red dog", "blue fox jumps", "red fox jumps", "dog", "blue dog"]
_ROWS = [
    {
        "i": i,
        "x": None if i == 3 else float(i % 5) + 0.5,
        "y": i % 4,
        "c": None if i == 5 else "abcab"[i % 5],
        "t": _WORDS[i % 6],
        "tags": [["p", "q"], ["q"], ["p", "r", "r"]][i % 3],
    }
    for i in range(12)
]

# name -> expression: each function alone, then compositions
CASES = {
    "bucketize": "ML.BUCKETIZE(x, [1, 3, 5])",
    "bucket_ranges": "ML.BUCKETIZE(x, [1, 3, 5], TRUE, 'bucket_ranges')",
    "bucket_json": "ML.BUCKETIZE(y, [1, 2], FALSE, 'bucket_ranges_json')",
    "quantile": "ML.QUANTILE_BUCKETIZE(x, 3) OVER ()",
    "quantile_json": "ML.QUANTILE_BUCKETIZE(x * 2, 4, 'bucket_ranges_json') OVER ()",
    "min_max": "ML.MIN_MAX_SCALER(x + y) OVER ()",
    "max_abs": "ML.MAX_ABS_SCALER(y - 3) OVER ()",
    "standard": "ML.STANDARD_SCALER(y) OVER ()",
    "robust": "ML.ROBUST_SCALER(x) OVER ()",
    "robust_args": "ML.ROBUST_SCALER(x, [10, 90], TRUE, FALSE) OVER ()",
    "normalizer": "ML.NORMALIZER([x, y], 1)",
    "normalizer_inf": "ML.NORMALIZER([y, 2], IEEE_DIVIDE(1, 0))",
    "poly": "ML.POLYNOMIAL_EXPAND(STRUCT(y AS a, x AS b))",
    "poly_3": "ML.POLYNOMIAL_EXPAND(STRUCT(y AS a, 2 AS b), 3)",
    "impute_mean": "ML.IMPUTER(x, 'mean') OVER ()",
    "impute_median": "ML.IMPUTER(x, 'median') OVER ()",
    "impute_frequent": "ML.IMPUTER(c, 'most_frequent') OVER ()",
    "cross": "ML.FEATURE_CROSS(STRUCT(c, t))",
    "cross_3": "ML.FEATURE_CROSS(STRUCT(c, t, 'k' AS k), 3)",
    "hash": "ML.HASH_BUCKETIZE(c, 4)",
    "hash_0": "ML.HASH_BUCKETIZE(c, 0)",
    "one_hot": "ML.ONE_HOT_ENCODER(c, 'none', 10, 1) OVER ()",
    "dummy": "ML.ONE_HOT_ENCODER(c, 'most_frequent', 10, 1) OVER ()",
    "label": "ML.LABEL_ENCODER(c, 2, 1) OVER ()",
    "multi_hot": "ML.MULTI_HOT_ENCODER(tags, 10, 1) OVER ()",
    "ngrams": "ML.NGRAMS(SPLIT(t, ' '), [1, 2], '_')",
    "bag": "ML.BAG_OF_WORDS(SPLIT(t, ' '), 3, 2) OVER ()",
    "tf_idf": "ML.TF_IDF(SPLIT(t, ' '), 10, 2) OVER ()",
    # compositions
    "scaled_sum": "ML.STANDARD_SCALER(x * 2 + y) OVER ()",
    "impute_then_scale": "ML.STANDARD_SCALER(ML.IMPUTER(x, 'mean') OVER ()) OVER ()",
    "impute_then_min_max": "ML.MIN_MAX_SCALER(ML.IMPUTER(x, 'median') OVER ()) OVER ()",
    "cross_buckets": (
        "ML.FEATURE_CROSS(STRUCT(ML.BUCKETIZE(x, [2]) AS xb, "
        "ML.QUANTILE_BUCKETIZE(y, 2) OVER () AS yb))"
    ),
    "label_of_cross": (
        "ML.LABEL_ENCODER(ML.FEATURE_CROSS(STRUCT(c, ML.BUCKETIZE(y, [2]) AS yb)).c_yb, 10, 1) "
        "OVER ()"
    ),
    "one_hot_bucket": "ML.ONE_HOT_ENCODER(ML.BUCKETIZE(y, [1, 3]), 'none', 10, 1) OVER ()",
    "hash_bucket": "ML.HASH_BUCKETIZE(ML.QUANTILE_BUCKETIZE(x, 2) OVER (), 3)",
    "tf_idf_ngrams": "ML.TF_IDF(ML.NGRAMS(SPLIT(t, ' '), [1, 2]), 5, 1) OVER ()",
    "tf_idf_ngrams_defaults": "ML.TF_IDF(ML.NGRAMS(SPLIT(t, ' '), [1, 2])) OVER ()",
    "bag_ngrams": "ML.BAG_OF_WORDS(ML.NGRAMS(SPLIT(t, ' '), 2, '+'), 4, 1) OVER ()",
    "multi_hot_ngrams": "ML.MULTI_HOT_ENCODER(ML.NGRAMS(SPLIT(t, ' '), [1, 2]), 6, 2) OVER ()",
    "normalize_scaled": "ML.NORMALIZER([ML.MIN_MAX_SCALER(y) OVER (), 1.0])",
    "poly_scaled": "ML.POLYNOMIAL_EXPAND(STRUCT(ML.STANDARD_SCALER(y) OVER () AS z, y AS b))",
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("sweep"))
    workspace.load_table("demo.d", _ROWS)
    outputs = ", ".join(f"{sql} AS {name}" for name, sql in CASES.items())
    workspace.sql(
        f"CREATE MODEL demo.all TRANSFORM(i, {outputs}) OPTIONS(model_type='transform_only') "
        "AS SELECT * FROM demo.d"
    )
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def plain(ws: Any) -> dict[int, dict[str, Any]]:
    outputs = ", ".join(f"{sql} AS {name}" for name, sql in CASES.items())
    rows = ws.sql(f"SELECT i, {outputs} FROM demo.d ORDER BY i").to_pylist()
    return {r["i"]: r for r in rows}


@pytest.fixture(scope="module")
def transformed(ws: Any) -> dict[int, dict[str, Any]]:
    rows = ws.sql("SELECT * FROM ML.TRANSFORM(MODEL demo.all, TABLE demo.d)").to_pylist()
    return {r["i"]: r for r in rows}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("name", list(CASES))
def test_transform_gives_the_plain_query_values_on_training_rows(
    plain: dict[int, dict[str, Any]], transformed: dict[int, dict[str, Any]], name: str
) -> None:
    ours = [plain[i][name] for i in sorted(plain)]
    theirs = [transformed[i][name] for i in sorted(plain)]
    assert _same(ours, theirs), (name, ours, theirs)
    assert any(v is not None for v in ours)


# -- plain-SQL values, worked out by hand from the reference's definitions ---------------------


def _column(plain: dict[int, dict[str, Any]], name: str) -> list[Any]:
    return [plain[i][name] for i in sorted(plain)]


def test_tf_idf_of_ngrams_of_split_runs_in_a_plain_query(plain: dict[int, dict[str, Any]]) -> None:
    """The query that failed with a DuckDB internal error; values by the reference's formula."""
    docs = [_ngrams(_WORDS[i % 6].split(" ")) for i in range(12)]
    df: dict[str, int] = {}
    for doc in docs:
        for term in set(doc):
            df[term] = df.get(term, 0) + 1
    top = sorted(sorted(df), key=lambda t: -df[t])[:5]  # most documents, ties alphabetically
    vocabulary = sorted(top)
    for doc, got in zip(docs, _column(plain, "tf_idf_ngrams"), strict=True):
        expected: dict[int, float] = {}
        for term in doc:
            index = vocabulary.index(term) + 1 if term in vocabulary else 0
            count = 12 if index == 0 else df[term]
            expected[index] = expected.get(index, 0.0) + 1 / len(doc) * math.log(
                1 + 12 / (1 + count)
            )
        assert {e["index"]: e["value"] for e in got} == pytest.approx(expected)
    # default frequency_threshold 5: n-grams in fewer than 5 rows are the unknown term
    assert {e["index"] for r in _column(plain, "tf_idf_ngrams_defaults") for e in r} <= {0, 1, 2, 3}


def _ngrams(tokens: list[str], low: int = 1, high: int = 2, sep: str = " ") -> list[str]:
    return [
        sep.join(tokens[i : i + n])
        for i in range(len(tokens))
        for n in range(low, high + 1)
        if i + n <= len(tokens)
    ]


def test_ngrams_bag_of_words_and_multi_hot(plain: dict[int, dict[str, Any]]) -> None:
    assert _column(plain, "ngrams")[2] == ["blue", "blue_fox", "fox", "fox_jumps", "jumps"]
    # bigrams with '+': in 12 rows 'red+fox' and 'red+dog' x2, 'blue+fox', 'fox+jumps' … top 4
    bag = _column(plain, "bag_ngrams")
    assert bag[0] == [{"index": 4, "value": 1.0}] and bag[4] == []  # 'dog' has no bigram
    hot = _column(plain, "multi_hot_ngrams")
    assert all(e["value"] == 1.0 for r in hot for e in r)


def test_imputer_then_scaler_equals_the_two_steps(
    ws: Any, plain: dict[int, dict[str, Any]]
) -> None:
    two_steps = ws.sql(
        "SELECT i, ML.STANDARD_SCALER(v) OVER () AS s FROM (SELECT i, ML.IMPUTER(x, 'mean') "
        "OVER () AS v FROM demo.d) ORDER BY i"
    ).to_pylist()
    assert [r["s"] for r in two_steps] == pytest.approx(_column(plain, "impute_then_scale"))
    assert plain[3]["impute_then_scale"] == pytest.approx(0.0)  # the NULL became the mean


def test_feature_cross_of_buckets_and_hash_of_size_zero(plain: dict[int, dict[str, Any]]) -> None:
    crosses = _column(plain, "cross_buckets")
    assert crosses[0] == {"xb_yb": "bin_1_bin_1"} and crosses[3] == {"xb_yb": None}
    assert set(_column(plain, "cross_3")[0]) == {"c_t", "c_k", "t_k", "c_t_k"}
    hashes = _column(plain, "hash_0")
    assert hashes[0] == hashes[5 - 5] and hashes[5] is None and len(set(hashes) - {None}) == 3
    assert all(isinstance(h, int) for h in hashes if h is not None)
    assert _column(plain, "normalizer_inf")[3] == [1.0, 2 / 3]  # y = 3: max |v| is 3


def test_a_grouped_query_computes_statistics_over_its_groups(ws: Any) -> None:
    rows = ws.sql(
        "SELECT y, ML.MIN_MAX_SCALER(max(x)) OVER () AS s, "
        "ML.TF_IDF(ML.NGRAMS(SPLIT(min(t), ' '), [1, 2]), 3, 1) OVER () AS w "
        "FROM demo.d GROUP BY y ORDER BY y"
    ).to_pylist()
    assert [r["s"] for r in rows] == [1.0, 1.0, 0.0, 0.0]  # max(x) by y: 4.5, 4.5, 2.5, 2.5
    assert all(r["w"] for r in rows)


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # wrong types: named after the reference's arguments
        ("ML.MIN_MAX_SCALER(c) OVER ()", "ML.MIN_MAX_SCALER argument numerical_expression must"),
        ("ML.BUCKETIZE(t, [1])", "ML.BUCKETIZE argument numerical_expression must be"),
        ("ML.LABEL_ENCODER(tags) OVER ()", "ML.LABEL_ENCODER argument string_expression"),
        ("ML.HASH_BUCKETIZE(y, 3)", "ML.HASH_BUCKETIZE argument string_expression must be a STR"),
        ("ML.TF_IDF(t) OVER ()", "ML.TF_IDF argument tokenized_document must be an ARRAY<STRING"),
        ("ML.NGRAMS(t, 2)", "ML.NGRAMS argument array_input must be an ARRAY<STRING>"),
        ("ML.MULTI_HOT_ENCODER(c) OVER ()", "ML.MULTI_HOT_ENCODER argument array_expression"),
        ("ML.NORMALIZER(x)", "ML.NORMALIZER argument array_expression must be an ARRAY of numb"),
        ("ML.IMPUTER(c, 'mean') OVER ()", "ML.IMPUTER argument expression (strategy 'mean')"),
        ("ML.IMPUTER(tags, 'most_frequent') OVER ()", "ML.IMPUTER argument expression must be"),
        ("ML.POLYNOMIAL_EXPAND(STRUCT(c AS a, x AS b))", "ML.POLYNOMIAL_EXPAND argument feature a"),
        ("ML.FEATURE_CROSS(STRUCT(c, tags))", "ML.FEATURE_CROSS argument feature tags must be"),
        ("ML.QUANTILE_BUCKETIZE(x, 2.5) OVER ()", "ML.QUANTILE_BUCKETIZE argument num_buckets"),
        ("ML.ROBUST_SCALER(x, 'iqr') OVER ()", "ML.ROBUST_SCALER argument quantile_range must"),
        ("ML.BUCKETIZE(x, [1], 'yes')", "ML.BUCKETIZE argument exclude_boundaries must be a BOOL"),
        # out of range
        ("ML.QUANTILE_BUCKETIZE(x, 0) OVER ()", "ML.QUANTILE_BUCKETIZE num_buckets must be >= 1"),
        ("ML.ROBUST_SCALER(x, [80, 20]) OVER ()", "ML.ROBUST_SCALER quantile_range must be two"),
        ("ML.HASH_BUCKETIZE(c, -1)", "ML.HASH_BUCKETIZE hash_bucket_size must be >= 0"),
        ("ML.NORMALIZER([x, y], 0.5)", "ML.NORMALIZER p must be >= 1"),
        (
            "ML.POLYNOMIAL_EXPAND(STRUCT(x AS a), 5)",
            "ML.POLYNOMIAL_EXPAND degree must be in [1, 4]",
        ),
        ("ML.FEATURE_CROSS(STRUCT(c, t), 1)", "ML.FEATURE_CROSS degree must be in [2, 4]"),
        ("ML.ONE_HOT_ENCODER(c, 'first') OVER ()", "ML.ONE_HOT_ENCODER drop 'first' is not valid"),
        ("ML.TF_IDF(tags, 1000000) OVER ()", "ML.TF_IDF top_k must be in [1, 999999]"),
        ("ML.BAG_OF_WORDS(tags, 10, -1) OVER ()", "ML.BAG_OF_WORDS frequency_threshold must be"),
        ("ML.NGRAMS(tags, [3, 1])", "ML.NGRAMS range must be"),
        ("ML.BUCKETIZE(x, [1], FALSE, 'names')", "ML.BUCKETIZE output_format 'names' is not"),
        ("ML.FEATURE_CROSS(STRUCT(c, c))", "ML.FEATURE_CROSS has the feature 'c' twice"),
        # OVER (): required, empty, and only on analytic functions
        ("ML.STANDARD_SCALER(x)", "ML.STANDARD_SCALER is an analytic function: write"),
        ("ML.TF_IDF(tags)", "ML.TF_IDF is an analytic function"),
        ("ML.MIN_MAX_SCALER(x) OVER (PARTITION BY c)", "ML.MIN_MAX_SCALER takes an empty OVER"),
        ("ML.LABEL_ENCODER(c) OVER (ORDER BY i)", "ML.LABEL_ENCODER takes an empty OVER"),
        ("ML.NGRAMS(tags, 2) OVER ()", "ML.NGRAMS is not an analytic function"),
        ("ML.MIN_MAX_SCALER(avg(x) OVER ()) OVER ()", "ML.MIN_MAX_SCALER's argument holds a win"),
        # positional arguments only, as the reference writes them
        ("ML.BUCKETIZE(x, [1], exclude_boundaries => TRUE)", "ML.BUCKETIZE takes positional"),
        ("ML.TF_IDF(tags, top_k => 3) OVER ()", "ML.TF_IDF takes positional arguments only"),
        ("ML.IMPUTER(x) OVER ()", "ML.IMPUTER takes 2 arguments, got 1"),
    ],
)
def test_bad_arguments_are_sql_errors_naming_the_function(
    ws: Any, expression: str, message: str
) -> None:
    with pytest.raises(SQLError, match=_escaped(message)):
        ws.sql(f"SELECT {expression} AS v FROM demo.d")
    with pytest.raises(SQLError, match=_escaped(message)):
        ws.sql(
            f"CREATE MODEL demo.bad TRANSFORM({expression} AS v) "
            "OPTIONS(model_type='transform_only') AS SELECT * FROM demo.d"
        )
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def _escaped(text: str) -> str:
    return "".join("\\" + ch if ch in "[]().*+?^$|{}" else ch for ch in text)


def test_nesting_in_a_grouped_query_is_refused_with_the_way_out(ws: Any) -> None:
    with pytest.raises(SQLError, match="ML.MIN_MAX_SCALER's argument holds another analytic"):
        ws.sql(
            "SELECT y, ML.MIN_MAX_SCALER(ML.IMPUTER(max(x), 'mean') OVER ()) OVER () "
            "FROM demo.d GROUP BY y"
        )
