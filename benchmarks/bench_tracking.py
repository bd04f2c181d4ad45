"""Experiment tracking figures on an embedded (SQLite) workspace, Shipyard alone.

1. 100,000 metric points of one run through ``ws.runs.log_batch`` (one call), points/s;
2. the same through the fluent API one ``sy.log_metric`` at a time (queued, flushed by the
   background thread; the figure includes the final flush in ``end_run``), points/s;
3. ``ws.runs.list`` with a filter over 10,000 runs: p50 and p99 of 200 searches;
4. one metric's 100,000-point history, paged 10,000 at a time.

Run: ``python benchmarks/bench_tracking.py``. The side-by-side with MLflow that the issue asks
for is not here yet.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import shipyard as sy

POINTS = 100_000
RUNS = 10_000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = sy.connect(Path(tmp) / "home")
        ws.experiments.create("bench")

        run = ws.runs.create("bench")
        points = [("loss", 1.0 / (i + 1), i, None) for i in range(POINTS)]
        t0 = time.perf_counter()
        ws.runs.log_batch(run.id, points)
        batched = POINTS / (time.perf_counter() - t0)
        print(f"log_batch, one call:       {batched:>12,.0f} points/s")

        sy.set_workspace(ws)
        sy.set_experiment("bench")
        t0 = time.perf_counter()
        fluent = sy.start_run()
        for i in range(POINTS):
            sy.log_metric("loss", 1.0 / (i + 1), step=i)
        queued = time.perf_counter() - t0
        sy.end_run()
        total = time.perf_counter() - t0
        print(
            f"sy.log_metric one at a time: {POINTS / total:>10,.0f} points/s end to end "
            f"({POINTS / queued:,.0f}/s to queue: the training loop's cost)"
        )
        assert len(ws.runs.metric_history(fluent.id, "loss", page_size=10_000).items) == 10_000

        t0 = time.perf_counter()
        for i in range(RUNS):
            r = ws.runs.create("bench", name=f"r{i}")
            ws.runs.log_batch(
                r.id,
                [("auc", (i % 1000) / 1000), ("loss", 1 - (i % 1000) / 1000)],
                params={"max_depth": str(i % 10), "eta": "0.1"},
                tags={"team": "x" if i % 2 else "y"},
            )
        print(f"created {RUNS:,} runs in {time.perf_counter() - t0:.1f} s")
        query = "metrics.auc > 0.9 and params.max_depth = '6' and tags.team = 'y'"
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            page = ws.runs.list(experiment="bench", filter=query, order_by=["metrics.auc DESC"])
            times.append(time.perf_counter() - t0)
        times.sort()
        print(
            f"search over {RUNS:,} runs ({len(page.items)} matches, ordered by a metric): "
            f"p50 {statistics.median(times) * 1000:.1f} ms, p99 {times[197] * 1000:.1f} ms"
        )

        t0 = time.perf_counter()
        got, token = 0, None
        while True:
            hp = ws.runs.metric_history(run.id, "loss", page_size=10_000, page_token=token)
            got += len(hp.items)
            token = hp.next_page_token
            if not token:
                break
        print(f"history of {got:,} points: {time.perf_counter() - t0:.2f} s")
        sy.set_workspace(None)
        ws.close()


if __name__ == "__main__":
    main()
