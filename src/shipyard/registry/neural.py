"""Feed-forward networks trained with PyTorch, run with NumPy: the ``torch`` model flavor.

A :class:`NeuralNet` is an architecture (plain JSON) plus named float32 weight arrays. Training
(:mod:`shipyard.sql.dnn`) uses PyTorch; prediction here needs only NumPy, so a model loads in
milliseconds and serving never imports torch. The package stores the weights as
``model.safetensors`` (a format that cannot run code when read) and the architecture as
``architecture.json``.

Architectures (``kind``):

* ``mlp`` — DNN_CLASSIFIER / DNN_REGRESSOR: dense layers ``deep.<i>``, an activation (and, in
  training only, dropout) after each hidden layer, a linear output layer.
* ``wide_deep`` — DNN_LINEAR_COMBINED_*: the ``mlp`` plus a linear layer ``wide`` on the same
  inputs; the two outputs (logits or values) are summed.
* ``autoencoder`` — AUTOENCODER: the hidden layers ``deep.<i>``, then an output layer back to
  the input width; the narrowest hidden layer's activations are the latent space.

Regression outputs are trained on the standardized label and mapped back with
``label_mean`` / ``label_std``.

Example::

    >>> import numpy as np
    >>> net = NeuralNet(
    ...     {"kind": "mlp", "activation": "RELU", "output": "regression", "widths": [2, 1],
    ...      "label_mean": 0.0, "label_std": 1.0},
    ...     {"deep.0.weight": np.ones((1, 2), np.float32), "deep.0.bias": np.zeros(1, np.float32)},
    ... )
    >>> net.predict(np.array([[1.0, 2.0]])).tolist()
    [3.0]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import ArtifactCorrupted, InvalidArgument

__all__ = [
    "ACTIVATIONS",
    "NeuralNet",
    "load_neural_net",
    "save_neural_net",
]

WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE_FILE = "architecture.json"
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def _crelu(x: np.ndarray) -> np.ndarray:
    # Concatenated ReLU: [relu(x), relu(-x)], twice the width of its layer.
    return np.concatenate([np.maximum(x, 0.0), np.maximum(-x, 0.0)], axis=1)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _selu(x: np.ndarray) -> np.ndarray:
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return np.asarray(expit(x))


def _derivative(name: str, z: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """The gradient through activation ``name`` at pre-activations ``z`` (PyTorch's
    conventions at the kinks: ReLU's derivative at 0 is 0)."""
    if name == "RELU":
        return upstream * (z > 0)
    if name == "RELU6":
        return upstream * ((z > 0) & (z < 6))
    if name == "CRELU":  # [relu(z), relu(-z)]: the two halves of the upstream gradient
        width = z.shape[1]
        return upstream[:, :width] * (z > 0) - upstream[:, width:] * (z < 0)
    if name == "ELU":
        return upstream * np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    if name == "SELU":
        slope = np.where(z > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(z, 0.0)))
        return upstream * (_SELU_SCALE * slope)
    if name == "SIGMOID":
        s = _sigmoid(z)
        return upstream * s * (1.0 - s)
    t = np.tanh(z)  # TANH
    return upstream * (1.0 - t * t)  # type: ignore[no-any-return]


#: ACTIVATION_FN → its NumPy function (the same functions as PyTorch's, for inference).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "RELU": _relu,
    "RELU6": _relu6,
    "CRELU": _crelu,
    "ELU": _elu,
    "SELU": _selu,
    "SIGMOID": _sigmoid,
    "TANH": np.tanh,
}


#: The activations that can overwrite their input: the forward pass applies them to each
#: layer's fresh output in place (the same ufuncs, the same bits, no new array per layer).
_IN_PLACE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "RELU": lambda x: np.maximum(x, 0.0, out=x),
    "RELU6": lambda x: np.clip(x, 0.0, 6.0, out=x),
    "TANH": lambda x: np.tanh(x, out=x),
}


