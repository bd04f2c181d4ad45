"""The console: a static page and its assets, served by the app, that speaks only to /v1/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from shipyard.server import create_app
from shipyard.server.app import CONSOLE_DIR
from shipyard.services import Services
from shipyard.serving.abtest import METRICS

ASSETS = ("index.html", "console.js", "console.css")


@pytest.fixture
def http(services: Services, live_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server(create_app(services, token="t0k")).url) as client:
        yield client


def test_page_and_assets_are_served_without_a_token(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>Shipyard</title>" in page.text
    for src in re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text):
        asset = http.get(src)
        assert asset.status_code == 200, src
    js = http.get("/console/console.js")
    assert "javascript" in js.headers["content-type"]
    assert http.get("/console/console.css").headers["content-type"].startswith("text/css")
    assert http.get("/console/missing.js").status_code == 404


def test_page_references_its_own_assets_only() -> None:
    page = (CONSOLE_DIR / "index.html").read_text()
    assert 'src="/console/console.js"' in page
    assert 'href="/console/console.css"' in page


def test_no_external_hosts_in_assets() -> None:
    for name in ASSETS:
        text = (CONSOLE_DIR / name).read_text()
        assert not re.search(r"(?i)https?://", text), name
        assert not re.search(r"(?i)(src|href)=\"//", text), name  # protocol-relative URLs
        assert "@import" not in text and "url(" not in text, name


def test_js_calls_only_relative_v1_urls() -> None:
    js = (CONSOLE_DIR / "console.js").read_text()
    called = re.findall(r'\bapi\(\s*"([^"]*)"', js)
    assert called, "the console calls the API"
    assert all(path.startswith("/v1/") for path in called), called
    # fetch() is only reached through api(), which takes those paths
    assert js.count("fetch(") == 1 and "fetch(path" in js
    assert "XMLHttpRequest" not in js and "WebSocket" not in js


def test_the_console_endpoints_answer_what_the_js_reads(
    services: Services, live_server: Any
) -> None:
    # The fields the page renders exist in the API's answers.
    url = live_server(create_app(services)).url
    services.tables.load("demo.c", pa.table({"a": [1, 2]}))
    with httpx.Client(base_url=url) as client:
        tables = client.get("/v1/tables?page_size=200").json()
        assert {"name", "num_rows", "version", "updated_at"} <= set(tables["items"][0])
        result = client.post("/v1/queries", json={"query": "SELECT 1 AS x"}).json()
        assert {"schema", "rows", "num_rows", "statement_type", "message"} <= set(result)
        jobs = client.get("/v1/jobs?page_size=25").json()
        job = jobs["items"][0]
        for key in ("state", "kind", "description", "progress", "started_at", "ended_at", "error"):
            assert key in job
        assert {"home", "version"} <= set(client.get("/v1/workspace").json())


def test_api_docs_are_served_without_a_cdn(services: Any) -> None:
    with TestClient(create_app(services, token="t")) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "/docs/assets/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        asset = client.get("/docs/assets/swagger-ui-bundle.js")
        assert asset.status_code == 200 and len(asset.content) > 100_000
        assert client.get("/openapi.json").status_code == 401  # the spec itself needs the token


def test_the_endpoints_card_reads_fields_the_serving_api_answers(
    services: Services, live_server: Any
) -> None:
    url = live_server(create_app(services)).url
    services.endpoints.create("console-ep", description="for the console")
    with httpx.Client(base_url=url) as client:
        page = client.get("/v1/endpoints?page_size=50").json()
        assert "next_page_token" in page
        (endpoint,) = page["items"]
        for key in ("name", "description", "deployments", "traffic", "sticky_key", "revision"):
            assert key in endpoint
        assert "updated_at" in endpoint
        assert client.get("/v1/endpoints/console-ep/stats").json() == {}
        history = client.get("/v1/endpoints/console-ep/history?page_size=8").json()
        (change,) = history["items"]
        assert {"revision", "action", "actor", "after", "created_at"} <= set(change)
        assert change["action"] == "create" and change["after"]["traffic"] == {}
        # a comparison that cannot run answers {code, message}; the card shows the message
        answer = client.post("/v1/endpoints/console-ep:compare", json={"metric": "accuracy"})
        assert answer.status_code == 409 and answer.json()["code"] == "FAILED_PRECONDITION"
        assert "an A/B comparison needs two" in answer.json()["message"]
        bad = client.post("/v1/endpoints/console-ep:compare", json={"metric": "auc"})
        assert bad.status_code == 400 and "accuracy" in bad.json()["message"]


def test_the_endpoints_card_is_on_the_page_and_refreshed() -> None:
    page = (CONSOLE_DIR / "index.html").read_text()
    assert 'id="endpoints"' in page and 'id="endpoint-list"' in page
    js = (CONSOLE_DIR / "console.js").read_text()
    refresh = js[js.index("function refreshAll()") :]
    assert "loadEndpoints();" in refresh[: refresh.index("}")]
    # the metrics offered are the ones the A/B comparison accepts
    offered = re.search(r"const AB_METRICS = \[([^\]]*)\]", js)
    assert offered and sorted(re.findall(r'"(\w+)"', offered.group(1))) == sorted(METRICS)
