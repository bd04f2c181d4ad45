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

Inference is float64. From a few thousand rows the layers run a block of rows at a time
(:class:`_Blocked`; ML.PREDICT feeds the blocks straight from the input columns,
:meth:`NeuralNet.output_table`), every product over enough rows that OpenBLAS takes its large
kernels: each row gets the bits of the whole-matrix pass, with a fraction of its fresh memory.

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


#: OpenBLAS multiplies a product of up to 10^6 multiply-adds with its small-matrix kernels,
#: whose last bits differ from the large kernels' (see :mod:`shipyard.registry.projection`).
_SMALL_PRODUCT = 1_000_000
#: The blocked forward pass (:meth:`NeuralNet.output` on many rows) runs consecutive layers
#: whose products exceed ``_SMALL_PRODUCT`` on at most ``_PIECE_MAX`` rows together, a piece
#: of at least ``_PIECE_ROWS`` rows at a time whose activations stay in the CPU cache.
_PIECE_ROWS = 2048
_PIECE_MAX = 4096
#: A row of values (a bias, ReLU's zeros) goes down a layer's output this many values at a
#: time: NumPy broadcasts a row across a narrow output (2-64 wide) in short inner loops at
#: about half the speed of one long loop over the same values.
_SPAN = 8192


def _rowwise(ufunc: np.ufunc, target: np.ndarray, row: np.ndarray, tiled: np.ndarray) -> None:
    """``ufunc(target, row, out=target)`` for a C-contiguous (rows, width) ``target`` and a
    ``row`` of ``width`` values, the same element-wise operations a span of rows at a time:
    ``tiled`` is ``row`` repeated a whole number of times (see ``_SPAN``)."""
    width = len(row)
    assert target.flags.c_contiguous and len(tiled) % width == 0
    whole = len(target) - len(target) % (len(tiled) // width)
    if whole:
        spans = target[:whole].reshape(-1, len(tiled))  # a view: target is contiguous
        ufunc(spans, tiled, out=spans)
    if whole < len(target):
        rest = target[whole:]
        ufunc(rest, row, out=rest)


def _tiled(row: np.ndarray) -> np.ndarray:
    """``row`` repeated to about ``_SPAN`` values (at least once)."""
    return np.tile(row, max(1, _SPAN // len(row)))


def _rows_needed(inputs: int, outputs: int) -> int | None:
    """The fewest rows whose product with an (inputs, outputs) weight matrix gives each row the
    bits of any larger product; None when no block does (one output column: numpy then calls
    gemv, whose bits depend on the rows' count and place)."""
    if outputs < 2:
        return None
    return _SMALL_PRODUCT // (inputs * outputs) + 1


class _Blocked:
    """The forward pass through ``steps`` a block of rows at a time: the same products, bias
    additions and activations, row for row, as the layer-by-layer pass over the whole matrix,
    with every product over more rows than :func:`_rows_needed` (each row then gets the bits
    of the whole-matrix product: BLAS computes a row of a large product the same way wherever
    the row sits, tested). Runs of layers that need at most ``_PIECE_MAX`` rows go together
    a piece at a time (their activations stay in cache); a layer that needs more rows runs
    over the whole block. At 50k rows x 20-64-32-2 that skips ~40 MB of fresh activations.
    Biases (and ReLU) go down each output a span of rows at a time (:func:`_rowwise`): at
    50k rows, 20-64-32-2 ~3 ms and 20-16-5 ~1 ms less than NumPy's row-by-row broadcasting.
    A C-contiguous matrix only (another layout keeps the whole-matrix pass)."""

    def __init__(
        self,
        steps: list[tuple[np.ndarray, np.ndarray, bool]],
        wide: tuple[np.ndarray, np.ndarray] | None,
        act: Callable[[np.ndarray], np.ndarray],
        in_place: bool,
        block: int,
        relu: bool,
    ) -> None:
        self.steps, self.wide, self.block = steps, wide, block
        self.act, self.in_place = act, in_place
        # Each layer's bias tiled for _rowwise. ReLU is np.maximum against zeros the same
        # way: an array of zeros also takes NumPy's fast contiguous loop, where the scalar 0.0
        # does not (the same values: NaN stays NaN, -0.0 becomes 0.0 either way).
        self.biases = [_tiled(b) for _, b, _ in steps]
        self.wide_bias = None if wide is None else _tiled(wide[1])
        widths = [len(b) for _, b, _ in steps]
        self.zeros = np.zeros(max(_SPAN, *widths)) if relu else None  # sliced to each layer
        # segments: (first, stop, piece rows) — layers first..stop-1, a piece of at least
        # that many rows at a time (0: the whole block at once)
        self.segments: list[tuple[int, int, int]] = []
        for i, (w, _, _) in enumerate(steps):
            needed = _rows_needed(*w.shape)
            assert needed is not None
            piece = max(_PIECE_ROWS, needed) if needed <= _PIECE_MAX else 0
            if self.segments and piece and self.segments[-1][2]:
                first, _, rows = self.segments[-1]
                self.segments[-1] = (first, i + 1, max(rows, piece))
            else:
                self.segments.append((i, i + 1, piece))

    @classmethod
    def plan(cls, net: NeuralNet, stop: int, final: bool, rows: int) -> _Blocked | None:
        """The blocked pass through layers 0..stop-1 (the last one linear when ``final``, with
        the wide part of a wide & deep network); None when it does not apply to ``rows``."""
        w = net._w
        steps = [
            (w[f"deep.{i}.weight"], w[f"deep.{i}.bias"], not (final and i == stop - 1))
            for i in range(stop)
        ]
        wide = None
        if final and net.kind == "wide_deep":
            wide = (w["wide.weight"], w["wide.bias"])
        name = str(net.architecture["activation"])
        if name == "CRELU" or not steps:
            return None
        needed = [_rows_needed(*m.shape) for m, _, _ in steps]
        if wide is not None:
            needed.append(_rows_needed(*wide[0].shape))
        if any(r is None for r in needed):
            return None
        block = max([_PIECE_ROWS, *(r for r in needed if r is not None)])
        if rows < block:
            return None
        return cls(steps, wide, net._act_fresh, name in _IN_PLACE, block, name == "RELU")

    def run(self, x: np.ndarray) -> np.ndarray:
        """(rows, outputs), C-contiguous: the pass over the matrix ``x``."""
        n = len(x)
        out = np.empty((n, self.steps[-1][0].shape[1]))
        blocks = max(1, n // self.block)  # equal blocks, each of at least ``block`` rows
        cap = -(-n // blocks)
        buffers = self._buffers(cap)
        for j in range(blocks):
            lo, hi = j * n // blocks, (j + 1) * n // blocks
            self._block(x[lo:hi], out[lo:hi], buffers)
        return out

    def run_table(self, preprocessor: Any, table: Any) -> np.ndarray | None:
        """(rows, outputs), C-contiguous: the pass over ``table``'s model matrix without
        building it, each block's rows written from the input columns
        (:meth:`FeaturePreprocessor.matrix_blocks`). None when a feature is not numeric.

        The blocks are column-major: each feature is written contiguously, not with a stride
        of the row width (50k x 20 into a 20-16-5 encoder: ~1.5 ms less), and a product over
        more than 10^6 multiply-adds gives a column-major left matrix the bits of a row-major
        one (tested)."""
        n = table.num_rows
        blocks = max(1, n // self.block)  # equal blocks, as run() takes them
        assembled = preprocessor.matrix_blocks(
            table, [j * n // blocks for j in range(blocks + 1)], order="F"
        )
        if assembled is None:
            return None
        out = np.empty((n, self.steps[-1][0].shape[1]))
        buffers = self._buffers(-(-n // blocks))
        for lo, hi, x in assembled:
            self._block(x, out[lo:hi], buffers)
        return out

    def _buffers(self, cap: int) -> dict[Any, np.ndarray]:
        buffers: dict[Any, np.ndarray] = {}
        for first, stop, piece in self.segments:
            rows = min(cap, 2 * piece) if piece else cap
            for i in range(first, stop - 1):  # a segment's inner layers: piece scratch
                buffers[i] = np.empty((rows, self.steps[i][0].shape[1]))
            if stop < len(self.steps):  # the segment's output, the next one's input
                buffers[("out", stop - 1)] = np.empty((cap, self.steps[stop - 1][0].shape[1]))
            if not self.in_place:
                buffers[("z", first)] = np.empty(rows * max(s[0].shape[1] for s in self.steps))
        if self.wide is not None:
            buffers["wide"] = np.empty((cap, self.wide[0].shape[1]))
        return buffers

    def _layer(self, i: int, h: np.ndarray, target: np.ndarray, z: np.ndarray | None) -> None:
        weight, bias, activate = self.steps[i]
        if not activate or self.in_place:
            np.matmul(h, weight, out=target)
            tiled = self.biases[i]
            _rowwise(np.add, target, bias, tiled)
            if activate and self.zeros is not None:  # ReLU
                _rowwise(np.maximum, target, self.zeros[: len(bias)], self.zeros[: len(tiled)])
            elif activate:
                self.act(target)
            return
        assert z is not None
        width = weight.shape[1]
        zz = np.matmul(h, weight, out=z[: len(h) * width].reshape(len(h), width))
        _rowwise(np.add, zz, bias, self.biases[i])
        target[...] = self.act(zz)

    def _block(self, x: np.ndarray, out: np.ndarray, buffers: dict[Any, np.ndarray]) -> None:
        m = len(x)
        source = x
        for first, stop, piece in self.segments:
            last = stop == len(self.steps)
            dest = out if last else buffers[("out", stop - 1)][:m]
            z = buffers.get(("z", first))
            pieces = max(1, m // piece) if piece else 1
            for p in range(pieces):
                lo, hi = p * m // pieces, (p + 1) * m // pieces
                h = source[lo:hi]
                for i in range(first, stop):
                    target = dest[lo:hi] if i == stop - 1 else buffers[i][: hi - lo]
                    self._layer(i, h, target, z)
                    h = target
            source = dest
        if self.wide is not None:
            weight, bias = self.wide
            extra = np.matmul(x, weight, out=buffers["wide"][:m])
            assert self.wide_bias is not None
            _rowwise(np.add, extra, bias, self.wide_bias)
            out += extra


def _softmax_rows(out: np.ndarray) -> np.ndarray:
    """scipy's ``softmax(out, axis=1)`` in place on ``out`` (the caller's fresh logits):
    ``exp(x - max) / sum(exp(x - max))`` per row, the same operations without temporaries.
    Two classes: the row's max and sum of two values are np.maximum and one addition, and the
    subtraction and division go a column at a time (reductions and broadcasts over a 2-wide
    axis cost several times more; the same values, NaN and ±inf included)."""
    if out.shape[1] == 2:
        first, second = out[:, 0], out[:, 1]
        peak = np.maximum(first, second)
        np.subtract(first, peak, out=first)
        np.subtract(second, peak, out=second)
        np.exp(out, out=out)
        total = np.add(first, second, out=peak)
        np.divide(first, total, out=first)
        np.divide(second, total, out=second)
        return out
    np.subtract(out, out.max(1, keepdims=True), out=out)
    np.exp(out, out=out)
    np.divide(out, out.sum(1, keepdims=True), out=out)
    return out


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
        stop = hidden if stop is None else stop
        blocked = _Blocked.plan(self, stop, False, len(x) if x.flags.c_contiguous else 0)
        if blocked is not None:
            return blocked.run(x)
        for i in range(stop):
            x = self._act_fresh(self._dense(f"deep.{i}", x))  # _dense's output is ours
        return x

    def output(self, matrix: np.ndarray) -> np.ndarray:
        """The raw output: (rows, outputs) logits, standardized values or reconstructions.

        Many rows go through the layers a block at a time (:class:`_Blocked`): the same
        values, bit for bit, with less fresh memory."""
        x = np.asarray(matrix, dtype=np.float64)
        blocked = _Blocked.plan(self, self._layers, True, len(x) if x.flags.c_contiguous else 0)
        if blocked is not None:
            return blocked.run(x)
        # One output column (a regressor): the hidden layers still go a block at a time; the
        # output layer multiplies the whole matrix (gemv's bits depend on the rows).
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
        return self._in_label_units(self.output(matrix))

    def _in_label_units(self, out: np.ndarray) -> np.ndarray:
        mean = float(self.architecture.get("label_mean", 0.0))
        std = float(self.architecture.get("label_std", 1.0))
        return out[:, 0] * std + mean  # type: ignore[no-any-return]

    def predict_table(self, preprocessor: Any, table: Any) -> np.ndarray | None:
        """:meth:`predict` of ``table``'s model matrix (an ``mlp`` regressor): the hidden
        layers from its columns a block at a time (see :meth:`output_table`), the output
        layer (one column: gemv) over all rows, as :meth:`output` multiplies it; None when
        that does not apply."""
        if self.kind != "mlp":  # the wide part of a wide & deep network reads the matrix
            return None
        plan = _Blocked.plan(self, self._layers - 1, False, table.num_rows)
        hidden = None if plan is None else plan.run_table(preprocessor, table)
        if hidden is None:
            return None
        return self._in_label_units(self._dense(f"deep.{self._layers - 1}", hidden))

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Classification: (rows, classes) probabilities (softmax of the logits, as scipy's
        ``softmax(logits, axis=1)``: :func:`_softmax_rows`)."""
        return _softmax_rows(self.output(matrix))

    def output_table(
        self, preprocessor: Any, table: Any, *, latent: bool = False
    ) -> np.ndarray | None:
        """:meth:`output` (or, ``latent``, :meth:`transform`) of ``table``'s model matrix
        under ``preprocessor``, straight from its columns a block at a time, bit for bit;
        None when that does not apply (too few rows for a block, a feature that is not
        numeric, a layer with one output: see :class:`_Blocked`)."""
        if latent:
            plan = _Blocked.plan(
                self, int(self.architecture["latent_layer"]) + 1, False, table.num_rows
            )
        else:
            plan = _Blocked.plan(self, self._layers, True, table.num_rows)
        return None if plan is None else plan.run_table(preprocessor, table)

    def predict_proba_table(self, preprocessor: Any, table: Any) -> np.ndarray | None:
        """:meth:`predict_proba` of ``table``'s model matrix, from its columns (see
        :meth:`output_table`); None when that does not apply."""
        out = self.output_table(preprocessor, table)
        return None if out is None else _softmax_rows(out)

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
