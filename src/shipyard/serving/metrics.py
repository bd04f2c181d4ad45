"""Prometheus metrics of online prediction, and the per-deployment figures of A/B tests.

:class:`ServingMetrics` keeps its own ``CollectorRegistry`` (never the process-global one), so
several apps can live in one process. It exposes, per endpoint and deployment:

* ``shipyard_predict_requests_total{endpoint, deployment, code}``: requests answered, by status;
* ``shipyard_predict_errors_total{endpoint, deployment, code}``: those with a status >= 400;
* ``shipyard_predict_instances_total{endpoint, deployment}``: instances predicted;
* ``shipyard_predict_latency_seconds{endpoint, deployment}``: a histogram of request latency,
  buckets from 0.25 ms to 10 s.

**Several worker processes.** ``shipyard serve --workers N`` runs N processes, each with its own
counters. prometheus_client's multiprocess mode adds them up: every process writes its values to
memory-mapped files in one folder and ``/metrics`` reads them all. The mode is process-wide
(prometheus_client decides it from ``PROMETHEUS_MULTIPROC_DIR``): pass ``multiprocess_dir`` in
each worker (the variable is set for you), and empty the folder once before the workers start
(:meth:`ServingMetrics.prepare_multiprocess_dir`). Do not mix single- and multiprocess instances
in one process.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import deque
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from shipyard.errors import InvalidArgument

__all__ = ["LATENCY_BUCKETS", "ServingMetrics"]

# Seconds: sub-millisecond model calls up to slow, batchy ones.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RESERVOIR = 2048  # latencies kept per (endpoint, deployment) for the percentiles of summary()


class ServingMetrics:
    """Counters and latency histograms of online prediction, rendered for Prometheus.

    >>> metrics = ServingMetrics()
    >>> metrics.observe("e1", "d1", status=200, latency_s=0.004, instances=3)
    >>> metrics.summary("e1")["d1"]["requests"]
    1
    >>> body, content_type = metrics.render()
    """

    def __init__(self, *, multiprocess_dir: str | Path | None = None) -> None:
        self.multiprocess_dir = str(multiprocess_dir) if multiprocess_dir is not None else None
        if self.multiprocess_dir is not None:
            _enable_multiprocess(self.multiprocess_dir)
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("endpoint", "deployment")
        self._requests = Counter(
            "shipyard_predict_requests",
            "Prediction requests answered, by status code.",
            (*labels, "code"),
            registry=self.registry,
        )
        self._errors = Counter(
            "shipyard_predict_errors",
            "Prediction requests answered with an error status (>= 400).",
            (*labels, "code"),
            registry=self.registry,
        )
        self._instances = Counter(
            "shipyard_predict_instances",
            "Instances predicted.",
            labels,
            registry=self.registry,
        )
        self._latency = Histogram(
            "shipyard_predict_latency_seconds",
            "Latency of prediction requests in seconds.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # labels() takes a lock and builds a tuple each call; cache the children per key.
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}
        self._latencies: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def prepare_multiprocess_dir(path: str | Path) -> Path:
        """Create an empty folder for multiprocess metrics (run once, before workers start)."""
        folder = Path(path)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def observe(
        self,
        endpoint: str,
        deployment_id: str,
        status: int,
        latency_s: float,
        instances: int,
    ) -> None:
        """Count one answered request."""
        key = (endpoint, deployment_id, status)
        children = self._children.get(key)
        if children is None:
            with self._lock:
                children = self._children.get(key)
                if children is None:
                    code = str(status)
                    children = (
                        self._requests.labels(endpoint, deployment_id, code),
                        self._errors.labels(endpoint, deployment_id, code)
                        if status >= 400
                        else None,
                        self._instances.labels(endpoint, deployment_id),
                        self._latency.labels(endpoint, deployment_id),
                    )
                    self._children[key] = children
                    self._latencies.setdefault((endpoint, deployment_id), deque(maxlen=_RESERVOIR))
        requests, errors, instance_count, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        if instances:
            instance_count.inc(instances)
        latency.observe(latency_s)
        self._latencies[(endpoint, deployment_id)].append(latency_s)

    def _collecting_registry(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return registry

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (body, content type) — what ``GET /metrics`` returns."""
        return generate_latest(self._collecting_registry()), CONTENT_TYPE_LATEST

    def summary(self, endpoint: str) -> dict[str, dict[str, Any]]:
        """Per deployment of an endpoint: requests, errors and latency percentiles (ms).

        Counts cover every process (in multiprocess mode). Percentiles come from the last 2,048
        requests this process served; where it has served none yet (another worker took them)
        they are estimated from the histogram buckets, as Prometheus' ``histogram_quantile``
        does. A deployment with no requests is absent.
        """
        out: dict[str, dict[str, Any]] = {}
        buckets: dict[str, dict[float, float]] = {}
        for family in self._collecting_registry().collect():
            for sample in family.samples:
                if sample.labels.get("endpoint") != endpoint:
                    continue
                deployment = sample.labels["deployment"]
                figures = out.setdefault(
                    deployment,
                    {"requests": 0, "errors": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None},
                )
                if sample.name == "shipyard_predict_requests_total":
                    figures["requests"] += int(sample.value)
                elif sample.name == "shipyard_predict_errors_total":
                    figures["errors"] += int(sample.value)
                elif sample.name == "shipyard_predict_latency_seconds_bucket":
                    le = float(sample.labels["le"])
                    per = buckets.setdefault(deployment, {})
                    per[le] = per.get(le, 0.0) + sample.value
        for deployment in [d for d, f in out.items() if not f["requests"]]:
            del out[deployment]
        for deployment, figures in out.items():
            window = sorted(self._latencies.get((endpoint, deployment), ()))
            for q, name in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
                seconds = (
                    _percentile(window, q)
                    if window
                    else _bucket_quantile(buckets.get(deployment, {}), q)
                )
                figures[name] = None if seconds is None else round(seconds * 1000, 3)
        return out


def _enable_multiprocess(folder: str) -> None:
    if not os.path.isdir(folder):
        raise InvalidArgument(f"multiprocess_dir {folder!r} is not a folder")
    current = os.environ.get(_ENV)
    if current and os.path.realpath(current) != os.path.realpath(folder):
        raise InvalidArgument(
            f"multiprocess_dir {folder!r} differs from {_ENV}={current!r} in this process"
        )
    os.environ[_ENV] = folder
    # prometheus_client picks its value class when first imported; switch it if that happened
    # before the variable was set (metrics created from here on write to the shared folder).
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _bucket_quantile(cumulative: dict[float, float], q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: interpolate inside the bucket that holds the rank."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]  # the +Inf bucket
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound  # beyond the last finite bucket: its bound is all we know
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return bounds[-1]
