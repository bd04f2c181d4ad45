"""Predictors for imported models (BigQuery ML's ``model_type='ONNX'`` and ``'XGBOOST'``).

An imported model was trained elsewhere, so it has no Shipyard preprocessing and no label: its
input and output columns are the model's own.

* **ONNX** (run with onnxruntime): every graph input is fed from the input column of the same
  name; a tensor of shape ``[batch]`` or ``[batch, 1]`` takes a scalar column, ``[batch, N]`` an
  ``ARRAY`` column of N values. With ``INPUT(f1 FLOAT64, …)`` (a Shipyard extension) a graph with
  one ``[batch, N]`` input is fed the N listed columns, stacked. Every graph output becomes a
  column named after it: a scalar for ``[batch]``/``[batch, 1]``, else an ``ARRAY`` (each row
  flattened). Only tensors are supported, as in BigQuery ML.
* **XGBOOST**: the features are the model file's ``feature_names`` (or the ``INPUT`` clause),
  in order, as a float32 matrix (NULL → missing); the output is ``predicted_label`` (or the
  ``OUTPUT`` clause's name): FLOAT64, or ``ARRAY<FLOAT64>`` for a model with several outputs per
  row (e.g. ``multi:softprob``).

The input columns follow the outputs, unchanged, as for every ML.PREDICT.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.registry.predictor import Predictor

__all__ = ["IMPORTED_TASK", "ONNX_ELEMENTS", "ImportedPredictor", "onnx_io"]

#: The manifest ``task`` of an imported model.
IMPORTED_TASK = "imported"

#: ONNX tensor element type → (numpy dtype, BigQuery type), as BigQuery ML maps them.
ONNX_ELEMENTS: dict[str, tuple[str, str]] = {
    "tensor(float)": ("float32", "FLOAT64"),
    "tensor(double)": ("float64", "FLOAT64"),
    "tensor(float16)": ("float16", "FLOAT64"),
    "tensor(int8)": ("int8", "INT64"),
    "tensor(int16)": ("int16", "INT64"),
    "tensor(int32)": ("int32", "INT64"),
    "tensor(int64)": ("int64", "INT64"),
    "tensor(uint8)": ("uint8", "INT64"),
    "tensor(uint16)": ("uint16", "INT64"),
    "tensor(uint32)": ("uint32", "INT64"),
    "tensor(uint64)": ("uint64", "INT64"),
    "tensor(bool)": ("bool", "BOOL"),
    "tensor(string)": ("object", "STRING"),
}
_ARROW = {"FLOAT64": pa.float64(), "INT64": pa.int64(), "BOOL": pa.bool_(), "STRING": pa.string()}


def _shape_kind(shape: list[Any]) -> tuple[str, int | None]:
    """("scalar", None) for [batch], ("column", 1) for [batch, 1], ("array", N) otherwise."""
    if len(shape) <= 1:
        return "scalar", None
    rest = shape[1:]
    if len(rest) == 1 and rest[0] == 1:
        return "column", 1
    width = 1
    for d in rest:
        if not isinstance(d, int) or d < 0:
            return "array", None  # a symbolic width: any N, checked per call
        width *= d
    return "array", width


def onnx_io(session: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The graph's inputs and outputs as JSON specs; InvalidArgument for a non-tensor one."""

    def spec(node: Any, role: str) -> dict[str, Any]:
        if node.type not in ONNX_ELEMENTS:
            hint = ""
            if node.type.startswith(("seq(", "map(")):
                hint = (
                    "; a scikit-learn classifier converted with sklearn-onnx needs the converter "
                    "option zipmap=False (options={id(model): {'zipmap': False}})"
                )
            raise InvalidArgument(
                f"ONNX model {role} {node.name!r} has type {node.type}, which BigQuery ML does "
                f"not support: only tensors of {', '.join(sorted(ONNX_ELEMENTS))}{hint}",
                name=node.name,
                type=node.type,
            )
        dtype, bq = ONNX_ELEMENTS[node.type]
        shape = [d if isinstance(d, int) else None for d in (node.shape or [])]
        kind, width = _shape_kind(list(node.shape or []))
        return {
            "name": node.name,
            "element": node.type,
            "dtype": dtype,
            "bq_type": bq,
            "shape": shape,
            "kind": kind,
            "width": width,
        }

    inputs = [spec(n, "input") for n in session.get_inputs()]
    outputs = [spec(n, "output") for n in session.get_outputs()]
    return inputs, outputs


