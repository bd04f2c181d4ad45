"""DNN and AUTOENCODER inference a block of rows at a time gives the whole-matrix bits.

:class:`shipyard.registry.neural._Blocked` runs the layers over blocks (and cache-sized pieces)
of rows, each product over enough rows for OpenBLAS' large kernels; ML.PREDICT feeds the blocks
straight from the input columns (``NeuralNet.output_table``); the softmax runs in place. Every
path is checked against the plain layer-by-layer pass over the whole matrix and scipy's softmax,
on edge inputs (NULL, NaN, ±inf, chunked tables, a TRANSFORM), on one and on every BLAS thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy.special import softmax
from threadpoolctl import threadpool_limits

import shipyard as sy
from shipyard.registry.neural import ACTIVATIONS, NeuralNet, _Blocked, _softmax_rows
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor

WIDE = [20, 32, 512]  # 20x32, 32x512, 512xK: blocks of 2,048 rows


def _net(
    widths: list[int], kind: str = "mlp", activation: str = "RELU", seed: int = 0
) -> NeuralNet:
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        a = 2 * a if activation == "CRELU" and i > 0 else a  # CRELU doubles each hidden layer
        weights[f"deep.{i}.weight"] = (rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32)
        weights[f"deep.{i}.bias"] = rng.normal(scale=0.3, size=b).astype(np.float32)
    if kind == "wide_deep":
        weights["wide.weight"] = rng.normal(size=(widths[-1], widths[0])).astype(np.float32)
        weights["wide.bias"] = rng.normal(size=widths[-1]).astype(np.float32)
    architecture: dict[str, Any] = {
        "kind": kind,
        "activation": activation,
        "output": "reconstruction" if kind == "autoencoder" else "classification",
        "widths": widths,
        "label_mean": 0.0,
        "label_std": 1.0,
    }
    if kind == "autoencoder":
        architecture["latent_layer"] = int(np.argmin(widths[1:-1]))
    return NeuralNet(architecture, weights)


def _plain(net: NeuralNet, x: np.ndarray, stop: int | None = None) -> np.ndarray:
    """The whole-matrix pass: each layer's product, bias and activation over all rows."""
    act = ACTIVATIONS[net.architecture["activation"]]
    last = net._layers - 1
    h = x
    for i in range(last if stop is None else stop):
        h = act(h @ net._w[f"deep.{i}.weight"] + net._w[f"deep.{i}.bias"])
    if stop is not None:
        return h
    out = h @ net._w[f"deep.{last}.weight"] + net._w[f"deep.{last}.bias"]
    if net.kind == "wide_deep":
        out = out + (x @ net._w["wide.weight"] + net._w["wide.bias"])
    return out


def _rows(n: int, width: int = 20, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width))


