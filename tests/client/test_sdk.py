"""The SDK as a user meets it, embedded and remote (the ``ws`` fixture runs both)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import shipyard as sy


def _frame(n: int = 240, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 6, n)
    z = rng.normal(0, 1, n)
    color = rng.choice(["red", "green", "blue"], n)
    logit = 2.0 * (x - 3) + 0.5 * z + np.where(color == "red", 1.0, 0.0)
    y = (logit + rng.logistic(0, 0.3, n) > 0).astype(int)
    return pd.DataFrame({"x": x, "z": z, "color": color, "y": y, "amount": 3 * x + z})


@pytest.fixture
def t(ws: Any) -> Any:
    ws.load_table("demo.t", _frame())
    return ws


# -- tables ---------------------------------------------------------------------------------


def test_load_table_from_every_format(ws: Any, tmp_path: Path) -> None:
    frame = _frame(50)
    paths = {
        "csv": tmp_path / "t.csv",
        "parquet": tmp_path / "t.parquet",
        "jsonl": tmp_path / "t.jsonl",
        "json": tmp_path / "t.json",
        "xlsx": tmp_path / "t.xlsx",
    }
    frame.to_csv(paths["csv"], index=False)
    pq.write_table(pa.Table.from_pandas(frame), paths["parquet"])
    frame.to_json(paths["jsonl"], orient="records", lines=True)
    paths["json"].write_text(json.dumps(frame.to_dict(orient="records")))
    frame.to_excel(paths["xlsx"], index=False)
    for fmt, path in paths.items():
        info = ws.load_table(f"files.t_{fmt}", path)
        assert info.num_rows == 50, fmt
        assert [c.name for c in info.columns] == list(frame.columns), fmt
    info = ws.load_table("files.t_arrow", pa.Table.from_pandas(frame))
    assert info.num_rows == 50
    names = [t.name for t in ws.tables.list(dataset="files").items]
    assert names == sorted(f"files.t_{k}" for k in [*paths, "arrow"])


def test_table_versions_follow_content(ws: Any) -> None:
    first = ws.load_table("demo.v", _frame(20))
    same = ws.load_table("demo.v", _frame(20))
    assert first.version == same.version == 1
    changed = ws.load_table("demo.v", _frame(20), mode="append")
    assert changed.version == 2 and changed.num_rows == 40
    ws.sql("INSERT INTO demo.v (x, z, color, y, amount) VALUES (1, 1, 'red', 1, 3)")
    assert ws.tables.get("demo.v").version == 3
    assert [v.version for v in ws.tables.versions("demo.v")] == [1, 2, 3]


def test_bad_file_is_named_and_loads_nothing(ws: Any, tmp_path: Path) -> None:
    ws.load_table("demo.keep", _frame(10))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(sy.InvalidArgument, match="broken.parquet"):
        ws.load_table("demo.keep", broken)
    assert ws.tables.get("demo.keep").num_rows == 10
    with pytest.raises(sy.InvalidArgument, match="broken.parquet"):
        ws.load_table("demo.fresh", broken)
    with pytest.raises(sy.NotFound):
        ws.tables.get("demo.fresh")
    odd = tmp_path / "data.unknown_ext"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(sy.InvalidArgument, match="format"):
        ws.load_table("demo.x", odd)
    with pytest.raises(sy.NotFound, match="missing.csv"):
        ws.load_table("demo.x", tmp_path / "missing.csv")


def test_preview_and_describe(t: Any) -> None:
    info = t.tables.get("demo.t")
    assert info.num_rows == 240
    assert {c.name: c.type for c in info.columns}["color"] == "VARCHAR"
    rows = t.tables.preview("demo.t", limit=5)
    assert rows.num_rows == 5
    with pytest.raises(sy.NotFound, match=r"demo\.nope"):
        t.tables.get("demo.nope")


# -- SQL ------------------------------------------------------------------------------------


def test_plain_sql_and_project_prefix(t: Any) -> None:
    a = t.sql("SELECT count(*) AS n FROM demo.t").to_pylist()
    b = t.sql("SELECT count(*) AS n FROM `my-project.demo.t`").to_pylist()
    assert a == b == [{"n": 240}]
    frame = t.sql(
        "SELECT color, count(*) AS n FROM demo.t GROUP BY color ORDER BY color"
    ).to_pandas()
    assert list(frame["color"]) == ["blue", "green", "red"]


def test_malformed_sql_points_at_the_error(ws: Any) -> None:
    with pytest.raises(sy.SQLError) as info:
        ws.sql("SELECT *\nFROM demo.t WHERE (x >")
    assert info.value.line == 2
    assert info.value.column is not None


def test_unknown_table_is_not_found(ws: Any) -> None:
    with pytest.raises(sy.ShipyardError, match="nope"):
        ws.sql("SELECT * FROM demo.nope")


def test_create_model_predict_evaluate_logistic(t: Any) -> None:
    result = t.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='logistic_reg', input_label_cols=['y']) "
        "AS SELECT x, z, color, y FROM demo.t"
    )
    assert result.statement_type == "CREATE_MODEL"
    evaluation = t.sql("SELECT * FROM ML.EVALUATE(MODEL demo.m)").to_pandas()
    assert list(evaluation.columns) == [
        "precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc",
    ]  # fmt: skip
    assert evaluation["accuracy"][0] > 0.85
    rows = t.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.m, (SELECT * FROM demo.t WHERE x > 3)) ORDER BY x"
    ).to_arrow()
    assert rows.column_names[:2] == ["predicted_y", "predicted_y_probs"]
    assert {"x", "z", "color", "y", "amount"} <= set(rows.column_names)
    assert (
        rows.num_rows == t.sql("SELECT count(*) AS n FROM demo.t WHERE x > 3").to_pylist()[0]["n"]
    )
    xs = rows["x"].to_pylist()
    assert xs == sorted(xs)
    probs = rows["predicted_y_probs"].to_pylist()[0]
    assert {p["label"] for p in probs} == {0, 1}
    assert sum(p["prob"] for p in probs) == pytest.approx(1.0)


def test_evaluate_with_input_and_threshold(t: Any) -> None:
    t.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='logistic_reg', input_label_cols=['y']) "
        "AS SELECT x, z, color, y FROM demo.t"
    )
    default = t.sql("SELECT * FROM ML.EVALUATE(MODEL demo.m, TABLE demo.t)").to_pylist()[0]
    strict = t.sql(
        "SELECT * FROM ML.EVALUATE(MODEL demo.m, (SELECT * FROM demo.t), STRUCT(0.9 AS threshold))"
    ).to_pylist()[0]
    assert strict["precision"] >= default["precision"]
    assert strict["recall"] <= default["recall"]
    assert strict["roc_auc"] == pytest.approx(default["roc_auc"])


def test_predict_inside_larger_queries(t: Any) -> None:
    t.sql(
        "CREATE MODEL demo.reg OPTIONS(model_type='linear_reg', input_label_cols=['amount']) "
        "AS SELECT x, z, amount FROM demo.t"
    )
    where = t.sql(
        "SELECT count(*) AS n FROM ML.PREDICT(MODEL demo.reg, TABLE demo.t) "
        "WHERE predicted_amount > 9"
    ).to_pylist()[0]["n"]
    assert 0 < where < 240
    grouped = t.sql(
        "SELECT color, avg(predicted_amount) AS p FROM ML.PREDICT(MODEL demo.reg, TABLE demo.t) "
        "GROUP BY color ORDER BY color"
    ).to_pylist()
    assert [g["color"] for g in grouped] == ["blue", "green", "red"]
    cte = t.sql(
        "WITH hi AS (SELECT * FROM demo.t WHERE x > 4), "
        "p AS (SELECT * FROM ML.PREDICT(MODEL demo.reg, TABLE hi)) "
        "SELECT count(*) AS n, min(x) AS lo FROM p"
    ).to_pylist()[0]
    assert cte["lo"] > 4
    joined = t.sql(
        "SELECT a.x, p.predicted_amount FROM demo.t AS a "
        "JOIN ML.PREDICT(MODEL demo.reg, (SELECT x, z FROM demo.t)) AS p ON a.x = p.x "
        "ORDER BY a.x LIMIT 3"
    ).to_pylist()
    assert len(joined) == 3 and all("predicted_amount" in r for r in joined)
    t.sql(
        "CREATE TABLE demo.scored AS SELECT x, predicted_amount "
        "FROM ML.PREDICT(MODEL demo.reg, TABLE demo.t)"
    )
    assert t.tables.get("demo.scored").num_rows == 240
    r2 = t.sql("SELECT r2_score FROM ML.EVALUATE(MODEL demo.reg)").to_pylist()[0]["r2_score"]
    assert r2 > 0.95


def test_boosted_trees_multiclass_string_labels(t: Any) -> None:
    t.sql(
        "CREATE MODEL demo.tree OPTIONS(model_type='boosted_tree_classifier', "
        "input_label_cols=['color'], max_iterations=5) AS SELECT x, z, color FROM demo.t"
    )
    rows = t.sql("SELECT * FROM ML.PREDICT(MODEL demo.tree, TABLE demo.t)").to_arrow()
    assert rows.schema.field("predicted_color").type == pa.string()
    labels = {p["label"] for p in rows["predicted_color_probs"][0].as_py()}
    assert labels == {"red", "green", "blue"}
    t.sql(
        "CREATE MODEL demo.treg OPTIONS(model_type='boosted_tree_regressor', "
        "input_label_cols=['amount']) AS SELECT x, z, amount FROM demo.t"
    )
    metrics = t.sql("SELECT * FROM ML.EVALUATE(MODEL demo.treg)").to_pylist()[0]
    assert metrics["r2_score"] > 0.8


def test_create_model_errors_are_clear(t: Any) -> None:
    with pytest.raises(sy.InvalidArgument, match="nope") as info:
        t.sql(
            "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['nope']) "
            "AS SELECT * FROM demo.t"
        )
    assert "amount" in str(info.value)  # lists the columns there are
    with pytest.raises(sy.ShipyardError, match="(?i)kmeans_plus_plus_typo"):
        t.sql("CREATE MODEL demo.m OPTIONS(model_type='kmeans_plus_plus_typo') AS SELECT 1 AS x")
    with pytest.raises(sy.InvalidArgument, match="not_an_option"):
        t.sql(
            "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['amount'], "
            "not_an_option=3) AS SELECT * FROM demo.t"
        )
    with pytest.raises(sy.NotFound, match="missing_table"):
        t.sql(
            "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
            "AS SELECT * FROM demo.missing_table"
        )
    with pytest.raises(sy.NotFound):
        t.models.get("demo.m")  # nothing half-created


def test_create_replace_if_not_exists_and_drop(t: Any) -> None:
    create = (
        "CREATE {how} MODEL {guard} demo.m OPTIONS(model_type='linear_reg', "
        "input_label_cols=['amount']) AS SELECT x, amount FROM demo.t"
    )
    t.sql(create.format(how="", guard=""))
    with pytest.raises(sy.AlreadyExists, match=r"demo\.m"):
        t.sql(create.format(how="", guard=""))
    t.sql(create.format(how="", guard="IF NOT EXISTS"))
    assert t.models.get("demo.m").latest_version == 1
    t.sql(create.format(how="OR REPLACE", guard=""))
    model = t.models.get("demo.m")
    assert model.latest_version == 2 and model.aliases["default"] == 2
    t.sql("DROP MODEL demo.m")
    with pytest.raises(sy.NotFound):
        t.sql("SELECT * FROM ML.EVALUATE(MODEL demo.m)")
    with pytest.raises(sy.NotFound, match=r"demo\.m"):
        t.sql("DROP MODEL demo.m")
    t.sql("DROP MODEL IF EXISTS demo.m")


def test_registry_versions_aliases_and_predictor(t: Any) -> None:
    stmt = (
        "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='logistic_reg', "
        "input_label_cols=['y']) AS SELECT x, z, color, y FROM demo.t"
    )
    t.sql(stmt)
    t.sql(stmt)
    versions = t.models.versions("demo.m").items
    assert [v.version for v in versions] == [2, 1]
    first = t.models.get_version("demo.m", 1)
    assert first.lineage.statement and "CREATE OR REPLACE MODEL" in first.lineage.statement
    assert first.lineage.input_tables[0]["name"] == "demo.t"
    assert first.lineage.job_id
    t.models.set_alias("demo.m", "champion", 1)
    assert t.models.get_version("demo.m", alias="champion").version == 1
    with pytest.raises(sy.FailedPrecondition):
        t.models.delete_alias("demo.m", "default")
    with pytest.raises(sy.NotFound):
        t.models.get_version("demo.m", 7)
    predictor = t.models.load("demo.m", alias="champion")
    data = t.sql("SELECT x, z, color FROM demo.t ORDER BY x LIMIT 20").to_arrow()
    direct = predictor.predict(data)
    via_sql = t.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.m, "
        "(SELECT x, z, color FROM demo.t ORDER BY x LIMIT 20))"
    ).to_arrow()
    # default points at v2; both versions were trained on the same data with the same options
    assert direct["predicted_y"].to_pylist() == via_sql["predicted_y"].to_pylist()
    manifest = t.models.manifest("demo.m", 1)
    assert manifest.flavor == "sklearn" and manifest.files
    assert [c.name for c in manifest.signature.inputs] == ["x", "z", "color"]


def test_jobs_record_every_statement(t: Any) -> None:
    t.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='boosted_tree_regressor', "
        "input_label_cols=['amount']) AS SELECT x, z, amount FROM demo.t"
    )
    jobs = t.jobs.list(kind="query").items
    assert jobs[0].state == "SUCCEEDED" and "CREATE MODEL" in (jobs[0].description or "")
    assert t.jobs.get(jobs[0].id).progress == 1.0
    job = t.submit_sql("SELECT count(*) AS n FROM demo.t")
    done = t.jobs.wait(job.id, timeout=30)
    assert done.state == "SUCCEEDED"
    assert t.jobs.result(job.id).to_pylist() == [{"n": 240}]
    with pytest.raises(sy.NotFound):
        t.jobs.get("no-such-job")


def test_rows_that_do_not_make_a_table_are_refused(ws: Any) -> None:
    with pytest.raises(sy.InvalidArgument, match="table"):
        ws.load_table("demo.mixed", [{"a": 1}, {"a": "one"}])
    with pytest.raises(sy.InvalidArgument, match="empty"):
        ws.load_table("demo.none", [])
    with pytest.raises(sy.NotFound):
        ws.tables.get("demo.mixed")


def test_lineage_sees_every_write_between_trainings(t: Any) -> None:
    create = (
        "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='linear_reg', "
        "input_label_cols=['amount']) AS SELECT x, amount FROM demo.t"
    )
    t.sql(create)
    t.sql(create)  # nothing changed in between: the same table version
    t.sql("UPDATE demo.t SET amount = amount + 1 WHERE x > 5")
    t.sql(create)
    seen = [t.models.get_version("demo.m", v).lineage.input_tables[0] for v in (1, 2, 3)]
    assert seen[0]["version"] == seen[1]["version"]
    assert seen[2]["version"] == seen[1]["version"] + 1
    assert seen[2]["fingerprint"] != seen[1]["fingerprint"]