def _numeric(table: pa.Table, name: str, dtype: Any, what: str) -> np.ndarray:
    col = table[name]
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_decimal(t) or pa.types.is_null(t)):  # fmt: skip
        raise InvalidArgument(
            f"{what} column {name!r} must be numeric (INT64, FLOAT64, NUMERIC or BOOL), got {t}",
            column=name,
        )
    exact = np.issubdtype(np.dtype(dtype), np.integer) or np.dtype(dtype) == np.bool_
    if exact and not (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t)):
        kind = "BOOL" if np.dtype(dtype) == np.bool_ else "INT64"
        raise InvalidArgument(
            f"{what} column {name!r} must be {kind} (the model's tensor is {np.dtype(dtype)}), "
            f"got {t}",
            column=name,
        )
    values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    if exact and col.null_count:
        raise InvalidArgument(
            f"{what} column {name!r} has NULL values, which an integer or boolean model "
            "input cannot take",
            column=name,
        )
    return values.astype(dtype, copy=False)


def _column_values(table: pa.Table, name: str, dtype: str, what: str) -> np.ndarray:
    """A scalar column as a 1-D numpy array of ``dtype`` (NULL → NaN for floats)."""
    if dtype == "object":
        col = table[name]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise InvalidArgument(
                f"{what} column {name!r} must be STRING, got {col.type}", column=name
            )
        if col.null_count:
            raise InvalidArgument(f"{what} column {name!r} has NULL values", column=name)
        return np.asarray(col.to_pylist(), dtype=object)
    return _numeric(table, name, dtype, what)


