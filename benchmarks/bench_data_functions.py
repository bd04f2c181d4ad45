"""BigQuery ML's functions over data, side by side with what a user would write instead.

Each case runs one Shipyard statement (``ws.sql(…)`` to Arrow, the whole statement: parse,
rewrite, run) against its peer on the same data in the same DuckDB warehouse, interleaved
(ABBA) after a warm-up, and compares the medians:

* ``ML.FEATURES_AT_TIME`` (1M feature rows of 100k entities, one cut-off) vs the window query a
  user writes by hand (``row_number() OVER (PARTITION BY entity ORDER BY ts DESC)``);
* ``ML.ENTITY_FEATURES_AT_TIME`` (300k lookups into the same rows) vs a hand-written DuckDB
  ``ASOF JOIN``;
* ``ML.DESCRIBE_DATA`` (300k x 20 FLOAT64 + a STRING column) vs DuckDB's ``SUMMARIZE``;
* ``ML.VALIDATE_DATA_DRIFT`` (two 300k x 20 tables) vs the scan of both tables to Arrow plus
  NumPy's histograms and the Jensen-Shannon divergence per column (the same metric by hand);
* ``ML.DISTANCE`` / ``ML.LP_NORM`` over 300k pairs of 16-element arrays vs DuckDB's own
  ``list_distance`` / a hand-written norm;
* ``CREATE MODEL … CONTRIBUTION_ANALYSIS`` (1M rows, 4 dimensions of 10/20/30/50 values,
  ``SUM(revenue)``, the default apriori support) vs the ``GROUP BY CUBE`` query with the test
  and control sums as ``FILTER`` aggregates, written by hand.

Run alone: ``python benchmarks/bench_data_functions.py [--rows N] [--reps N]``, or through
``benchmarks/run.py --only data``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import shipyard as sy
from common import fmt_s, interleave, timed

Log = Callable[[str], None]

ENTITIES = 100_000
UPDATES = 10  # feature rows per entity
LOOKUPS = 300_000
COLS = 20


def _setup(ws: Any, rows: int) -> None:
    """The tables every case reads, written by DuckDB directly (not timed)."""
    floats = ", ".join(f"random() AS x{i}" for i in range(COLS))
    shifted = ", ".join(f"random() + {0.05 * i} AS x{i}" for i in range(COLS))
    vector = "list_transform(range(16), lambda i: random() + i * 0)"  # a draw per element
    _duckdb(
        ws,
        f"""
        CREATE SCHEMA IF NOT EXISTS bd;
        CREATE OR REPLACE TABLE bd.features AS
        SELECT 'e' || (range % {ENTITIES}) AS entity_id,
               TIMESTAMP '2026-01-01' + to_days((range // {ENTITIES})::INT)
                 + to_seconds(range % 977) AS feature_timestamp,
               {", ".join(f"random() AS f{i}" for i in range(8))}
        FROM range({ENTITIES * UPDATES});
        CREATE OR REPLACE TABLE bd.lookups AS
        SELECT 'e' || (range % {ENTITIES}) AS entity_id,
               TIMESTAMP '2026-01-01' + to_hours(range % 240) AS time
        FROM range({LOOKUPS});
        CREATE OR REPLACE TABLE bd.base AS
        SELECT {floats}, ['a', 'b', 'c', 'd'][1 + range % 4] AS s FROM range({rows});
        CREATE OR REPLACE TABLE bd.study AS
        SELECT {shifted}, ['a', 'b', 'c', 'd'][1 + range % 3] AS s FROM range({rows});
        CREATE OR REPLACE TABLE bd.sales AS
        SELECT 'r' || (hash(range) % 10) AS region, 'c' || (hash(range + 7) % 20) AS channel,
               'p' || (hash(range + 13) % 30) AS product, CAST(hash(range + 31) % 50 AS BIGINT)
               AS store, (hash(range + 99) % 1000) / 10.0 + 1 AS revenue,
               (hash(range + 5) % 2 = 0) AS is_test
        FROM range(1000000);
        CREATE OR REPLACE TABLE bd.vectors AS
        SELECT {vector} AS a, {vector} AS b FROM range({rows});
        """,
    )()


def _duckdb(ws: Any, sql: str) -> Callable[[], Any]:
    """The peer: DuckDB's own SQL on the warehouse, drained to Arrow as Shipyard's result is."""

    def run() -> Any:
        cur = ws.ctx.warehouse.cursor()
        try:
            result = cur.sql(sql)
            return result.to_arrow_table() if result is not None else None
        finally:
            cur.close()

    return run


def _drift_by_hand(ws: Any, bins: int = 20) -> Callable[[], Any]:
    """Both tables scanned to Arrow, then per numeric column: shared-edge histograms and the
    Jensen-Shannon divergence (base 2) in NumPy; per string column: the L-infinity distance of
    the value frequencies."""
    scan_base = _duckdb(ws, "SELECT * FROM bd.base")
    scan_study = _duckdb(ws, "SELECT * FROM bd.study")

    def run() -> dict[str, float]:
        base, study = scan_base(), scan_study()
        out = {}
        for name in base.column_names:
            a = base[name].to_numpy(zero_copy_only=False)
            b = study[name].to_numpy(zero_copy_only=False)
            if a.dtype.kind == "f":
                lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
                p = np.histogram(a, bins=bins, range=(lo, hi))[0] / len(a)
                q = np.histogram(b, bins=bins, range=(lo, hi))[0] / len(b)
                m = (p + q) / 2
                with np.errstate(divide="ignore", invalid="ignore"):
                    kl_p = np.nansum(np.where(p > 0, p * np.log2(p / m), 0.0))
                    kl_q = np.nansum(np.where(q > 0, q * np.log2(q / m), 0.0))
                out[name] = float((kl_p + kl_q) / 2)
            else:
                values = np.union1d(a, b)
                fa = np.array([(a == v).mean() for v in values])
                fb = np.array([(b == v).mean() for v in values])
                out[name] = float(np.max(np.abs(fa - fb)))
        return out

    return run


CASES: list[tuple[str, str, Callable[[Any], Callable[[], Any]]]] = [
    (
        "ML.FEATURES_AT_TIME (1M rows, 100k entities)",
        "SELECT * FROM ML.FEATURES_AT_TIME(TABLE bd.features, time => TIMESTAMP '2026-01-05')",
        lambda ws: _duckdb(
            ws,
            """SELECT * EXCLUDE (r) FROM (SELECT *, row_number() OVER (PARTITION BY entity_id
               ORDER BY feature_timestamp DESC) AS r FROM bd.features
               WHERE feature_timestamp <= TIMESTAMP '2026-01-05') WHERE r = 1""",
        ),
    ),
    (
        "ML.ENTITY_FEATURES_AT_TIME (300k lookups)",
        "SELECT * FROM ML.ENTITY_FEATURES_AT_TIME(TABLE bd.features, TABLE bd.lookups)",
        lambda ws: _duckdb(
            ws,
            """SELECT f.*, l.time FROM bd.lookups l ASOF JOIN bd.features f
               ON l.entity_id = f.entity_id AND l.time >= f.feature_timestamp""",
        ),
    ),
    (
        "ML.DESCRIBE_DATA (rows x 21) vs SUMMARIZE",
        "SELECT * FROM ML.DESCRIBE_DATA(TABLE bd.base)",
        lambda ws: _duckdb(ws, "SUMMARIZE bd.base"),
    ),
    (
        "ML.VALIDATE_DATA_DRIFT (2 x rows x 21)",
        "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE bd.base, TABLE bd.study)",
        _drift_by_hand,
    ),
    (
        "ML.DISTANCE EUCLIDEAN (rows pairs of 16)",
        "SELECT ML.DISTANCE(a, b, 'EUCLIDEAN') AS d FROM bd.vectors",
        lambda ws: _duckdb(ws, "SELECT list_distance(a, b) AS d FROM bd.vectors"),
    ),
    (
        "CONTRIBUTION_ANALYSIS (1M rows, 4 dimensions)",
        "CREATE OR REPLACE MODEL bd.ca OPTIONS(model_type='CONTRIBUTION_ANALYSIS', "
        "contribution_metric='SUM(revenue)', is_test_col='is_test') AS SELECT * FROM bd.sales",
        lambda ws: _duckdb(
            ws,
            """SELECT region, channel, product, store,
               GROUPING_ID(region, channel, product, store) AS g,
               SUM(revenue) FILTER (WHERE is_test) AS test,
               SUM(revenue) FILTER (WHERE NOT is_test) AS control
               FROM bd.sales GROUP BY CUBE (region, channel, product, store)""",
        ),
    ),
    (
        "ML.LP_NORM p=2 (rows arrays of 16)",
        "SELECT ML.LP_NORM(a, 2.0) AS n FROM bd.vectors",
        lambda ws: _duckdb(
            ws, "SELECT sqrt(list_sum(list_transform(a, lambda x: x * x))) AS n FROM bd.vectors"
        ),
    ),
]


def bench_data_functions(
    ws: Any, *, rows: int, reps: int, warmup: int, log: Log
) -> list[dict[str, Any]]:
    log(f"tables: {ENTITIES * UPDATES:,} feature rows, {LOOKUPS:,} lookups, {rows:,} x {COLS}")
    _setup(ws, rows)
    results = []
    for name, sql, peer in CASES:
        log(name)
        run_peer = peer(ws)
        series = interleave(
            {
                "shipyard": lambda sql=sql: {"total": timed(lambda: ws.sql(sql).to_arrow())[0]},
                "peer": lambda run_peer=run_peer: {"total": timed(run_peer)[0]},
            },
            reps=reps,
            warmup=warmup,
        )
        ours, theirs = series["shipyard.total"], series["peer.total"]
        results.append(
            {
                "case": name,
                "shipyard": ours.to_dict(),
                "peer": theirs.to_dict(),
                "ratio": round(ours.wall / theirs.wall, 2),
            }
        )
    return results


def print_results(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="Functions over data vs the peer a user would write")
    for column in ("case", "Shipyard s", "peer s", "ratio"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        table.add_row(
            r["case"],
            fmt_s(r["shipyard"]["median_s"]),
            fmt_s(r["peer"]["median_s"]),
            f"{r['ratio']:.2f}x",
        )
    console.print(table)
    ratios = [r["ratio"] for r in results]
    console.print(f"median ratio {statistics.median(ratios):.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    console = Console()
    with (
        tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp,
        sy.connect(Path(tmp) / "home") as ws,
    ):
        results = bench_data_functions(
            ws,
            rows=args.rows,
            reps=args.reps,
            warmup=args.warmup,
            log=lambda m: console.log(f"[dim]{m}[/]", highlight=False),
        )
    print_results(console, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
