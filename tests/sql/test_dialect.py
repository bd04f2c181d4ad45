"""Golden fixtures for the BigQuery ML dialect, in the style of sqlglot's: one case per line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard as sy
from shipyard.sql.dialect import MLFunction, ShipyardBigQuery, parse, to_duckdb

FIXTURES = Path(__file__).parent / "fixtures"


def _lines(name: str) -> list[str]:
    text = (FIXTURES / name).read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("--")]


def _pairs(name: str) -> Iterator[tuple[str, str]]:
    for line in _lines(name):
        left, right = line.rsplit("=>", 1)
        yield left.strip(), right.strip()


@pytest.mark.parametrize("sql", _lines("identity.sql"))
def test_identity(sql: str) -> None:
    (statement,) = parse(sql)
    assert statement.sql(dialect=ShipyardBigQuery) == sql


@pytest.mark.parametrize(("bigquery", "duckdb"), list(_pairs("duckdb.sql")))
def test_transpile_to_duckdb(bigquery: str, duckdb: str) -> None:
    (statement,) = parse(bigquery)
    assert to_duckdb(statement) == duckdb


def test_ml_functions_parse_into_their_own_node() -> None:
    (statement,) = parse("SELECT * FROM ML.EVALUATE(MODEL `p.demo.m`, TABLE demo.t)")
    (node,) = statement.find_all(MLFunction)
    assert node.function == "EVALUATE"
    assert node.args["expression"] is not None


def test_syntax_errors_carry_position() -> None:
    with pytest.raises(sy.SQLError) as info:
        parse("SELECT 1,\n  2 +\n FROM t WHERE")
    assert (info.value.line, info.value.column) != (None, None)
    assert info.value.highlight


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("dialect"))
    workspace.load_table("demo.t", [{"x": float(i), "y": 2.0 * i + 1} for i in range(30)])
    workspace.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    yield workspace
    workspace.close()


@pytest.mark.parametrize(("sql", "expected"), list(_pairs("errors.sql")))
def test_errors(ws: Any, sql: str, expected: str) -> None:
    cls_name, fragment = (part.strip() for part in expected.split("|", 1))
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(getattr(sy, cls_name)) as info:
        ws.sql(sql)
    assert fragment.lower() in str(info.value).lower()
    assert [m.name for m in ws.models.list().items] == before  # state left intact
