"""A/B comparisons of deployments from request logs and ground-truth feedback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from shipyard.errors import FailedPrecondition, InvalidArgument, NotFound
from shipyard.serving.abtest import METRICS, compare
from shipyard.serving.logs import RequestLog, record_feedback, register_log_tables
from shipyard.warehouse import Warehouse

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def wh():
    warehouse = Warehouse(":memory:")
    yield warehouse
    warehouse.close()


def _classification(root, endpoint, rng, accuracy: dict[str, float], n: int = 300, **extra):
    """n requests per deployment; a prediction is right with the deployment's accuracy."""
    feedback = []
    with RequestLog(root, endpoint, flush_interval_s=60) as log:
        for d, (deployment, acc) in enumerate(accuracy.items()):
            for i in range(n):
                truth = rng.choice(["fraud", "ok"])
                predicted = truth if rng.random() < acc else ("ok" if truth == "fraud" else "fraud")
                request_id = f"{deployment}-{i}"
                log.record(
                    request_id=request_id,
                    deployment_id=deployment,
                    model="demo.fraud",
                    model_version=d + 1,
                    shadow=False,
                    instances=[{"amount": float(rng.random())}],
                    predictions=[
                        {
                            "predicted_label": predicted,
                            "predicted_label_probs": [{"label": predicted, "prob": 0.9}],
                        }
                    ],
                    latency_ms=float(1 + d + rng.random()),
                    timestamp=T0 + timedelta(minutes=d, seconds=i),
                    **extra,
                )
                feedback.append({"request_id": request_id, "ground_truth": truth})
    record_feedback(root, endpoint, feedback)


def _regression(root, endpoint, rng, noise: dict[str, float], n: int = 200):
    """Two instances per request; the prediction is truth + normal noise of the given scale."""
    errors: dict[str, list[float]] = {d: [] for d in noise}
    feedback = []
    with RequestLog(root, endpoint, flush_interval_s=60) as log:
        for d, (deployment, scale) in enumerate(noise.items()):
            for i in range(n):
                truths = rng.normal(100, 20, size=2)
                predicted = truths + rng.normal(0, scale, size=2)
                request_id = f"{deployment}-{i}"
                log.record(
                    request_id=request_id,
                    deployment_id=deployment,
                    model="demo.price",
                    model_version=1,
                    shadow=False,
                    instances=[{"rooms": 3}, {"rooms": 4}],
                    predictions=[{"predicted_price": float(p)} for p in predicted],
                    latency_ms=2.0,
                    timestamp=T0 + timedelta(minutes=d, seconds=i),
                )
                for k in range(2):
                    feedback.append(
                        {"request_id": request_id, "instance_index": k, "ground_truth": truths[k]}
                    )
                    errors[deployment].append(float(predicted[k] - truths[k]))
    record_feedback(root, endpoint, feedback)
    return errors


def test_a_truly_better_deployment_wins_with_high_confidence(tmp_path, wh):
    _classification(tmp_path, "fraud", np.random.default_rng(7), {"A": 0.70, "B": 0.85})
    register_log_tables(wh, tmp_path, "fraud")

    result = compare(wh, "fraud", metric="accuracy")

    assert result.control == "A" and result.label == "label" and result.higher_is_better
    a, b = result.deployments
    assert (a.deployment_id, b.deployment_id) == ("A", "B")
    assert a.requests == b.requests == a.labelled == b.labelled == 300
    assert a.ci_low < a.metric_value < a.ci_high
    assert 0.63 < a.metric_value < 0.77 and 0.79 < b.metric_value < 0.91
    assert (a.model, a.model_version, b.model_version) == ("demo.fraud", 1, 2)
    assert 1 <= a.latency_p50_ms <= a.latency_p99_ms <= 2 <= b.latency_p50_ms
    (c,) = result.comparisons
    assert c.test == "two-proportion z-test" and c.significant and c.better == "B"
    assert c.confidence > 0.99 and c.confidence == pytest.approx(1 - c.p_value)
    assert c.difference == pytest.approx(b.metric_value - a.metric_value)
    assert c.difference_ci_low < c.difference < c.difference_ci_high
    assert c.verdict.startswith("B is better than A on accuracy with ")
    assert c.verdict == result.verdict
    # The z-test equals a chi-square test of the 2x2 table without continuity correction.
    right = [round(a.metric_value * 300), round(b.metric_value * 300)]
    table = [[right[0], 300 - right[0]], [right[1], 300 - right[1]]]
    assert c.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)

    # Naming the order makes B the control: the same test, seen from the other side.
    flipped = compare(wh, "fraud", metric="accuracy", deployments=["B", "A"]).comparisons[0]
    assert flipped.better == "B" and flipped.p_value == pytest.approx(c.p_value)
    assert flipped.difference == pytest.approx(-c.difference)
    assert flipped.verdict.startswith("B is better than A")


