"""Golden results of every model type and ML function (tests/sql/fixtures/models.sql, then
each tests/sql/fixtures/golden_*.sql in name order: one feature's cases per file).

Each case is one statement on small deterministic tables, with the output columns as BigQuery ML
documents them (name and type) and, where the answer is determined by the data alone (an exact
linear fit, well-separated clusters, a custom initialisation), the rows themselves. The
statements that are not queries (CREATE, ALTER and DROP MODEL) run first, in file order, in one
workspace; each query is then a test of its own.

Regenerate the expectations after a deliberate change with
``python tests/sql/test_golden_models.py`` (it rewrites each case's columns and keeps the rows of
the cases that pin them, or fails where they changed), then read the diff.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import shipyard as sy

_DIR = Path(__file__).parent / "fixtures"
FIXTURES = [_DIR / "models.sql", *sorted(_DIR.glob("golden_*.sql"))]
RTOL = 1e-6


def _setup_tables(ws: Any) -> None:
    """The tables every case reads: exact by construction."""
    reg = []
    for i in range(60):
        x1, x2 = (i % 10) / 2.0, (i * 7 % 11) / 4.0
        c = ("a", "b", "c")[i % 3]
        y = 2 * x1 - 3 * x2 + (1.0 if c == "a" else 0) + 5
        reg.append({"x1": x1, "x2": x2, "c": c, "y": y})
    ws.load_table("g.reg", reg)
    cls = [
        {"x1": float(i % 13), "x2": float(i * 5 % 13), "label": int(i % 13 > i * 5 % 13)}
        for i in range(80)
    ]
    ws.load_table("g.cls", cls)
    centres = [(0.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    offsets = [(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)]
    pts = [
        {"id": 4 * k + j, "a": cx + dx, "b": cy + dy}
        for k, (cx, cy) in enumerate(centres)
        for j, (dx, dy) in enumerate(offsets)
    ]
    ws.load_table("g.pts", pts)
    ratings = [
        {"user": u, "item": i, "rating": float(1 + (u * 3 + i * 5) % 5)}
        for u in range(12)
        for i in range(8)
        if (u + i) % 3
    ]
    ws.load_table("g.ratings", ratings)
    ts = []
    for sid in ("s1", "s2"):
        for d in range(56):
            season = (0.0, 1.0, 2.0, 1.5, 0.5, -1.0, -2.0)[d % 7]
            level = 10.0 if sid == "s1" else 20.0
            ts.append(
                {
                    "day": f"2026-01-{1 + d:02d}" if d < 31 else f"2026-02-{d - 30:02d}",
                    "sid": sid,
                    "v": level + 0.1 * d + season + ((d * 37 % 11) - 5) / 20.0,
                }
            )
    ws.load_table("g.ts", ts)
    ws.sql("CREATE OR REPLACE TABLE g.ts AS SELECT CAST(day AS DATE) AS day, sid, v FROM g.ts")


def cases() -> list[tuple[str, str, str | None]]:
    """(statement, columns, rows JSON or None) for each case line."""
    out = []
    for line in (line for fixture in FIXTURES for line in fixture.read_text().splitlines()):
        if not line.strip() or line.startswith("--"):
            continue
        statement, _, expected = line.rpartition(" => ")  # a statement may hold " => "
        columns, _, rows = expected.partition(" | ")
        out.append((statement.strip(), columns.strip(), rows.strip() or None))
    return out


def is_query(statement: str) -> bool:
    """Queries are the test cases; every other statement (CREATE, ALTER, DROP) is set-up."""
    return statement.upper().startswith("SELECT")


def bq_type(t: pa.DataType) -> str:
    """An Arrow type in BigQuery's words."""
    if getattr(t, "extension_name", None) == "arrow.json":  # DuckDB's JSON
        return "JSON"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "FLOAT64"
    if pa.types.is_integer(t):
        return "INT64"
    if pa.types.is_boolean(t):
        return "BOOL"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "STRING"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"ARRAY<{bq_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "STRUCT<" + ", ".join(f"{f.name} {bq_type(f.type)}" for f in t) + ">"
    return str(t).upper()


def columns_of(table: pa.Table) -> str:
    return ", ".join(f"{f.name} {bq_type(f.type)}" for f in table.schema)


def rows_of(table: pa.Table) -> list[list[Any]]:
    return json.loads(json.dumps([list(r.values()) for r in table.to_pylist()], default=str))


def close(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        if got is None or want is None:
            return got is want
        return math.isclose(float(got), float(want), rel_tol=RTOL, abs_tol=1e-9)
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(close(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, dict):
        same_keys = isinstance(got, dict) and got.keys() == want.keys()
        return same_keys and all(close(got[k], want[k]) for k in want)
    return bool(got == want)


CASES = cases()
QUERIES = [case for case in CASES if is_query(case[0])]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The tables, then every statement that is not a query, in file order: the models."""
    with sy.connect(tmp_path_factory.mktemp("golden") / "home") as workspace:
        _setup_tables(workspace)
        for statement, columns, _ in CASES:
            if not is_query(statement):
                assert columns_of(workspace.sql(statement).to_arrow()) == columns, statement
        yield workspace


@pytest.mark.slow
@pytest.mark.parametrize(
    ("statement", "columns", "rows"), QUERIES, ids=[f"{i:02d}" for i in range(len(QUERIES))]
)
def test_golden(ws: Any, statement: str, columns: str, rows: str | None) -> None:
    table = ws.sql(statement).to_arrow()
    assert columns_of(table) == columns
    if rows is not None:
        assert close(rows_of(table), json.loads(rows)), rows_of(table)


def regenerate() -> None:  # pragma: no cover - a maintenance tool
    import tempfile

    with tempfile.TemporaryDirectory() as home, sy.connect(Path(home) / "home") as workspace:
        _setup_tables(workspace)
        for fixture in FIXTURES:
            fixture.write_text("\n".join(_regenerated(workspace, fixture)) + "\n")


def _regenerated(workspace: Any, fixture: Path) -> list[str]:  # pragma: no cover
    out = []
    for line in fixture.read_text().splitlines():
        if not line.strip() or line.startswith("--"):
            out.append(line)
            continue
        statement, _, expected = line.rpartition(" => ")  # a statement may hold " => "
        _, _, rows = expected.partition(" | ")
        try:
            table = workspace.sql(statement.strip()).to_arrow()
        except Exception as exc:
            print(f"failed: {statement.strip()}\n  {type(exc).__name__}: {exc}")
            out.append(line)
            continue
        new = f"{statement.strip()} => {columns_of(table)}"
        if rows.strip():
            got = rows_of(table)
            if not close(got, json.loads(rows)):
                print(f"rows changed: {statement.strip()}\n  was {rows}\n  now {got}")
            new += " | " + json.dumps(got)
        out.append(new)
    return out


if __name__ == "__main__":
    sys.exit(regenerate())
