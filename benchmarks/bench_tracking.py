"""Experiment tracking, side by side with MLflow: both on SQLite, same machine, one run.

1. Log metric points from one run:
   a. one at a time: Shipyard's fluent ``sy.log_metric`` (queued, sent by the background thread;
      end to end from ``start_run`` to the final flush in ``end_run``) vs ``mlflow.log_metric``
      (synchronous, MLflow's default). MLflow is slow here, so it logs fewer points (default
      3,000) and both sides are reported in points/s;
   b. batched: 100 batches of 1,000 points through ``ws.runs.log_batch`` vs
      ``MlflowClient.log_batch`` (MLflow refuses more than 1,000 metrics a batch). Shipyard's
      single 100,000-point call is shown too, for information.
2. Create 10,000 runs, each with two params and two metrics (``ws.runs.create`` +
   ``ws.runs.log_batch`` vs ``MlflowClient.create_run`` + ``log_batch``), runs/s; then search them
   with ``metrics.auc > 0.9 and params.max_depth = '6'`` (p50/p99 over 100 searches per side,
   interleaved, pages of 1,000), and page through all 10,000 runs once (pages of 1,000).
3. Fetch the batched run's 100,000-point history: ``ws.runs.metric_history`` (every page of
   10,000) vs ``MlflowClient.get_metric_history``.

Targets (issue 4): ≥ 20x MLflow's logging throughput; p99 search ≤ 100 ms at 10,000 runs.

Run alone: ``python benchmarks/bench_tracking.py [--runs N] [--points N] [--mlflow-single N]``,
or through ``benchmarks/run.py --only tracking``.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import shipyard as sy

POINTS = 100_000
MLFLOW_SINGLE = 3_000
RUNS = 10_000
SEARCHES = 100
BATCH = 1_000  # MLflow's limit on metrics per log_batch
PAGE = 1_000  # the largest page on both sides
HISTORY_PAGE = 10_000  # Shipyard's largest metric-history page
FILTER = "metrics.auc > 0.9 and params.max_depth = '6'"
LOGGING_TARGET = 20.0  # x MLflow's throughput
SEARCH_P99_TARGET_S = 0.100


def _quiet_mlflow() -> None:
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _row(
    name: str,
    kind: str,
    unit: str,
    shipyard: float,
    mlflow: float,
    *,
    note: str = "",
    target: str | None = None,
    passed: bool | None = None,
) -> dict[str, Any]:
    if kind == "throughput":
        ratio = shipyard / mlflow if mlflow else None
    else:
        ratio = mlflow / shipyard if shipyard else None
    return {
        "name": name,
        "kind": kind,
        "unit": unit,
        "shipyard": shipyard,
        "mlflow": mlflow,
        "ratio": ratio,
        "note": note,
        "target": target,
        "passed": passed,
    }


def bench_tracking(
    *,
    points: int = POINTS,
    mlflow_single: int = MLFLOW_SINGLE,
    runs: int = RUNS,
    searches: int = SEARCHES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    _quiet_mlflow()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-tracking-") as tmp:
        root = Path(tmp)
        # ---- setup, not timed: Shipyard workspace; MLflow SQLite store (schema migrations)
        ws = sy.connect(root / "shipyard")
        uri = f"sqlite:///{root / 'mlflow.db'}"
        log(f"MLflow {mlflow.__version__}: creating the SQLite store {uri} (not timed)")
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(tracking_uri=uri)
        art = (root / "mlflow-artifacts").as_uri()
        ml_log_exp = client.create_experiment("log", artifact_location=art)
        ml_search_exp = client.create_experiment("search", artifact_location=art)
        ws.experiments.create("log")
        ws.experiments.create("search")
        ts = int(time.time() * 1000)
        sy_points = [("loss", 1.0 / (i + 1), i, ts) for i in range(points)]
        ml_points = [Metric("loss", 1.0 / (i + 1), ts, i) for i in range(points)]
        try:
            # ---- 1a. one at a time, fluent APIs, end to end
            log(f"1a. Shipyard: sy.log_metric x {points:,} (start_run .. end_run)")
            sy.set_workspace(ws)
            sy.set_experiment("log")
            t0 = time.perf_counter()
            fluent = sy.start_run(name="fluent")
            for i in range(points):
                sy.log_metric("loss", 1.0 / (i + 1), step=i)
            queued = time.perf_counter() - t0
            sy.end_run()
            sy_single = time.perf_counter() - t0
            sy.set_workspace(None)
            checks["shipyard_fluent_points"] = _history_len(ws, fluent.id)

            log(f"1a. MLflow: mlflow.log_metric x {mlflow_single:,} (start_run .. end_run)")
            mlflow.set_experiment(experiment_id=ml_log_exp)
            t0 = time.perf_counter()
            with mlflow.start_run(run_name="fluent") as ml_run:
                for i in range(mlflow_single):
                    mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            ml_single = time.perf_counter() - t0
            checks["mlflow_fluent_points"] = len(
                client.get_metric_history(ml_run.info.run_id, "loss")
            )
            rows.append(
                _row(
                    f"log one at a time (Shipyard {points:,}, MLflow {mlflow_single:,} points)",
                    "throughput",
                    "points/s",
                    points / sy_single,
                    mlflow_single / ml_single,
                    note=f"Shipyard {points / queued:,.0f}/s to queue (the training loop's cost)",
                    target=f">= {LOGGING_TARGET:.0f}x",
                )
            )

            # ---- 1b. batched, 1,000 points a batch
            n_batches = math.ceil(points / BATCH)
            log(f"1b. Shipyard: ws.runs.log_batch, {n_batches} batches of {BATCH:,}")
            sy_run = ws.runs.create("log", name="batched")
            t0 = time.perf_counter()
            for b in range(0, points, BATCH):
                ws.runs.log_batch(sy_run.id, sy_points[b : b + BATCH])
            sy_batched = time.perf_counter() - t0

            log(f"1b. MLflow: MlflowClient.log_batch, {n_batches} batches of {BATCH:,}")
            ml_run_id = client.create_run(ml_log_exp, run_name="batched").info.run_id
            t0 = time.perf_counter()
            for b in range(0, points, BATCH):
                client.log_batch(ml_run_id, metrics=ml_points[b : b + BATCH])
            ml_batched = time.perf_counter() - t0
            rows.append(
                _row(
                    f"log batched ({n_batches} x {BATCH:,} points)",
                    "throughput",
                    "points/s",
                    points / sy_batched,
                    points / ml_batched,
                    target=f">= {LOGGING_TARGET:.0f}x",
                )
            )

            log(f"1b. Shipyard: ws.runs.log_batch, one call of {points:,} (info)")
            one_call_run = ws.runs.create("log", name="one-call")
            t0 = time.perf_counter()
            ws.runs.log_batch(one_call_run.id, sy_points)
            sy_one_call = time.perf_counter() - t0
            rows.append(
                _row(
                    f"log batched, Shipyard in one call of {points:,} (MLflow: 1,000 a call)",
                    "throughput",
                    "points/s",
                    points / sy_one_call,
                    points / ml_batched,
                )
            )

            # ---- 2. create runs, search, page through
            log(f"2. Shipyard: {runs:,} x (ws.runs.create + log_batch of 2 params, 2 metrics)")
            t0 = time.perf_counter()
            for i in range(runs):
                r = ws.runs.create("search", name=f"r{i}")
                ws.runs.log_batch(
                    r.id,
                    [("auc", (i % 1000) / 1000, 0, ts), ("loss", 1 - (i % 1000) / 1000, 0, ts)],
                    params={"max_depth": str(i % 10), "eta": "0.1"},
                )
            sy_create = time.perf_counter() - t0

            log(f"2. MLflow: {runs:,} x (create_run + log_batch of 2 params, 2 metrics)")
            t0 = time.perf_counter()
            for i in range(runs):
                rid = client.create_run(ml_search_exp, run_name=f"r{i}").info.run_id
                client.log_batch(
                    rid,
                    metrics=[
                        Metric("auc", (i % 1000) / 1000, ts, 0),
                        Metric("loss", 1 - (i % 1000) / 1000, ts, 0),
                    ],
                    params=[Param("max_depth", str(i % 10)), Param("eta", "0.1")],
                )
            ml_create = time.perf_counter() - t0
            rows.append(
                _row(
                    f"create {runs:,} runs (+ 2 params, 2 metrics each)",
                    "throughput",
                    "runs/s",
                    runs / sy_create,
                    runs / ml_create,
                )
            )

            log(f"2. search {FILTER!r}: {searches} per side, interleaved")
            sy_times: list[float] = []
            ml_times: list[float] = []
            sy_found = ml_found = -1
            for k in range(searches + 2):  # the first search of each side is a warm-up
                order = ("sy", "ml") if k % 2 == 0 else ("ml", "sy")
                for side in order:
                    t0 = time.perf_counter()
                    if side == "sy":
                        page = ws.runs.list(experiment="search", filter=FILTER, page_size=PAGE)
                        elapsed = time.perf_counter() - t0
                        sy_found = len(page.items)
                        if k >= 2:
                            sy_times.append(elapsed)
                    else:
                        found = client.search_runs(
                            [ml_search_exp], filter_string=FILTER, max_results=PAGE
                        )
                        elapsed = time.perf_counter() - t0
                        ml_found = len(found)
                        if k >= 2:
                            ml_times.append(elapsed)
            checks["search_matches"] = {"shipyard": sy_found, "mlflow": ml_found}
            sy_p99 = percentile(sy_times, 99)
            rows.append(
                _row(
                    f"search {runs:,} runs, p50 ({sy_found} matches)",
                    "latency",
                    "ms",
                    statistics.median(sy_times) * 1000,
                    statistics.median(ml_times) * 1000,
                )
            )
            rows.append(
                _row(
                    f"search {runs:,} runs, p99 ({searches} searches a side)",
                    "latency",
                    "ms",
                    sy_p99 * 1000,
                    percentile(ml_times, 99) * 1000,
                    target=f"<= {SEARCH_P99_TARGET_S * 1000:.0f} ms",
                    passed=sy_p99 <= SEARCH_P99_TARGET_S,
                )
            )

            log(f"2. page through all {runs:,} runs, {PAGE:,} a page")
            t0 = time.perf_counter()
            sy_all, token = 0, None
            while True:
                page = ws.runs.list(experiment="search", page_size=PAGE, page_token=token)
                sy_all += len(page.items)
                token = page.next_page_token
                if not token:
                    break
            sy_paging = time.perf_counter() - t0
            t0 = time.perf_counter()
            ml_all, ml_token = 0, None
            while True:
                found = client.search_runs([ml_search_exp], max_results=PAGE, page_token=ml_token)
                ml_all += len(found)
                ml_token = found.token
                if not ml_token:
                    break
            ml_paging = time.perf_counter() - t0
            checks["paged_runs"] = {"shipyard": sy_all, "mlflow": ml_all}
            rows.append(
                _row(
                    f"page through all {runs:,} runs ({PAGE:,} a page)",
                    "latency",
                    "ms",
                    sy_paging * 1000,
                    ml_paging * 1000,
                )
            )

            # ---- 3. metric history of the batched run
            log(f"3. metric history, {points:,} points, each side")
            t0 = time.perf_counter()
            sy_hist = _history_len(ws, sy_run.id)
            sy_history = time.perf_counter() - t0
            t0 = time.perf_counter()
            ml_hist = len(client.get_metric_history(ml_run_id, "loss"))
            ml_history = time.perf_counter() - t0
            checks["history_points"] = {"shipyard": sy_hist, "mlflow": ml_hist}
            rows.append(
                _row(
                    f"metric history, {points:,} points (Shipyard: pages of {HISTORY_PAGE:,})",
                    "latency",
                    "ms",
                    sy_history * 1000,
                    ml_history * 1000,
                )
            )
        finally:
            sy.set_workspace(None)
            ws.close()

    for row in rows:
        if row["target"] and row["passed"] is None and row["ratio"] is not None:
            row["passed"] = row["ratio"] >= LOGGING_TARGET
    return {
        "mlflow_version": mlflow.__version__,
        "shipyard_version": sy.__version__,
        "settings": {
            "points": points,
            "mlflow_single": mlflow_single,
            "runs": runs,
            "searches": searches,
            "filter": FILTER,
        },
        "rows": rows,
        "checks": checks,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _history_len(ws: Any, run_id: str) -> int:
    got, token = 0, None
    while True:
        page = ws.runs.metric_history(run_id, "loss", page_size=HISTORY_PAGE, page_token=token)
        got += len(page.items)
        token = page.next_page_token
        if not token:
            return got


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f} ms" if value < 1000 else f"{value / 1000:,.2f} s"
    return f"{value:,.0f} {unit}"


def print_table(console: Console, results: dict[str, Any]) -> None:
    s = results["settings"]
    table = Table(
        title=f"Tracking: Shipyard {results['shipyard_version']} vs MLflow "
        f"{results['mlflow_version']}, SQLite on both sides, one run",
        title_justify="left",
    )
    table.add_column("Benchmark")
    table.add_column("Shipyard", justify="right", no_wrap=True)
    table.add_column("MLflow", justify="right", no_wrap=True)
    table.add_column("Ratio", justify="right", no_wrap=True)
    table.add_column("Target", justify="right", no_wrap=True)
    table.add_column("Result", no_wrap=True)
    for row in results["rows"]:
        ratio = "" if row["ratio"] is None else f"[bold]{row['ratio']:,.1f}x[/]"
        if row["passed"] is None:
            verdict = "[dim]info[/]"
        else:
            verdict = "[green]PASS[/]" if row["passed"] else "[red]miss[/]"
        table.add_row(
            row["name"],
            _fmt(row["shipyard"], row["unit"]),
            _fmt(row["mlflow"], row["unit"]),
            ratio,
            row["target"] or "",
            verdict,
        )
        if row["note"]:
            table.add_row(f"[dim]  {row['note']}[/]")
    console.print(table)
    console.print(
        "[dim]Ratio: throughput Shipyard ÷ MLflow, latency MLflow ÷ Shipyard (higher is better "
        f"for Shipyard). Filter: {s['filter']}. Checks: {results['checks']}. "
        f"Elapsed {results['elapsed_s']} s.[/]"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    results = bench_tracking(
        points=args.tracking_points,
        mlflow_single=args.mlflow_single,
        runs=args.tracking_runs,
        searches=args.searches,
        log=lambda m: console.log(f"[dim]{m}[/]", highlight=False),
    )
    print_table(console, results)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-points", type=int, default=POINTS, help=f"metric points (default {POINTS:,})"
    )
    parser.add_argument(
        "--mlflow-single",
        type=int,
        default=MLFLOW_SINGLE,
        help=f"points MLflow logs one at a time (default {MLFLOW_SINGLE:,})",
    )
    parser.add_argument(
        "--tracking-runs", type=int, default=RUNS, help=f"runs to create (default {RUNS:,})"
    )
    parser.add_argument(
        "--searches", type=int, default=SEARCHES, help=f"searches per side (default {SEARCHES})"
    )


if __name__ == "__main__":
    sys.exit(main())
