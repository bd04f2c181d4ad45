"""Endpoints through the embedded SDK: deployments, traffic, shadows, rollback, prediction."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from typing import Any

import pytest

from shipyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from tests.serving.conftest import instances


def _served_by(ws: Any, name: str, n: int, **kwargs: Any) -> Counter[str]:
    return Counter(
        ws.endpoints.predict(name, instances(1), **kwargs)["deployedModelId"] for _ in range(n)
    )


# -- control plane -------------------------------------------------------------------------------


def test_create_list_get_and_bad_names(ws: Any) -> None:
    created = ws.endpoints.create("fraud-v1", description="scores payments")
    assert created.revision == 1 and created.deployments == [] and created.traffic == {}
    assert [e.name for e in ws.endpoints.list().items] == ["fraud-v1"]
    assert ws.endpoints.get("fraud-v1").description == "scores payments"
    with pytest.raises(AlreadyExists, match="fraud-v1"):
        ws.endpoints.create("fraud-v1")
    for bad in ("Fraud", "1abc", "a b", "", "x" * 64):
        with pytest.raises(InvalidArgument, match="endpoint name"):
            ws.endpoints.create(bad)
    with pytest.raises(InvalidArgument, match="timeout_s"):
        ws.endpoints.create("e2", config={"timeout_s": -1})
    with pytest.raises(InvalidArgument, match="valid fields"):
        ws.endpoints.create("e2", config={"timeout": 3})
    with pytest.raises(NotFound, match="nope"):
        ws.endpoints.get("nope")
    with pytest.raises(AlreadyExists, match="endpoint_logs.fraud_v1"):
        ws.endpoints.create("fraud_v1")
    with pytest.raises(InvalidArgument, match="feedback"):
        ws.endpoints.create("fraud-feedback")
    assert [e.name for e in ws.endpoints.list().items] == ["fraud-v1"]


def test_deploy_scales_the_others_proportionally(ws: Any) -> None:
    ws.endpoints.create("e1")
    with pytest.raises(InvalidArgument, match="first deployment .* must take 100%"):
        ws.endpoints.deploy("e1", "d.tree", traffic=50)
    e = ws.endpoints.deploy("e1", "d.tree")
    assert e.traffic == {"d1": 100}
    assert e.deployments[0].alias == "default" and e.deployments[0].version == 1
    e = ws.endpoints.deploy("e1", "d.logit", traffic=20)
    assert e.traffic == {"d1": 80, "d2": 20}
    e = ws.endpoints.deploy("e1", "d.tree", traffic=10)
    assert e.traffic == {"d1": 72, "d2": 18, "d3": 10}
    assert sum(e.traffic.values()) == 100
    e = ws.endpoints.undeploy("e1", "d1")
    assert e.traffic == {"d2": 64, "d3": 36}
    assert ws.endpoints.get("e1").revision == 5  # the refused deploy changed nothing


def test_bad_deploys_and_splits_leave_the_endpoint_unchanged(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    ws.endpoints.deploy("e1", "d.logit", traffic=50)
    before = ws.endpoints.get("e1")
    with pytest.raises(NotFound, match="d.missing"):
        ws.endpoints.deploy("e1", "d.missing")
    with pytest.raises(NotFound):
        ws.endpoints.deploy("e1", "d.tree", version=9)
    with pytest.raises(NotFound):
        ws.endpoints.deploy("e1", "d.tree", alias="champion")
    with pytest.raises(InvalidArgument, match="not both"):
        ws.endpoints.deploy("e1", "d.tree", version=1, alias="default")
    with pytest.raises(InvalidArgument, match="shadow"):
        ws.endpoints.deploy("e1", "d.tree", traffic=10, shadow=True)
    with pytest.raises(InvalidArgument, match="between 0 and 100"):
        ws.endpoints.deploy("e1", "d.tree", traffic=120)
    with pytest.raises(InvalidArgument, match="sum to 100, got 90"):
        ws.endpoints.split("e1", {"d1": 60, "d2": 30})
    with pytest.raises(NotFound, match="no deployment 'd7'.*d1, d2"):
        ws.endpoints.split("e1", {"d1": 50, "d7": 50})
    with pytest.raises(InvalidArgument, match="whole percent"):
        ws.endpoints.split("e1", {"d1": 50.5, "d2": 49.5})
    with pytest.raises(NotFound):
        ws.endpoints.undeploy("e1", "d9")
    with pytest.raises(NotFound):
        ws.endpoints.deploy("nope", "d.tree")
    after = ws.endpoints.get("e1")
    assert after.revision == before.revision and after.traffic == before.traffic


def test_an_alias_is_resolved_at_deploy_time_and_recorded(ws: Any) -> None:
    ws.models.set_alias("d.tree", "champion", 1)
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree", alias="champion")
    ws.sql(
        "CREATE OR REPLACE MODEL d.tree OPTIONS(model_type='BOOSTED_TREE_CLASSIFIER', "
        "input_label_cols=['label'], max_iterations=3) AS SELECT x, z, color, label FROM d.train"
    )
    ws.models.set_alias("d.tree", "champion", 2)
    deployment = ws.endpoints.get("e1").deployments[0]
    assert (deployment.alias, deployment.version) == ("champion", 1)
    assert ws.endpoints.predict("e1", instances(1))["modelVersion"] == "1"


def test_split_rollback_and_history(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    ws.endpoints.deploy("e1", "d.logit", traffic=10)
    ws.endpoints.split("e1", {"d1": 50, "d2": 50})
    assert ws.endpoints.rollback("e1").traffic == {"d1": 90, "d2": 10}
    # Like `kubectl rollout undo`: a second rollback undoes the first.
    assert ws.endpoints.rollback("e1").traffic == {"d1": 50, "d2": 50}
    restored = ws.endpoints.rollback("e1", to_revision=2)
    assert restored.traffic == {"d1": 100} and len(restored.deployments) == 1
    changes = ws.endpoints.history("e1").items
    assert [c.action for c in changes] == [
        "rollback",
        "rollback",
        "rollback",
        "split",
        "deploy",
        "deploy",
        "create",
    ]
    assert changes[3].before["traffic"] == {"d1": 90, "d2": 10}
    assert changes[3].after["traffic"] == {"d1": 50, "d2": 50}
    assert all(c.actor for c in changes)
    with pytest.raises(NotFound, match="revision 99"):
        ws.endpoints.rollback("e1", to_revision=99)
    ws.endpoints.create("fresh")
    with pytest.raises(FailedPrecondition, match="no earlier state"):
        ws.endpoints.rollback("fresh")


def test_delete_needs_force_with_deployments(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    with pytest.raises(FailedPrecondition, match="undeploy them first"):
        ws.endpoints.delete("e1")
    ws.endpoints.delete("e1", force=True)
    with pytest.raises(NotFound):
        ws.endpoints.get("e1")


# -- data plane ----------------------------------------------------------------------------------


def test_predictions_match_ml_predict(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.logit")
    batch = instances(20)
    response = ws.endpoints.predict("e1", batch)
    assert response["deployedModelId"] == "d1" and response["model"] == "d.logit"
    assert response["modelVersion"] == "1" and len(response["requestId"]) == 32
    expected = (
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL d.logit, (SELECT x, z, color FROM d.train LIMIT 20))"
        )
        .to_arrow()
        .to_pylist()
    )
    for got, want in zip(response["predictions"], expected, strict=True):
        assert got["predicted_label"] == want["predicted_label"]
        for p, q in zip(got["predicted_label_probs"], want["predicted_label_probs"], strict=True):
            assert p["label"] == q["label"] and math.isclose(p["prob"], q["prob"], rel_tol=1e-12)
    assert set(response["predictions"][0]) == {"predicted_label", "predicted_label_probs"}


def test_threshold_parameter(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.logit")
    labels = {
        p["predicted_label"]
        for p in ws.endpoints.predict("e1", instances(30), {"threshold": 0.0})["predictions"]
    }
    assert labels == {1}
    labels = {
        p["predicted_label"]
        for p in ws.endpoints.predict("e1", instances(30), {"threshold": 1.0})["predictions"]
    }
    assert labels == {0}
    with pytest.raises(InvalidArgument, match="unknown parameter 'k'.*threshold"):
        ws.endpoints.predict("e1", instances(1), {"k": 1})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([{"x": "a", "z": 1.0, "color": "red"}], r"instances\[0\].x must be a number"),
        ([{"x": 1.0, "z": 1.0}], r"instances\[0\] lacks field 'color'"),
        ([{"x": 1.0, "z": 1.0, "color": "red", "w": 3}], r"unknown field 'w'"),
        ([{"x": 1.0, "z": 1.0, "color": 7}], r"instances\[0\].color must be a string"),
        (
            [{"x": 1.0, "z": 1.0, "color": "red"}, {"x": True, "z": 1.0, "color": "red"}],
            r"instances\[1\].x must be a number",
        ),
        ([], "instances is empty"),
        ("rows", "instances must be a list"),
        ([[1, 2, 3]], r"instances\[0\] must be an object"),
    ],
)
def test_bad_instances_name_the_field(ws: Any, payload: Any, message: str) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    with pytest.raises(InvalidArgument, match=message):
        ws.endpoints.predict("e1", payload)
    assert ws.endpoints.predict("e1", instances(1))["deployedModelId"] == "d1"


def test_nulls_are_values_and_too_many_instances_are_refused(ws: Any) -> None:
    ws.endpoints.create("e1", config={"max_instances": 3})
    ws.endpoints.deploy("e1", "d.reg")
    out = ws.endpoints.predict("e1", [{"x": None, "z": 1.0, "color": None}])
    assert isinstance(out["predictions"][0]["predicted_y"], float)
    with pytest.raises(InvalidArgument, match="at most 3"):
        ws.endpoints.predict("e1", instances(4))


def test_no_deployment_is_a_failed_precondition(ws: Any) -> None:
    ws.endpoints.create("e1")
    with pytest.raises(FailedPrecondition, match="deploy a model first"):
        ws.endpoints.predict("e1", instances(1))
    with pytest.raises(NotFound):
        ws.endpoints.predict("nope", instances(1))


def test_observed_shares_match_the_split(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    ws.endpoints.deploy("e1", "d.logit", traffic=30)
    n = 2000
    served = _served_by(ws, "e1", n)
    share = served["d2"] / n
    sigma = math.sqrt(0.3 * 0.7 / n)
    assert abs(share - 0.3) < 5 * sigma, served


def test_sticky_keys_never_move_while_the_split_is_unchanged(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    ws.endpoints.deploy("e1", "d.logit", traffic=50, sticky_key="user")
    first: dict[str, str] = {}
    for round_ in range(3):
        for user in range(200):
            instance = {**instances(1)[0], "user": f"u{user}"}
            got = ws.endpoints.predict("e1", [instance])["deployedModelId"]
            assert first.setdefault(f"u{user}", got) == got, (round_, user)
    shares = Counter(first.values())
    assert 60 < shares["d2"] < 140, shares  # about half the keys each


def test_shadow_answers_are_logged_never_returned(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    e = ws.endpoints.deploy("e1", "d.logit", shadow=True)
    assert e.traffic == {"d1": 100} and [d.id for d in e.shadows] == ["d2"]
    ids = [ws.endpoints.predict("e1", instances(2))["requestId"] for _ in range(5)]
    assert _served_by(ws, "e1", 20) == Counter({"d1": 20})
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        ws.services.endpoints.flush_logs("e1")
        rows = (
            ws.sql(
                "SELECT request_id, deployment_id, shadow FROM endpoint_logs.e1 "
                f"WHERE request_id IN ({', '.join(repr(i) for i in ids)})"
            )
            .to_arrow()
            .to_pylist()
        )
        if len(rows) == 20:  # 5 requests, 2 instances each, primary and shadow
            break
        time.sleep(0.1)
    assert Counter((r["deployment_id"], r["shadow"]) for r in rows) == {
        ("d1", False): 10,
        ("d2", True): 10,
    }


def test_request_logs_are_a_warehouse_table(ws: Any) -> None:
    ws.endpoints.create("e-1")
    ws.endpoints.deploy("e-1", "d.reg")
    response = ws.endpoints.predict("e-1", instances(3))
    ws.services.endpoints.flush_logs()
    rows = (
        ws.sql(
            "SELECT request_id, instance_index, deployment_id, model, model_version, status, "
            "latency_ms, inputs, outputs FROM endpoint_logs.e_1 ORDER BY instance_index"
        )
        .to_arrow()
        .to_pylist()
    )
    assert [r["instance_index"] for r in rows] == [0, 1, 2]
    assert {r["request_id"] for r in rows} == {response["requestId"]}
    assert rows[0]["model"] == "d.reg" and rows[0]["model_version"] == 1
    assert rows[0]["status"] == 200 and rows[0]["latency_ms"] > 0
    assert '"predicted_y"' in rows[0]["outputs"] and '"color"' in rows[0]["inputs"]


def test_sample_rate_zero_logs_nothing(ws: Any) -> None:
    ws.endpoints.create("quiet", config={"log_sample_rate": 0})
    ws.endpoints.deploy("quiet", "d.reg")
    for _ in range(5):
        ws.endpoints.predict("quiet", instances(1))
    ws.services.endpoints.flush_logs()
    assert ws.sql("SELECT count(*) AS n FROM endpoint_logs.quiet").to_arrow().to_pylist() == [
        {"n": 0}
    ]


def test_a_model_that_raises_is_a_500_and_the_endpoint_keeps_serving(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    ws.endpoints.predict("e1", instances(1))
    serving = ws.services.endpoints._runtimes["e1"].serving["d1"]
    healthy = serving.predictor.model

    class Broken:
        def inplace_predict(self, matrix: Any) -> Any:
            raise MemoryError("the model ran out of memory")

    serving.predictor.model = Broken()
    with pytest.raises(Internal, match=r"deployment d1 \(models/d.tree/versions/1\) failed"):
        ws.endpoints.predict("e1", instances(1))
    serving.predictor.model = healthy
    assert ws.endpoints.predict("e1", instances(1))["deployedModelId"] == "d1"
    stats = ws.endpoints.stats("e1")["d1"]
    assert stats["requests"] == 3 and stats["errors"] == 1


def test_concurrent_requests_are_answered_correctly(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.reg")
    batch = instances(50)
    expected = [p["predicted_y"] for p in ws.endpoints.predict("e1", batch)["predictions"]]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            for i in range(25):
                j = (k * 7 + i) % 50
                got = ws.endpoints.predict("e1", [batch[j]])["predictions"][0]["predicted_y"]
                assert math.isclose(got, expected[j], rel_tol=1e-12)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    batcher = ws.services.endpoints._runtimes["e1"].serving["d1"].batcher
    assert batcher.batched_requests == 16 * 25 + 1
    assert batcher.batches <= batcher.batched_requests


def test_explain_gives_attributions(ws: Any) -> None:
    ws.endpoints.create("e1")
    ws.endpoints.deploy("e1", "d.tree")
    out = ws.endpoints.explain("e1", instances(3), {"top_k_features": 2})
    assert len(out["predictions"]) == len(out["explanations"]) == 3
    first = out["explanations"][0]
    assert len(first["attributions"]) == 2
    assert {a["feature"] for a in first["attributions"]} <= {"x", "z", "color"}
    total = first["baseline_prediction_value"] + sum(
        a["attribution"]
        for a in ws.endpoints.explain("e1", instances(1))["explanations"][0]["attributions"]
    )
    assert math.isclose(total, first["prediction_value"], rel_tol=1e-4, abs_tol=1e-4)
    with pytest.raises(InvalidArgument, match="top_k_features"):
        ws.endpoints.explain("e1", instances(1), {"top_k_features": 0})


def test_feedback_and_ab_comparison(ws: Any) -> None:
    ws.endpoints.create("ab")
    ws.endpoints.deploy("ab", "d.tree")
    ws.endpoints.deploy("ab", "d.logit", traffic=50)
    from tests.serving.conftest import rows

    data = rows(300)
    feedback = []
    for i, row in enumerate(data):
        answer = ws.endpoints.predict("ab", [{k: row[k] for k in ("x", "z", "color")}])
        feedback.append(
            {"request_id": answer["requestId"], "instance_index": 0, "ground_truth": row["label"]}
        )
        if i == 0:
            assert ws.endpoints.feedback("ab", feedback) == 1
    assert ws.endpoints.feedback("ab", feedback[1:]) == 299
    result = ws.endpoints.compare("ab", metric="accuracy")
    figures = {f.deployment_id: f for f in result.deployments}
    assert set(figures) == {"d1", "d2"}
    assert sum(f.labelled for f in figures.values()) == 300
    assert all(0.5 < f.metric_value <= 1.0 for f in figures.values())
    assert result.comparisons[0].verdict
    with pytest.raises(InvalidArgument, match="unknown metric"):
        ws.endpoints.compare("ab", metric="auc_pr_x")
    with pytest.raises(InvalidArgument):
        ws.endpoints.feedback("ab", [{"ground_truth": 1}])


def test_deployments_are_in_the_lineage(ws: Any) -> None:
    ws.endpoints.create("e1")
    assert [a.uri for a in ws.lineage("endpoints/e1").artifacts] == ["endpoints/e1"]
    ws.endpoints.deploy("e1", "d.tree")
    ws.endpoints.deploy("e1", "d.logit", shadow=True)
    upstream = ws.lineage("endpoints/e1", direction="upstream")
    uris = {a.uri for a in upstream.artifacts}
    assert {"models/d.tree/versions/1", "models/d.logit/versions/1"} <= uris
    deploys = [e for e in upstream.executions if e.kind == "deploy"]
    assert sorted(e.properties["deployment"] for e in deploys) == ["d1", "d2"]
    downstream = ws.lineage("models/d.tree/versions/1", direction="downstream")
    assert "endpoints/e1" in {a.uri for a in downstream.artifacts}


def test_trees_are_served_by_onnx_runtime_when_it_agrees(ws: Any) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxmltools")
    ws.endpoints.create("fast")
    ws.endpoints.deploy("fast", "d.tree")
    ws.endpoints.create("exact", config={"runtime": "native"})
    ws.endpoints.deploy("exact", "d.tree")
    batch = instances(60)
    fast = ws.endpoints.predict("fast", batch)["predictions"]
    exact = ws.endpoints.predict("exact", batch)["predictions"]
    for a, b in zip(fast, exact, strict=True):
        assert a["predicted_label"] == b["predicted_label"]
        for p, q in zip(a["predicted_label_probs"], b["predicted_label_probs"], strict=True):
            assert math.isclose(p["prob"], q["prob"], rel_tol=1e-5, abs_tol=1e-6)
    assert ws.endpoints.stats("exact")["d1"]["runtime"] == "native"
    stats = ws.endpoints.stats("fast")["d1"]
    # ONNX Runtime is used when it agrees and is faster; either way the reason is given.
    assert stats["runtime"] in ("onnxruntime", "native") and stats["runtime_reason"]
    # Explanations always come from the booster itself.
    out = ws.endpoints.explain("fast", batch[:2])
    assert len(out["explanations"]) == 2


def test_the_onnx_twin_is_checked_on_the_models_own_thresholds() -> None:
    pytest.importorskip("onnxruntime")
    import numpy as np
    import xgboost as xgb

    from shipyard.serving.accelerate import _probe, _thresholds

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(x, x[:, 0] * 2), 5)
    cuts = _thresholds(booster, "xgboost", 3)
    probe = _probe(booster, "xgboost", 3)
    assert probe.shape == (256, 3)
    assert np.isnan(probe).any()  # missing values are probed too
    for j in range(3):
        if len(cuts[j]):  # some probe values sit exactly on a threshold
            assert np.isin(cuts[j], probe[:, j]).any()


def test_large_calls_go_to_the_booster_past_the_measured_crossing() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxmltools")
    import numpy as np
    import xgboost as xgb

    from shipyard.serving.accelerate import _crossing, _OnnxTrees, _session

    # A line through each side's one-row and 256-row times: native costs 190 µs more per call
    # and 1 µs less per row, so it wins from 191 rows; never when its rows cost as much.
    assert _crossing((10.0, 10.0 + 255 * 5), (200.0, 200.0 + 255 * 4)) == 191
    assert _crossing((10.0, 10.0 + 255 * 4), (200.0, 200.0 + 255 * 4)) is None

    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    booster = xgb.train({"max_depth": 4, "nthread": 1}, xgb.DMatrix(x, x[:, 0] - x[:, 1]), 20)

    class _Model:  # what _session reads of a predictor
        model, flavor, _threads = booster, "xgboost", 1

    trees = _OnnxTrees(_session(_Model(), 4), "regression")  # type: ignore[arg-type]
    trees.native, trees.native_from = booster, 50
    small, large = x[:49], x[:50]
    # Below the crossing ONNX Runtime answers (float32 sums: close, not bit-equal) ...
    assert np.allclose(trees.inplace_predict(small), booster.inplace_predict(small), atol=1e-5)
    # ... and from it on the booster does, bit for bit.
    assert np.array_equal(trees.inplace_predict(large), booster.inplace_predict(large))


def test_logged_rows_are_the_request_whether_json_now_or_in_the_flush(ws: Any) -> None:
    """Small requests are logged as JSON at once; large all-numeric ones hand the log their
    tables (written as JSON in the flush). A user reading the log sees the same rows."""
    from shipyard.serving.logs import DEFER_JSON_ROWS

    ws.sql(
        "CREATE MODEL d.num OPTIONS(model_type='LINEAR_REG', input_label_cols=['y']) "
        "AS SELECT x, z, y FROM d.train"
    )
    ws.endpoints.create("num")
    ws.endpoints.deploy("num", "d.num")
    sent = {
        n: [{"x": r["x"], "z": r["z"]} for r in instances(n, offset=3)]
        for n in (1, DEFER_JSON_ROWS + 4)
    }
    answers = {n: ws.endpoints.predict("num", batch) for n, batch in sent.items()}
    ws.services.endpoints.flush_logs("num")
    for n, batch in sent.items():
        rows = (
            ws.sql(
                "SELECT instance_index, inputs, outputs FROM endpoint_logs.num "
                f"WHERE request_id = '{answers[n]['requestId']}' ORDER BY instance_index"
            )
            .to_arrow()
            .to_pylist()
        )
        assert [r["instance_index"] for r in rows] == list(range(n))
        assert [json.loads(r["inputs"]) for r in rows] == batch
        assert [json.loads(r["outputs"]) for r in rows] == answers[n]["predictions"]
