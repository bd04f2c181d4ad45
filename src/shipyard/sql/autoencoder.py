"""AUTOENCODER: a PyTorch autoencoder on the preprocessed features, and its ML functions.

Training (PyTorch, CPU; see :mod:`shipyard.sql.dnn` for the shared options): every column of
the training query but a CUSTOM/SEQ ``data_split_col`` is a feature (numeric columns
standardized, categorical ones one-hot encoded). ``hidden_units`` lists the hidden layers of
the whole network, as BigQuery ML's example ``[32, 16, 4, 16, 32]``; the narrowest (the first
of them on a tie) is the latent space, and an output layer maps the last hidden layer back to
the features. Without ``hidden_units``, Shipyard uses ``[h, k, h]`` with
``h = min(128, max(2, F))`` and ``k = max(1, F // 4)`` for F encoded features (BigQuery ML's page
gives no default we could confirm). The loss is the mean squared reconstruction error;
``l1_reg_activation`` adds ``l1_reg_activation · mean |latent activations|`` per row (a sparse
code). ``activation_fn`` has no CRELU (as BigQuery ML). The data split options work as for
supervised models and give ``early_stop`` its evaluation loss. ``warm_start=TRUE`` continues
from the current version's weights (same input columns, layers and activation).

ML functions (errors are per row, over the preprocessed features):

* ML.PREDICT: ``latent_col_1`` … ``latent_col_k`` (FLOAT64), then the input columns.
* ML.RECONSTRUCTION_LOSS(MODEL m, TABLE t): ``mean_absolute_error``, ``mean_squared_error``,
  ``mean_squared_log_error``, then the input columns. The log error uses ``log1p`` of values
  clipped at 0 (standardized features can be negative, where the logarithm is undefined).
* ML.DETECT_ANOMALIES(MODEL m, STRUCT(c AS contamination), TABLE t): ``is_anomaly`` and
  ``mean_squared_error`` (BigQuery ML's columns), then the input columns; a row is an anomaly
  when its ``mean_squared_error`` is above the ``1 - contamination`` quantile of the training
  rows' errors.
* ML.EVALUATE: the three errors averaged over the evaluation split (else the training data), or
  over the given rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from shipyard.errors import InvalidArgument, Unsupported
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.sql.clustering import training_quantiles
from shipyard.sql.dnn import (
    DNN_UNSUPPORTED_OPTIONS,
    _NeuralOptions,
    build_module,
    fit_network,
    resume_from,
)
from shipyard.sql.dnn import to_neural_net as _to_net
from shipyard.sql.training import (
    Progress,
    UnsupervisedFit,
    check_warm_start,
    one_blas_thread,
    split_rows,
)

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "AUTOENCODER_METRICS",
    "AUTOENCODER_UNSUPPORTED_OPTIONS",
    "AutoencoderOptions",
    "default_autoencoder_units",
    "detect_anomalies_or",
    "ml_evaluate_autoencoder",
    "ml_reconstruction_loss",
    "train_autoencoder",
]

AUTOENCODER_METRICS: tuple[str, ...] = (
    "mean_absolute_error",
    "mean_squared_error",
    "mean_squared_log_error",
)
_SEED = 20240101
_QUANTILES = 1001
#: BigQuery ML options of AUTOENCODER that Shipyard refuses: name → what they are for.
AUTOENCODER_UNSUPPORTED_OPTIONS: dict[str, str] = {
    k: v for k, v in DNN_UNSUPPORTED_OPTIONS.items() if k != "enable_global_explain"
}


class AutoencoderOptions(_NeuralOptions):
    """AUTOENCODER: no label; the DNN options plus ``l1_reg_activation``."""

    _not_options: ClassVar[frozenset[str]] = frozenset(
        {"enable_global_explain", "input_label_cols", "category_encoding_method"}
    )

    model_type: Literal["AUTOENCODER"] = "AUTOENCODER"
    activation_fn: Literal["RELU", "RELU6", "ELU", "SELU", "SIGMOID", "TANH"] = "RELU"  # type: ignore[assignment]
    l1_reg_activation: float = Field(0.0, ge=0.0)


def default_autoencoder_units(features: int) -> list[int]:
    """Shipyard's default ``hidden_units`` for ``features`` encoded features."""
    outer = min(128, max(2, features))
    return [outer, max(1, features // 4), outer]


def _latent_layer(hidden: list[int]) -> int:
    return int(np.argmin(hidden))


#: Rows per block of :func:`reconstruction_errors`' element-wise passes (two (rows, features)
#: float64 buffers that stay in the CPU cache).
_BLOCK_ROWS = 4096


def reconstruction_errors(net: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per row: mean absolute, squared and squared-log errors of the reconstruction.

    ``diff = restored - x`` and ``log1p(max(restored, 0)) - log1p(max(x, 0))``, each row's
    means of ``|diff|``, ``diff²`` and the squared log difference: the same element-wise
    operations in the same order as on the whole matrix (a row's values never depend on the
    block), in row blocks that reuse two cache-sized buffers instead of six matrix-sized
    temporaries (50k x 20: 16 ms of element-wise work down to 9).
    """
    n = len(x)
    if n == 0:
        return {name: np.zeros(0) for name in AUTOENCODER_METRICS}
    restored = net.reconstruct(x)
    mae, mse, msle = np.empty(n), np.empty(n), np.empty(n)
    rows = min(_BLOCK_ROWS, n)
    diff_buffer = np.empty((rows, x.shape[1]))
    work_buffer = np.empty((rows, x.shape[1]))
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        r, xs = restored[lo:hi], x[lo:hi]
        diff, work = diff_buffer[: hi - lo], work_buffer[: hi - lo]
        np.subtract(r, xs, out=diff)
        np.mean(np.abs(diff, out=work), axis=1, out=mae[lo:hi])
        np.mean(np.multiply(diff, diff, out=work), axis=1, out=mse[lo:hi])
        log_diff = np.log1p(np.maximum(r, 0.0, out=diff), out=diff)
        log_diff -= np.log1p(np.maximum(xs, 0.0, out=work), out=work)
        np.mean(np.multiply(log_diff, log_diff, out=log_diff), axis=1, out=msle[lo:hi])
    return {
        "mean_absolute_error": mae,
        "mean_squared_error": mse,
        "mean_squared_log_error": msle,
    }


def _mean_metrics(errors: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {
        name: (float(np.mean(values)) if len(values) else None) for name, values in errors.items()
    }


def train_autoencoder(
    table: pa.Table, options: Any, report: Progress, warm_start: Predictor | None = None
) -> UnsupervisedFit:
    try:
        import torch
    except ImportError:
        raise Unsupported(
            "model_type AUTOENCODER needs PyTorch, which is not installed: "
            "pip install 'shipyard[dnn]' (pip, not uv: pip takes the CPU build)"
        ) from None
    from torch import nn

    start = time.perf_counter()
    split_col = options.data_split_col
    if split_col is not None and split_col not in table.column_names:
        raise InvalidArgument(
            f"data_split_col {split_col!r} is not in the training data; its columns are: "
            f"{list(table.column_names)}",
            column=split_col,
        )
    features = [c for c in table.column_names if c != split_col]
    if table.num_rows < 2 or not features:
        raise InvalidArgument(
            f"AUTOENCODER needs at least 2 training rows and 1 feature column; the training "
            f"data has {table.num_rows} rows and columns {features}"
        )
    if warm_start is not None:
        check_warm_start("AUTOENCODER", warm_start, table, features)
    train_idx, eval_idx, _ = split_rows(table, options)
    preprocessor = FeaturePreprocessor.fit(
        table, features, standardize=True, categorical_encoding="one_hot"
    )
    matrix = preprocessor.transform(table, dtype=np.float64)
    if train_idx is None:
        x, x_eval = matrix, None
    else:
        x, x_eval = matrix[train_idx], matrix[eval_idx]
    width = matrix.shape[1]
    previous = warm_start.model if warm_start is not None else None
    if options.hidden_units:
        hidden = list(options.hidden_units)
    elif previous is not None:
        hidden = list(previous.architecture["widths"][1:-1])
    else:
        hidden = default_autoencoder_units(width)
    latent = _latent_layer(hidden)
    architecture = {
        "kind": "autoencoder",
        "activation": options.activation_fn,
        "output": "reconstruction",
        "widths": [width, *hidden, width],
        "latent_layer": latent,
    }
    report(0.0, f"training a {width}-{'-'.join(map(str, hidden))}-{width} autoencoder")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        module = build_module(
            width, hidden, width, options.activation_fn, options.dropout, wide=False
        )
        module.latent_layer = latent
        if previous is not None:
            resume_from(module, previous, architecture, options)
        mse = nn.MSELoss()
        sparsity = float(options.l1_reg_activation)

        def penalty(m: Any) -> Any:
            return sparsity * m.latent.abs().sum(dim=1).mean()

        # The inputs are the targets: one float32 copy serves as both (fit_network's tensors
        # share it), where converting the inputs too cost a second copy of the rows.
        target = np.ascontiguousarray(x, dtype=np.float32)
        target_eval = None if x_eval is None else np.ascontiguousarray(x_eval, dtype=np.float32)
        rows = fit_network(
            module,
            mse,
            target,
            target,
            target_eval,
            target_eval,
            options,
            report,
            extra_penalty=penalty if sparsity else None,
        )
    net = _to_net(module, architecture)
    # The products are thin (rows x a few units): one BLAS thread, as KMEANS and PCA (see
    # training.one_blas_thread; the same bits, 2-9x less time on a busy 2-core machine).
    with one_blas_thread():
        train_errors = reconstruction_errors(net, np.asarray(x, dtype=np.float64))
        # The evaluation split's errors, else the training rows' (computed once).
        metric_errors = (
            train_errors
            if x_eval is None
            else reconstruction_errors(net, np.asarray(x_eval, dtype=np.float64))
        )
    metrics = _mean_metrics(metric_errors)
    # np.quantile's values, from one sort (see clustering.training_quantiles)
    quantiles = training_quantiles(train_errors["mean_squared_error"], _QUANTILES)
    report(1.0, f"trained in {time.perf_counter() - start:.1f} s")
    return UnsupervisedFit(
        task="dimensionality_reduction",
        model=net,
        preprocessor=preprocessor,
        features=features,
        training_info=rows,
        metrics=metrics,
        predictor_config={
            "matrix_dtype": "float64",
            "model_type": "AUTOENCODER",
            "num_components": hidden[latent],
            "output_prefix": "latent_col_",
            "keep_original_columns": True,
            "anomaly_quantiles": [float(q) for q in quantiles],
        },
    )


# --------------------------------------------------------------------------------------------
# ML functions


def _require_autoencoder(service: SqlService, call: MLCall) -> None:
    model_type = service.models.get_version(call.model).model_type
    if model_type != "AUTOENCODER":
        raise InvalidArgument(
            f"ML.{call.function} does not apply to model {call.model}, a {model_type} model; "
            "it applies to AUTOENCODER models",
            model_type=model_type,
        )


def _with_inputs(out: dict[str, pa.Array], rows: pa.Table, function: str) -> pa.Table:
    clash = [n for n in out if n in rows.column_names]
    if clash:
        raise InvalidArgument(
            f"input already has columns {clash}, which ML.{function} outputs; rename or drop them",
            columns=clash,
        )
    return pa.Table.from_arrays(
        [*out.values(), *rows.columns], names=[*out.keys(), *rows.column_names]
    )


def _row_errors(predictor: Predictor, rows: pa.Table) -> dict[str, np.ndarray]:
    x = predictor.preprocessor.transform(rows, dtype=np.float64)
    return reconstruction_errors(predictor.model, x)


def ml_reconstruction_loss(service: SqlService, call: MLCall) -> pa.Table:
    """ML.RECONSTRUCTION_LOSS: the three reconstruction errors per row, then the inputs."""
    call.check_params({})
    _require_autoencoder(service, call)
    rows = call.require_input()
    errors = _row_errors(service.models.load(call.model), rows)
    out = {name: pa.array(errors[name], type=pa.float64()) for name in AUTOENCODER_METRICS}
    return _with_inputs(out, rows, call.function)


def ml_evaluate_autoencoder(service: SqlService, call: MLCall, stored: dict[str, Any]) -> pa.Table:
    """ML.EVALUATE for AUTOENCODER: the mean errors, stored from training or on the rows."""
    call.check_params({})
    if call.input is None:
        metrics = stored
    else:
        metrics = _mean_metrics(_row_errors(service.models.load(call.model), call.input))
    return pa.table(
        {name: pa.array([metrics.get(name)], type=pa.float64()) for name in AUTOENCODER_METRICS}
    )


def detect_anomalies_or(
    fallback: Callable[[SqlService, MLCall], pa.Table],
) -> Callable[[SqlService, MLCall], pa.Table]:
    """ML.DETECT_ANOMALIES: AUTOENCODER models here, every other model type by ``fallback``."""

    def handler(service: SqlService, call: MLCall) -> pa.Table:
        if service.models.get_version(call.model).model_type != "AUTOENCODER":
            return fallback(service, call)
        from shipyard.sql.clustering import anomaly_threshold, contamination_param

        contamination = contamination_param(call)
        rows = call.require_input()
        predictor = service.models.load(call.model)
        errors = _row_errors(predictor, rows)
        threshold = anomaly_threshold(predictor.config, contamination)
        out = {
            "is_anomaly": pa.array(errors["mean_squared_error"] > threshold, type=pa.bool_()),
            "mean_squared_error": pa.array(errors["mean_squared_error"], type=pa.float64()),
        }
        return _with_inputs(out, rows, call.function)

    handler.__doc__ = fallback.__doc__
    return handler
