"""``/v1/batchPredictionJobs`` over plain HTTP and JSON, as a non-SDK client sees it."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
from starlette.testclient import TestClient

from shipyard.server import create_app
from shipyard.services import Services


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_create_list_and_resume_batch_prediction_jobs(services: Services) -> None:
    rows = pa.table(
        {"x": [float(i % 7) for i in range(60)], "y": [float(i % 7) * 2 for i in range(60)]}
    )
    services.tables.load("demo.lin", rows)
    services.sql.execute(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT x, y FROM demo.lin"
    )
    with TestClient(create_app(services)) as client:
        body = {
            "model": "demo.m",
            "source": "demo.lin",
            "destination": "demo.out",
            "chunk_rows": 25,
        }
        created = client.post("/v1/batchPredictionJobs", json=body)
        assert created.status_code == 202, created.text
        job = _wait(client, created.json()["id"])
        assert job["state"] == "SUCCEEDED" and job["result"]["chunks"] == 3
        assert job["params"]["destination"] == {
            "kind": "table",
            "target": "demo.out",
            "format": "parquet",
        }
        listed = client.get("/v1/batchPredictionJobs").json()
        assert [j["id"] for j in listed["items"]] == [job["id"]]

        again = client.post(f"/v1/batchPredictionJobs/{job['id']}:resume")
        assert again.status_code == 409
        assert again.json()["code"] == "FAILED_PRECONDITION"

        bad = client.post(
            "/v1/batchPredictionJobs", json={**body, "source": "SELECT y FROM demo.lin"}
        )
        assert bad.status_code == 400 and "x" in bad.json()["details"]["missing"]
        missing = client.post("/v1/batchPredictionJobs", json={**body, "model": "demo.nope"})
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
        unknown = client.post("/v1/batchPredictionJobs", json={**body, "colour": "red"})
        assert unknown.status_code == 400
        assert "openapi" in client.get("/openapi.json").json()
        assert "/v1/batchPredictionJobs" in client.get("/openapi.json").json()["paths"]
