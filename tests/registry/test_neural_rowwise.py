"""The networks' faster inference keeps its bits: biases and ReLU a span of rows at a time,
column-major blocks from the input columns, DNN classifiers on one BLAS thread.

:func:`shipyard.registry.neural._rowwise` must give NumPy's broadcast ``add`` / ``maximum``
bit for bit (NaN, ±inf, -0.0, a remainder of rows, a row wider than a span); the block path
from the columns (column-major blocks) must give the whole-matrix pass over the row-major
matrix for the benchmark's shapes (20-16-5 encoder, 20-64-32-2 classifier, wide & deep); and
ML.PREDICT of a DNN classifier must not depend on the BLAS thread count.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy.special import softmax
from threadpoolctl import threadpool_limits

import shipyard as sy
from shipyard.registry.neural import (
    _SPAN,
    NeuralNet,
    _Blocked,
    _rowwise,
    _softmax_rows,
    _tiled,
)
from shipyard.registry.preprocessing import FeaturePreprocessor


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.int64)


def _edge_values(rows: int, width: int, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).normal(size=(rows, width))
    special = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, -1e-310]
    flat = values.reshape(-1)
    spots = np.arange(len(special)) * 7 % len(flat)  # spread over rows and columns
    flat[spots] = special
    return values


@pytest.mark.parametrize(
    ("rows", "width"),
    [(1, 2), (2, 5), (4095, 2), (4096, 2), (4097, 2), (3126, 16), (2048, 64), (5, 9000)],
)
def test_rowwise_add_and_maximum_are_numpys_broadcast(rows: int, width: int) -> None:
    row = np.random.default_rng(width).normal(size=width)
    row[0] = -0.0
    for ufunc, operand in ((np.add, row), (np.maximum, np.zeros(width))):
        target = _edge_values(rows, width)
        want = ufunc(target, operand if ufunc is np.add else 0.0)
        _rowwise(ufunc, target, operand, _tiled(operand))
        assert np.array_equal(_bits(target), _bits(want)), (ufunc.__name__, rows, width)


def test_tiled_rows_cover_a_span() -> None:
    assert len(_tiled(np.ones(5))) == 5 * (_SPAN // 5)
    assert len(_tiled(np.ones(2 * _SPAN))) == 2 * _SPAN  # wider than a span: once
    with pytest.raises(AssertionError):  # a strided target would be written through a copy
        _rowwise(np.add, np.zeros((8, 4))[:, :2], np.ones(2), _tiled(np.ones(2)))


@pytest.mark.parametrize("k", [2, 3])
def test_softmax_in_place_is_scipys_on_many_rows(k: int) -> None:
    logits = _edge_values(20_001, k, seed=k) * 30.0  # strided columns, SIMD loops and tails
    with np.errstate(invalid="ignore"):  # inf - inf in the rows of ±inf
        want = softmax(logits, axis=1)
        got = _softmax_rows(logits.copy())
    assert np.array_equal(got, want, equal_nan=True)


def _net(widths: list[int], kind: str = "mlp", activation: str = "RELU") -> NeuralNet:
    rng = np.random.default_rng(len(widths))
    weights: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
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
    }
    if kind == "autoencoder":
        architecture["latent_layer"] = int(np.argmin(widths[1:-1]))
    return NeuralNet(architecture, weights)


def _plain(net: NeuralNet, x: np.ndarray, stop: int | None = None) -> np.ndarray:
    """The whole-matrix pass over the row-major matrix, layer by layer."""
    act = {"RELU": lambda v: np.maximum(v, 0.0), "TANH": np.tanh}[net.architecture["activation"]]
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


def _table(n: int, seed: int = 3) -> pa.Table:
    x = np.random.default_rng(seed).normal(size=(n, 20)) * 2.0 - 0.5
    columns: dict[str, Any] = {f"x{j}": x[:, j] for j in range(20)}
    table = pa.table(columns)
    # -0.0, NaN and a NULL among the inputs (imputed as the matrix imputes them)
    x0 = x[:, 0].copy()
    x0[[1, n // 2]] = [-0.0, np.nan]
    mask = np.zeros(n, dtype=bool)
    mask[n - 1] = True
    return table.set_column(0, "x0", pa.array(x0, mask=mask))


@pytest.fixture(scope="module")
def preprocessor() -> FeaturePreprocessor:
    table = _table(400, seed=8)
    return FeaturePreprocessor.fit(table, table.column_names, standardize=True)


@pytest.mark.parametrize(
    ("widths", "kind", "activation", "latent"),
    [
        ([20, 16, 5, 16, 20], "autoencoder", "RELU", True),  # ML.PREDICT: pieces of 3,126 rows
        ([20, 16, 5, 16, 20], "autoencoder", "RELU", False),
        ([20, 64, 32, 2], "mlp", "RELU", False),  # the 32x2 layer: blocks of 15,626 rows
        ([20, 64, 32, 3], "wide_deep", "TANH", False),  # the wide 20x3: blocks of 16,667
    ],
)
def test_column_major_blocks_give_the_row_major_matrix_bits(
    preprocessor: FeaturePreprocessor,
    widths: list[int],
    kind: str,
    activation: str,
    latent: bool,
) -> None:
    net = _net(widths, kind, activation)
    stop = int(net.architecture["latent_layer"]) + 1 if latent else None
    plan = _Blocked.plan(net, stop or net._layers, stop is None, 10**9)
    assert plan is not None
    for n in (plan.block, 2 * plan.block + 1):
        table = _table(n)
        x = preprocessor.transform(table, dtype=np.float64)
        assert x.flags.c_contiguous
        with threadpool_limits(1, "blas"):
            got = net.output_table(preprocessor, table, latent=latent)
        assert got is not None and got.flags.c_contiguous
        assert np.array_equal(got, _plain(net, x, stop)), n
        if kind == "mlp":
            proba = net.predict_proba_table(preprocessor, table)
            assert proba is not None and np.array_equal(proba, net.predict_proba(x)), n


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("torch")
    workspace = sy.connect(tmp_path_factory.mktemp("neural_rowwise"))
    train = _table(300, seed=5)
    labels = np.array(["low", "mid", "high"])[np.arange(300) % 3]
    workspace.load_table("d.train", train.append_column("label", pa.array(labels)))
    workspace.load_table("d.rows", _table(2 * 15626 + 7, seed=6))
    workspace.sql(
        "CREATE MODEL d.dnn OPTIONS(model_type='DNN_CLASSIFIER', input_label_cols=['label'], "
        "hidden_units=[64, 32], batch_size=64, max_iterations=2, early_stop=FALSE) "
        "AS SELECT * FROM d.train"
    )
    yield workspace
    workspace.close()


@pytest.mark.slow  # imports torch and trains a network
def test_ml_predict_dnn_classifier_does_not_depend_on_blas_threads(ws: Any) -> None:
    from shipyard.registry.service import ModelService

    query = "SELECT * FROM ML.PREDICT(MODEL d.dnn, TABLE d.rows)"
    got = ws.sql(query).to_arrow()
    rows = ws.sql("SELECT * FROM d.rows").to_arrow()
    predictor = ModelService(ws.ctx).load("d.dnn")
    with threadpool_limits(None, "blas"):  # every thread: the matrix path
        codes, probabilities = predictor.predict_raw(predictor.matrix(rows))
    labels = np.array(predictor.label_info.values(), dtype=object)  # type: ignore[union-attr]
    assert got["predicted_label"].to_pylist() == labels[codes].tolist()
    probs = np.array([[p["prob"] for p in row] for row in got["predicted_label_probs"].to_pylist()])
    assert np.array_equal(probs[:, ::-1], probabilities)
    assert got.num_rows == rows.num_rows and got.column_names[2:] == rows.column_names
