"""A/B comparison of an endpoint's deployments from its request logs and ground-truth feedback.

:func:`compare` joins ``endpoint_logs.<table>`` with ``endpoint_logs.<table>_feedback`` on
(request_id, instance_index) — the latest feedback for an instance wins — and, per deployment,
computes the chosen metric with its confidence interval and the request latency percentiles. Each
deployment is then tested against the control (the first of ``deployments``, or else the one whose
traffic started first):

* ``accuracy``: a two-proportion z-test (pooled standard error); the per-deployment interval is
  Wilson's, the interval of the difference is Wald's (unpooled);
* ``mean_absolute_error`` / ``mean_squared_error``: Welch's t-test on the per-instance absolute
  or squared errors (no equal-variance assumption); intervals are Student-t intervals, with the
  Welch-Satterthwaite degrees of freedom for the difference.

``confidence`` is ``1 - p_value`` of the two-sided test. The difference is ``treatment - control``.
Shadow rows are left out unless ``include_shadow=True`` (a shadow deployment sees the same
requests as the primary, so its figures are paired rather than independent; the test treats
them as independent, which is conservative for positively correlated errors).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict

from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound
from shipyard.serving.logs import LOG_DATASET, log_table_name
from shipyard.warehouse import Warehouse, duckdb_error

__all__ = [
    "METRICS",
    "MIN_LABELLED",
    "ABComparison",
    "DeploymentComparison",
    "DeploymentFigures",
    "compare",
]

# metric -> (kind, higher is better)
METRICS: dict[str, tuple[Literal["proportion", "error"], bool]] = {
    "accuracy": ("proportion", True),
    "mean_absolute_error": ("error", False),
    "mean_squared_error": ("error", False),
}
MIN_LABELLED = 2


class DeploymentFigures(BaseModel):
    """One deployment's traffic and quality over the compared window."""

    model_config = ConfigDict(extra="forbid")

    deployment_id: str
    model: str | None
    model_version: int | None
    requests: int
    errors: int
    labelled: int  # instances with ground truth (successful requests only)
    metric_value: float
    ci_low: float
    ci_high: float
    latency_p50_ms: float
    latency_p99_ms: float


class DeploymentComparison(BaseModel):
    """A treatment deployment against the control on the chosen metric."""

    model_config = ConfigDict(extra="forbid")

    control: str
    treatment: str
    test: Literal["two-proportion z-test", "Welch's t-test"]
    statistic: float
    p_value: float
    confidence: float  # 1 - p_value
    difference: float  # treatment - control
    difference_ci_low: float
    difference_ci_high: float
    significant: bool
    better: str | None  # the deployment that is significantly better, if any
    verdict: str


class ABComparison(BaseModel):
    """The result of :func:`compare`."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str
    metric: str
    label: str
    higher_is_better: bool
    confidence_level: float
    include_shadow: bool
    since: datetime | None
    control: str
    deployments: list[DeploymentFigures]
    comparisons: list[DeploymentComparison]

    @property
    def verdict(self) -> str:
        """The comparisons' verdicts, one sentence each."""
        return " ".join(c.verdict for c in self.comparisons)


