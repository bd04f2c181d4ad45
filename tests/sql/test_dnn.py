"""DNN_CLASSIFIER / DNN_REGRESSOR / DNN_LINEAR_COMBINED_*: options, accuracy beside
scikit-learn's MLP with the same settings, ML.TRAINING_INFO per iteration, determinism, the
``torch`` flavor's save/load, online serving and bad input."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

import shipyard as sy
from shipyard.errors import InvalidArgument, Unsupported
from shipyard.sql.dnn import default_hidden_units
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options

# Options are validated without torch; everything that trains needs it.
_TRAINS = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="needs torch (shipyard[dnn])"
)

_EVAL_EVERY = 5  # every 5th row evaluates (a CUSTOM split that scikit-learn can reuse)


def _table(data: Any, label_type: type) -> list[dict[str, Any]]:
    return [
        {
            **{f"f{i}": float(v) for i, v in enumerate(row)},
            "label": label_type(target),
            "is_eval": i % _EVAL_EVERY == 0,
        }
        for i, (row, target) in enumerate(zip(data.data, data.target, strict=True))
    ]


def _split(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mask = np.arange(len(data.target)) % _EVAL_EVERY == 0
    x = data.data
    mean, std = x[~mask].mean(axis=0), x[~mask].std(axis=0)
    z = (x - mean) / std
    return z[~mask], data.target[~mask], z[mask], data.target[mask]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("torch")
    workspace = sy.connect(tmp_path_factory.mktemp("dnn"))
    workspace.load_table("demo.bc", _table(load_breast_cancer(), int))
    workspace.load_table("demo.diabetes", _table(load_diabetes(), float))
    workspace.sql(
        "CREATE MODEL demo.clf OPTIONS(model_type='DNN_CLASSIFIER', hidden_units=[32, 16], "
        "batch_size=32, max_iterations=30, early_stop=FALSE, data_split_method='CUSTOM', "
        "data_split_col='is_eval') AS SELECT * FROM demo.bc"
    )
    workspace.sql(
        "CREATE MODEL demo.reg OPTIONS(model_type='DNN_REGRESSOR', hidden_units=[32], "
        "batch_size=32, learn_rate=0.01, max_iterations=40, early_stop=FALSE, "
        "data_split_method='CUSTOM', data_split_col='is_eval') AS SELECT * FROM demo.diabetes"
    )
    yield workspace
    workspace.close()


def _metrics(ws: Any, model: str) -> dict[str, float]:
    return dict(ws.sql(f"SELECT * FROM ML.EVALUATE(MODEL {model})").to_arrow().to_pylist()[0])


# -- options ----------------------------------------------------------------------------------


def test_defaults_are_bigquery_mls() -> None:
    opts = parse_options({"model_type": "dnn_classifier"})
    assert (opts.activation_fn, opts.optimizer, opts.learn_rate, opts.dropout) == (
        "RELU",
        "ADAM",
        0.001,
        0.0,
    )
    assert (opts.hidden_units, opts.batch_size, opts.max_iterations, opts.early_stop) == (
        None,
        None,
        20,
        True,
    )
    assert opts.min_rel_progress == 0.01 and opts.l1_reg == 0.0 and opts.l2_reg == 0.0
    names = MODEL_TYPES["DNN_LINEAR_COMBINED_CLASSIFIER"].option_names
    for name in ("hidden_units", "activation_fn", "optimizer", "batch_size", "dropout"):
        assert name in names
    assert (
        "class_weights" in names
        and "class_weights" not in MODEL_TYPES["DNN_REGRESSOR"].option_names
    )
    assert "enable_global_explain" in names and "category_encoding_method" not in names


def test_wide_and_deep_takes_one_optimizer_for_both_parts() -> None:
    with pytest.raises(Unsupported, match="per-part values"):
        parse_options(
            {
                "model_type": "DNN_LINEAR_COMBINED_CLASSIFIER",
                "optimizer": [{"name": "dnn_optimizer", "value": "ADAM"}],
            }
        )
    opts = parse_options({"model_type": "DNN_LINEAR_COMBINED_REGRESSOR", "optimizer": "sgd"})
    assert opts.optimizer == "SGD"


def test_default_hidden_units_follow_bigquery_mls_rule() -> None:
    # min(128, N / (10 * (inputs + outputs))), at least one unit
    assert default_hidden_units(100_000, 20, 1) == [128]
    assert default_hidden_units(4_200, 20, 1) == [20]
    assert default_hidden_units(50, 20, 1) == [1]


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"activation_fn": "gelu"}, InvalidArgument, "'RELU', 'RELU6', 'CRELU', 'ELU'"),
        ({"optimizer": "nadam"}, InvalidArgument, "'ADAGRAD', 'ADAM', 'FTRL'"),
        ({"optimizer": "ftrl"}, Unsupported, "valid: ADAGRAD, ADAM, RMSPROP, SGD"),
        ({"hidden_units": []}, InvalidArgument, "'hidden_units' must list at least one"),
        ({"hidden_units": [8, 0]}, InvalidArgument, "each >= 1"),
        ({"hidden_units": 8}, InvalidArgument, "'hidden_units'"),
        ({"batch_size": 9000}, InvalidArgument, "'batch_size' for model_type DNN_REGRESSOR"),
        ({"batch_size": 0}, InvalidArgument, ">= 1"),
        ({"dropout": 1.0}, InvalidArgument, "'dropout' for model_type DNN_REGRESSOR must be"),
        ({"learn_rate": 0.0}, InvalidArgument, "'learn_rate'"),
        ({"tf_version": "2.8.0"}, Unsupported, "PyTorch"),
        ({"integrated_gradients_num_steps": 0}, InvalidArgument, "integrated_gradients_num_steps"),
        ({"category_encoding_method": "LABEL_ENCODING"}, InvalidArgument, "unknown option"),
        ({"class_weights": [("a", 1.0)]}, InvalidArgument, "unknown option 'class_weights'"),
    ],
)
def test_bad_options_name_the_option_and_the_choices(
    options: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        parse_options({"model_type": "DNN_REGRESSOR", **options})
    assert fragment in str(info.value)


# -- accuracy beside scikit-learn ---------------------------------------------------------------


@_TRAINS
def test_classifier_matches_sklearn_mlp(ws: Any) -> None:
    from sklearn.neural_network import MLPClassifier

    x, y, xe, ye = _split(load_breast_cancer())
    mlp = MLPClassifier(
        hidden_layer_sizes=(32, 16),
        batch_size=32,
        learning_rate_init=0.001,
        max_iter=30,
        alpha=0.0,
        random_state=0,
    )
    with warnings.catch_warnings():  # 30 iterations: sklearn says it has not converged
        warnings.simplefilter("ignore")
        mlp.fit(x, y)
    ours = _metrics(ws, "demo.clf")
    theirs = float(np.mean(mlp.predict(xe) == ye))
    assert ours["accuracy"] > 0.93 and ours["roc_auc"] > 0.97
    assert ours["accuracy"] >= theirs - 0.03


@_TRAINS
def test_regressor_matches_sklearn_mlp(ws: Any) -> None:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.metrics import r2_score
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    x, y, xe, ye = _split(load_diabetes())
    mlp = TransformedTargetRegressor(
        MLPRegressor(
            hidden_layer_sizes=(32,),
            batch_size=32,
            learning_rate_init=0.01,
            max_iter=40,
            alpha=0.0,
            random_state=0,
        ),
        transformer=StandardScaler(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(x, y)
    theirs = r2_score(ye, mlp.predict(xe))
    ours = _metrics(ws, "demo.reg")
    assert ours["r2_score"] > 0.35
    assert ours["r2_score"] >= theirs - 0.1


# -- training info, early stop, determinism ------------------------------------------------


@_TRAINS
def test_training_info_has_one_row_per_iteration(ws: Any) -> None:
    info = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.clf)").to_arrow().to_pylist()
    assert [r["iteration"] for r in info] == list(range(30))
    assert all(r["learning_rate"] == 0.001 and r["eval_loss"] is not None for r in info)
    assert all(r["duration_ms"] >= 0 for r in info)
    assert info[-1]["loss"] < info[0]["loss"] / 2  # the network learned
    reg = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.reg)").to_arrow().to_pylist()
    # regression losses are mean squared errors in the label's units (diabetes: ~3,000)
    assert 1_000 < reg[-1]["eval_loss"] < 10_000


@_TRAINS
def test_early_stop_ends_at_the_first_small_improvement(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.early OPTIONS(model_type='DNN_CLASSIFIER', hidden_units=[8], "
        "batch_size=64, max_iterations=50, min_rel_progress=0.2, data_split_method='CUSTOM', "
        "data_split_col='is_eval') AS SELECT * FROM demo.bc"
    )
    info = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.early)").to_arrow().to_pylist()
    assert 2 <= len(info) < 50
    last, before = info[-1]["eval_loss"], info[-2]["eval_loss"]
    assert (before - last) / before < 0.2
    for prev, cur in itertools.pairwise(info[:-1]):
        assert (prev["eval_loss"] - cur["eval_loss"]) / prev["eval_loss"] >= 0.2


def _train_direct(model_type: str, **options: Any) -> Any:
    data = load_breast_cancer()
    table = pa.table(
        {**{f"f{i}": data.data[:120, i] for i in range(6)}, "label": data.target[:120]}
    )
    return MODEL_TYPES[model_type].train(
        table, {"model_type": model_type, "max_iterations": 3, **options}
    )


@_TRAINS
@pytest.mark.parametrize("activation", ["RELU", "RELU6", "CRELU", "ELU", "SELU", "SIGMOID", "TANH"])
def test_every_activation_trains_and_numpy_inference_matches_torch(activation: str) -> None:
    import torch

    from shipyard.sql.dnn import build_module

    trained = _train_direct(
        "DNN_CLASSIFIER", activation_fn=activation, hidden_units=[6, 4], batch_size=16
    )
    net = trained.model
    assert net.architecture["activation"] == activation
    # The same weights in a torch module give the same logits as the NumPy forward pass.
    module = build_module(6, [6, 4], 2, activation, 0.0, wide=False)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in net.weights.items()})
    module.eval()
    x = np.random.default_rng(0).normal(size=(10, 6))
    with torch.no_grad():
        want = module(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(net.output(x), want, rtol=1e-4, atol=1e-5)


@_TRAINS
def test_training_is_deterministic_and_uses_each_optimizer() -> None:
    first = _train_direct("DNN_CLASSIFIER", hidden_units=[4], batch_size=16, dropout=0.2)
    again = _train_direct("DNN_CLASSIFIER", hidden_units=[4], batch_size=16, dropout=0.2)
    for name, value in first.model.weights.items():
        np.testing.assert_array_equal(value, again.model.weights[name])
    for optimizer in ("ADAGRAD", "RMSPROP", "SGD"):
        other = _train_direct("DNN_CLASSIFIER", hidden_units=[4], optimizer=optimizer)
        assert not np.array_equal(
            other.model.weights["deep.0.weight"], first.model.weights["deep.0.weight"]
        )


@_TRAINS
def test_wide_and_deep_has_a_linear_part_and_learns() -> None:
    trained = _train_direct(
        "DNN_LINEAR_COMBINED_CLASSIFIER", hidden_units=[8], batch_size=8, max_iterations=10
    )
    net = trained.model
    assert net.kind == "wide_deep" and net.weights["wide.weight"].shape == (2, 6)
    assert trained.eval_metrics["accuracy"] > 0.8
    reg = _train_direct("DNN_LINEAR_COMBINED_REGRESSOR", hidden_units=[4], input_label_cols=["f0"])
    assert reg.task == "regression" and reg.model.weights["wide.weight"].shape == (1, 6)


@_TRAINS
def test_warm_start_continues_from_the_current_weights(ws: Any) -> None:
    create = (
        "CREATE OR REPLACE MODEL demo.warm OPTIONS(model_type='DNN_REGRESSOR', "
        "hidden_units=[16], batch_size=32, learn_rate=0.01, early_stop=FALSE, "
        "data_split_method='CUSTOM', data_split_col='is_eval', {}) AS SELECT * FROM demo.diabetes"
    )

    def info() -> list[dict[str, Any]]:
        rows = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.warm)").to_arrow().to_pylist()
        return list(rows)

    ws.sql(create.format("max_iterations=20"))
    trained = info()
    ws.sql(create.format("max_iterations=1, warm_start=TRUE"))
    resumed = info()
    ws.sql(create.format("max_iterations=1"))
    fresh = info()
    assert len(resumed) == 1
    # one more pass from the trained weights: near the trained loss, far below a fresh start
    assert resumed[0]["loss"] < 1.2 * trained[-1]["loss"] < fresh[0]["loss"]
    with pytest.raises(InvalidArgument, match=r"layers and activation must stay the same"):
        ws.sql(
            create.replace("hidden_units=[16]", "hidden_units=[8]").format(
                "max_iterations=1, warm_start=TRUE"
            )
        )
    assert [r["loss"] for r in info()] == [r["loss"] for r in fresh]  # state intact


@_TRAINS
def test_class_weights_must_name_every_class(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="no weight for classes"):
        ws.sql(
            "CREATE MODEL demo.cw OPTIONS(model_type='DNN_CLASSIFIER', max_iterations=1, "
            "class_weights=[STRUCT('1' AS label, 2.0 AS weight)]) "
            "AS SELECT * EXCEPT(is_eval) FROM demo.bc"
        )
    assert "demo.cw" not in [m.name for m in ws.models.list().items]
    trained = _train_direct("DNN_CLASSIFIER", auto_class_weights=True, hidden_units=[4])
    assert trained.eval_metrics["accuracy"] is not None


# -- packaging, prediction and serving ----------------------------------------------------------


@_TRAINS
def test_predictions_identical_after_save_and_load(ws: Any, tmp_path: Any) -> None:
    from shipyard.registry.flavors import load_model, save_model
    from shipyard.registry.predictor import Predictor

    trained = _train_direct("DNN_REGRESSOR", hidden_units=[5, 3], input_label_cols=["f0"])
    predictor = trained.predictor()
    meta = save_model("torch", trained.model, tmp_path)
    assert sorted(meta["files"]) == ["architecture.json", "model.safetensors"]
    loaded = Predictor.from_dict(predictor.to_dict(), load_model("torch", tmp_path, meta))
    data = load_breast_cancer()
    rows = pa.table(
        {f"f{i}": data.data[200:260, i] for i in range(1, 6)} | {"label": data.target[200:260]}
    )
    assert loaded.predict(rows).equals(predictor.predict(rows))
    # Through the registry: ML.PREDICT reads the stored package.
    got = ws.sql(
        "SELECT predicted_label, label FROM ML.PREDICT(MODEL demo.clf, TABLE demo.bc)"
    ).to_arrow()
    assert got.num_rows == 569
    again = ws.models.load("demo.clf").predict(ws.sql("SELECT * FROM demo.bc").to_arrow())
    assert again["predicted_label"].to_pylist() == got["predicted_label"].to_pylist()


def test_a_stored_network_predicts_without_torch(tmp_path: Any) -> None:
    pytest.importorskip("safetensors")
    import subprocess
    import sys

    from shipyard.registry.flavors import save_model
    from shipyard.registry.neural import NeuralNet

    rng = np.random.default_rng(1)
    net = NeuralNet(
        {"kind": "mlp", "activation": "TANH", "output": "classification", "widths": [3, 4, 2]},
        {
            "deep.0.weight": rng.normal(size=(4, 3)).astype(np.float32),
            "deep.0.bias": rng.normal(size=4).astype(np.float32),
            "deep.1.weight": rng.normal(size=(2, 4)).astype(np.float32),
            "deep.1.bias": rng.normal(size=2).astype(np.float32),
        },
    )
    meta = save_model("torch", net, tmp_path)
    script = (
        "import sys, numpy as np; from pathlib import Path\n"
        "from shipyard.registry.flavors import load_model\n"
        f"net = load_model('torch', Path({str(tmp_path)!r}), {meta!r})\n"
        "p = net.predict_proba(np.ones((2, 3)))\n"
        "print(round(float(p.sum()), 6), 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["2.0", "False"]
    np.testing.assert_allclose(net.predict_proba(np.ones((2, 3))).sum(axis=1), [1.0, 1.0])


def test_damaged_package_is_refused(tmp_path: Any) -> None:
    pytest.importorskip("safetensors")
    from shipyard.errors import ArtifactCorrupted
    from shipyard.registry.flavors import load_model

    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "architecture.json").write_text("{}")
    with pytest.raises(ArtifactCorrupted, match="cannot be read"):
        load_model("torch", tmp_path, {"files": ["model.safetensors", "architecture.json"]})
    with pytest.raises(ArtifactCorrupted, match="missing"):
        load_model("torch", tmp_path / "nowhere", {})


@_TRAINS
def test_online_serving_through_the_sdk(ws: Any) -> None:
    ws.endpoints.create("dnn-ep")
    ws.endpoints.deploy("dnn-ep", "demo.clf")
    rows = ws.sql("SELECT * EXCLUDE (label, is_eval) FROM demo.bc LIMIT 7").to_arrow().to_pylist()
    response = ws.endpoints.predict("dnn-ep", rows)
    want = (
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.clf, (SELECT * EXCLUDE (label, is_eval) "
            "FROM demo.bc LIMIT 7))"
        )
        .to_arrow()
        .to_pylist()
    )
    assert len(response["predictions"]) == 7
    for got, expected in zip(response["predictions"], want, strict=True):
        assert got["predicted_label"] == expected["predicted_label"]
        probs = [p["prob"] for p in got["predicted_label_probs"]]
        assert probs == pytest.approx([p["prob"] for p in expected["predicted_label_probs"]])


@_TRAINS
def test_bad_training_input(ws: Any) -> None:
    before = [m.name for m in ws.models.list().items]
    with pytest.raises(InvalidArgument, match="needs a numeric label"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='DNN_REGRESSOR') AS "
            "SELECT f0, CAST(label AS VARCHAR) AS label FROM demo.bc"
        )
    with pytest.raises(InvalidArgument, match="diverged"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='DNN_REGRESSOR', optimizer='SGD', "
            "learn_rate=1e6, batch_size=8, max_iterations=3) AS SELECT * FROM demo.diabetes"
        )
    assert [m.name for m in ws.models.list().items] == before
