"""DNN_CLASSIFIER, DNN_REGRESSOR and DNN_LINEAR_COMBINED_* (wide-and-deep): PyTorch on the CPU.

PyTorch is an optional extra (``pip install 'shipyard[dnn]'``; use pip, which takes the CPU
wheel, not uv); it is imported only when such a model trains. Prediction needs NumPy only
(:mod:`shipyard.registry.neural`, flavor ``torch``).

How BigQuery ML's options map (names and defaults are BigQuery ML's):

* ``hidden_units`` — the widths of the hidden layers (default: one layer of
  ``min(128, N / (10 · (inputs + outputs)))`` units, at least 1, N = training rows);
  ``activation_fn`` RELU (default), RELU6, CRELU (``[relu(x), relu(-x)]``, twice the width),
  ELU, SELU, SIGMOID, TANH after each hidden layer; ``dropout`` (default 0) after each.
* ``optimizer`` ADAM (default), ADAGRAD, RMSPROP, SGD — PyTorch's; FTRL has no PyTorch
  optimizer and is refused. ``learn_rate`` (default 0.001) is constant.
* ``batch_size`` — rows per step (default ``min(32, training rows)``, at most 8192); rows are
  shuffled each iteration with a fixed seed, so the same data and options train the same
  weights. ``max_iterations`` (default 20) is the number of passes over the training data.
* ``l1_reg`` / ``l2_reg`` — the objective is the mean loss per row plus
  ``(l1_reg·|W|₁ + l2_reg·||W||²) / training rows`` over the weight matrices (biases are not
  penalised), i.e. the GLMs' ``sum of losses + penalties`` per row.
* ``early_stop`` (default TRUE) stops after the first iteration whose relative improvement of
  the evaluation loss is below ``min_rel_progress`` (0.01); only with an evaluation split.
* Classifiers: cross-entropy on one logit per class (softmax); ``auto_class_weights`` /
  ``class_weights`` weigh the loss per class as LOGISTIC_REG does. Regressors: squared error on
  the standardized label; predictions and losses are in the label's units.
* Wide-and-deep: a linear layer on the same preprocessed features, its output added to the
  network's (the logits, for classifiers); both parts train together with the one optimizer.
  ``optimizer`` / ``learn_rate`` take one value for both parts.

``warm_start=TRUE`` (with CREATE OR REPLACE) continues from the current version's weights: the
input columns, layers and activation must stay the same (``hidden_units`` defaults to the
current layers); a regressor keeps the current label scale. The features are standardized with
the new data's statistics, as for the other model types.

ML.TRAINING_INFO has one row per iteration: ``loss`` (the training loss averaged over the
iteration's batches, as Keras reports it: the weights change during the pass), ``eval_loss``
(the evaluation split after the iteration), ``learning_rate`` and ``duration_ms``.

Feature attributions (ML.EXPLAIN_PREDICT, and ML.GLOBAL_EXPLAIN with
``enable_global_explain``) are integrated gradients (:mod:`shipyard.registry.explain`);
``integrated_gradients_num_steps`` (1 to 1000, default 15 as in BigQuery ML) is stored with the
network as its default. Hyperparameter tuning: :mod:`shipyard.sql.tuning`.
Refused (Unsupported): ``tf_version``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.neural import NeuralNet
from shipyard.registry.preprocessing import LabelInfo
from shipyard.sql.options import GLM_UNSUPPORTED_OPTIONS, CommonOptions, _ClassifierMixin
from shipyard.sql.training import Fit, Progress, _class_weight_vector, _info_row, single_class

__all__ = [
    "DNN_UNSUPPORTED_OPTIONS",
    "DnnClassifierOptions",
    "DnnRegressorOptions",
    "WideDeepClassifierOptions",
    "WideDeepRegressorOptions",
    "build_module",
    "default_hidden_units",
    "fit_network",
    "resume_from",
    "to_neural_net",
    "train_dnn",
]

_SEED = 20240101
MAX_BATCH_SIZE = 8192
DEFAULT_BATCH_SIZE = 32  # BigQuery ML: 32 or the number of rows, whichever is smaller
_ONE_THREAD_WORK = 4_000_000  # batch rows x parameters below which training uses one thread
#: PyTorch's optimizers for BigQuery ML's OPTIMIZER values (FTRL has none).
SUPPORTED_OPTIMIZERS: tuple[str, ...] = ("ADAGRAD", "ADAM", "RMSPROP", "SGD")

Activation = Literal["RELU", "RELU6", "CRELU", "ELU", "SELU", "SIGMOID", "TANH"]
Optimizer = Literal["ADAGRAD", "ADAM", "FTRL", "RMSPROP", "SGD"]

#: BigQuery ML options of the DNN types that Shipyard refuses: name → what they are for.
DNN_UNSUPPORTED_OPTIONS: dict[str, str] = {
    **GLM_UNSUPPORTED_OPTIONS,
    "tf_version": "Shipyard trains with PyTorch",
}


class _NeuralOptions(CommonOptions):
    """What DNN, wide-and-deep and autoencoder models share."""

    # Not options of these types: categorical features are always one-hot encoded.
    _not_options: ClassVar[frozenset[str]] = frozenset(
        {"enable_global_explain", "category_encoding_method"}
    )

    category_encoding_method: Literal["ONE_HOT_ENCODING"] = "ONE_HOT_ENCODING"

    hidden_units: list[int] | None = None
    activation_fn: Activation = "RELU"
    optimizer: Optimizer = "ADAM"
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    learn_rate: float = Field(0.001, gt=0.0)
    warm_start: bool = False

    @field_validator("hidden_units", mode="after")
    @classmethod
    def _positive_units(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(u < 1 for u in value)):
            raise ValueError(
                f"option 'hidden_units' must list at least one layer width, each >= 1, got "
                f"{value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_optimizer(self) -> _NeuralOptions:
        if self.optimizer not in SUPPORTED_OPTIMIZERS:
            raise Unsupported(
                f"optimizer {self.optimizer!r} is not supported for {self.model_type}: PyTorch "
                f"has no FTRL optimizer; valid: {', '.join(SUPPORTED_OPTIMIZERS)}",
                option="optimizer",
            )
        return self


class _ExplainedNetworkOptions(_NeuralOptions):
    """DNN and wide-and-deep: explained with integrated gradients."""

    _not_options: ClassVar[frozenset[str]] = frozenset({"category_encoding_method"})

    integrated_gradients_num_steps: int | None = Field(None, ge=1, le=1000)


class DnnRegressorOptions(_ExplainedNetworkOptions):
    model_type: Literal["DNN_REGRESSOR"] = "DNN_REGRESSOR"


class DnnClassifierOptions(_ExplainedNetworkOptions, _ClassifierMixin):
    model_type: Literal["DNN_CLASSIFIER"] = "DNN_CLASSIFIER"


class _WideDeepOptions(_ExplainedNetworkOptions):
    @field_validator("optimizer", "learn_rate", mode="before")
    @classmethod
    def _one_value(cls, value: Any, info: Any) -> Any:
        # BigQuery ML also takes a struct array here, one entry per part (linear, DNN).
        if isinstance(value, list | tuple | dict):
            raise Unsupported(
                f"option '{info.field_name}' takes one value for both parts of a wide-and-deep "
                f"model in Shipyard; per-part values (a struct array) are not supported, got "
                f"{value!r}",
                option=info.field_name,
            )
        return value


class WideDeepRegressorOptions(_WideDeepOptions):
    model_type: Literal["DNN_LINEAR_COMBINED_REGRESSOR"] = "DNN_LINEAR_COMBINED_REGRESSOR"


class WideDeepClassifierOptions(_WideDeepOptions, _ClassifierMixin):
    model_type: Literal["DNN_LINEAR_COMBINED_CLASSIFIER"] = "DNN_LINEAR_COMBINED_CLASSIFIER"


def default_hidden_units(rows: int, inputs: int, outputs: int) -> list[int]:
    """BigQuery ML's default: one layer of min(128, N / (10 · (inputs + outputs))) units."""
    return [int(min(128, max(1, rows // (10 * max(1, inputs + outputs)))))]


def batch_size(options: Any, rows: int) -> int:
    return int(options.batch_size or min(DEFAULT_BATCH_SIZE, max(rows, 1)))


# --------------------------------------------------------------------------------------------
# the network in PyTorch (parameter names match shipyard.registry.neural.NeuralNet)


def _torch_activation(name: str) -> Any:
    import torch
    from torch import nn

    class CReLU(nn.Module):  # concatenated ReLU, as tf.nn.crelu
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)

    return {
        "RELU": nn.ReLU,
        "RELU6": nn.ReLU6,
        "CRELU": CReLU,
        "ELU": nn.ELU,
        "SELU": nn.SELU,
        "SIGMOID": nn.Sigmoid,
        "TANH": nn.Tanh,
    }[name]()


def build_module(
    inputs: int, hidden: list[int], outputs: int, activation: str, dropout: float, *, wide: bool
) -> Any:
    """A torch module: hidden dense layers ``deep.<i>`` (+ a linear ``wide`` part)."""
    import torch
    from torch import nn

    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [inputs, *hidden]
            growth = 2 if activation == "CRELU" else 1
            layers = []
            for i, units in enumerate(hidden):
                layers.append(nn.Linear(widths[i] * (growth if i else 1), units))
            layers.append(nn.Linear(hidden[-1] * growth, outputs))
            self.deep = nn.ModuleList(layers)
            self.act = _torch_activation(activation)
            self.drop = nn.Dropout(dropout)
            self.wide = nn.Linear(inputs, outputs) if wide else None
            # The autoencoder's latent layer: its activations are kept for l1_reg_activation.
            self.latent_layer: int | None = None
            self.latent: torch.Tensor | None = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # The layers by index, not a slice of the ModuleList (a slice builds a new module
            # each call); dropout 0 is skipped (PyTorch returns its input unchanged and draws
            # no random numbers): the same graph and bits, ~0.2 ms less per step.
            h = x
            last = len(self.deep) - 1
            for i, layer in enumerate(self.deep):
                if i == last:
                    break
                h = self.act(layer(h))
                if i == self.latent_layer:
                    self.latent = h
                if dropout:
                    h = self.drop(h)
            out = self.deep[last](h)
            if self.wide is not None:
                out = out + self.wide(x)
            return out  # type: ignore[no-any-return]

    return Network()


def resume_from(
    module: Any, previous: NeuralNet, architecture: dict[str, Any], options: Any
) -> None:
    """warm_start=TRUE: load the current version's weights into ``module`` (same network)."""
    import torch

    before = previous.architecture
    same = all(before.get(k) == architecture.get(k) for k in ("kind", "activation", "widths"))
    if not same:
        raise InvalidArgument(
            f"warm_start=TRUE continues training the current {options.model_type} network, so "
            f"its layers and activation must stay the same: the current version has widths "
            f"{before.get('widths')} and activation_fn {before.get('activation')!r}; these "
            f"options give widths {architecture.get('widths')} and activation_fn "
            f"{architecture.get('activation')!r}",
            option="warm_start",
        )
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in previous.weights.items()})


def to_neural_net(module: Any, architecture: dict[str, Any]) -> NeuralNet:
    weights = {
        name: value.detach().cpu().numpy().astype(np.float32)
        for name, value in module.state_dict().items()
    }
    return NeuralNet(architecture, weights)


def _optimizer(name: str, params: Any, lr: float) -> Any:
    import torch

    return {
        "ADAGRAD": torch.optim.Adagrad,
        "ADAM": torch.optim.Adam,
        "RMSPROP": torch.optim.RMSprop,
        "SGD": torch.optim.SGD,
    }[name](params, lr=lr)


def fit_network(
    module: Any,
    loss_fn: Callable[..., Any],
    x: np.ndarray,
    target: np.ndarray,
    x_eval: np.ndarray | None,
    target_eval: np.ndarray | None,
    options: Any,
    report: Progress,
    *,
    loss_scale: float = 1.0,
    extra_penalty: Callable[[Any], Any] | None = None,
) -> list[dict[str, Any]]:
    """Mini-batch training of ``module``; returns the ML.TRAINING_INFO rows (one per pass).

    ``loss_fn(output, target)`` is the mean loss of a batch; ``loss_scale`` turns it into the
    reported unit (the label's variance for standardized regression). Deterministic: the
    caller runs it under a fixed seed.
    """
    import torch

    n = len(x)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(target))
    xe = ye = None
    if x_eval is not None and target_eval is not None and len(x_eval):
        xe = torch.from_numpy(np.ascontiguousarray(x_eval, dtype=np.float32))
        ye = torch.from_numpy(np.ascontiguousarray(target_eval))
    size = batch_size(options, n)
    lr = float(options.learn_rate)
    optimizer = _optimizer(options.optimizer, module.parameters(), lr)
    matrices = [p for name, p in module.named_parameters() if name.endswith("weight")]
    l1, l2 = float(options.l1_reg) / n, float(options.l2_reg) / n
    generator = torch.Generator().manual_seed(_SEED)
    rounds = int(options.max_iterations)
    early_stop = bool(options.early_stop) and xe is not None
    rows: list[dict[str, Any]] = []

    def full_loss(inputs: Any, truth: Any) -> float:
        module.eval()
        with torch.no_grad():
            value = float(loss_fn(module(inputs), truth)) * loss_scale
        module.train()
        return value

    # ML.TRAINING_INFO's training loss is the mean of the iteration's batch losses (Keras'
    # convention): a pass over every training row after each iteration cost ~30 % more time.

    # Small steps run faster on one thread: measured 2.5x for a 30-32-16-2 network, batch 32,
    # on a 2-core machine (the threads' hand-offs cost more than the arithmetic).
    work = size * sum(p.numel() for p in module.parameters())
    threads = torch.get_num_threads()
    if work < _ONE_THREAD_WORK:
        torch.set_num_threads(1)
    try:
        module.train()
        for epoch in range(rounds):
            started = time.perf_counter()
            order = torch.randperm(n, generator=generator)
            batch_losses = 0.0
            for start in range(0, n, size):
                idx = order[start : start + size]
                out = module(xt[idx])
                objective = loss_fn(out, yt[idx])
                batch_losses += float(objective.detach()) * len(idx)
                if extra_penalty is not None:
                    objective = objective + extra_penalty(module)
                if l1:
                    objective = objective + l1 * sum(p.abs().sum() for p in matrices)
                if l2:
                    objective = objective + l2 * sum((p * p).sum() for p in matrices)
                optimizer.zero_grad()
                objective.backward()
                optimizer.step()
            loss = batch_losses / n * loss_scale
            if not math.isfinite(loss):
                raise InvalidArgument(
                    f"training diverged at iteration {epoch + 1} (loss {loss}); lower learn_rate "
                    f"(now {lr}) or change optimizer",
                    option="learn_rate",
                )
            eval_loss = full_loss(xe, ye) if xe is not None else None
            ms = (time.perf_counter() - started) * 1000
            rows.append(_info_row(epoch, loss, eval_loss, lr, ms))
            message = f"iteration {epoch + 1}/{rounds}: loss {loss:.6g}"
            if eval_loss is not None:
                message += f", eval loss {eval_loss:.6g}"
            report((epoch + 1) / rounds, message)
            if early_stop and eval_loss is not None and len(rows) >= 2:
                previous = rows[-2]["eval_loss"]
                if previous is None or previous <= 0.0:
                    break
                if (previous - eval_loss) / previous < float(options.min_rel_progress):
                    break
    finally:
        torch.set_num_threads(threads)
    module.eval()
    return rows


