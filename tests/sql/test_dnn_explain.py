"""Feature attributions of DNN_* / DNN_LINEAR_COMBINED_* models: integrated gradients in NumPy
on the stored weights — the gradients against PyTorch's autograd, the attributions against a
reference integral, completeness (they add up to prediction - baseline), ML.EXPLAIN_PREDICT,
ML.GLOBAL_EXPLAIN and the endpoint's :explain."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

import shipyard as sy
from shipyard.errors import InvalidArgument
from shipyard.registry.explain import explain
from shipyard.registry.neural import NeuralNet

torch = pytest.importorskip("torch")

from shipyard.sql.dnn import build_module, to_neural_net  # noqa: E402 - needs torch


def _network(activation: str, *, wide: bool = False, outputs: int = 1, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    module = build_module(5, [7, 4], outputs, activation, 0.0, wide=wide)
    module.eval()
    architecture = {
        "kind": "wide_deep" if wide else "mlp",
        "activation": activation,
        "output": "regression" if outputs == 1 else "classification",
        "widths": [5, 7, 4, outputs],
        "label_mean": 0.0,
        "label_std": 1.0,
    }
    return module, to_neural_net(module, architecture)


@pytest.mark.parametrize("activation", ["RELU", "RELU6", "CRELU", "ELU", "SELU", "SIGMOID", "TANH"])
@pytest.mark.parametrize("wide", [False, True])
def test_input_gradient_equals_autograd(activation: str, wide: bool) -> None:
    module, net = _network(activation, wide=wide, outputs=3)
    x = np.random.default_rng(1).normal(size=(6, 5)) * 3
    seed = np.random.default_rng(2).normal(size=(6, 3))
    value, grad = net.input_gradient(x, seed)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = module.double()(xt)
    (out * torch.tensor(seed)).sum().backward()
    assert np.allclose(value, (out.detach().numpy() * seed).sum(axis=1), rtol=1e-6)
    assert np.allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


class _Predictor:
    """The registry's view of a regression network, enough for the attribution code."""

    def __init__(self, net: NeuralNet) -> None:
        self.model, self.task, self.flavor = net, "regression", "torch"
        self.label_info = None


def _reference_ig(module: Any, x: np.ndarray, steps: int = 4000) -> np.ndarray:
    """Integrated gradients from a zero baseline with autograd and a fine midpoint sum."""
    alphas = (np.arange(steps) + 0.5) / steps
    path = torch.tensor(alphas[:, None, None] * x[None], dtype=torch.float64, requires_grad=True)
    module.double()(path.reshape(-1, x.shape[1]))[:, 0].sum().backward()
    return x * path.grad.numpy().mean(axis=0)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("activation", "steps"), [("TANH", 64), ("RELU", 1000)])
def test_attributions_match_a_reference_integral_and_add_up(activation: str, steps: int) -> None:
    from shipyard.registry.explain import _network as integrated_gradients

    module, net = _network(activation)
    x = np.random.default_rng(3).normal(size=(8, 5)) * 2
    contribs, prediction = integrated_gradients(_Predictor(net), x, None, steps)  # type: ignore[arg-type]
    attributions, baseline = contribs[:, :-1], contribs[:, -1]
    assert np.allclose(attributions, _reference_ig(module, x), rtol=2e-3, atol=2e-4)
    assert np.allclose(prediction, net.predict(x))
    assert np.allclose(baseline, net.predict(np.zeros((1, 5)))[0])
    gap = np.abs(baseline + attributions.sum(axis=1) - prediction)
    spread = np.abs(prediction - baseline).max()
    # Smooth activations: exact to rounding at 64 Gauss-Legendre points; ReLU's kinks leave a
    # quadrature error that shrinks with the steps.
    assert gap.max() <= (1e-9 if activation == "TANH" else 1e-3) * spread


# -- through SQL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("dnn_explain"))
    data = load_diabetes()
    workspace.load_table(
        "demo.d",
        [
            {**{f"f{i}": float(row[i]) for i in range(4)}, "c": "abc"[n % 3], "label": float(t)}
            for n, (row, t) in enumerate(zip(data.data[:300], data.target[:300], strict=True))
        ],
    )
    workspace.sql(
        "CREATE MODEL demo.reg OPTIONS(model_type='DNN_REGRESSOR', activation_fn='TANH', "
        "hidden_units=[8, 4], max_iterations=5, enable_global_explain=TRUE) "
        "AS SELECT * FROM demo.d"
    )
    workspace.sql(
        "CREATE MODEL demo.clf OPTIONS(model_type='DNN_LINEAR_COMBINED_CLASSIFIER', "
        "hidden_units=[6], max_iterations=5, integrated_gradients_num_steps=20, "
        "enable_global_explain=TRUE) AS SELECT f0, f1, c, label > 140 AS label FROM demo.d"
    )
    workspace.sql(
        "CREATE MODEL demo.multi OPTIONS(model_type='DNN_CLASSIFIER', hidden_units=[6], "
        "activation_fn='RELU', max_iterations=5) AS SELECT f0, f1, f2, c AS label FROM demo.d"
    )
    yield workspace
    workspace.close()


