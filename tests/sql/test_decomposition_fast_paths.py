"""PCA's and AUTOENCODER's faster passes give the same bits as the plain whole-matrix
arithmetic: the reconstruction errors in row blocks, ML.PREDICT's PCA projection without
scikit-learn's input checks (on one BLAS thread), the latent layer on one BLAS thread, and the
PyTorch network's forward pass without the ModuleList slice and the zero-dropout calls."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA

from shipyard.registry.neural import NeuralNet
from shipyard.registry.predictor import _FEW_ROWS, Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql import autoencoder, decomposition
from shipyard.sql.autoencoder import AUTOENCODER_METRICS, reconstruction_errors
from shipyard.sql.decomposition import _reconstruction_errors

# Row counts around the blocks: one row, a partial block, a block, blocks plus a remainder.
_BLOCK = decomposition._BLOCK_ROWS
_ROWS = [1, 7, _BLOCK, 2 * _BLOCK + 13]


def _correlated(n: int, width: int = 9, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, width)) @ rng.normal(size=(width, width)) + 2.0


@pytest.mark.parametrize("rows", _ROWS)
@pytest.mark.parametrize("components", [1, 4, 9])
def test_pca_reconstruction_errors_in_blocks_are_scikit_learns(rows: int, components: int) -> None:
    fit_rows = _correlated(500, seed=1)
    model = PCA(components).fit(fit_rows)
    x = _correlated(rows)
    want = np.mean((x - model.inverse_transform(model.transform(x))) ** 2, axis=1)
    assert np.array_equal(_reconstruction_errors(model, x), want)


def test_pca_reconstruction_errors_whitened_and_empty() -> None:
    x = _correlated(300)
    model = PCA(3, whiten=True).fit(x)
    want = np.mean((x - model.inverse_transform(model.transform(x))) ** 2, axis=1)
    assert np.array_equal(_reconstruction_errors(model, x), want)
    assert _reconstruction_errors(PCA(3).fit(x), x[:0]).shape == (0,)


def _pca_predictor(model: Any, width: int) -> Predictor:
    table = pa.table({f"x{i}": pa.array(np.arange(3.0) + i) for i in range(width)})
    preprocessor = FeaturePreprocessor.fit(table, table.column_names, standardize=False)
    return Predictor(
        model=model,
        flavor="sklearn",
        task="dimensionality_reduction",
        preprocessor=preprocessor,
        label_info=None,
        label="",
        config={"model_type": "PCA", "num_components": int(model.n_components_)},
    )


@pytest.mark.parametrize("rows", [1, _FEW_ROWS, _FEW_ROWS + 1, 3 * _BLOCK])
def test_pca_projection_is_scikit_learns_transform(rows: int) -> None:
    model = PCA(4).fit(_correlated(600, seed=2))
    predictor = _pca_predictor(model, 9)
    x = _correlated(rows)
    got = predictor.principal_components(x)
    assert got.shape == (rows, 4)
    assert np.array_equal(got, model.transform(x))


def test_pca_projection_keeps_scikit_learns_checks() -> None:
    model = PCA(2).fit(_correlated(200))
    predictor = _pca_predictor(model, 9)
    x = _correlated(_FEW_ROWS + 5)
    x[17, 3] = np.nan  # what the preprocessor never gives: scikit-learn's error, as before
    with pytest.raises(ValueError, match="NaN"):
        predictor.principal_components(x)
    assert predictor.principal_components(x[:0]).shape == (0, 2)
    whitened = PCA(2, whiten=True).fit(_correlated(200))
    y = _correlated(50)
    assert np.array_equal(
        _pca_predictor(whitened, 9).principal_components(y), whitened.transform(y)
    )


def _net(width: int = 6, activation: str = "RELU", seed: int = 0) -> NeuralNet:
    rng = np.random.default_rng(seed)
    widths = [width, 5, 2, 5, width]
    weights: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        weights[f"deep.{i}.weight"] = (rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32)
        weights[f"deep.{i}.bias"] = rng.normal(scale=0.3, size=b).astype(np.float32)
    architecture = {
        "kind": "autoencoder",
        "activation": activation,
        "output": "reconstruction",
        "widths": widths,
        "latent_layer": 1,
    }
    return NeuralNet(architecture, weights)


def _whole_matrix_errors(net: NeuralNet, x: np.ndarray) -> dict[str, np.ndarray]:
    restored = net.reconstruct(x)
    diff = restored - x
    log_diff = np.log1p(np.maximum(restored, 0.0)) - np.log1p(np.maximum(x, 0.0))
    return {
        "mean_absolute_error": np.mean(np.abs(diff), axis=1),
        "mean_squared_error": np.mean(diff * diff, axis=1),
        "mean_squared_log_error": np.mean(log_diff * log_diff, axis=1),
    }


@pytest.mark.parametrize("rows", [1, 7, autoencoder._BLOCK_ROWS, 2 * autoencoder._BLOCK_ROWS + 5])
@pytest.mark.parametrize("activation", ["RELU", "TANH"])
def test_autoencoder_errors_in_blocks_are_the_whole_matrix_ones(rows: int, activation: str) -> None:
    net = _net(activation=activation)
    x = np.random.default_rng(rows).normal(size=(rows, 6))
    x[0, 0] = 0.0
    x[-1, 1] = -0.0  # signed zeros and values under -1 go through max(., 0) and log1p
    x[0, 2] = -3.0
    got, want = reconstruction_errors(net, x), _whole_matrix_errors(net, x)
    assert list(got) == list(AUTOENCODER_METRICS)
    for name in AUTOENCODER_METRICS:
        assert np.array_equal(got[name], want[name]), name
    assert all(reconstruction_errors(net, x[:0])[n].shape == (0,) for n in AUTOENCODER_METRICS)


def test_autoencoder_errors_keep_nan_rows_nan() -> None:
    net = _net()
    x = np.random.default_rng(0).normal(size=(10, 6))
    x[4, 2] = np.nan
    got, want = reconstruction_errors(net, x), _whole_matrix_errors(net, x)
    for name in AUTOENCODER_METRICS:
        assert np.array_equal(got[name], want[name], equal_nan=True)
        assert np.isnan(got[name][4]) and not np.isnan(np.delete(got[name], 4)).any()


@pytest.mark.parametrize("rows", [3, _FEW_ROWS + 1])
def test_autoencoder_latent_on_one_thread_is_the_same(rows: int) -> None:
    net = _net()
    predictor = Predictor(
        model=net,
        flavor="torch",
        task="dimensionality_reduction",
        preprocessor=_pca_predictor(PCA(1).fit(_correlated(20, width=6)), 6).preprocessor,
        label_info=None,
        label="",
        config={"model_type": "AUTOENCODER", "num_components": 2, "output_prefix": "latent_col_"},
    )
    x = np.random.default_rng(1).normal(size=(rows, 6))
    assert np.array_equal(predictor.principal_components(x), net.transform(x))


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_network_forward_is_the_layer_by_layer_arithmetic(dropout: float) -> None:
    torch = pytest.importorskip("torch")
    from shipyard.sql.dnn import build_module

    torch.manual_seed(0)
    module = build_module(6, [5, 2, 5], 6, "RELU", dropout, wide=False)
    module.latent_layer = 1
    x = torch.randn(64, 6)

    def by_hand(drop: bool) -> Any:
        h = x
        for i in range(3):
            h = torch.relu(module.deep[i](h))
            if i == 1:
                latent = h
            if drop:
                h = torch.nn.functional.dropout(h, dropout, training=True)
        return module.deep[3](h), latent

    module.eval()
    with torch.no_grad():
        want, want_latent = by_hand(False)
        assert torch.equal(module(x), want) and torch.equal(module.latent, want_latent)
    module.train()
    with torch.no_grad():
        torch.manual_seed(5)
        got = module(x)
        after = torch.rand(3)  # dropout 0 draws nothing: the same random stream after
        torch.manual_seed(5)
        want, _ = by_hand(dropout > 0)
        assert torch.equal(got, want) and torch.equal(after, torch.rand(3))
