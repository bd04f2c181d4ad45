"""The console's Endpoints card in a real browser: headless Chromium against a live server."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ShipyardError
from shipyard.server import create_app
from shipyard.services import Services
from tests.server.test_console_browser import _render


def _rows(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        x = (i * 37 % 101) / 10.0
        z = (i * 13 % 17) / 4.0
        out.append({"x": x, "z": z, "label": int(x + 0.3 * z > 5.5)})
    return out


def _between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from ``start`` up to the first ``end`` after it."""
    assert start in text, start
    part = text[text.index(start) :]
    return part[: part.index(end)] if end in part else part


def _row(dom: str, deployment: str) -> str:
    return _between(dom, f'<tr data-deployment="{deployment}"', "</tr>")


def _figure(value: float) -> str:
    """The console's number format for metrics (JavaScript's toPrecision(4))."""
    return f"{value:#.4g}"


@pytest.mark.slow
def test_endpoints_card_shows_split_stats_history_and_ab_verdict(
    services: Services, live_server: Callable[[Any], Any], tmp_path: Path
) -> None:
    data = _rows(120)
    services.tables.load("d.t", data)
    services.sql.execute(
        "CREATE MODEL d.m OPTIONS(model_type='LOGISTIC_REG', input_label_cols=['label']) "
        "AS SELECT x, z, label FROM d.t"
    )
    endpoints = services.endpoints
    endpoints.create("churn", description="churn scorer")
    endpoints.deploy("churn", "d.m", sticky_key="x")  # d1; requests route by x, reproducibly
    endpoints.deploy("churn", "d.m", traffic=20)  # d2 takes 20 %, d1 keeps 80 %
    endpoints.deploy("churn", "d.m", shadow=True)  # d3 sees a copy of every request
    feedback = []
    for instance in data[:40]:
        answer = endpoints.predict("churn", [{"x": instance["x"], "z": instance["z"]}])
        feedback.append(
            {
                "request_id": answer["requestId"],
                "instance_index": 0,
                "ground_truth": instance["label"],
            }
        )
    assert endpoints.feedback("churn", feedback) == 40
    endpoints.flush_logs("churn")  # the shadow's copies are answered off the request path
    stats = endpoints.stats("churn")
    assert stats["d1"]["requests"] + stats["d2"]["requests"] == stats["d3"]["requests"] == 40
    ab = endpoints.compare("churn", metric="accuracy")
    server = live_server(create_app(services))

    dom = _render(f"{server.url}/?endpoint=churn&compare=accuracy", tmp_path / "p1")
    card = _between(dom, 'id="endpoints"', "</section>")
    assert "1 endpoint" in card
    churn = _between(card, '<article class="endpoint" data-endpoint="churn"', "</article>")
    assert "churn scorer" in churn and "revision 4" in churn and "sticky on x" in churn
    # the split, drawn as a stacked bar with its percentages
    bar = _between(churn, 'class="traffic-bar"', "</div>")
    assert 'aria-label="Traffic split: d1 80%, d2 20%"' in bar
    assert "width:80%" in bar and ">d1 80%</span>" in bar
    assert "width:20%" in bar and ">d2 20%</span>" in bar
    assert "d3" not in bar  # a shadow takes no share
    # the deployments, with the request counts and latency from /stats
    for deployment in ("d1", "d2", "d3"):
        row = _row(churn, deployment)
        assert "d.m@1" in row and ">default<" in row
        assert f'<td class="num">{stats[deployment]["requests"]}</td>' in row
        assert row.count(" ms</td>") == 2  # p50 and p99
    assert ">80%</td>" in _row(churn, "d1") and ">20%</td>" in _row(churn, "d2")
    shadow = _row(churn, "d3")
    assert 'class="pill shadow"' in shadow and ">shadow</span>" in shadow and ">copy</td>" in shadow
    assert "shadow" not in _row(churn, "d1") + _row(churn, "d2")
    # the recent changes, newest first, with the traffic after each
    changes = _between(churn, 'class="grid history"', "</table>")
    assert changes.index(">4</td>") < changes.index(">3</td>") < changes.index(">1</td>")
    assert ">deploy<" in changes and ">create<" in changes
    assert "d1 80% · d2 20% · d3 shadow" in changes
    # the A/B comparison ran from the URL: figures, intervals and the verdict
    compare = _between(churn, 'class="endpoint-pane ab"', "</article>")
    assert "control d1" in compare
    for figures in ab.deployments:
        row = _row(compare, figures.deployment_id)
        assert f'<td class="num">{figures.labelled}</td>' in row
        assert f">{_figure(figures.metric_value)}</td>" in row
        assert f"[{_figure(figures.ci_low)}, {_figure(figures.ci_high)}]" in row
        assert 'class="ci-chart"' in row and "<circle" in row
    (comparison,) = ab.comparisons
    assert html.escape(comparison.verdict, quote=False) in compare
    assert comparison.test in compare
    assert "error hidden" in compare  # no error shown


@pytest.mark.slow
def test_endpoints_card_empty_state_and_a_comparison_that_cannot_run(
    services: Services, live_server: Callable[[Any], Any], tmp_path: Path
) -> None:
    server = live_server(create_app(services))
    dom = _render(server.url + "/", tmp_path / "p1")
    card = _between(dom, 'id="endpoints"', "</section>")
    assert "No endpoints yet" in card and "shipyard endpoints create NAME" in card
    assert "0 endpoints" in card

    services.endpoints.create("idle")
    with pytest.raises(ShipyardError) as cannot:
        services.endpoints.compare("idle", metric="accuracy")
    dom = _render(f"{server.url}/?endpoint=idle&compare=accuracy", tmp_path / "p2")
    idle = _between(dom, '<article class="endpoint" data-endpoint="idle"', "</article>")
    assert "No deployment receives traffic" in idle and "No deployments yet" in idle
    # the comparison ran from the URL and shows the server's message in place of a table
    pane = _between(idle, 'class="endpoint-pane ab"', "</article>")
    error = _between(pane, 'class="error', "</div>")
    assert "hidden" not in error.split(">")[0]
    assert html.escape(cannot.value.message, quote=False) in error
    assert "ab-table" not in pane
