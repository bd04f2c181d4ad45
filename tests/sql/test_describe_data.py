"""ML.DESCRIBE_DATA and ML.TFDV_DESCRIBE through SQL on a real workspace, checked against
NumPy/pandas on a table with every kind of column BigQuery ML describes."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound, SQLError
from shipyard.sql.describe_data import DESCRIBE_DATA_SCHEMA, tfdv_statistics

N = 240
rng = np.random.default_rng(11)


def _kinds() -> pa.Table:
    """Every column kind, with NULLs (and NaN, ±0 and repeats) in each."""
    f = rng.normal(size=N).round(3)
    f[::17] = 0.0
    f_null = np.zeros(N, dtype=bool)
    f_null[3::11] = True
    g = f.copy()  # f with NaN too
    g[5::29] = np.nan
    ints = rng.integers(-5, 20, size=N)
    words = rng.choice(
        ["apple", "kiwi", "fig", "banana", "plum"], size=N, p=[0.4, 0.25, 0.2, 0.1, 0.05]
    )
    word_null = np.zeros(N, dtype=bool)
    word_null[::13] = True
    lengths = rng.integers(0, 5, size=N)
    arrays = [list(rng.normal(size=k).round(2)) if i % 19 else None for i, k in enumerate(lengths)]
    tags = [
        list(rng.choice(["x", "y", "z"], size=k)) if i % 23 else None for i, k in enumerate(lengths)
    ]
    sparse = [
        [{"index": int(j), "value": float(j) / 2} for j in rng.choice(9, size=k, replace=False)]
        for k in lengths
    ]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "f": pa.array(f, mask=f_null),
            "g": pa.array(g, mask=f_null),
            "i": pa.array(ints, type=pa.int64(), mask=ints % 7 == 0),
            "s": pa.array(words, mask=word_null),
            "b": pa.array([bool(x > 0) if i % 9 else None for i, x in enumerate(f)]),
            "d": pa.array([dt.date(2026, 1, 1 + i % 28) for i in range(N)], type=pa.date32()),
            "ts": pa.array(
                [start + dt.timedelta(hours=int(i)) for i in range(N)],
                type=pa.timestamp("us", "UTC"),
            ),
            "st": pa.array(
                [{"a": int(i % 4), "w": str(words[i])} for i in range(N)],
                type=pa.struct([("a", pa.int64()), ("w", pa.string())]),
            ),
            "arr": pa.array(arrays, type=pa.list_(pa.float64())),
            "tags": pa.array(tags, type=pa.list_(pa.string())),
            "sp": pa.array(
                sparse,
                type=pa.list_(pa.struct([("index", pa.int64()), ("value", pa.float64())])),
            ),
            "nothing": pa.array([None] * N, type=pa.float64()),
        }
    )


KINDS = _kinds()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sy.connect(tmp_path_factory.mktemp("describe") / "home") as workspace:
        workspace.load_table("d.kinds", KINDS)
        yield workspace


def _describe(ws: Any, sql: str) -> dict[str, dict[str, Any]]:
    table = ws.sql(sql).to_arrow()
    return {row["name"]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def described(ws: Any) -> dict[str, dict[str, Any]]:
    return _describe(
        ws, "SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, STRUCT(4 AS num_quantiles, 3 AS top_k))"
    )


def _quantiles(values: np.ndarray, n: int) -> list[float]:
    """The exact quantile boundaries Shipyard documents: NumPy's inverted_cdf."""
    return [float(np.quantile(values, i / n, method="inverted_cdf")) for i in range(n + 1)]


# --- ML.DESCRIBE_DATA ---------------------------------------------------------------------


def test_output_columns_rows_and_order(ws: Any) -> None:
    table = ws.sql("SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds)").to_arrow()
    assert table.schema.names == DESCRIBE_DATA_SCHEMA.names
    assert [f.type for f in table.schema] == [f.type for f in DESCRIBE_DATA_SCHEMA]
    # one row per column, in input order, the STRUCT expanded into its fields
    assert table["name"].to_pylist() == [
        "f", "g", "i", "s", "b", "d", "ts", "st.a", "st.w", "arr", "tags", "sp", "nothing"
    ]  # fmt: skip
    assert set(table["num_rows"].to_pylist()) == {N}


