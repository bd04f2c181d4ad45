"""Prometheus metrics of online prediction, in one process and across worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shipyard.errors import InvalidArgument
from shipyard.serving.metrics import LATENCY_BUCKETS, ServingMetrics


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _traffic(metrics: ServingMetrics) -> None:
    for i in range(90):
        metrics.observe("e1", "blue", status=200, latency_s=0.001 * (i + 1), instances=2)
    for _ in range(10):
        metrics.observe("e1", "green", status=200, latency_s=0.05, instances=1)
    metrics.observe("e1", "green", status=500, latency_s=0.2, instances=0)
    metrics.observe("e1", "green", status=400, latency_s=0.0003, instances=0)
    metrics.observe("other", "blue", status=200, latency_s=0.01, instances=5)


def test_rendered_text_parses_and_counts_match():
    metrics = ServingMetrics()
    _traffic(metrics)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    s = _samples(body)
    req = "shipyard_predict_requests_total"
    assert _value(s, req, endpoint="e1", deployment="blue", code="200") == 90
    assert _value(s, req, endpoint="e1", deployment="green", code="200") == 10
    assert _value(s, req, endpoint="e1", deployment="green", code="500") == 1
    assert _value(s, req, endpoint="other", deployment="blue", code="200") == 1
    err = "shipyard_predict_errors_total"
    assert _value(s, err, endpoint="e1", deployment="green", code="500") == 1
    assert _value(s, err, endpoint="e1", deployment="green", code="400") == 1
    assert _value(s, err, endpoint="e1", deployment="blue", code="200") is None
    inst = "shipyard_predict_instances_total"
    assert _value(s, inst, endpoint="e1", deployment="blue") == 180
    assert _value(s, inst, endpoint="e1", deployment="green") == 10
    hist = "shipyard_predict_latency_seconds"
    assert _value(s, hist + "_count", endpoint="e1", deployment="blue") == 90
    assert _value(s, hist + "_sum", endpoint="e1", deployment="blue") == pytest.approx(
        sum(0.001 * (i + 1) for i in range(90))
    )
    # Sub-millisecond resolution: the 0.3 ms error falls in the 0.5 ms bucket, not in 5 ms.
    assert _value(s, hist + "_bucket", endpoint="e1", deployment="green", le="0.00025") == 0
    assert _value(s, hist + "_bucket", endpoint="e1", deployment="green", le="0.0005") == 1
    assert _value(s, hist + "_bucket", endpoint="e1", deployment="blue", le="0.01") == 10
    assert _value(s, hist + "_bucket", endpoint="e1", deployment="blue", le="+Inf") == 90
    assert LATENCY_BUCKETS[0] < 0.001 and LATENCY_BUCKETS[-1] >= 10


def test_each_instance_has_its_own_registry():
    a, b = ServingMetrics(), ServingMetrics()
    a.observe("e1", "d1", 200, 0.01, 1)
    a.observe("e1", "d1", 200, 0.01, 1)
    b.observe("e1", "d1", 200, 0.01, 1)
    sa, sb = _samples(a.render()[0]), _samples(b.render()[0])
    name = "shipyard_predict_requests_total"
    assert _value(sa, name, endpoint="e1", deployment="d1", code="200") == 2
    assert _value(sb, name, endpoint="e1", deployment="d1", code="200") == 1


def test_summary_gives_requests_errors_and_percentiles_per_deployment():
    metrics = ServingMetrics()
    _traffic(metrics)
    summary = metrics.summary("e1")
    assert set(summary) == {"blue", "green"}
    blue = summary["blue"]
    assert blue["requests"] == 90 and blue["errors"] == 0
    # Latencies 1..90 ms: exact percentiles from the in-process window.
    assert blue["p50_ms"] == pytest.approx(45.5)
    assert blue["p95_ms"] == pytest.approx(85.55)
    assert blue["p99_ms"] == pytest.approx(89.11)
    assert summary["green"]["requests"] == 12 and summary["green"]["errors"] == 2
    assert metrics.summary("nope") == {}


_WORKER = textwrap.dedent(
    """
    import json, sys
    from shipyard.serving.metrics import ServingMetrics

    metrics = ServingMetrics(multiprocess_dir=sys.argv[1])
    role = sys.argv[2]
    if role == "read":
        body, _ = metrics.render()
        print(json.dumps({"body": body.decode(), "summary": metrics.summary("e1")}))
    else:
        for i in range(int(role)):
            metrics.observe("e1", "blue", status=200, latency_s=0.003, instances=2)
        metrics.observe("e1", "blue", status=503, latency_s=0.7, instances=0)
    """
)


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow  # three fresh interpreters
def test_worker_processes_add_up_in_multiprocess_mode(tmp_path):
    folder = ServingMetrics.prepare_multiprocess_dir(tmp_path / "prom")
    _run(str(folder), "40")
    _run(str(folder), "60")
    # A third process (the one that answers GET /metrics) sees both workers' counts.
    seen = json.loads(_run(str(folder), "read"))
    s = _samples(seen["body"].encode())
    req = "shipyard_predict_requests_total"
    assert _value(s, req, endpoint="e1", deployment="blue", code="200") == 100
    assert _value(s, req, endpoint="e1", deployment="blue", code="503") == 2
    hist = "shipyard_predict_latency_seconds"
    assert _value(s, hist + "_count", endpoint="e1", deployment="blue") == 102
    inst = "shipyard_predict_instances_total"
    assert _value(s, inst, endpoint="e1", deployment="blue") == 200
    # It served nothing itself: percentiles are estimated from the shared histogram buckets.
    blue = seen["summary"]["blue"]
    assert blue["requests"] == 102 and blue["errors"] == 2
    assert 2.5 <= blue["p50_ms"] <= 5.0  # inside the (2.5 ms, 5 ms] bucket that holds 3 ms
    assert 500 <= blue["p99_ms"] <= 1000

    # prepare_multiprocess_dir starts the next server from zero.
    ServingMetrics.prepare_multiprocess_dir(folder)
    assert list(folder.iterdir()) == []


def test_multiprocess_dir_must_be_a_folder_and_match_the_environment(tmp_path, monkeypatch):
    with pytest.raises(InvalidArgument, match="is not a folder"):
        ServingMetrics(multiprocess_dir=tmp_path / "missing")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "b"))
    with pytest.raises(InvalidArgument, match="differs from PROMETHEUS_MULTIPROC_DIR"):
        ServingMetrics(multiprocess_dir=tmp_path / "a")
