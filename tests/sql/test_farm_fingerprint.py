"""FARM_FINGERPRINT in SQL and ML.HASH_BUCKETIZE with BigQuery's buckets: the reference's
documented values, everywhere SQL runs (plain queries, TRANSFORM fit, ML.TRANSFORM, ML.PREDICT,
serving), TRANSFORMs stored with DuckDB's hash() still working, and bad input."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import farmhash
import pyarrow as pa
import pytest
from sqlglot import exp

import shipyard as sy
from shipyard.errors import SQLError
from shipyard.registry.transform import SqlTransform
from shipyard.sql import preprocessing_functions as pf
from shipyard.warehouse.duck import Warehouse
from shipyard.warehouse.functions import connect

# BigQuery's FARM_FINGERPRINT reference: FARM_FINGERPRINT(CONCAT(CAST(x AS STRING), y,
# CAST(z AS STRING))) of (1, 'foo', true), (2, 'apple', false), (3, '', true)
_REFERENCE_ROWS = [
    (1, "foo", True, -1541654101129638711),
    (2, "apple", False, 2794438866806483259),
    (3, "", True, -4880158226897771312),
]
# Guava's farmHashFingerprint64 and BigQuery agree on 'alphabet' (a published comparison);
# Redshift's farmFingerprint64 documents 'Amazon Redshift'
_OTHER_PUBLISHED = {"alphabet": -2427165924636348523, "Amazon Redshift": 8085098817162212970}
# ML.HASH_BUCKETIZE's reference: ML.HASH_BUCKETIZE(f, 3) of 'a', 'b', 'c', 'd'
_BUCKETS = {"a": 0, "b": 1, "c": 1, "d": 2}
_ABCD = "(SELECT c FROM UNNEST(['a', 'b', 'c', 'd']) AS c)"


def _signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("farm"))
    # the label is BigQuery's bucket, so a model that buckets as BigQuery fits it exactly
    rows = [{"c": c, "label": float(_BUCKETS[c])} for c in "abcd" * 10]
    workspace.load_table("demo.t", rows)
    workspace.sql(
        "CREATE MODEL demo.hashed TRANSFORM(ML.HASH_BUCKETIZE(c, 3) AS h, label) "
        "OPTIONS(model_type='linear_reg') AS SELECT c, label FROM demo.t"
    )
    yield workspace
    workspace.close()


def test_farm_fingerprint_gives_the_references_values(ws: Any) -> None:
    union = " UNION ALL ".join(
        f"SELECT {x} AS x, '{y}' AS y, {str(z).lower()} AS z" for x, y, z, _ in _REFERENCE_ROWS
    )
    out = ws.sql(
        f"WITH example AS ({union}) SELECT *, FARM_FINGERPRINT(CONCAT(CAST(x AS STRING), y, "
        "CAST(z AS STRING))) AS row_fingerprint FROM example ORDER BY x"
    ).to_pylist()
    assert [r["row_fingerprint"] for r in out] == [f for *_, f in _REFERENCE_ROWS]
    for text, value in _OTHER_PUBLISHED.items():
        row = ws.sql(
            f"SELECT FARM_FINGERPRINT('{text}') AS s, FARM_FINGERPRINT(b'{text}') AS b"
        ).to_pylist()[0]
        assert row == {"s": value, "b": value}  # STRING hashes its UTF-8 bytes, as BYTES


def test_farm_fingerprint_of_null_empty_and_unicode(ws: Any) -> None:
    out = ws.sql(
        "SELECT s, FARM_FINGERPRINT(s) AS f FROM UNNEST([CAST(NULL AS STRING), '', 'é', "
        "'日本語', '🙂 x']) AS s WITH OFFSET AS o ORDER BY o"
    ).to_pylist()
    assert out[0] == {"s": None, "f": None}
    assert out[1]["f"] == -7286425919675154353  # FarmHash Fingerprint64 of no bytes
    for row in out[1:]:
        assert row["f"] == _signed(farmhash.fingerprint64(row["s"].encode("utf-8")))
    assert ws.sql("SELECT FARM_FINGERPRINT(NULL) AS f").to_pylist() == [{"f": None}]


def test_hash_bucketize_gives_the_references_buckets_everywhere(ws: Any) -> None:
    plain = ws.sql(
        "SELECT f, ML.HASH_BUCKETIZE(f, 3) AS bucket FROM UNNEST(['a', 'b', 'c', 'd']) AS f"
    ).to_pylist()
    assert {r["f"]: r["bucket"] for r in plain} == _BUCKETS
    transformed = ws.sql(f"SELECT * FROM ML.TRANSFORM(MODEL demo.hashed, {_ABCD})").to_pylist()
    assert [r["h"] for r in transformed] == list(_BUCKETS.values())
    predicted = ws.sql(
        f"SELECT c, predicted_label FROM ML.PREDICT(MODEL demo.hashed, {_ABCD})"
    ).to_pylist()
    assert {r["c"]: r["predicted_label"] for r in predicted} == pytest.approx(
        {c: float(b) for c, b in _BUCKETS.items()}, abs=1e-9
    )
    ws.endpoints.create("hashed")
    ws.endpoints.deploy("hashed", "demo.hashed")
    served = ws.endpoints.predict("hashed", [{"c": c} for c in "abcd"])["predictions"]
    values = [p["predicted_label"] if isinstance(p, dict) else p for p in served]
    assert values == pytest.approx([r["predicted_label"] for r in predicted], rel=1e-12)
    # size 0: the fingerprint itself; NULL stays NULL at every size
    out = ws.sql(
        "SELECT ML.HASH_BUCKETIZE(s, 0) AS h0, FARM_FINGERPRINT(s) AS f, "
        "ML.HASH_BUCKETIZE(s, 9223372036854775807) AS big "
        "FROM UNNEST(['1footrue', CAST(NULL AS STRING)]) AS s WITH OFFSET AS o ORDER BY o"
    ).to_pylist()
    unsigned = farmhash.fingerprint64("1footrue")
    assert out[0] == {
        "h0": _REFERENCE_ROWS[0][3],
        "f": _REFERENCE_ROWS[0][3],
        "big": unsigned % (2**63 - 1),
    }
    assert out[1] == {"h0": None, "f": None, "big": None}


def test_every_shipyard_connection_knows_farm_fingerprint(tmp_path: Path) -> None:
    query = "SELECT farm_fingerprint('1footrue')"
    warehouse = Warehouse(tmp_path / "w.duckdb")
    try:
        cursor = warehouse.cursor()
        assert cursor.execute(query).fetchall() == [(-1541654101129638711,)]
        cursor.close()
    finally:
        warehouse.close()
    con = connect()
    try:
        assert con.execute(query).fetchall() == [(-1541654101129638711,)]
        assert con.cursor().execute(query).fetchall() == [(-1541654101129638711,)]
    finally:
        con.close()
    with pytest.raises(duckdb.CatalogException):  # plain DuckDB does not have it
        plain = duckdb.connect()
        try:
            plain.execute(query)
        finally:
            plain.close()
    # the stored-TRANSFORM path (one DuckDB per thread: serving calls come from many)
    transform = SqlTransform(
        [{"name": "f", "sql": "farm_fingerprint(s)", "inputs": ["s"]}],
        [{"name": "s", "type": "STRING"}],
    )
    rows = pa.table({"s": ["1footrue", None]})
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(transform.apply(rows)))
    worker.start()
    worker.join()
    for table in (transform.apply(rows), *results):
        assert table.column("f").to_pylist() == [-1541654101129638711, None]


def test_two_warehouses_on_one_file_in_one_process(tmp_path: Path) -> None:
    # DuckDB shares one catalog between the connections to a file in a process: the second
    # registration finds the function there, and both connections can call it.
    first = Warehouse(tmp_path / "w.duckdb")
    try:
        second = Warehouse(tmp_path / "w.duckdb")
        try:
            for warehouse in (first, second):
                cursor = warehouse.cursor()
                assert cursor.execute("SELECT farm_fingerprint('1footrue')").fetchall() == [
                    (-1541654101129638711,)
                ]
                cursor.close()
        finally:
            second.close()
    finally:
        first.close()


def _duckdb_hash_bucketize(fn: str, args: list[exp.Expression]) -> pf.Built:
    """ML.HASH_BUCKETIZE as Shipyard wrote it before FARM_FINGERPRINT: DuckDB's hash()."""
    x = pf._string(args)
    size = pf._arg(fn, args, 1, "hash_bucket_size", int, None)
    return pf.Built(lambda _: pf._keep_null(x, f"CAST(hash({x}) % {size} AS BIGINT)"))