@pytest.mark.parametrize("threads", [1, None])
@pytest.mark.parametrize(
    ("widths", "kind", "activation"),
    [
        ([*WIDE, 2], "mlp", "RELU"),
        ([*WIDE, 3], "mlp", "TANH"),
        ([*WIDE, 2], "mlp", "ELU"),
        ([*WIDE, 4], "mlp", "SIGMOID"),
        ([20, 64, 32, 2], "mlp", "RELU6"),  # the 32x2 layer: blocks of 15,626 rows
        ([64, 32, 512, 4], "wide_deep", "SELU"),  # the wide 64x4: blocks of 3,907 rows
    ],
)
def test_blocked_output_is_the_whole_matrix_pass(
    widths: list[int], kind: str, activation: str, threads: int | None
) -> None:
    net = _net(widths, kind, activation)
    plan = _Blocked.plan(net, net._layers, True, 10**9)
    assert plan is not None
    block = plan.block
    for n in (1, block - 1, block, 2 * block + 13, 5 * block // 2):
        x = _rows(n, widths[0])
        with threadpool_limits(threads, "blas"):
            got = net.output(x)
        assert got.shape == (n, widths[-1])
        assert np.array_equal(got, _plain(net, x)), n
        assert np.array_equal(net.predict_proba(x), softmax(_plain(net, x), axis=1)), n


@pytest.mark.parametrize("activation", ["RELU", "TANH", "SIGMOID"])
def test_blocked_latent_and_reconstruction(activation: str) -> None:
    net = _net([20, 32, 16, 32, 20], "autoencoder", activation)
    plan = _Blocked.plan(net, 2, False, 10**9)
    assert plan is not None and plan.block == 2048
    for n in (2047, 2048, 3 * 2048 + 5):
        x = _rows(n)
        with threadpool_limits(1, "blas"):
            assert np.array_equal(net.transform(x), _plain(net, x, stop=2))
            assert np.array_equal(net.reconstruct(x), _plain(net, x))


def test_one_output_column_and_crelu_keep_the_whole_matrix_pass() -> None:
    # numpy multiplies by one output column with gemv, whose bits depend on the rows: no blocks
    regressor = _net([*WIDE, 1])
    assert _Blocked.plan(regressor, regressor._layers, True, 10**6) is None
    assert _Blocked.plan(regressor, regressor._layers - 1, False, 10**6) is not None
    x = _rows(5000)
    assert np.array_equal(regressor.predict(x), _plain(regressor, x)[:, 0])
    wide = _net([*WIDE, 1], "wide_deep", "TANH")  # hidden layers in blocks, the rest whole
    assert np.array_equal(wide.predict(x), _plain(wide, x)[:, 0])
    crelu = _net([*WIDE, 2], activation="CRELU")
    assert _Blocked.plan(crelu, crelu._layers, True, 10**6) is None
    assert np.array_equal(crelu.output(x), _plain(crelu, x))
    net = _net([*WIDE, 2])  # a column-major matrix keeps the whole-matrix pass, same values
    assert np.array_equal(net.output(np.asfortranarray(x)), net.output(x))


def test_softmax_in_place_is_scipys_on_edge_logits() -> None:
    for k in (2, 3):
        logits = np.random.default_rng(k).normal(scale=40.0, size=(64, k))
        logits[0, 0], logits[1, 1], logits[2, 0] = np.inf, -np.inf, np.nan
        logits[3], logits[4], logits[5] = np.inf, -np.inf, 900.0
        logits[6, :2], logits[7, :2] = [0.0, -0.0], [-0.0, 0.0]
        want = softmax(logits, axis=1)
        with np.errstate(invalid="ignore"):
            got = _softmax_rows(logits.copy())
        assert np.array_equal(got, want, equal_nan=True), k


# -- from the input columns (ML.PREDICT) --------------------------------------------------------


def _table(n: int, seed: int = 2, chunks: int = 1) -> pa.Table:
    x = _rows(n, seed=seed) * 3.0 + 1.0
    columns: dict[str, Any] = {f"x{j}": x[:, j] for j in range(18)}
    columns["i"] = np.arange(n) % 7  # INT64
    columns["f"] = x[:, 19].astype(np.float32)  # FLOAT32
    table = pa.table(columns)
    if chunks > 1:
        cuts = np.linspace(0, n, chunks + 1).astype(int)
        batches = [
            b for lo, hi in itertools.pairwise(cuts) for b in table.slice(lo, hi - lo).to_batches()
        ]
        table = pa.Table.from_batches(batches)
    return table


def _with_edges(table: pa.Table) -> pa.Table:
    """NULLs, NaN, ±inf in some rows of some columns (imputed as the matrix imputes them)."""
    n = table.num_rows
    x0 = table.column("x0").to_numpy().copy()
    x0[[3, n // 2, n - 1]] = [np.nan, np.inf, -np.inf]
    mask = np.zeros(n, dtype=bool)
    mask[[0, 5, n // 3]] = True
    x1 = pa.array(table.column("x1").to_numpy(), mask=mask)
    i = pa.array(table.column("i").to_numpy(), mask=np.roll(mask, 1))
    table = table.set_column(0, "x0", pa.array(x0)).set_column(1, "x1", x1)
    return table.set_column(table.column_names.index("i"), "i", i)


@pytest.fixture(scope="module")
def preprocessor() -> FeaturePreprocessor:
    table = _table(500, seed=9)
    return FeaturePreprocessor.fit(table, table.column_names, standardize=True)


@pytest.mark.parametrize("chunks", [1, 5])
@pytest.mark.parametrize("edges", [False, True])
def test_output_from_the_columns_is_the_matrix_pass(
    preprocessor: FeaturePreprocessor, chunks: int, edges: bool
) -> None:
    net = _net([*WIDE, 3])
    ae = _net([20, 32, 16, 32, 20], "autoencoder")
    for n in (2048, 3 * 2048 + 77):
        table = _table(n, chunks=chunks)
        if edges:
            table = _with_edges(table)
        x = preprocessor.transform(table, dtype=np.float64)
        assert np.isfinite(x).all()
        got = net.output_table(preprocessor, table)
        assert got is not None and np.array_equal(got, _plain(net, x))
        proba = net.predict_proba_table(preprocessor, table)
        assert proba is not None and np.array_equal(proba, softmax(_plain(net, x), axis=1))
        latent = ae.output_table(preprocessor, table, latent=True)
        assert latent is not None and np.array_equal(latent, _plain(ae, x, stop=2))
        regressor = _net([*WIDE, 1])
        values = regressor.predict_table(preprocessor, table)
        assert values is not None and np.array_equal(values, regressor.predict(x))
        assert np.array_equal(values, _plain(regressor, x)[:, 0])
        assert _net([*WIDE, 1], "wide_deep").predict_table(preprocessor, table) is None


def test_output_from_the_columns_declines_what_it_cannot_do(
    preprocessor: FeaturePreprocessor,
) -> None:
    net = _net([*WIDE, 3])
    assert net.output_table(preprocessor, _table(2047)) is None  # fewer rows than a block
    assert net.output_table(preprocessor, _table(1)) is None
    colours = pa.array(["red", "blue"] * 2048)
    train = _table(4096).append_column("s", colours)
    text = FeaturePreprocessor.fit(train, train.column_names, standardize=True)
    width = text.transform(_table(4096).append_column("s", colours)).shape[1]
    assert (
        _net([width, 32, 512, 3]).output_table(text, _table(4096).append_column("s", colours))
        is None
    )


# -- through SQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("torch")
    workspace = sy.connect(tmp_path_factory.mktemp("neural_blocks"))
    train = _table(600, seed=4)
    labels = (train.column("x0").to_numpy() > 1.0).astype(np.int64)
    workspace.load_table("d.train", train.append_column("label", pa.array(labels)))
    workspace.load_table("d.rows", _with_edges(_table(3 * 2048 + 77, chunks=3)))
    common = "batch_size=64, max_iterations=2, early_stop=FALSE"
    workspace.sql(
        "CREATE MODEL d.dnn OPTIONS(model_type='DNN_CLASSIFIER', input_label_cols=['label'], "
        f"hidden_units=[32, 512], {common}) AS SELECT * FROM d.train"
    )
    workspace.sql(
        "CREATE MODEL d.dnnr OPTIONS(model_type='DNN_REGRESSOR', input_label_cols=['label'], "
        f"hidden_units=[32, 512], {common}) AS SELECT * FROM d.train"
    )
    workspace.sql(
        "CREATE MODEL d.ae OPTIONS(model_type='AUTOENCODER', hidden_units=[32, 16, 32], "
        f"{common}) AS SELECT * EXCEPT(label) FROM d.train"
    )
    cols = ", ".join(f"x{j}" for j in range(1, 18))
    workspace.sql(
        f"CREATE MODEL d.ae_t TRANSFORM(x0 * 2 AS twice, {cols}, i, f) "
        f"OPTIONS(model_type='AUTOENCODER', hidden_units=[32, 16, 32], {common}) "
        "AS SELECT * EXCEPT(label) FROM d.train"
    )
    yield workspace
    workspace.close()


def _predictor(ws: Any, name: str) -> Predictor:
    from shipyard.registry.service import ModelService

    return ModelService(ws.ctx).load(name)


@pytest.mark.parametrize("model", ["d.ae", "d.ae_t"])
def test_ml_predict_latent_is_the_matrix_pass(ws: Any, model: str) -> None:
    got = ws.sql(f"SELECT * FROM ML.PREDICT(MODEL {model}, TABLE d.rows)").to_arrow()
    rows = ws.sql("SELECT * FROM d.rows").to_arrow()
    predictor = _predictor(ws, model)
    want = predictor.principal_components(predictor.matrix(rows))
    fast = predictor.model.output_table(predictor.preprocessor, rows, latent=True)
    assert fast is not None and np.array_equal(fast, want)  # ML.PREDICT took the block path
    assert got.num_rows == rows.num_rows
    for i in range(want.shape[1]):
        assert np.array_equal(got[f"latent_col_{i + 1}"].to_numpy(), want[:, i])
    one = ws.sql(f"SELECT * FROM ML.PREDICT(MODEL {model}, (SELECT * FROM d.rows LIMIT 1))")
    assert one.to_arrow().num_rows == 1


def test_ml_predict_dnn_probabilities_are_the_matrix_pass(ws: Any) -> None:
    got = ws.sql("SELECT * FROM ML.PREDICT(MODEL d.dnn, TABLE d.rows)").to_arrow()
    rows = ws.sql("SELECT * FROM d.rows").to_arrow()
    predictor = _predictor(ws, "d.dnn")
    codes, probabilities = predictor.predict_raw(predictor.matrix(rows))
    fast = predictor._network_scores(rows)
    assert fast is not None and np.array_equal(fast, probabilities)  # the block path
    assert got["predicted_label"].to_pylist() == codes.tolist()
    probs = np.array([[p["prob"] for p in row] for row in got["predicted_label_probs"].to_pylist()])
    assert np.array_equal(probs[:, ::-1], probabilities)
    assert np.array_equal(
        probabilities, softmax(_plain(predictor.model, predictor.matrix(rows)), 1)
    )


def test_ml_predict_dnn_regressor_values_are_the_matrix_pass(ws: Any) -> None:
    got = ws.sql("SELECT * FROM ML.PREDICT(MODEL d.dnnr, TABLE d.rows)").to_arrow()
    rows = ws.sql("SELECT * FROM d.rows").to_arrow()
    predictor = _predictor(ws, "d.dnnr")
    want, _ = predictor.predict_raw(predictor.matrix(rows))
    fast = predictor._network_scores(rows)
    assert fast is not None and np.array_equal(fast, want)  # the block path
    assert np.array_equal(got["predicted_label"].to_numpy(), want)
