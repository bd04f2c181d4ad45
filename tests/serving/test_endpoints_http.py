"""Endpoints over real HTTP: Vertex AI's request and response shapes, errors, metrics, the SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import shipyard as sy
from shipyard.client.remote import RemoteWorkspace
from shipyard.errors import InvalidArgument, NotFound
from shipyard.server import create_app
from shipyard.server.predict import PredictFastPath
from tests.server.conftest import LiveServer
from tests.serving.conftest import instances


@pytest.fixture
def server(home: Path) -> Iterator[tuple[Any, str]]:
    local = sy.connect(home)
    local.endpoints.create("e1")
    local.endpoints.deploy("e1", "d.tree")
    live = LiveServer(create_app(local.services, max_request_bytes=64_000)).start()
    try:
        yield local, live.url
    finally:
        live.stop()
        local.close()


def _post(url: str, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    return httpx.post(url + path, content=body, headers=headers)


def test_predict_in_vertex_ai_shape(server: tuple[Any, str]) -> None:
    _, url = server
    response = _post(url, "/v1/endpoints/e1:predict", {"instances": instances(3)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"predictions", "deployedModelId", "model", "modelVersion", "requestId"}
    assert body["deployedModelId"] == "d1" and body["modelVersion"] == "1"
    assert [set(p) for p in body["predictions"]] == [
        {"predicted_label", "predicted_label_probs"}
    ] * 3
    echoed = _post(
        url,
        "/v1/endpoints/e1:predict",
        {"instances": instances(1)},
        headers={"X-Request-Id": "abc-123"},
    )
    assert echoed.json()["requestId"] == "abc-123"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 400, "must be a JSON object"),
        ({"rows": []}, 400, "unknown field 'rows'"),
        ({"parameters": {}}, 400, "lacks 'instances'"),
        ({"instances": []}, 400, "instances is empty"),
        ({"instances": [{"x": "1", "z": 1, "color": "red"}]}, 400, r"instances[0].x"),
        ({"instances": instances(1), "parameters": {"threshold": 2}}, 400, "threshold"),
        ({"instances": instances(1) * 3000}, 413, "limit"),
    ],
)
def test_bad_requests_get_clear_errors(
    server: tuple[Any, str], body: Any, status: int, message: str
) -> None:
    _, url = server
    response = _post(url, "/v1/endpoints/e1:predict", body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] in ("INVALID_ARGUMENT", "PAYLOAD_TOO_LARGE")
    assert message in error["message"]
    assert _post(url, "/v1/endpoints/e1:predict", {"instances": instances(1)}).status_code == 200


def test_field_errors_carry_the_field(server: tuple[Any, str]) -> None:
    _, url = server
    bad = [*instances(2), {"x": 1.0, "z": 2.0}]
    error = _post(url, "/v1/endpoints/e1:predict", {"instances": bad}).json()
    assert error["details"]["field"] == "instances[2].color"


def test_unknown_endpoint_is_404(server: tuple[Any, str]) -> None:
    _, url = server
    response = _post(url, "/v1/endpoints/nope:predict", {"instances": instances(1)})
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


def test_a_raising_model_is_a_500_and_the_server_keeps_serving(server: tuple[Any, str]) -> None:
    local, url = server
    assert _post(url, "/v1/endpoints/e1:predict", {"instances": instances(1)}).status_code == 200
    serving = local.services.endpoints._runtimes["e1"].serving["d1"]
    healthy = serving.predictor.model

    class Broken:
        def inplace_predict(self, matrix: Any) -> Any:
            raise RuntimeError("corrupt tree")

    serving.predictor.model = Broken()
    response = _post(url, "/v1/endpoints/e1:predict", {"instances": instances(1)})
    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL" and "corrupt tree" in response.json()["message"]
    serving.predictor.model = healthy
    assert _post(url, "/v1/endpoints/e1:predict", {"instances": instances(1)}).status_code == 200


def test_prometheus_metrics(server: tuple[Any, str]) -> None:
    _, url = server
    for _ in range(3):
        _post(url, "/v1/endpoints/e1:predict", {"instances": instances(2)})
    _post(url, "/v1/endpoints/e1:predict", {"instances": [{"x": "bad"}]})
    text = httpx.get(url + "/metrics").text
    samples = {
        (s.name, s.labels.get("code")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("endpoint") == "e1"
    }
    assert samples[("shipyard_predict_requests_total", "200")] == 3
    assert samples[("shipyard_predict_requests_total", "400")] == 1
    assert samples[("shipyard_predict_instances_total", None)] == 7
    assert samples[("shipyard_predict_latency_seconds_count", None)] == 4


def test_the_sdk_over_http(server: tuple[Any, str]) -> None:
    local, url = server
    ws = RemoteWorkspace(url)
    try:
        ws.endpoints.create("e2", description="remote")
        endpoint = ws.endpoints.deploy("e2", "d.reg")
        assert endpoint.traffic == {"d1": 100}
        endpoint = ws.endpoints.deploy("e2", "d.reg", traffic=25)
        assert endpoint.traffic == {"d1": 75, "d2": 25}
        assert ws.endpoints.split("e2", {"d1": 10, "d2": 90}).traffic == {"d1": 10, "d2": 90}
        assert ws.endpoints.rollback("e2").traffic == {"d1": 75, "d2": 25}
        history = ws.endpoints.history("e2").items
        assert history[0].action == "rollback" and history[0].actor
        out = ws.endpoints.predict("e2", instances(2))
        assert len(out["predictions"]) == 2
        assert ws.endpoints.stats("e2")[out["deployedModelId"]]["requests"] == 1
        with pytest.raises(InvalidArgument, match="sum to 100"):
            ws.endpoints.split("e2", {"d1": 10})
        with pytest.raises(NotFound):
            ws.endpoints.get("nope")
        assert [e.name for e in ws.endpoints.list().items] == ["e1", "e2"]
        ws.endpoints.update("e2", config={"timeout_s": 5}, sticky_key="user")
        assert local.endpoints.get("e2").config.timeout_s == 5
        ws.endpoints.delete("e2", force=True)
        assert [e.name for e in local.endpoints.list().items] == ["e1"]
    finally:
        ws.close()


def test_concurrent_requests_each_get_their_own_answer(server: tuple[Any, str]) -> None:
    """Requests arriving together share model calls on the event loop; answers never mix."""
    local, url = server
    batches = [instances(1 + i % 3, offset=i) for i in range(24)]
    expected = [local.endpoints.predict("e1", b)["predictions"] for b in batches]
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(lambda b: _post(url, "/v1/endpoints/e1:predict", {"instances": b}), batches)
        )
    assert [r.status_code for r in responses] == [200] * len(batches)
    assert [r.json()["predictions"] for r in responses] == expected
    batcher = local.services.endpoints._runtimes["e1"].serving["d1"].async_batcher
    assert batcher.batched_requests == len(batches)


def test_the_hot_path_keeps_the_token_and_the_body_limit(home: Path) -> None:
    local = sy.connect(home)
    local.endpoints.create("e1")
    local.endpoints.deploy("e1", "d.tree")
    live = LiveServer(create_app(local.services, token="s3cret", max_request_bytes=2_000)).start()
    try:
        body = {"instances": instances(1)}
        assert _post(live.url, "/v1/endpoints/e1:predict", body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert _post(live.url, "/v1/endpoints/e1:predict", body, wrong).status_code == 403
        auth = {"Authorization": "Bearer s3cret"}
        assert _post(live.url, "/v1/endpoints/e1:predict", body, auth).status_code == 200
        big = {"instances": instances(1) * 100}
        assert _post(live.url, "/v1/endpoints/e1:predict", big, auth).status_code == 413
    finally:
        live.stop()
        local.close()


def test_the_fastapi_route_answers_alike_without_the_hot_path(home: Path) -> None:
    """The documented route and the layer beneath FastAPI give the same answer."""
    local = sy.connect(home)
    local.endpoints.create("e1")
    local.endpoints.deploy("e1", "d.tree")
    app = create_app(local.services)
    assert "/v1/endpoints/{name}:predict" in app.openapi()["paths"]
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PredictFastPath]
    live = LiveServer(app).start()
    try:
        body = {"instances": instances(3)}
        headers = {"X-Request-Id": "r1"}
        response = _post(live.url, "/v1/endpoints/e1:predict", body, headers)
        assert response.status_code == 200
        assert response.json() == {**local.endpoints.predict("e1", instances(3)), "requestId": "r1"}
        batcher = local.services.endpoints._runtimes["e1"].serving["d1"].async_batcher
        assert batcher.batched_requests == 1  # answered by the route, through the same path
        bad = _post(live.url, "/v1/endpoints/e1:predict", b"{not json")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]
    finally:
        live.stop()
        local.close()