class NeuralNet:
    """A trained network: ``architecture`` (JSON) and ``weights`` (name → float32 array).

    ``predict`` (regression values), ``predict_proba`` (class probabilities, class order),
    ``transform`` (an autoencoder's latent space) and ``reconstruct`` (its output) take the
    preprocessed feature matrix.
    """

    def __init__(self, architecture: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        kind = architecture.get("kind")
        if kind not in ("mlp", "wide_deep", "autoencoder"):
            raise InvalidArgument(
                f"unknown network kind {kind!r}; valid: mlp, wide_deep, autoencoder"
            )
        if architecture.get("activation") not in ACTIVATIONS:
            raise InvalidArgument(
                f"unknown activation {architecture.get('activation')!r}; valid: "
                f"{', '.join(ACTIVATIONS)}"
            )
        self.architecture = dict(architecture)
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self._act = ACTIVATIONS[architecture["activation"]]
        self._act_fresh = _IN_PLACE.get(architecture["activation"], self._act)
        self._layers = self._count_layers()
        # float64 copies (inference in float64 keeps a row's result independent of its batch),
        # weight matrices transposed once: (inputs, outputs), contiguous for the matmul.
        self._w = {
            k: np.ascontiguousarray(v.T if k.endswith(".weight") else v, dtype=np.float64)
            for k, v in self.weights.items()
        }

    def _count_layers(self) -> int:
        n = 0
        while f"deep.{n}.weight" in self.weights:
            n += 1
        if n == 0:
            raise ArtifactCorrupted("the network has no layers ('deep.0.weight' is missing)")
        return n

    @property
    def kind(self) -> str:
        return str(self.architecture["kind"])

    def _dense(self, name: str, x: np.ndarray) -> np.ndarray:
        out = x @ self._w[f"{name}.weight"]
        out += self._w[f"{name}.bias"]
        return out  # type: ignore[no-any-return]

    def _hidden(self, x: np.ndarray, stop: int | None = None) -> np.ndarray:
        """The activations after hidden layers 0 .. stop-1 (all hidden layers by default)."""
        hidden = self._layers - 1
        for i in range(hidden if stop is None else stop):
            x = self._act_fresh(self._dense(f"deep.{i}", x))  # _dense's output is ours
        return x

    def output(self, matrix: np.ndarray) -> np.ndarray:
        """The raw output: (rows, outputs) logits, standardized values or reconstructions."""
        x = np.asarray(matrix, dtype=np.float64)
        out = self._dense(f"deep.{self._layers - 1}", self._hidden(x))
        if self.kind == "wide_deep":
            out = out + self._dense("wide", x)
        return out

    def input_gradient(self, matrix: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(value, gradient)`` of ``value = Σ_k seed[:, k] · output[:, k]`` per row: the
        explained combination of the raw outputs and its gradient with respect to the inputs,
        (rows,) and (rows, inputs) — back-propagation through the stored weights in NumPy."""
        x = np.asarray(matrix, dtype=np.float64)
        name = str(self.architecture["activation"])
        pre: list[np.ndarray] = []
        h = x
        for i in range(self._layers - 1):
            z = self._dense(f"deep.{i}", h)
            pre.append(z)
            h = self._act(z)
        last = self._layers - 1
        out = self._dense(f"deep.{last}", h)
        if self.kind == "wide_deep":
            out = out + self._dense("wide", x)
        value = np.einsum("ij,ij->i", out, seed)
        grad = seed @ self._w[f"deep.{last}.weight"].T
        for i in range(last - 1, -1, -1):
            grad = _derivative(name, pre[i], grad) @ self._w[f"deep.{i}.weight"].T
        if self.kind == "wide_deep":
            grad = grad + seed @ self._w["wide.weight"].T
        return value, grad

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Regression: the predicted values in the label's units."""
        out = self.output(matrix)[:, 0]
        mean = float(self.architecture.get("label_mean", 0.0))
        std = float(self.architecture.get("label_std", 1.0))
        return out * std + mean  # type: ignore[no-any-return]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Classification: (rows, classes) probabilities (softmax of the logits)."""
        from scipy.special import softmax

        return np.asarray(softmax(self.output(matrix), axis=1))

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Autoencoder: the latent layer's activations, (rows, latent units)."""
        latent = int(self.architecture["latent_layer"])
        x = np.asarray(matrix, dtype=np.float64)
        return self._hidden(x, latent + 1)

    def reconstruct(self, matrix: np.ndarray) -> np.ndarray:
        """Autoencoder: the reconstructed (preprocessed) features."""
        return self.output(matrix)


def save_neural_net(model: Any, folder: Path) -> dict[str, Any]:
    """Write a :class:`NeuralNet` as ``model.safetensors`` + ``architecture.json``."""
    from safetensors.numpy import save_file

    if not isinstance(model, NeuralNet):
        raise InvalidArgument(
            f"the torch flavor stores a shipyard NeuralNet, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    folder = Path(folder)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in model.weights.items()}, str(folder / WEIGHTS_FILE)
    )
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(model.architecture, sort_keys=True))
    try:
        import safetensors

        version = safetensors.__version__
    except AttributeError:  # pragma: no cover - every release has it
        version = ""
    return {
        "files": [WEIGHTS_FILE, ARCHITECTURE_FILE],
        "format": "safetensors",
        "library_version": version,
    }


def load_neural_net(folder: Path, meta: dict[str, Any]) -> NeuralNet:
    """Read back what :func:`save_neural_net` wrote (no code runs while reading)."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    files = list(meta.get("files") or [WEIGHTS_FILE, ARCHITECTURE_FILE])
    paths = [folder / name for name in files]
    for path in paths:
        if not path.is_file():
            raise ArtifactCorrupted(
                f"torch model file {path.name!r} is missing from {str(folder)!r}; the package "
                "must contain the files its manifest lists",
                path=str(path),
            )
    weights_path = next((p for p in paths if p.suffix == ".safetensors"), folder / WEIGHTS_FILE)
    arch_path = next((p for p in paths if p.suffix == ".json"), folder / ARCHITECTURE_FILE)
    try:
        weights = load_file(str(weights_path))
        architecture = json.loads(arch_path.read_text())
    except Exception as exc:  # a damaged header or JSON: report it as a damaged package
        raise ArtifactCorrupted(
            f"torch model files cannot be read: {exc}", path=str(weights_path)
        ) from exc
    return NeuralNet(architecture, weights)
