"""The REST API over real HTTP: a real uvicorn server in front of the real app and services."""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from shipyard.config import Settings
from shipyard.context import Context
from shipyard.server import create_app
from shipyard.services import Services
from tests.server.conftest import LiveServer

ARROW = "application/vnd.apache.arrow.stream"


def _frame(n: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 6, n)
    z = rng.normal(0, 1, n)
    color = rng.choice(["red", "green", "blue"], n)
    y = ((2.0 * (x - 3) + 0.5 * z + rng.logistic(0, 0.3, n)) > 0).astype(int)
    return pd.DataFrame({"x": x, "z": z, "color": color, "y": y})


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One workspace for the module: table demo.t and model demo.m (versions 1 and 2)."""
    ctx = Context.open(Settings(home=tmp_path_factory.mktemp("api") / "home"))
    services = Services.build(ctx)
    services.tables.load("demo.t", _frame())
    create = (
        "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='logistic_reg', "
        "input_label_cols=['y']) AS SELECT x, z, color, y FROM demo.t"
    )
    services.sql.execute(create)
    services.sql.execute(create)
    yield services
    ctx.close()


@pytest.fixture(scope="module")
def server(workspace: Services) -> Iterator[LiveServer]:
    live = LiveServer(create_app(workspace, max_request_bytes=64 * 1024)).start()
    yield live
    live.stop()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


# -- system ---------------------------------------------------------------------------------------


def test_health_ready_and_workspace(http: httpx.Client, workspace: Services) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    info = http.get("/v1/workspace").json()
    assert info["home"] == str(workspace.ctx.home)
    assert info["version"] and info["max_request_bytes"] == 64 * 1024


def test_openapi_is_published_with_tags(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert spec["info"]["title"] == "Shipyard"
    paths = spec["paths"]
    for path in (
        "/v1/queries",
        "/v1/queries:submit",
        "/v1/tables/{name}:load",
        "/v1/models/{name}:predict",
        "/v1/models/{name}/versions/{version}/files/{file_path}",
        "/v1/jobs/{job_id}:cancel",
    ):
        assert path in paths, path
    assert {t["name"] for t in spec["tags"]} >= {"queries", "tables", "models", "jobs"}
    assert "/" not in paths  # the console is not part of the API
    # Errors are documented as they are sent, and every schema referred to is defined.
    text = json.dumps(spec)
    assert '"422"' not in text
    assert paths["/v1/tables/{name}"]["get"]["responses"]["default"]
    defined = set(spec["components"]["schemas"])
    assert set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text)) <= defined


def test_unknown_route_and_method_are_json_errors(http: httpx.Client) -> None:
    _error(http.get("/v1/nothing-here"), 404, "NOT_FOUND")
    body = _error(http.delete("/healthz"), 405, "INVALID_ARGUMENT")
    assert "DELETE" in body["message"]


def test_a_bug_is_a_generic_500_without_traceback(workspace: Services, live_server: Any) -> None:
    app = create_app(workspace)

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    with httpx.Client(base_url=live_server(app).url) as client:
        body = _error(client.get("/v1/boom"), 500, "INTERNAL")
    assert "secret" not in body["message"] and "Traceback" not in json.dumps(body)


# -- queries ---------------------------------------------------------------------------------------


def test_query_as_json_is_json_safe(http: httpx.Client) -> None:
    response = http.post(
        "/v1/queries",
        json={
            "query": "SELECT 1 AS i, DATE '2024-02-29' AS d, "
            "TIMESTAMP '2024-01-02 03:04:05' AS ts, CAST('nan' AS DOUBLE) AS nan, "
            "CAST(1.25 AS DECIMAL(6, 2)) AS dec, [1, 2] AS arr, NULL AS nothing"
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["statement_type"] == "SELECT" and body["num_rows"] == 1 and body["job_id"]
    assert [c["name"] for c in body["schema"]] == ["i", "d", "ts", "nan", "dec", "arr", "nothing"]
    row = body["rows"][0]
    assert row["i"] == 1 and row["d"] == "2024-02-29"
    assert row["ts"].startswith("2024-01-02T03:04:05")
    assert row["nan"] is None and row["nothing"] is None
    assert row["dec"] in ("1.25", 1.25) and row["arr"] == [1, 2]


def test_query_as_arrow_keeps_types_and_sends_info_in_a_header(http: httpx.Client) -> None:
    response = http.post(
        "/v1/queries",
        json={"query": "SELECT x, color FROM demo.t ORDER BY x LIMIT 5"},
        headers={"Accept": ARROW},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.schema.field("x").type == pa.float64() and table.num_rows == 5
    info = json.loads(response.headers["X-Shipyard-Result"])
    assert info["statement_type"] == "SELECT" and info["num_rows"] == 5


def test_bad_sql_is_400_with_line_and_column(http: httpx.Client) -> None:
    body = _error(
        http.post("/v1/queries", json={"query": "SELECT *\nFROM demo.t WHERE (x >"}),
        400,
        "SQL_ERROR",
    )
    assert body["details"]["line"] == 2 and body["details"]["column"]


def test_unknown_table_in_sql_names_it(http: httpx.Client) -> None:
    response = http.post("/v1/queries", json={"query": "SELECT * FROM demo.no_such_table"})
    assert response.status_code in (400, 404)
    assert "no_such_table" in response.json()["message"]


def test_invalid_request_names_the_field(http: httpx.Client) -> None:
    body = _error(http.post("/v1/queries", json={"sql": "SELECT 1"}), 400, "INVALID_ARGUMENT")
    assert "query" in body["message"] and body["details"]["field"] == "query"
    body = _error(http.get("/v1/tables", params={"page_size": "many"}), 400, "INVALID_ARGUMENT")
    assert "page_size" in body["message"]
    not_json = {"Content-Type": "application/json"}
    _error(http.post("/v1/queries", content=b"{not", headers=not_json), 400, "INVALID_ARGUMENT")


def test_submit_poll_result_logs_and_cancel(http: httpx.Client) -> None:
    submitted = http.post("/v1/queries:submit", json={"query": "SELECT count(*) AS n FROM demo.t"})
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 30
    while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["state"] == "SUCCEEDED" and job["kind"] == "query"
    result = http.get(f"/v1/jobs/{job_id}/result").json()
    assert result["rows"] == [{"n": 120}]
    arrow = http.get(f"/v1/jobs/{job_id}/result", headers={"Accept": ARROW})
    assert pa.ipc.open_stream(arrow.content).read_all().to_pylist() == [{"n": 120}]
    logs = http.get(f"/v1/jobs/{job_id}/logs", params={"since": 0}).json()
    assert set(logs) == {"items", "next_page_token"}
    cancelled = http.post(f"/v1/jobs/{job_id}:cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "SUCCEEDED"
    _error(http.get("/v1/jobs/no-such-job"), 404, "NOT_FOUND")
    body = _error(http.post("/v1/queries:submit", json={"query": "SELECT (1 +"}), 400, "SQL_ERROR")
    assert body["details"]["line"] == 1


def test_job_list_filters_and_pages(http: httpx.Client) -> None:
    for _ in range(3):
        http.post("/v1/queries", json={"query": "SELECT 1"})
    first = http.get("/v1/jobs", params={"kind": "query", "page_size": 2}).json()
    assert len(first["items"]) == 2 and first["next_page_token"]
    second = http.get(
        "/v1/jobs", params={"kind": "query", "page_size": 2, "page_token": first["next_page_token"]}
    ).json()
    assert {j["id"] for j in first["items"]}.isdisjoint(j["id"] for j in second["items"])
    done = http.get("/v1/jobs", params={"state": "succeeded"}).json()["items"]
    assert done and all(j["state"] == "SUCCEEDED" for j in done)
    _error(http.get("/v1/jobs", params={"state": "SLEEPING"}), 400, "INVALID_ARGUMENT")


# -- tables ----------------------------------------------------------------------------------------


def test_load_file_bytes_then_describe_preview_and_delete(http: httpx.Client) -> None:
    csv = _frame(30).to_csv(index=False).encode()
    loaded = http.post(
        "/v1/tables/up.csv_t:load",
        params={"filename": "people.csv"},
        content=csv,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["num_rows"] == 30 and loaded.json()["version"] == 1
    again = http.post(
        "/v1/tables/up.csv_t:load",
        params={"format": "csv", "mode": "append"},
        content=csv,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert again.json()["num_rows"] == 60 and again.json()["version"] == 2

    info = http.get("/v1/tables/up.csv_t").json()
    assert [c["name"] for c in info["columns"]] == ["x", "z", "color", "y"]
    versions = http.get("/v1/tables/up.csv_t/versions").json()
    assert [v["version"] for v in versions["items"]] == [1, 2]
    one = http.get("/v1/tables/up.csv_t/versions", params={"page_size": 1}).json()
    assert len(one["items"]) == 1 and one["next_page_token"]
    rest = http.get(
        "/v1/tables/up.csv_t/versions",
        params={"page_size": 1, "page_token": one["next_page_token"]},
    ).json()
    assert [v["version"] for v in rest["items"]] == [2] and rest["next_page_token"] is None

    rows = http.get("/v1/tables/up.csv_t/rows", params={"limit": 3}).json()
    assert rows["num_rows"] == 3 and set(rows["rows"][0]) == {"x", "z", "color", "y"}
    arrow = http.get("/v1/tables/up.csv_t/rows", params={"limit": 4}, headers={"Accept": ARROW})
    assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 4

    listed = http.get("/v1/tables", params={"dataset": "up"}).json()
    assert [t["name"] for t in listed["items"]] == ["up.csv_t"]

    assert http.delete("/v1/tables/up.csv_t").status_code == 204
    body = _error(http.get("/v1/tables/up.csv_t"), 404, "NOT_FOUND")
    assert "up.csv_t" in body["message"]


def test_load_arrow_stream(http: httpx.Client) -> None:
    table = pa.table({"a": pa.array([1, 2, 3], pa.int16()), "b": ["x", "y", None]})
    response = http.post(
        "/v1/tables/up.arrow_t:load", content=_arrow_bytes(table), headers={"Content-Type": ARROW}
    )
    assert response.status_code == 200, response.text
    assert response.json()["num_rows"] == 3
    back = http.get("/v1/tables/up.arrow_t/rows", headers={"Accept": ARROW})
    assert pa.ipc.open_stream(back.content).read_all().to_pylist() == table.to_pylist()
    _error(
        http.post("/v1/tables/up.bad:load", content=b"not arrow", headers={"Content-Type": ARROW}),
        400,
        "INVALID_ARGUMENT",
    )


def test_bad_uploads_are_named(http: httpx.Client) -> None:
    octet = {"Content-Type": "application/octet-stream"}
    body = _error(
        http.post("/v1/tables/up.broken:load", params={"filename": "broken.parquet"},
                  content=b"PAR1 not parquet", headers=octet),
        400, "INVALID_ARGUMENT",
    )  # fmt: skip
    assert "broken.parquet" in body["message"]
    body = _error(
        http.post("/v1/tables/up.what:load", content=b"a,b\n1,2\n", headers=octet),
        400,
        "INVALID_ARGUMENT",
    )
    assert "format" in body["message"]
    _error(http.post("/v1/tables/up.x:load", params={"format": "csv"}, content=b"", headers=octet),
           400, "INVALID_ARGUMENT")  # fmt: skip
    _error(http.get("/v1/tables/not-a-name"), 400, "INVALID_ARGUMENT")
    _error(http.get("/v1/tables/demo.nope/rows"), 404, "NOT_FOUND")


def test_oversized_upload_is_413(http: httpx.Client) -> None:
    big = b"a,b\n" + b"1,2\n" * 40_000  # 160 kB against a 64 kB limit
    octet = {"Content-Type": "application/octet-stream"}
    body = _error(
        http.post("/v1/tables/up.big:load", params={"format": "csv"}, content=big, headers=octet),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert "64 KiB" in body["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        stream = io.BytesIO(big)
        while chunk := stream.read(8192):
            yield chunk

    _error(
        http.post(
            "/v1/tables/up.big:load", params={"format": "csv"}, content=chunks(), headers=octet
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    _error(http.get("/v1/tables/up.big"), 404, "NOT_FOUND")


# -- models ----------------------------------------------------------------------------------------


def test_models_versions_and_manifest(http: httpx.Client) -> None:
    listed = http.get("/v1/models", params={"dataset": "demo"}).json()
    assert [m["name"] for m in listed["items"]] == ["demo.m"]
    model = http.get("/v1/models/demo.m").json()
    assert model["latest_version"] == 2 and model["aliases"]["default"] == 2
    versions = http.get("/v1/models/demo.m/versions").json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    v1 = http.get("/v1/models/demo.m/versions/1").json()
    assert v1["version"] == 1 and v1["flavor"] == "sklearn"

    manifest = http.get("/v1/models/demo.m/versions/1/manifest")
    assert hashlib.sha256(manifest.content).hexdigest() == v1["manifest_digest"]
    files = manifest.json()["files"]
    assert files
    for fname, digest in files.items():
        data = http.get(f"/v1/models/demo.m/versions/1/files/{fname}")
        assert data.status_code == 200
        assert hashlib.sha256(data.content).hexdigest() == digest
    body = _error(http.get("/v1/models/demo.m/versions/1/files/nope.bin"), 404, "NOT_FOUND")
    assert "nope.bin" in body["message"]
    _error(http.get("/v1/models/demo.m/versions/9"), 404, "NOT_FOUND")
    _error(http.get("/v1/models/demo.m/versions/zero"), 400, "INVALID_ARGUMENT")
    body = _error(http.get("/v1/models/demo.nope"), 404, "NOT_FOUND")
    assert "demo.nope" in body["message"]


def test_aliases(http: httpx.Client) -> None:
    moved = http.put("/v1/models/demo.m/aliases/champion", json={"version": 1})
    assert moved.status_code == 200 and "champion" in moved.json()["aliases"]
    assert http.get("/v1/models/demo.m/aliases/champion").json()["version"] == 1
    assert http.get("/v1/models/demo.m").json()["aliases"]["champion"] == 1
    assert http.delete("/v1/models/demo.m/aliases/champion").status_code == 204
    _error(http.get("/v1/models/demo.m/aliases/champion"), 404, "NOT_FOUND")
    _error(http.delete("/v1/models/demo.m/aliases/default"), 409, "FAILED_PRECONDITION")
    _error(http.put("/v1/models/demo.m/aliases/x", json={"version": 7}), 404, "NOT_FOUND")
    _error(http.put("/v1/models/demo.m/aliases/x", json={}), 400, "INVALID_ARGUMENT")


def test_predict_json_and_arrow(http: httpx.Client) -> None:
    instances = [{"x": 5.5, "z": 0.1, "color": "red"}, {"x": 0.2, "z": -0.3, "color": "blue"}]
    response = http.post("/v1/models/demo.m:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["modelVersion"] == "2"
    assert [p["predicted_y"] for p in body["predictions"]] == [1, 0]
    assert {p["label"] for p in body["predictions"][0]["predicted_y_probs"]} == {0, 1}

    pinned = http.post(
        "/v1/models/demo.m:predict",
        json={"instances": instances, "version": 1, "parameters": {"threshold": 0.5}},
    ).json()
    assert pinned["modelVersion"] == "1"

    arrow = http.post(
        "/v1/models/demo.m:predict",
        params={"version": 1},
        content=_arrow_bytes(pa.Table.from_pylist(instances)),
        headers={"Content-Type": ARROW, "Accept": ARROW},
    )
    assert arrow.status_code == 200, arrow.text
    assert arrow.headers["X-Shipyard-Model-Version"] == "1"
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table["predicted_y"].to_pylist() == [1, 0]

    _error(http.post("/v1/models/demo.m:predict", json={"rows": []}), 400, "INVALID_ARGUMENT")
    _error(
        http.post("/v1/models/demo.m:predict", json={"instances": instances, "alias": "nope"}),
        404,
        "NOT_FOUND",
    )
    _error(
        http.post("/v1/models/demo.nope:predict", json={"instances": instances}), 404, "NOT_FOUND"
    )


def test_delete_model(http: httpx.Client, workspace: Services) -> None:
    workspace.sql.execute(
        "CREATE MODEL demo.gone OPTIONS(model_type='linear_reg', input_label_cols=['z']) "
        "AS SELECT x, z FROM demo.t"
    )
    assert http.get("/v1/models/demo.gone").status_code == 200
    assert http.delete("/v1/models/demo.gone").status_code == 204
    _error(http.get("/v1/models/demo.gone"), 404, "NOT_FOUND")
    _error(http.delete("/v1/models/demo.gone"), 404, "NOT_FOUND")


# -- auth ------------------------------------------------------------------------------------------


def test_token_guards_everything_but_health_and_the_console_shell(
    workspace: Services, live_server: Any
) -> None:
    url = live_server(create_app(workspace, token="s3cret")).url
    with httpx.Client(base_url=url) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/console/console.js").status_code == 200
        missing = anonymous.get("/v1/tables")
        _error(missing, 401, "UNAUTHENTICATED")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        _error(anonymous.get("/openapi.json"), 401, "UNAUTHENTICATED")
        _error(anonymous.post("/v1/queries", json={"query": "SELECT 1"}), 401, "UNAUTHENTICATED")
        wrong = {"Authorization": "Bearer nope"}
        _error(anonymous.get("/v1/tables", headers=wrong), 403, "PERMISSION_DENIED")
        _error(anonymous.get("/v1/tables", headers={"Authorization": "Basic abc"}), 401,
               "UNAUTHENTICATED")  # fmt: skip
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer s3cret"}) as client:
        assert client.get("/v1/tables").status_code == 200
        assert client.post("/v1/queries", json={"query": "SELECT 1 AS x"}).json()["rows"] == [
            {"x": 1}
        ]


def test_app_without_token_needs_none(http: httpx.Client) -> None:
    assert http.get("/v1/tables", headers={"Authorization": "Bearer anything"}).status_code == 200
