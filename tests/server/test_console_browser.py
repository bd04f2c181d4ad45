"""The console in a real browser: headless Chromium renders the page against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from shipyard.server import create_app
from shipyard.services import Services

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran (virtual time lets fetches finish)."""
    if CHROMIUM is None:
        if os.environ.get("SHIPYARD_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (SHIPYARD_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Chromium is not installed (Debian package 'chromium')")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_console_lists_tables_models_jobs_and_runs_sql(
    services: Services, live_server: Callable[[Any], Any], tmp_path: Path
) -> None:
    services.tables.load("demo.t", [{"x": float(i), "y": 3.0 * i} for i in range(40)])
    services.sql.execute(
        "CREATE MODEL demo.line OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    server = live_server(create_app(services))
    query = "SELECT x, predicted_y FROM ML.PREDICT(MODEL demo.line, TABLE demo.t) WHERE x = 7"
    dom = _render(f"{server.url}/?q={quote(query)}", tmp_path / "profile")
    assert "demo.t" in dom
    assert "demo.line" in dom
    assert "linear reg" in dom.lower() or "LINEAR_REG" in dom
    assert "r2_score" in dom  # the default version's metrics
    assert "SUCCEEDED" in dom  # the CREATE MODEL job
    # the SQL box ran the query from ?q= and shows 3 * 7
    assert "predicted_y</th>" in dom and '<td class="num">21.00</td>' in dom


@pytest.mark.slow
def test_console_compares_runs_and_draws_lineage(
    services: Services, live_server: Callable[[Any], Any], tmp_path: Path
) -> None:
    services.tables.load("demo.t", [{"x": float(i), "y": 2.0 * i + 1} for i in range(30)])
    services.sql.execute(
        "CREATE MODEL demo.line OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    tracking = services.tracking
    tracking.create_experiment("console-exp")
    runs = []
    for name, lr, scale in (("run-alpha", "0.1", 1.0), ("run-beta", "0.03", 2.0)):
        run = tracking.create_run("console-exp", name=name)
        points = [("loss", scale / (step + 1), step) for step in range(8)]
        tracking.log_batch(run.id, points, {"lr": lr}, {})
        tracking.end_run(run.id)
        runs.append(run)
    server = live_server(create_app(services))

    ids = ",".join(run.id for run in runs)
    dom = _render(f"{server.url}/?experiment=console-exp&runs={ids}&metric=loss", tmp_path / "p1")
    assert "run-alpha" in dom and "run-beta" in dom
    compare = dom[dom.index('id="compare-table"') :]
    compare = compare[: compare.index("</table>")]
    assert "params.lr" in compare and ">0.1<" in compare and ">0.03<" in compare
    assert "metrics.loss" in compare and ">0.1250<" in compare and ">0.2500<" in compare
    chart = dom[dom.index('id="chart"') :]
    chart = chart[: chart.index("</svg>")]
    assert "<svg" in chart
    assert chart.count("<path") == 2  # one line per selected run
    assert all(f'data-run="{run.id}"' in chart for run in runs)

    bad = _render(
        f"{server.url}/?experiment=console-exp&filter={quote('metrics.loss >')}", tmp_path / "p2"
    )
    error = bad[bad.index('id="runs-error"') :]
    assert "invalid filter" in error[: error.index("</div>")]

    dom = _render(f"{server.url}/?lineage=models/demo.line", tmp_path / "p3")
    graph = dom[dom.index('id="lineage-graph"') :]
    assert "<svg" in graph
    assert "models/demo.line/versions/1" in graph
    assert "tables/demo.t/versions/1" in graph
    assert "CREATE_MODEL" in graph