def test_a_transform_stored_with_duckdbs_hash_still_loads_and_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = dataclasses.replace(
        pf.PREPROCESSING_FUNCTIONS["HASH_BUCKETIZE"], build=_duckdb_hash_bucketize
    )
    workspace = sy.connect(tmp_path / "home")
    try:
        workspace.load_table("demo.t", [{"c": c, "label": float(i % 7)} for i, c in
                                        enumerate("abcdefg" * 6)])  # fmt: skip
        with monkeypatch.context() as patch:
            patch.setitem(pf.PREPROCESSING_FUNCTIONS, "HASH_BUCKETIZE", old)
            workspace.sql(
                "CREATE MODEL demo.old TRANSFORM(ML.HASH_BUCKETIZE(c, 5) AS h, label) "
                "OPTIONS(model_type='linear_reg') AS SELECT c, label FROM demo.t"
            )
    finally:
        workspace.close()
    workspace = sy.connect(tmp_path / "home")  # loaded afresh, with today's code
    try:
        letters = "(SELECT c FROM UNNEST(['a', 'b', 'g', 'zzz']) AS c)"
        got = workspace.sql(f"SELECT h FROM ML.TRANSFORM(MODEL demo.old, {letters})").to_pylist()
        con = duckdb.connect()
        try:
            want = con.execute(
                "SELECT CAST(hash(c) % 5 AS BIGINT) FROM UNNEST(['a', 'b', 'g', 'zzz']) AS t(c)"
            ).fetchall()
        finally:
            con.close()
        assert [r["h"] for r in got] == [w[0] for w in want]  # DuckDB's buckets, as trained
        predicted = workspace.sql(
            f"SELECT predicted_label FROM ML.PREDICT(MODEL demo.old, {letters})"
        ).to_pylist()
        assert len(predicted) == 4 and all(r["predicted_label"] is not None for r in predicted)
        with pytest.raises(sy.Unsupported, match="no hash operator"):
            workspace.sql(f"EXPORT MODEL demo.old OPTIONS(uri='{tmp_path}/onnx', format='ONNX')")
    finally:
        workspace.close()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "SELECT ML.HASH_BUCKETIZE(s, -1) FROM UNNEST(['a']) AS s",
            "hash_bucket_size must be >= 0",
        ),
        ("SELECT ML.HASH_BUCKETIZE(1.5, 3)", "argument string_expression must be a STRING"),
        ("SELECT ML.HASH_BUCKETIZE('a', 'b')", "hash_bucket_size"),
        ("SELECT FARM_FINGERPRINT(1)", "FARM_FINGERPRINT takes a STRING or BYTES value"),
        (
            "CREATE MODEL demo.bad TRANSFORM(ML.HASH_BUCKETIZE(c, -2) AS h, label) "
            "OPTIONS(model_type='linear_reg') AS SELECT c, label FROM demo.t",
            "hash_bucket_size must be >= 0",
        ),
        (
            "CREATE MODEL demo.bad TRANSFORM(ML.HASH_BUCKETIZE(label, 3) AS h, label) "
            "OPTIONS(model_type='linear_reg') AS SELECT c, label FROM demo.t",
            "argument string_expression must be a STRING",
        ),
    ],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(ws: Any, sql: str, message: str) -> None:
    with pytest.raises(SQLError, match=message):
        ws.sql(sql)
    with pytest.raises(sy.NotFound):
        ws.models.get_version("demo.bad")
    predicted = ws.sql(f"SELECT predicted_label FROM ML.PREDICT(MODEL demo.hashed, {_ABCD})")
    assert predicted.num_rows == 4