def test_numerical_columns_match_numpy(described: dict[str, dict[str, Any]]) -> None:
    for name in ("f", "i"):
        col = KINDS[name].to_pandas()
        present = col.dropna().to_numpy(dtype=float)
        row = described[name]
        assert row["num_nulls"] == col.isna().sum()
        assert row["num_values"] == len(present)
        assert row["num_zeros"] == int((present == 0).sum())
        assert row["mean"] == pytest.approx(present.mean(), rel=1e-12)
        assert row["stdev"] == pytest.approx(col.std(ddof=1), rel=1e-12)  # STDDEV_SAMP
        assert row["median"] == np.quantile(present, 0.5, method="inverted_cdf")
        assert row["quantiles"] == _quantiles(present, 4)
        assert float(row["min"]) == present.min() and float(row["max"]) == present.max()
        # categorical statistics do not apply
        assert row["unique"] is None and row["avg_string_length"] is None
        assert row["top_values"] is None and row["dimension"] is None
        assert row["array_length_quantiles"] is None and row["min_array_length"] is None
    assert described["i"]["min"] == str(int(KINDS["i"].to_pandas().min()))  # "-5", not "-5.0"


def test_nan_follows_bigquery_aggregates(described: dict[str, dict[str, Any]]) -> None:
    row = described["g"]
    col = KINDS["g"].to_numpy(zero_copy_only=False)
    finite = col[~np.isnan(col)]
    assert math.isnan(row["mean"]) and math.isnan(row["stdev"])  # AVG, STDDEV: NaN in, NaN out
    assert row["min"] == "nan" and row["max"] == "nan"  # as BigQuery's MIN and MAX
    assert row["median"] == np.quantile(finite, 0.5, method="inverted_cdf")
    assert row["quantiles"] == _quantiles(finite, 4)  # of the non-NaN values
    assert row["num_nulls"] == KINDS["g"].null_count  # NaN is a value, not a NULL
    assert row["num_values"] == N - KINDS["g"].null_count


def test_categorical_columns_match_pandas(described: dict[str, dict[str, Any]]) -> None:
    col = KINDS["s"].to_pandas()
    row = described["s"]
    counts = col.value_counts()
    assert row["num_nulls"] == col.isna().sum() and row["num_values"] == col.notna().sum()
    assert row["unique"] == col.nunique()
    assert row["avg_string_length"] == pytest.approx(col.dropna().str.len().mean())
    assert row["min"] == col.min() and row["max"] == col.max()
    assert row["top_values"] == [{"value": v, "count": int(c)} for v, c in counts.head(3).items()]
    for key in ("num_zeros", "mean", "stdev", "median", "quantiles", "min_array_length"):
        assert row[key] is None, key


def test_bool_date_timestamp_are_described_as_strings(
    described: dict[str, dict[str, Any]],
) -> None:
    b = described["b"]
    assert {v["value"] for v in b["top_values"]} <= {"true", "false"}
    assert (b["min"], b["max"]) == ("false", "true") and b["unique"] == 2
    assert b["num_nulls"] == KINDS["b"].null_count
    d = described["d"]
    assert (d["min"], d["max"]) == ("2026-01-01", "2026-01-28") and d["unique"] == 28
    assert d["avg_string_length"] == 10
    ts = described["ts"]
    assert ts["min"] == "2026-01-01 00:00:00+00"  # TIMESTAMP in UTC, as BigQuery writes it
    assert ts["unique"] == N


def test_struct_fields_are_expanded(described: dict[str, dict[str, Any]]) -> None:
    a, w = described["st.a"], described["st.w"]
    assert a["quantiles"] == [0.0, 0.0, 1.0, 2.0, 3.0] and a["num_zeros"] == N // 4
    assert w["unique"] == described["s"]["unique"] or w["unique"] == 5
    assert w["num_nulls"] == 0