@contextmanager
def _cursor(source: Warehouse | duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    if isinstance(source, Warehouse):
        cur = source.cursor()
        try:
            yield cur
        finally:
            cur.close()
    else:
        yield source


def _since(since: datetime | timedelta | None) -> datetime | None:
    if since is None:
        return None
    if isinstance(since, timedelta):
        return datetime.now(UTC) - since
    if isinstance(since, datetime):
        return since if since.tzinfo else since.replace(tzinfo=UTC)
    raise InvalidArgument(
        f"invalid since {since!r}: expected a datetime or a timedelta (how far back)"
    )


def compare(
    source: Warehouse | duckdb.DuckDBPyConnection,
    endpoint: str,
    *,
    metric: str,
    deployments: Sequence[str] | None = None,
    since: datetime | timedelta | None = None,
    include_shadow: bool = False,
    label: str | None = None,
    confidence_level: float = 0.95,
) -> ABComparison:
    """Compare an endpoint's deployments on ``metric`` with a significance test.

    ``source`` is the warehouse (or a DuckDB cursor) where :func:`register_log_tables` created the
    endpoint's views. ``label`` names the predicted column (``predicted_<label>`` in the logged
    outputs); by default it is found from the outputs.
    """
    if metric not in METRICS:
        raise InvalidArgument(
            f"unknown metric {metric!r} for an A/B comparison: expected one of {sorted(METRICS)}",
            metric=metric,
        )
    if not isinstance(confidence_level, float | int) or not 0.5 <= confidence_level < 1:
        raise InvalidArgument(
            f"invalid confidence_level {confidence_level!r}: expected a number in [0.5, 1)"
        )
    if deployments is not None:
        if isinstance(deployments, str) or not all(isinstance(d, str) for d in deployments):
            raise InvalidArgument(
                f"deployments must be a list of deployment ids, got {deployments!r}"
            )
        deployments = list(dict.fromkeys(deployments))
        if len(deployments) < 2:
            raise InvalidArgument(
                f"an A/B comparison needs at least two deployments, got {deployments}"
            )
    start = _since(since)
    kind, higher_is_better = METRICS[metric]
    table = log_table_name(endpoint)
    logs = f'"{LOG_DATASET}"."{table}"'
    feedback = f'"{LOG_DATASET}"."{table}_feedback"'

    where = ["TRUE"]
    params: list[Any] = []
    if not include_shadow:
        where.append("NOT l.shadow")
    if start is not None:
        where.append("l.timestamp >= ?")
        params.append(start)
    condition = " AND ".join(where)

    with _cursor(source) as cur:
        _require_views(cur, endpoint, table)
        traffic = _fetch(
            cur,
            f"""
            SELECT l.deployment_id,
                   arg_max(l.model, l.timestamp) AS model,
                   arg_max(l.model_version, l.timestamp) AS model_version,
                   epoch_us(min(l.timestamp)) AS first_seen,
                   count(*) FILTER (l.instance_index = 0) AS requests,
                   count(*) FILTER (l.instance_index = 0 AND l.status >= 400) AS errors,
                   quantile_cont(l.latency_ms, 0.5) FILTER (l.instance_index = 0) AS p50,
                   quantile_cont(l.latency_ms, 0.99) FILTER (l.instance_index = 0) AS p99
            FROM {logs} AS l
            WHERE {condition}
            GROUP BY l.deployment_id
            """,
            params,
        )
        found = {row[0]: row for row in traffic}
        if deployments is not None:
            missing = [d for d in deployments if d not in found]
            if missing:
                raise NotFound(
                    f"endpoint {endpoint!r} has no logged requests from deployment(s) {missing} "
                    f"in the compared window; deployments with traffic: {sorted(found)}",
                    endpoint=endpoint,
                )
            order = list(deployments)
        else:
            order = [row[0] for row in sorted(traffic, key=lambda r: (r[3], r[0]))]
        if len(order) < 2:
            raise FailedPrecondition(
                f"endpoint {endpoint!r} has logged requests from {len(order)} deployment(s) "
                f"{order} in the compared window; an A/B comparison needs two",
                endpoint=endpoint,
            )
        labelled_rows = _fetch(
            cur,
            f"""
            WITH fb AS (
                SELECT request_id, instance_index,
                       arg_max(ground_truth, timestamp) AS ground_truth
                FROM {feedback}
                GROUP BY request_id, instance_index
            )
            SELECT l.deployment_id, l.request_id, l.outputs, fb.ground_truth
            FROM {logs} AS l JOIN fb USING (request_id, instance_index)
            WHERE {condition} AND list_contains(?, l.deployment_id)
              AND l.status < 400 AND l.outputs IS NOT NULL
            """,
            [*params, order],
        )

    label = label or _find_label(labelled_rows, endpoint)
    key = f"predicted_{label}"
    samples: dict[str, list[float]] = {d: [] for d in order}
    for deployment_id, request_id, outputs, truth_json in labelled_rows:
        outputs_value = json.loads(outputs)
        if not isinstance(outputs_value, dict) or key not in outputs_value:
            continue  # another model's output shape; nothing to score against
        predicted = outputs_value[key]
        truth = _truth(json.loads(truth_json) if truth_json is not None else None, label)
        if truth is None or predicted is None:
            continue
        samples[deployment_id].append(_score(metric, predicted, truth, request_id))

    short = {d: len(samples[d]) for d in order if len(samples[d]) < MIN_LABELLED}
    if short:
        counts = ", ".join(f"{d}: {len(samples[d])}" for d in order)
        raise FailedPrecondition(
            f"not enough labelled predictions to compare endpoint {endpoint!r} on {metric}: "
            f"each deployment needs at least {MIN_LABELLED} with ground truth ({counts}); "
            "send ground truth through the feedback route",
            endpoint=endpoint,
            labelled={d: len(samples[d]) for d in order},
        )

    figures = []
    for deployment_id in order:
        row = found[deployment_id]
        value, low, high = _estimate(kind, samples[deployment_id], confidence_level)
        figures.append(
            DeploymentFigures(
                deployment_id=deployment_id,
                model=row[1],
                model_version=row[2],
                requests=int(row[4]),
                errors=int(row[5]),
                labelled=len(samples[deployment_id]),
                metric_value=value,
                ci_low=low,
                ci_high=high,
                latency_p50_ms=_round(row[6]),
                latency_p99_ms=_round(row[7]),
            )
        )
    control = order[0]
    comparisons = [
        _test(
            kind,
            metric,
            higher_is_better,
            control,
            treatment,
            samples[control],
            samples[treatment],
            confidence_level,
        )
        for treatment in order[1:]
    ]
    return ABComparison(
        endpoint=endpoint,
        metric=metric,
        label=label,
        higher_is_better=higher_is_better,
        confidence_level=float(confidence_level),
        include_shadow=include_shadow,
        since=start,
        control=control,
        deployments=figures,
        comparisons=comparisons,
    )


def _fetch(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    try:
        return cur.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise duckdb_error(exc, sql) from exc


def _require_views(cur: duckdb.DuckDBPyConnection, endpoint: str, table: str) -> None:
    row = cur.execute(
        "SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name IN (?, ?)",
        [LOG_DATASET, table, f"{table}_feedback"],
    ).fetchone()
    if not row or row[0] < 2:
        raise NotFound(
            f"no request logs for endpoint {endpoint!r}: the tables {LOG_DATASET}.{table} and "
            f"{LOG_DATASET}.{table}_feedback do not exist",
            resource=f"endpoints/{endpoint}",
        )


def _find_label(rows: list[tuple[Any, ...]], endpoint: str) -> str:
    """The label of ``predicted_<label>`` (not ``…_probs``) in the first labelled outputs."""
    for _, _, outputs, _ in rows:
        value = json.loads(outputs)
        if not isinstance(value, dict):
            continue
        names = [
            k[len("predicted_") :]
            for k in value
            if k.startswith("predicted_") and not k.endswith("_probs")
        ]
        if len(names) == 1:
            return names[0]
        if len(names) > 1:
            raise InvalidArgument(
                f"the outputs of endpoint {endpoint!r} predict several columns {names}: "
                "pass label= to choose one"
            )
    if not rows:
        return "label"  # nothing is labelled: the caller reports the counts
    raise FailedPrecondition(
        f"the logged outputs of endpoint {endpoint!r} have no predicted_<label> field to "
        "compare ground truth with"
    )


def _truth(value: Any, label: str) -> Any:
    # Ground truth may be sent bare (1) or as a record ({"label": 1}).
    if isinstance(value, dict):
        return value.get(label)
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _score(metric: str, predicted: Any, truth: Any, request_id: str) -> float:
    if metric == "accuracy":
        a, b = _number(predicted), _number(truth)
        if a is not None and b is not None:
            return float(a == b)
        return float(str(predicted) == str(truth))
    p, t = _number(predicted), _number(truth)
    if p is None or t is None:
        raise FailedPrecondition(
            f"{metric} needs numbers: request {request_id!r} has prediction {predicted!r} "
            f"and ground truth {truth!r}",
            request_id=request_id,
        )
    error = p - t
    return abs(error) if metric == "mean_absolute_error" else error * error


def _round(value: Any) -> float:
    return round(float(value), 3)


def _estimate(kind: str, values: list[float], level: float) -> tuple[float, float, float]:
    from scipy import stats  # ~0.3 s to import: only when a comparison runs

    n = len(values)
    mean = sum(values) / n
    if kind == "proportion":
        # Wilson's interval: sensible near 0 and 1, where Wald's collapses.
        z = float(stats.norm.ppf(0.5 + level / 2))
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return mean, max(0.0, centre - half), min(1.0, centre + half)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(variance / n)
    return mean, mean - half, mean + half


def _test(
    kind: str,
    metric: str,
    higher_is_better: bool,
    control: str,
    treatment: str,
    a: list[float],
    b: list[float],
    level: float,
) -> DeploymentComparison:
    from scipy import stats

    n1, n2 = len(a), len(b)
    m1, m2 = sum(a) / n1, sum(b) / n2
    difference = m2 - m1
    test: Literal["two-proportion z-test", "Welch's t-test"]
    if kind == "proportion":
        test = "two-proportion z-test"
        pooled = (sum(a) + sum(b)) / (n1 + n2)
        se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        statistic, p_value = _two_sided(difference, se_pooled, None)
        se = math.sqrt(m1 * (1 - m1) / n1 + m2 * (1 - m2) / n2)
        half = float(stats.norm.ppf(0.5 + level / 2)) * se
    else:
        test = "Welch's t-test"
        v1 = sum((x - m1) ** 2 for x in a) / (n1 - 1)
        v2 = sum((x - m2) ** 2 for x in b) / (n2 - 1)
        s1, s2 = v1 / n1, v2 / n2
        se = math.sqrt(s1 + s2)
        df = (s1 + s2) ** 2 / (s1**2 / (n1 - 1) + s2**2 / (n2 - 1)) if se > 0 else 1.0
        statistic, p_value = _two_sided(difference, se, df)
        half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    significant = p_value < 1 - level
    better: str | None = None
    if significant:
        treatment_better = difference > 0 if higher_is_better else difference < 0
        better = treatment if treatment_better else control
    confidence = 1.0 - p_value
    if better is not None:
        worse = control if better == treatment else treatment
        verdict = f"{better} is better than {worse} on {metric} with {confidence:.1%} confidence."
    else:
        verdict = (
            f"No significant difference between {treatment} and {control} on {metric}: "
            f"not significant at {level:.0%} (p = {p_value:.3g})."
        )
    return DeploymentComparison(
        control=control,
        treatment=treatment,
        test=test,
        statistic=statistic,
        p_value=p_value,
        confidence=confidence,
        difference=difference,
        difference_ci_low=difference - half,
        difference_ci_high=difference + half,
        significant=significant,
        better=better,
        verdict=verdict,
    )


def _two_sided(difference: float, se: float, df: float | None) -> tuple[float, float]:
    """(statistic, two-sided p) of difference / se, normal when df is None, else Student's t."""
    if se == 0:
        # Both samples constant: identical means are no evidence, different ones are certain.
        return (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    from scipy import stats

    statistic = difference / se
    if df is None:
        p_value = 2 * float(stats.norm.sf(abs(statistic)))
    else:
        p_value = 2 * float(stats.t.sf(abs(statistic), df))
    return statistic, min(1.0, p_value)