def test_identical_deployments_are_mostly_not_significant(tmp_path, wh):
    significant = 0
    for seed in range(20):
        endpoint = f"same-{seed}"
        _classification(
            tmp_path, endpoint, np.random.default_rng(seed), {"A": 0.8, "B": 0.8}, n=150
        )
        register_log_tables(wh, tmp_path, endpoint)
        (c,) = compare(wh, endpoint, metric="accuracy").comparisons
        significant += c.significant
        if not c.significant:
            assert c.better is None
            assert "not significant at 95%" in c.verdict
            assert c.difference_ci_low <= 0 <= c.difference_ci_high
    assert significant <= 3  # 5% expected: about 1 in 20


@pytest.mark.parametrize("metric", ["mean_absolute_error", "mean_squared_error"])
def test_regression_metrics_use_welch_on_per_instance_errors(tmp_path, wh, metric):
    errors = _regression(tmp_path, "price", np.random.default_rng(3), {"A": 10.0, "B": 7.0})
    register_log_tables(wh, tmp_path, "price")

    result = compare(wh, "price", metric=metric)

    assert result.label == "price" and not result.higher_is_better
    a, b = result.deployments
    assert a.labelled == b.labelled == 400 and a.requests == 200
    per = {
        d: np.abs(e) if metric == "mean_absolute_error" else np.square(e) for d, e in errors.items()
    }
    assert a.metric_value == pytest.approx(per["A"].mean())
    assert b.metric_value == pytest.approx(per["B"].mean())
    assert a.ci_low < a.metric_value < a.ci_high
    (c,) = result.comparisons
    assert c.test == "Welch's t-test"
    welch = stats.ttest_ind(per["B"], per["A"], equal_var=False)
    assert c.p_value == pytest.approx(welch.pvalue)
    assert c.statistic == pytest.approx(welch.statistic)
    low, high = welch.confidence_interval(0.95)
    assert (c.difference_ci_low, c.difference_ci_high) == (pytest.approx(low), pytest.approx(high))
    assert c.better == "B" and c.confidence > 0.99  # lower error is better
    assert c.verdict.startswith(f"B is better than A on {metric}")


def test_shadow_rows_window_and_latest_feedback(tmp_path, wh):
    rng = np.random.default_rng(11)
    _classification(tmp_path, "e1", rng, {"A": 0.8, "B": 0.8}, n=50)
    # A shadow deployment sees A's requests (same ids, so the same feedback labels them).
    with RequestLog(tmp_path, "e1", flush_interval_s=60) as log:
        for i in range(50):
            log.record(
                request_id=f"A-{i}",
                deployment_id="S",
                model="demo.fraud",
                model_version=3,
                shadow=True,
                instances=[{"amount": 1.0}],
                predictions=[{"predicted_label": "fraud"}],
                latency_ms=9.0,
                timestamp=T0 + timedelta(hours=1, seconds=i),
            )
    register_log_tables(wh, tmp_path, "e1")

    assert [d.deployment_id for d in compare(wh, "e1", metric="accuracy").deployments] == [
        "A",
        "B",
    ]
    with_shadow = compare(wh, "e1", metric="accuracy", include_shadow=True)
    assert [d.deployment_id for d in with_shadow.deployments] == ["A", "B", "S"]
    assert [(c.control, c.treatment) for c in with_shadow.comparisons] == [("A", "B"), ("A", "S")]
    s = with_shadow.deployments[2]
    assert s.labelled == 50 and s.latency_p50_ms == 9.0

    # Feedback sent again for an instance supersedes the earlier answer.
    before = compare(wh, "e1", metric="accuracy", deployments=["A", "B"]).deployments[0]
    record_feedback(
        tmp_path, "e1", [{"request_id": f"A-{i}", "ground_truth": "x"} for i in range(50)]
    )
    after = compare(wh, "e1", metric="accuracy", deployments=["A", "B"]).deployments[0]
    assert before.metric_value > 0.5 and after.metric_value == 0.0 and after.labelled == 50

    # `since` leaves out older traffic: only the shadow's is recent enough.
    with pytest.raises(FailedPrecondition, match=r"from 1 deployment\(s\) \['S'\]"):
        compare(wh, "e1", metric="accuracy", include_shadow=True, since=T0 + timedelta(hours=1))
    with pytest.raises(FailedPrecondition, match="from 0 deployment"):
        compare(wh, "e1", metric="accuracy", since=timedelta(days=1))