def test_array_columns_describe_elements_and_lengths(
    described: dict[str, dict[str, Any]],
) -> None:
    arrays = KINDS["arr"].to_pylist()
    present = [a for a in arrays if a is not None]
    lengths = np.array([len(a) for a in present])
    elements = np.array([x for a in present for x in a])
    row = described["arr"]
    assert row["num_nulls"] == arrays.count(None)
    assert row["num_values"] == len(elements)
    assert row["mean"] == pytest.approx(elements.mean())
    assert row["stdev"] == pytest.approx(elements.std(ddof=1))
    assert row["quantiles"] == _quantiles(elements, 4)
    assert row["num_zeros"] == int((elements == 0).sum())
    assert row["min_array_length"] == lengths.min() and row["max_array_length"] == lengths.max()
    assert row["avg_array_length"] == pytest.approx(lengths.mean())
    assert row["total_array_length"] == lengths.sum()
    assert row["array_length_quantiles"] == [int(q) for q in _quantiles(lengths, 10)]
    tags = described["tags"]
    words = pd.Series([x for a in KINDS["tags"].to_pylist() if a for x in a])
    assert tags["unique"] == words.nunique() and tags["num_values"] == len(words)
    assert tags["top_values"] == [
        {"value": v, "count": int(c)} for v, c in words.value_counts().head(3).items()
    ]
    assert tags["mean"] is None and tags["min_array_length"] == 0


def test_sparse_vectors_give_their_dimension(described: dict[str, dict[str, Any]]) -> None:
    row = described["sp"]
    pairs = [p for a in KINDS["sp"].to_pylist() for p in a]
    values = np.array([p["value"] for p in pairs])
    assert row["dimension"] == max(p["index"] for p in pairs) + 1
    assert row["mean"] == pytest.approx(values.mean())
    assert row["num_values"] == len(values)
    assert described["arr"]["dimension"] is None


def test_all_null_column(described: dict[str, dict[str, Any]]) -> None:
    row = described["nothing"]
    assert row["num_nulls"] == N and row["num_values"] == 0 and row["num_zeros"] == 0
    for key in ("min", "max", "mean", "stdev", "median", "quantiles"):
        assert row[key] is None, key


def test_empty_and_one_row_inputs(ws: Any) -> None:
    empty = _describe(ws, "SELECT * FROM ML.DESCRIBE_DATA((SELECT * FROM d.kinds WHERE FALSE))")
    assert len(empty) == 13
    assert all(r["num_rows"] == 0 and r["num_nulls"] == 0 for r in empty.values())
    assert empty["f"]["mean"] is None and empty["f"]["quantiles"] is None
    assert empty["s"]["top_values"] == [] and empty["s"]["unique"] == 0
    one = _describe(
        ws, "SELECT * FROM ML.DESCRIBE_DATA((SELECT 2.5 AS x, 'a' AS s, [1, 2] AS arr))"
    )
    assert one["x"]["quantiles"] == [2.5, 2.5, 2.5] and one["x"]["stdev"] is None
    assert one["x"]["min"] == "2.5" and one["x"]["median"] == 2.5
    assert one["s"]["top_values"] == [{"value": "a", "count": 1}]
    assert one["arr"]["array_length_quantiles"] == [2] * 11


def test_defaults_and_parameters(ws: Any) -> None:
    default = _describe(ws, "SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds)")
    assert len(default["f"]["quantiles"]) == 3  # num_quantiles = 2: min, median, max
    assert len(default["s"]["top_values"]) == 1  # top_k = 1
    assert len(default["arr"]["array_length_quantiles"]) == 11  # num_array_length_quantiles = 10
    tuned = _describe(
        ws,
        "SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, STRUCT(10 AS num_quantiles, "
        "2 AS num_array_length_quantiles, 100 AS top_k))",
    )
    present = KINDS["f"].drop_null().to_numpy()
    assert tuned["f"]["quantiles"] == _quantiles(present, 10)
    assert len(tuned["arr"]["array_length_quantiles"]) == 3
    assert len(tuned["s"]["top_values"]) == 5  # every value, when there are fewer than top_k