# --------------------------------------------------------------------------------------------
# the supervised trainer


def train_dnn(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    options: Any,
    label_info: LabelInfo | None,
    report: Progress,
    sample_weight: np.ndarray | None = None,
    warm_start: Any = None,
) -> Fit:
    """The Trainer of DNN_* and DNN_LINEAR_COMBINED_* (see :class:`~.training.Trainer`).

    ``warm_start`` (the current version's Predictor, for ``warm_start=TRUE``) gives the
    starting weights: its network must have the same layers and activation.
    """
    try:
        import torch
    except ImportError:
        raise Unsupported(
            f"model_type {options.model_type} needs PyTorch, which is not installed: "
            "pip install 'shipyard[dnn]' (pip, not uv: pip takes the CPU build)"
        ) from None
    from torch import nn

    wide = options.model_type.startswith("DNN_LINEAR_COMBINED_")
    classifier = label_info is not None
    if classifier and single_class(y):
        raise InvalidArgument(
            "the training split holds a single class; classification needs at least 2 "
            "(use more data or another data_split_method)"
        )
    outputs = label_info.n_classes if label_info is not None else 1
    inputs = x.shape[1]
    previous = warm_start.model if warm_start is not None else None
    if options.hidden_units:
        hidden = list(options.hidden_units)
    elif previous is not None:
        hidden = list(previous.architecture["widths"][1:-1])
    else:
        hidden = default_hidden_units(len(x), inputs, outputs)
    architecture: dict[str, Any] = {
        "kind": "wide_deep" if wide else "mlp",
        "activation": options.activation_fn,
        "output": "classification" if classifier else "regression",
        "widths": [inputs, *hidden, outputs],
    }
    if options.integrated_gradients_num_steps is not None:  # the model's explanation default
        architecture["integrated_gradients_num_steps"] = int(options.integrated_gradients_num_steps)
    report(0.0, f"training a {inputs}-{'-'.join(map(str, hidden))}-{outputs} network")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        module = build_module(
            inputs, hidden, outputs, options.activation_fn, options.dropout, wide=wide
        )
        if previous is not None:
            resume_from(module, previous, architecture, options)
        scale = 1.0
        target: np.ndarray
        target_eval: np.ndarray | None
        loss_fn: Callable[..., Any]
        if label_info is not None:
            assert label_info is not None
            weights = _class_weight_vector(options, label_info, y)
            class_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
            loss_fn = nn.CrossEntropyLoss(weight=class_weight)
            target = np.asarray(y, dtype=np.int64)
            target_eval = None if y_eval is None else np.asarray(y_eval, dtype=np.int64)
        else:
            mean = float(np.mean(y))
            std = float(np.std(y)) or 1.0
            if previous is not None:  # the output layer was trained on this scale
                mean = float(previous.architecture["label_mean"])
                std = float(previous.architecture["label_std"])
            architecture.update(label_mean=mean, label_std=std)
            scale = std * std  # losses in the label's units (mean squared error)
            mse = nn.MSELoss()

            def loss_fn(out: Any, truth: Any) -> Any:
                return mse(out[:, 0], truth)

            target = ((np.asarray(y) - mean) / std).astype(np.float32)
            target_eval = (
                None if y_eval is None else ((np.asarray(y_eval) - mean) / std).astype(np.float32)
            )
        rows = fit_network(
            module, loss_fn, x, target, x_eval, target_eval, options, report, loss_scale=scale
        )
    return Fit(to_neural_net(module, architecture), rows)
