"""The fixed work of one ML statement, and that cutting it changes no answer: a statement looks
each model up once (and sees one version throughout), the next statement sees a replaced
model, a lookup served from the manifest summary cache equals a fresh service's, the result of
``SELECT * FROM ML.PREDICT(…)`` is never registered with DuckDB yet other queries over ML
functions still read theirs, and a small batch of a tree model (one thread) predicts the bits
the same rows get inside a large batch (the library's thread pool)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import NotFound
from shipyard.registry import predictor as predictor_module
from shipyard.registry.service import ModelService


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("overhead"))
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 3))
    workspace.load_table(
        "demo.t",
        pa.table(
            {
                "a": x[:, 0],
                "b": x[:, 1],
                "c": x[:, 2],
                "y": 2.0 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=3000),
                "label": (x[:, 0] + x[:, 2] > 0).astype(np.int64),
            }
        ),
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "data_split_method='no_split') AS SELECT a, b, c, y FROM demo.t"
    )
    yield workspace
    workspace.close()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model names the registry looked up in the metadata database, in order."""
    seen: list[str] = []
    real = ModelService._get_version

    def counting(self: ModelService, name: str, *args: Any) -> Any:
        seen.append(name)
        return real(self, name, *args)

    monkeypatch.setattr(ModelService, "_get_version", counting)
    return seen


def test_ml_predict_looks_its_model_up_once(ws: Any, lookups: list[str]) -> None:
    out = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.lin, (SELECT a, b, c FROM demo.t))")
    assert out.to_arrow().num_rows == 3000
    assert lookups == ["demo.lin"]  # the ARIMA, TRANSFORM_ONLY, tuning wrappers and load: 1


def test_each_statement_of_a_script_looks_the_model_up_again(ws: Any, lookups: list[str]) -> None:
    ws.sql(
        "SELECT count(*) AS n FROM ML.PREDICT(MODEL demo.lin, (SELECT a, b, c FROM demo.t));"
        "SELECT count(*) AS n FROM ML.PREDICT(MODEL demo.lin, (SELECT a, b, c FROM demo.t))"
    )
    assert lookups == ["demo.lin", "demo.lin"]


def test_a_statement_sees_a_model_replaced_by_the_one_before(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.swap OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y'], data_split_method='no_split') AS SELECT a, y FROM demo.t"
    )
    query = "SELECT * FROM ML.PREDICT(MODEL demo.swap, (SELECT 1.0 AS a, 1.0 AS b))"
    first = ws.sql(query).to_arrow()
    ws.sql(
        "CREATE OR REPLACE MODEL demo.swap OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y'], data_split_method='no_split') AS SELECT b, y FROM demo.t"
    )
    second = ws.sql(query).to_arrow()
    assert first["predicted_y"][0].as_py() == pytest.approx(2.0, abs=0.3)  # from a
    assert second["predicted_y"][0].as_py() == pytest.approx(-1.0, abs=0.3)  # from b
    ws.sql("DROP MODEL demo.swap")
    with pytest.raises(NotFound, match="demo.swap"):
        ws.sql(query)


def test_a_write_inside_a_statement_scope_is_seen_by_the_next_lookup(ws: Any) -> None:
    models = ws._sql.models
    with models.statement_scope():
        first = models.get_version("demo.lin")
        assert models.get_version("demo.lin") is first  # the scope's memo
        models.set_alias("demo.lin", "champion", first.version)
        again = models.get_version("demo.lin")
        assert again is not first and "champion" in again.aliases
        with pytest.raises(NotFound, match="no alias 'missing'"):
            models.get_version("demo.lin", alias="missing")  # errors are never memoised
    models.delete_alias("demo.lin", "champion")
    assert "champion" not in models.get_version("demo.lin").aliases


def test_a_cached_manifest_summary_gives_the_version_a_fresh_service_reads(
    ws: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.cls OPTIONS(model_type='logistic_reg', "
        "input_label_cols=['label'], data_split_method='no_split') AS "
        "SELECT a, b, c, label FROM demo.t"
    )
    cached = ws._sql.models.get_version("demo.cls")  # summary remembered at registration
    fresh = ModelService(ws.ctx).get_version("demo.cls")  # summary decoded from the row
    assert cached == fresh
    assert cached.task == "binary_classification"
    assert [c.name for c in cached.signature.inputs] == ["a", "b", "c"]
    listed = ws._sql.models.versions("demo.cls").items[0]  # the full-row path
    assert listed == fresh


def test_select_star_of_ml_predict_and_queries_over_it_agree(ws: Any) -> None:
    inner = "ML.PREDICT(MODEL demo.lin, (SELECT a, b, c FROM demo.t))"
    direct = ws.sql(f"SELECT * FROM {inner}").to_arrow()
    through_duckdb = ws.sql(f"SELECT * FROM {inner} ORDER BY a").to_arrow()
    summed = ws.sql(f"SELECT sum(predicted_y) AS s FROM {inner}").to_arrow()
    nested = ws.sql(
        f"SELECT count(*) AS n FROM ML.PREDICT(MODEL demo.lin, (SELECT a, b, c FROM {inner}))"
    ).to_arrow()
    assert direct.sort_by("a").equals(through_duckdb)
    assert summed["s"][0].as_py() == pytest.approx(float(np.sum(direct["predicted_y"])))
    assert nested["n"][0].as_py() == 3000


def test_a_small_tree_batch_predicts_the_bits_of_a_large_one(
    ws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.trees OPTIONS(model_type='boosted_tree_classifier', "
        "input_label_cols=['label'], max_iterations=5, data_split_method='no_split') AS "
        "SELECT a, b, c, label FROM demo.t"
    )
    few = predictor_module._FEW_ROWS
    predictor = ws._sql.models.load("demo.trees")
    rows = ws.sql("SELECT a, b, c FROM demo.t").to_arrow()
    assert rows.num_rows > few
    large = predictor.predict(rows)  # the library's default pool
    small = predictor.predict(rows.slice(0, 10))  # one thread
    assert predictor._one_thread is not None  # the copy was made (once) and used
    assert small.equals(large.slice(0, 10))
    sql_rows = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.trees, (SELECT a, b, c FROM demo.t LIMIT 10))"
    ).to_arrow()
    assert sql_rows.equals(large.slice(0, 10))
    # the original booster keeps its own thread setting: a large batch still uses it
    monkeypatch.setattr(predictor_module, "_FEW_ROWS", 0)
    assert predictor.predict(rows.slice(0, 10)).equals(small)


def test_a_script_run_again_is_parsed_from_the_cache_and_runs_the_same(ws: Any) -> None:
    # TEMP models rewrite the statements in place: a cached parse must stay pristine
    script = """
        CREATE TEMP MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'],
          data_split_method='no_split') AS SELECT a, y FROM demo.t;
        SELECT count(*) AS n, sum(predicted_y) AS s
          FROM ML.PREDICT(MODEL m, (SELECT a FROM demo.t))
        """
    first = ws.sql(script).to_arrow()
    second = ws.sql(script).to_arrow()
    assert first.equals(second) and first["n"][0].as_py() == 3000
    assert ws._sql._parsed.get(script) is not None
    with pytest.raises(sy.SQLError, match="syntax error"):
        ws.sql("SELECT * FROM")
    assert "SELECT * FROM" not in ws._sql._parsed  # a failed parse is not kept
    with pytest.raises(sy.SQLError, match="syntax error"):
        ws.sql("SELECT * FROM")  # and fails again in the same words