class ImportedPredictor(Predictor):
    """ML.PREDICT for an imported ONNX or XGBoost model: its own columns in, its own out.

    ``config``: ``kind`` ("onnx" | "xgboost"), ``inputs``/``outputs`` (see :func:`onnx_io`),
    ``features`` (the INPUT columns, or the XGBoost feature names), ``feature_types`` and
    ``output`` (XGBoost's output column).
    """

    def __init__(self, model: Any, flavor: str, config: dict[str, Any]) -> None:
        # No preprocessing and no label: Predictor.__init__'s checks do not apply.
        self.task = IMPORTED_TASK
        self.model = model
        self.flavor = flavor
        self.preprocessor = None  # type: ignore[assignment]
        self.label_info = None
        self.label = ""
        self.config = dict(config)
        self._dtype = np.float32
        kind = self.config.get("kind")
        if kind not in ("onnx", "xgboost"):
            raise InvalidArgument(
                f"imported model kind {kind!r} is not valid; valid: onnx, xgboost"
            )

    # -- description -------------------------------------------------------------------------

    @property
    def output_names(self) -> list[str]:
        if self.config["kind"] == "xgboost":
            return [str(self.config.get("output") or "predicted_label")]
        return [o["name"] for o in self.config["outputs"]]

    @property
    def default_keep_original_columns(self) -> bool:
        return True

    def _output_types(self) -> list[pa.DataType]:
        if self.config["kind"] == "xgboost":
            width = self.config.get("output_width") or 1
            return [pa.float64() if width == 1 else pa.list_(pa.float64())]
        types = []
        for o in self.config["outputs"]:
            t = _ARROW[o["bq_type"]]
            types.append(t if o["kind"] in ("scalar", "column") else pa.list_(t))
        return types

    @property
    def input_schema(self) -> list[dict[str, str]]:
        if self.config["kind"] == "xgboost" or self.config.get("features"):
            types = self.config.get("feature_types") or []
            names = self.config["features"]
            return [
                {"name": n, "type": types[i] if i < len(types) else "double"}
                for i, n in enumerate(names)
            ]
        schema = []
        for i in self.config["inputs"]:
            t = _ARROW[i["bq_type"]]
            schema.append(
                {"name": i["name"], "type": str(t if i["kind"] != "array" else pa.list_(t))}
            )
        return schema

    @property
    def signature(self) -> dict[str, list[dict[str, str]]]:
        outputs = [
            {"name": n, "type": str(t)}
            for n, t in zip(self.output_names, self._output_types(), strict=True)
        ]
        return {"inputs": self.input_schema, "outputs": outputs}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": IMPORTED_TASK,
            "flavor": self.flavor,
            "label": None,
            "preprocessor": {},
            "label_info": None,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: Any) -> ImportedPredictor:
        return cls(model, data["flavor"], data.get("config") or {})

    def __repr__(self) -> str:
        return f"ImportedPredictor(kind={self.config['kind']!r}, flavor={self.flavor!r})"

    def with_threads(self, threads: int) -> Predictor:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise InvalidArgument(f"threads must be a non-negative integer, got {threads!r}")
        model = self.model
        if self.flavor == "xgboost":
            model = model.copy()
            model.set_param({"nthread": threads})
        copy = ImportedPredictor(model, self.flavor, self.config)
        copy._threads = threads
        return copy

    def explain(self, table: pa.Table, **_: Any) -> pa.Table:
        raise InvalidArgument(
            f"explanations do not apply to imported models (this one is an imported "
            f"{self.config['kind'].upper()} model): BigQuery ML supports only ML.PREDICT on them"
        )

    # -- prediction --------------------------------------------------------------------------

    def predict(
        self,
        table: pa.Table,
        *,
        threshold: float | None = None,
        keep_original_columns: bool = True,
    ) -> pa.Table:
        if threshold is not None:
            raise InvalidArgument(
                "threshold does not apply to imported models: their outputs are the model's own"
            )
        names = self.output_names
        if keep_original_columns:
            clash = [n for n in names if n in table.column_names]
            if clash:
                raise InvalidArgument(
                    f"input already has columns {clash}, which ML.PREDICT outputs; rename or "
                    "drop them",
                    columns=clash,
                )
        if self.config["kind"] == "xgboost":
            columns = self._predict_xgboost(table)
        else:
            columns = self._predict_onnx(table)
        if keep_original_columns:
            columns.extend(table.columns)
            names = names + table.column_names
        return pa.Table.from_arrays(columns, names=names)

    def _require_columns(self, table: pa.Table, wanted: list[str]) -> None:
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise InvalidArgument(
                f"ML.PREDICT input lacks the model's input columns {missing}; the model takes "
                + ", ".join(f"{s['name']} {s['type']}" for s in self.input_schema)
                + f"; the input has: {', '.join(table.column_names) or 'no columns'}",
                columns=missing,
            )

    def _predict_xgboost(self, table: pa.Table) -> list[pa.Array | pa.ChunkedArray]:
        features = list(self.config["features"])
        self._require_columns(table, features)
        matrix = np.empty((table.num_rows, len(features)), dtype=np.float32)
        for j, name in enumerate(features):
            matrix[:, j] = _numeric(table, name, np.float32, "XGBoost input")
        out: np.ndarray
        if table.num_rows == 0:
            out = np.zeros(0)
        else:
            out = np.asarray(self.model.inplace_predict(matrix), dtype=np.float64)
        if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
            return [pa.array(out.reshape(-1), type=pa.float64())]
        return [_list_column(out.reshape(len(out), -1), pa.float64())]

    def _feeds(self, table: pa.Table) -> dict[str, np.ndarray]:
        inputs = self.config["inputs"]
        features = self.config.get("features")
        n = table.num_rows
        if features:  # INPUT(...) stacked into the graph's single [batch, N] input
            self._require_columns(table, list(features))
            spec = inputs[0]
            stacked = np.empty((n, len(features)), dtype=spec["dtype"])
            for j, name in enumerate(features):
                stacked[:, j] = _column_values(table, name, spec["dtype"], "ONNX input")
            return {spec["name"]: stacked if spec["kind"] != "scalar" else stacked[:, 0]}
        self._require_columns(table, [s["name"] for s in inputs])
        feeds = {}
        for spec in inputs:
            name, dtype = spec["name"], spec["dtype"]
            col = table[name]
            is_list = pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            if is_list and spec["kind"] != "array":
                raise InvalidArgument(
                    f"ONNX input {name!r} is a tensor of shape {spec['shape']}: its column must "
                    f"be a scalar {spec['bq_type']}, got {col.type}",
                    column=name,
                )
            if spec["kind"] == "array":
                if not is_list:
                    raise InvalidArgument(
                        f"ONNX input {name!r} is a tensor of shape {spec['shape']}: its column "
                        f"must be an ARRAY<{spec['bq_type']}> (e.g. SELECT [f1, f2, …] AS "
                        f"{name}), got {col.type}",
                        column=name,
                    )
                feeds[name] = _array_values(col, spec, n)
            else:
                values = _column_values(table, name, dtype, "ONNX input")
                feeds[name] = values.reshape(n, 1) if spec["kind"] == "column" else values
        return feeds

    def _predict_onnx(self, table: pa.Table) -> list[pa.Array | pa.ChunkedArray]:
        outputs = self.config["outputs"]
        feeds = self._feeds(table)
        if table.num_rows == 0:
            return [pa.array([], type=t) for t in self._output_types()]
        try:
            results = self.model.run([o["name"] for o in outputs], feeds)
        except Exception as exc:  # onnxruntime's own exception classes
            raise InvalidArgument(
                f"the ONNX model could not run on this input: {str(exc).splitlines()[0]}"
            ) from exc
        columns: list[pa.Array | pa.ChunkedArray] = []
        for spec, value, arrow_type in zip(outputs, results, self._output_types(), strict=True):
            array = np.asarray(value)
            if spec["bq_type"] == "STRING":
                array = array.astype(str)
            if spec["kind"] in ("scalar", "column"):
                columns.append(pa.array(array.reshape(len(array)), type=arrow_type))
            else:
                value_type = arrow_type.value_type
                columns.append(_list_column(array.reshape(len(array), -1), value_type))
        return columns


def _array_values(col: pa.ChunkedArray, spec: dict[str, Any], n: int) -> np.ndarray:
    name = spec["name"]
    if col.null_count:
        raise InvalidArgument(f"ONNX input column {name!r} has NULL arrays", column=name)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    width = spec["width"]
    if n and (lengths.min() != lengths.max() or (width is not None and lengths[0] != width)):
        expected = width if width is not None else "the same number of"
        raise InvalidArgument(
            f"ONNX input {name!r} takes {expected} values per row (shape {spec['shape']}); "
            f"the arrays of column {name!r} have {int(lengths.min())} to {int(lengths.max())}",
            column=name,
        )
    flat = pa.table({"v": pc.list_flatten(col)})
    values = _column_values(flat, "v", spec["dtype"], f"ONNX input {name!r}")
    per_row = int(lengths[0]) if n else (width or 0)
    shape = [n] + [d if d is not None else -1 for d in spec["shape"][1:]]
    if len(shape) > 2 and all(d != -1 for d in shape[1:]):
        return values.reshape(shape)
    return values.reshape(n, per_row)


def _list_column(matrix: np.ndarray, value_type: pa.DataType) -> pa.Array:
    n, k = matrix.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=value_type))