def test_figures_count_errors_and_a_raw_cursor_works(tmp_path, wh):
    rng = np.random.default_rng(5)
    _classification(tmp_path, "e1", rng, {"A": 0.9, "B": 0.9}, n=20)
    with RequestLog(tmp_path, "e1", flush_interval_s=60) as log:
        log.record(
            request_id="failed",
            deployment_id="B",
            model="demo.fraud",
            model_version=2,
            shadow=False,
            instances=[{"amount": "x"}],
            predictions=[],
            latency_ms=0.1,
            status=400,
            error="bad amount",
        )
    register_log_tables(wh, tmp_path, "e1")
    cur = wh.cursor()
    try:
        result = compare(cur, "e1", metric="accuracy")
    finally:
        cur.close()
    b = result.deployments[1]
    assert (b.requests, b.errors, b.labelled) == (21, 1, 20)
    assert result.model_dump(mode="json")["comparisons"][0]["test"] == "two-proportion z-test"


def test_bad_requests_are_refused_clearly(tmp_path, wh):
    rng = np.random.default_rng(1)
    with pytest.raises(NotFound, match="no request logs for endpoint 'e1'"):
        compare(wh, "e1", metric="accuracy")
    _classification(tmp_path, "e1", rng, {"A": 0.8, "B": 0.8}, n=10)
    register_log_tables(wh, tmp_path, "e1")

    with pytest.raises(InvalidArgument) as info:
        compare(wh, "e1", metric="f1")
    for name in METRICS:
        assert name in str(info.value)
    with pytest.raises(InvalidArgument, match="at least two deployments"):
        compare(wh, "e1", metric="accuracy", deployments=["A"])
    with pytest.raises(InvalidArgument, match="list of deployment ids"):
        compare(wh, "e1", metric="accuracy", deployments="AB")
    with pytest.raises(NotFound, match=r"deployment\(s\) \['C'\].*\['A', 'B'\]"):
        compare(wh, "e1", metric="accuracy", deployments=["A", "C"])
    with pytest.raises(InvalidArgument, match="confidence_level"):
        compare(wh, "e1", metric="accuracy", confidence_level=1.0)
    with pytest.raises(InvalidArgument, match="invalid since"):
        compare(wh, "e1", metric="accuracy", since="yesterday")  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="needs numbers.*'fraud'|needs numbers.*'ok'"):
        compare(wh, "e1", metric="mean_absolute_error")

    # Logs without enough ground truth: the counts are in the message.
    with RequestLog(tmp_path, "e2", flush_interval_s=60) as log:
        for deployment in ("A", "B"):
            for i in range(3):
                log.record(
                    request_id=f"{deployment}{i}",
                    deployment_id=deployment,
                    model="m.m",
                    model_version=1,
                    shadow=False,
                    instances=[{}],
                    predictions=[{"predicted_y": 1}],
                    latency_ms=1.0,
                )
    record_feedback(tmp_path, "e2", [{"request_id": "A0", "ground_truth": 1}])
    register_log_tables(wh, tmp_path, "e2")
    with pytest.raises(FailedPrecondition, match=r"at least 2 with ground truth \(A: 1, B: 0\)"):
        compare(wh, "e2", metric="accuracy")


def test_several_predicted_columns_need_a_label(tmp_path, wh):
    with RequestLog(tmp_path, "multi", flush_interval_s=60) as log:
        for d, deployment in enumerate(("A", "B")):
            for i in range(4):
                log.record(
                    request_id=f"{deployment}{i}",
                    deployment_id=deployment,
                    model="demo.multi",
                    model_version=1,
                    shadow=False,
                    instances=[{}],
                    predictions=[{"predicted_y": i, "predicted_z": d, "predicted_z_probs": []}],
                    latency_ms=1.0,
                    timestamp=T0 + timedelta(minutes=d),
                )
    record_feedback(
        tmp_path,
        "multi",
        [
            {"request_id": f"{d}{i}", "ground_truth": {"z": 0, "y": i}}
            for d in "AB"
            for i in range(4)
        ],
    )
    register_log_tables(wh, tmp_path, "multi")
    with pytest.raises(InvalidArgument, match=r"several columns \['y', 'z'\].*label="):
        compare(wh, "multi", metric="accuracy")
    # The ground truth record gives each label its own value.
    by_z = compare(wh, "multi", metric="accuracy", label="z")
    assert [d.metric_value for d in by_z.deployments] == [1.0, 0.0]
    assert by_z.comparisons[0].better == "A" and by_z.comparisons[0].p_value < 0.05
    by_y = compare(wh, "multi", metric="accuracy", label="y")
    assert [d.metric_value for d in by_y.deployments] == [1.0, 1.0]
    assert not by_y.comparisons[0].significant and by_y.comparisons[0].p_value == 1.0