@pytest.mark.parametrize(
    ("struct", "words"),
    [
        ("STRUCT(3 AS num_quantile)", ["no parameter 'num_quantile'", "num_quantiles, top_k"]),
        ("STRUCT('3' AS top_k)", ["'top_k' must be an integer", "'3'"]),
        ("STRUCT(2.5 AS num_quantiles)", ["'num_quantiles' must be an integer"]),
        ("STRUCT(0 AS num_quantiles)", ["'num_quantiles' must be in [1, 100,000]", "got 0"]),
        ("STRUCT(10001 AS top_k)", ["'top_k' must be in [1, 10,000]", "got 10001"]),
        ("STRUCT(0 AS num_array_length_quantiles)", ["[1, 100,000]"]),
    ],
)
def test_parameter_errors(ws: Any, struct: str, words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as err:
        ws.sql(f"SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, {struct})")
    for word in words:
        assert word in str(err.value)
    assert ws.sql("SELECT count(*) AS n FROM d.kinds").to_arrow()["n"][0].as_py() == N


def test_bad_relations(ws: Any) -> None:
    with pytest.raises((NotFound, SQLError)) as err:
        ws.sql("SELECT * FROM ML.DESCRIBE_DATA(TABLE d.missing)")
    assert "missing" in str(err.value)
    with pytest.raises(SQLError) as err:
        ws.sql("SELECT * FROM ML.DESCRIBE_DATA((SELECT nope FROM d.kinds))")
    assert "nope" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        ws.sql("SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, TABLE d.kinds)")
    assert "takes 1 relation, got 2" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        ws.sql("SELECT * FROM ML.DESCRIBE_DATA((SELECT 1 AS ok, [[1, 2], [3]] AS nested))")
    assert "column 'nested'" in str(err.value) and "supported column types" in str(err.value)


def test_inside_a_larger_query(ws: Any) -> None:
    """A subquery or a CTE as input; WHERE / ORDER BY / JOIN over the result."""
    out = ws.sql(
        "WITH recent AS (SELECT f, s FROM d.kinds WHERE i > 3) "
        "SELECT name, num_rows FROM ML.DESCRIBE_DATA(TABLE recent) "
        "WHERE num_nulls > 0 ORDER BY name DESC"
    ).to_arrow()
    rows = KINDS.to_pandas().query("i > 3")
    assert out.to_pylist() == [
        {"name": "s", "num_rows": len(rows)},
        {"name": "f", "num_rows": len(rows)},
    ]
    out = ws.sql(
        "SELECT d.name, d.mean FROM ML.DESCRIBE_DATA((SELECT f * 2 AS f2, i FROM d.kinds)) AS d "
        "WHERE d.name = 'f2'"
    ).to_arrow()
    assert out["mean"][0].as_py() == pytest.approx(2 * KINDS["f"].to_pandas().mean())


# --- ML.TFDV_DESCRIBE ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfdv(ws: Any) -> dict[str, Any]:
    table = ws.sql(
        "SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.kinds, STRUCT(5 AS num_histogram_buckets, "
        "4 AS num_quantiles_histogram_buckets, 3 AS num_values_histogram_buckets, "
        "2 AS num_rank_histogram_buckets))"
    ).to_arrow()
    assert table.schema.names == ["dataset_feature_statistics_list"] and table.num_rows == 1
    statistics: dict[str, Any] = json.loads(table.column(0)[0].as_py())
    return statistics


def _features(statistics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in statistics["datasets"][0]["features"]}


def test_tfdv_numeric_feature(tfdv: dict[str, Any]) -> None:
    assert tfdv["datasets"][0]["numExamples"] == str(N)
    feature = _features(tfdv)["g"]
    assert feature["type"] == "FLOAT"
    stats = feature["numStats"]
    col = KINDS["g"].to_numpy(zero_copy_only=False)
    finite = col[~np.isnan(col)]  # NULL and NaN out, as TFDV
    nan = int(np.isnan(col).sum()) - KINDS["g"].null_count
    assert stats["commonStats"]["numMissing"] == str(KINDS["g"].null_count)
    assert stats["commonStats"]["numNonMissing"] == str(N - KINDS["g"].null_count)
    assert stats["commonStats"]["minNumValues"] == stats["commonStats"]["maxNumValues"] == "1"
    assert stats["mean"] == pytest.approx(finite.mean())
    assert stats["stdDev"] == pytest.approx(finite.std())  # TFDV: the population's
    assert stats["min"] == finite.min() and stats["max"] == finite.max()
    assert stats["numZeros"] == str(int((finite == 0).sum()))
    standard, quantiles = stats["histograms"]
    assert standard["type"] == "STANDARD" and quantiles["type"] == "QUANTILES"
    assert standard["numNan"] == quantiles["numNan"] == str(nan)
    assert len(standard["buckets"]) == 5
    assert sum(b["sampleCount"] for b in standard["buckets"]) == len(finite)
    edges = np.linspace(finite.min(), finite.max(), 6)
    counts, _ = np.histogram(finite, bins=edges)
    assert [b["sampleCount"] for b in standard["buckets"]] == counts.tolist()
    assert standard["buckets"][0]["lowValue"] == finite.min()
    assert standard["buckets"][-1]["highValue"] == finite.max()
    assert [b["lowValue"] for b in quantiles["buckets"]] == _quantiles(finite, 4)[:-1]
    assert [b["sampleCount"] for b in quantiles["buckets"]] == [len(finite) / 4] * 4
    assert _features(tfdv)["i"]["type"] == "INT"


def test_tfdv_string_feature(tfdv: dict[str, Any]) -> None:
    feature = _features(tfdv)["s"]
    assert feature["type"] == "STRING"
    stats = feature["stringStats"]
    counts = KINDS["s"].to_pandas().value_counts()
    assert stats["unique"] == str(len(counts))
    assert stats["topValues"] == [
        {"value": v, "frequency": float(c)} for v, c in counts.items()
    ]  # up to 20
    assert stats["rankHistogram"]["buckets"] == [
        {"lowRank": str(r), "highRank": str(r), "label": v, "sampleCount": float(c)}
        for r, (v, c) in enumerate(counts.head(2).items())
    ]
    assert stats["avgLength"] == pytest.approx(KINDS["s"].to_pandas().dropna().str.len().mean())
    assert stats["commonStats"]["numMissing"] == str(KINDS["s"].null_count)


def test_tfdv_array_feature_counts_values_per_example(tfdv: dict[str, Any]) -> None:
    common = _features(tfdv)["arr"]["numStats"]["commonStats"]
    arrays = [a for a in KINDS["arr"].to_pylist() if a is not None]
    lengths = np.array([len(a) for a in arrays])
    assert common["numNonMissing"] == str(len(arrays))
    assert common["numMissing"] == str(N - len(arrays))
    assert common["totNumValues"] == str(lengths.sum())
    assert common["avgNumValues"] == pytest.approx(lengths.mean())
    assert common["maxNumValues"] == str(lengths.max())
    histogram = common["numValuesHistogram"]
    assert histogram["type"] == "QUANTILES" and len(histogram["buckets"]) == 3


def test_tfdv_in_sql_and_as_a_python_function(ws: Any) -> None:
    """The column is JSON: DuckDB's JSON functions read it; tfdv_statistics is the same."""
    out = ws.sql(
        "SELECT json_extract_string(dataset_feature_statistics_list, "
        "'$.datasets[0].features[0].name') AS first "
        "FROM ML.TFDV_DESCRIBE((SELECT f, s FROM d.kinds))"
    ).to_arrow()
    assert out["first"][0].as_py() == "f"
    direct = tfdv_statistics(KINDS.select(["f", "s"]))
    sql = ws.sql("SELECT * FROM ML.TFDV_DESCRIBE((SELECT f, s FROM d.kinds))").to_arrow()
    assert json.loads(sql.column(0)[0].as_py()) == direct


def test_tfdv_empty_input_and_errors(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.TFDV_DESCRIBE((SELECT f, s FROM d.kinds LIMIT 0))").to_arrow()
    statistics = json.loads(out.column(0)[0].as_py())
    assert statistics["datasets"][0]["numExamples"] == "0"
    f = _features(statistics)["f"]["numStats"]
    assert f["commonStats"]["numNonMissing"] == "0" and "mean" not in f
    with pytest.raises(InvalidArgument) as err:
        ws.sql(
            "SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.kinds, STRUCT(1001 AS num_histogram_buckets))"
        )
    assert "'num_histogram_buckets' must be in [1, 1,000], got 1001" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        ws.sql("SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.kinds, STRUCT(3 AS top_k))")
    assert "no parameter 'top_k'" in str(err.value)
    assert "num_rank_histogram_buckets" in str(err.value)


def test_infinities(ws: Any) -> None:
    sql = "(SELECT CAST(x AS DOUBLE) AS x FROM UNNEST(['1', 'inf', '-inf', '2', '2']) AS x)"
    row = _describe(ws, f"SELECT * FROM ML.DESCRIBE_DATA({sql})")["x"]
    assert (row["min"], row["max"]) == ("-inf", "inf")
    assert row["quantiles"] == [-math.inf, 2.0, math.inf] and row["median"] == 2.0
    out = ws.sql(f"SELECT * FROM ML.TFDV_DESCRIBE({sql}, STRUCT(2 AS num_histogram_buckets))")
    stats = json.loads(out.to_arrow().column(0)[0].as_py())
    x = _features(stats)["x"]["numStats"]
    assert (x["min"], x["max"]) == ("-Infinity", "Infinity")  # proto3 JSON's spelling
    standard = x["histograms"][0]["buckets"]  # the finite range [1, 2], ±inf at the edges
    assert [(b["lowValue"], b["highValue"], b["sampleCount"]) for b in standard] == [
        (1.0, 1.5, 2.0),
        (1.5, 2.0, 3.0),
    ]


def test_remote_workspace_gets_the_same_columns(ws: Any) -> None:
    """Over HTTP the JSON column and the ARRAY<STRUCT> columns come back as embedded."""
    from starlette.testclient import TestClient

    from shipyard.client.remote import RemoteWorkspace
    from shipyard.server import create_app

    sql = "SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, STRUCT(3 AS top_k))"
    with TestClient(create_app(ws.services), base_url="http://127.0.0.1:8765") as client:
        remote = RemoteWorkspace("http://127.0.0.1:8765", client=client)
        got, want = remote.sql(sql).to_arrow(), ws.sql(sql).to_arrow()
        assert got.schema == want.schema
        # NaN (the mean of g) equals itself in text
        assert json.dumps(got.to_pylist(), default=str) == json.dumps(want.to_pylist(), default=str)
        tfdv = "SELECT * FROM ML.TFDV_DESCRIBE((SELECT f, s, tags FROM d.kinds))"
        got = remote.sql(tfdv).to_arrow()
        assert json.loads(got.column(0)[0].as_py()) == json.loads(
            ws.sql(tfdv).to_arrow().column(0)[0].as_py()
        )


def test_a_query_input_runs_once(ws: Any) -> None:
    """A random sample is drawn once: every statistic describes the same 60 rows."""
    rows = _describe(
        ws,
        "SELECT * FROM ML.DESCRIBE_DATA((SELECT s, f FROM d.kinds ORDER BY random() LIMIT 60), "
        "STRUCT(10 AS top_k))",
    )
    s, f = rows["s"], rows["f"]
    assert sum(v["count"] for v in s["top_values"]) == s["num_values"] == 60 - s["num_nulls"]
    assert f["quantiles"][0] == float(f["min"]) and f["quantiles"][-1] == float(f["max"])


def test_many_quantiles_sort_once_and_agree(ws: Any) -> None:
    """Past 16 fractions the boundaries come from one sort: the same rule, the same values."""
    many = _describe(
        ws,
        "SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, STRUCT(40 AS num_quantiles, "
        "20 AS num_array_length_quantiles))",
    )
    f = KINDS["f"].drop_null().to_numpy()
    g = KINDS["g"].to_numpy(zero_copy_only=False)
    elements = np.array([x for a in KINDS["arr"].to_pylist() if a for x in a])
    lengths = np.array([len(a) for a in KINDS["arr"].to_pylist() if a is not None])
    assert many["f"]["quantiles"] == _quantiles(f, 40)
    assert many["g"]["quantiles"] == _quantiles(g[~np.isnan(g)], 40)
    assert many["arr"]["quantiles"] == _quantiles(elements, 40)
    assert many["arr"]["array_length_quantiles"] == [int(q) for q in _quantiles(lengths, 20)]
    assert many["f"]["median"] == np.quantile(f, 0.5, method="inverted_cdf")
    assert many["nothing"]["quantiles"] is None and many["s"]["quantiles"] is None
    few = _describe(ws, "SELECT * FROM ML.DESCRIBE_DATA(TABLE d.kinds, STRUCT(8 AS num_quantiles))")
    assert many["f"]["quantiles"][::5] == few["f"]["quantiles"]  # 40 = 8 x 5: same boundaries