def _explain(ws: Any, model: str, params: str = "", rows: str = "demo.d") -> list[dict[str, Any]]:
    sql = f"SELECT * FROM ML.EXPLAIN_PREDICT(MODEL {model}, TABLE {rows}{params})"
    out: list[dict[str, Any]] = ws.sql(sql).to_pylist()
    return out


def test_regressor_explains_its_prediction(ws: Any) -> None:
    rows = _explain(ws, "demo.reg", ", STRUCT(5 AS top_k_features)")
    assert len(rows) == 300
    baselines = {r["baseline_prediction_value"] for r in rows}
    assert len(baselines) == 1  # one baseline: every feature at its training mean
    for r in rows:
        assert r["prediction_value"] == pytest.approx(r["predicted_label"])
        attributions = r["top_feature_attributions"]
        assert {a["feature"] for a in attributions} == {"f0", "f1", "f2", "f3", "c"}
        magnitudes = [abs(a["attribution"]) for a in attributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        total = r["baseline_prediction_value"] + sum(a["attribution"] for a in attributions)
        assert total == pytest.approx(r["prediction_value"], abs=1e-6)
        assert r["approximation_error"] == pytest.approx(
            abs(total - r["prediction_value"]), abs=1e-9
        )
        assert r["approximation_error"] < 1e-6


def test_binary_classifier_explains_the_predicted_class_log_odds(ws: Any) -> None:
    rows = _explain(ws, "demo.clf", ", STRUCT(3 AS top_k_features)")
    for r in rows:
        probs = {p["label"]: p["prob"] for p in r["predicted_label_probs"]}
        chosen = r["predicted_label"]
        log_odds = math.log(probs[chosen] / probs[not chosen])
        assert r["prediction_value"] == pytest.approx(log_odds, rel=1e-6, abs=1e-9)
        total = r["baseline_prediction_value"] + sum(
            a["attribution"] for a in r["top_feature_attributions"]
        )
        assert abs(total - r["prediction_value"]) == pytest.approx(
            r["approximation_error"], abs=1e-9
        )


def test_more_integral_steps_shrink_the_error_of_a_relu_network(ws: Any) -> None:
    errors = []
    for steps in (2, 8, 200):
        rows = _explain(ws, "demo.multi", f", STRUCT({steps} AS integrated_gradients_num_steps)")
        errors.append(sum(r["approximation_error"] for r in rows) / len(rows))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_global_explain_is_the_mean_absolute_attribution(ws: Any) -> None:
    stored = {
        r["feature"]: r["attribution"]
        for r in ws.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL demo.reg)").to_pylist()
    }
    rows = _explain(ws, "demo.reg", ", STRUCT(5 AS top_k_features)")
    for feature in ("f0", "f1", "f2", "f3", "c"):
        values = [
            a["attribution"]
            for r in rows
            for a in r["top_feature_attributions"]
            if a["feature"] == feature
        ]
        assert stored[feature] == pytest.approx(np.mean(np.abs(values)))
    per_class = ws.sql(
        "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL demo.clf, STRUCT(TRUE AS class_level_explain))"
    ).to_pylist()
    assert {r["label"] for r in per_class} == {"true", "false"}


def test_the_model_option_sets_the_default_steps(ws: Any) -> None:
    default = _explain(ws, "demo.clf")  # the model's own 20 steps
    twenty = _explain(ws, "demo.clf", ", STRUCT(20 AS integrated_gradients_num_steps)")
    assert default == twenty
    fifty = _explain(ws, "demo.clf", ", STRUCT(50 AS integrated_gradients_num_steps)")
    assert fifty != twenty


def test_predictor_and_endpoint_explain_the_same_way(ws: Any) -> None:
    predictor = ws.models.load("demo.reg")
    table = ws.sql("SELECT * FROM demo.d LIMIT 4").to_arrow()
    direct = explain(predictor, table).to_pylist()
    assert direct == _explain(ws, "demo.reg", rows="(SELECT * FROM demo.d LIMIT 4)")
    ws.endpoints.create("dnn")
    ws.endpoints.deploy("dnn", "demo.reg")
    instances = [{k: v for k, v in row.items() if k != "label"} for row in table.to_pylist()]
    answer = ws.endpoints.explain("dnn", instances, {"top_k_features": 5})
    for got, want in zip(answer["explanations"], direct, strict=True):
        assert got["prediction_value"] == pytest.approx(want["prediction_value"])
        assert sorted(a["attribution"] for a in got["attributions"]) == pytest.approx(
            sorted(a["attribution"] for a in want["top_feature_attributions"])
        )


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.reg, TABLE demo.d, "
            "STRUCT(0 AS integrated_gradients_num_steps))",
            "integrated_gradients_num_steps must be an INT64 from 1 to 1000, got 0",
        ),
        (
            "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.lin, TABLE demo.d, "
            "STRUCT(10 AS integrated_gradients_num_steps))",
            "applies to DNN models",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='DNN_REGRESSOR', "
            "integrated_gradients_num_steps=5000) AS SELECT * FROM demo.d",
            "integrated_gradients_num_steps",
        ),
    ],
)
def test_bad_explanation_arguments(ws: Any, sql: str, fragment: str) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.lin OPTIONS(model_type='LINEAR_REG') AS SELECT * FROM demo.d"
    )
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument) as info:
        ws.sql(sql)
    assert fragment in str(info.value)
    assert [m.name for m in ws.models.list().items] == before
