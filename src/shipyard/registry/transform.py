"""A model's fitted ``TRANSFORM(…)`` clause, applied to raw input rows before anything else.

``CREATE MODEL … TRANSFORM(ML.STANDARD_SCALER(x) OVER () AS x_s, …)`` stores, in the model
package (``predictor_config["transform"]``), one DuckDB SQL expression per output column, with
the statistics learnt at training (means, quantile boundaries, vocabularies…) written in as
constants (see :mod:`shipyard.sql.transform`). :class:`SqlTransform` runs those expressions over
an Arrow table in an in-memory DuckDB connection. Because ML.PREDICT, ML.EVALUATE,
ML.EXPLAIN_PREDICT, ML.TRANSFORM, batch prediction and online serving all reach the model
through :class:`TransformedPreprocessor`, every one of them applies the very same transform.

Example::

    >>> import pyarrow as pa
    >>> t = SqlTransform.from_dict({
    ...     "columns": [{"name": "x_s", "sql": "(x - 2.0) / 4.0", "inputs": ["x"]}],
    ...     "input_schema": [{"name": "x", "type": "double"}],
    ... })
    >>> t.apply(pa.table({"x": [2.0, 10.0]}))["x_s"].to_pylist()
    [0.0, 2.0]
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from shipyard.errors import ArtifactCorrupted, InvalidArgument
from shipyard.warehouse import fetch_arrow, quote_identifier
from shipyard.warehouse.functions import connect

__all__ = [
    "TRANSFORM_FLAVOR",
    "TRANSFORM_ONLY_TASK",
    "SqlTransform",
    "TransformOnlyPredictor",
    "TransformedPreprocessor",
    "load_transform_model",
    "save_transform_model",
    "with_transform",
]

_local = threading.local()
_names = itertools.count()


def _cursor() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection per thread (serving calls come from many threads)."""
    cur = getattr(_local, "cursor", None)
    if cur is None:
        cur = connect()  # with FARM_FINGERPRINT, which ML.HASH_BUCKETIZE calls
        _local.cursor = cur
    return cur


class SqlTransform:
    """Output columns of a fitted TRANSFORM: ``{name, sql, inputs}`` each, plus the raw
    ``input_schema`` and the ``label`` output (left out when its inputs are absent)."""

    def __init__(
        self,
        columns: list[dict[str, Any]],
        input_schema: list[dict[str, str]],
        label: str | None = None,
    ) -> None:
        self.columns = columns
        self.input_schema = input_schema
        self.label = label

    @property
    def output_names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def feature_inputs(self) -> list[dict[str, str]]:
        """The raw columns prediction needs: those the non-label outputs read."""
        needed = {i for c in self.columns if c["name"] != self.label for i in c["inputs"]}
        return [c for c in self.input_schema if c["name"] in needed]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "input_schema": self.input_schema, "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SqlTransform:
        try:
            return cls(data["columns"], data["input_schema"], data.get("label"))
        except KeyError as exc:
            raise InvalidArgument(
                f"the stored TRANSFORM lacks {exc.args[0]!r}; it must be what "
                "SqlTransform.to_dict() produced"
            ) from exc

    def apply(self, table: pa.Table, *, expand: bool = True) -> pa.Table:
        """The TRANSFORM's output columns for ``table`` (the label only when it can be made).

        ``expand``: STRUCT outputs become one column per field (``name_field``) and sparse
        ``ARRAY<STRUCT<index, value>>`` outputs one column per index (``name_0`` …), as the
        model was trained; ML.TRANSFORM shows them unexpanded.
        """
        present = set(table.column_names)
        select, outer = [], []
        for column in self.columns:
            missing = [i for i in column["inputs"] if i not in present]
            if missing:
                if column["name"] == self.label:
                    continue  # prediction rows carry no label
                raise InvalidArgument(
                    f"the model's TRANSFORM output {column['name']!r} needs input column(s) "
                    f"{', '.join(missing)}; the input has: {', '.join(table.column_names)}",
                    columns=missing,
                )
            select.append(f"{column['sql']} AS {quote_identifier(column['name'])}")
            outer.extend(_expanded(column) if expand else [quote_identifier(column["name"])])
        name = f"__shipyard_transform_input_{next(_names)}"
        sql = f"SELECT {', '.join(select)} FROM {name}"
        if expand and any(c.get("expand") for c in self.columns):
            sql = f"SELECT {', '.join(outer)} FROM ({sql})"
        cur = _cursor()
        cur.register(name, table)
        try:
            return fetch_arrow(cur, sql)
        finally:
            cur.unregister(name)


def _expanded(column: dict[str, Any]) -> list[str]:
    """The model's columns for one TRANSFORM output (see :meth:`SqlTransform.apply`)."""
    name, spec = column["name"], column.get("expand") or {}
    if "fields" in spec:
        return [
            f"struct_extract({quote_identifier(name)}, '{f}') AS {quote_identifier(f'{name}_{f}')}"
            for f in spec["fields"]
        ]
    if "size" in spec:
        return [
            f"coalesce(list_sum(list_transform(list_filter({quote_identifier(name)}, "
            f"lambda __e: __e.index = {i}), lambda __e: __e.value)), 0.0) "
            f"AS {quote_identifier(f'{name}_{i}')}"
            for i in range(int(spec["size"]))
        ]
    return [quote_identifier(name)]


class TransformedPreprocessor:
    """A fitted FeaturePreprocessor behind a TRANSFORM: ``transform`` takes raw rows.

    Everything else (feature names, ``to_dict``, feature info …) is the inner preprocessor's,
    which describes the transformed features; ``input_schema`` is the raw input columns. A
    method that reads rows (``transform``, ``numeric_blocks``, ``matrix_blocks``) must be
    defined here, so that the rows go through the TRANSFORM first.
    """

    def __init__(self, inner: Any, sql_transform: SqlTransform) -> None:
        self.inner = inner
        self.sql_transform = sql_transform

    def transform(
        self, table: pa.Table, *, dtype: Any = np.float32, order: str = "C"
    ) -> np.ndarray:
        rows = self.sql_transform.apply(table)
        return self.inner.transform(rows, dtype=dtype, order=order)  # type: ignore[no-any-return]

    def numeric_blocks(self, table: pa.Table, **kwargs: Any) -> Any:
        """The inner preprocessor's :meth:`numeric_blocks` of the TRANSFORM's output rows."""
        return self.inner.numeric_blocks(self.sql_transform.apply(table), **kwargs)

    def matrix_blocks(self, table: pa.Table, bounds: Any, **kwargs: Any) -> Any:
        """The inner preprocessor's :meth:`matrix_blocks` of the TRANSFORM's output rows."""
        return self.inner.matrix_blocks(self.sql_transform.apply(table), bounds, **kwargs)

    @property
    def input_schema(self) -> list[dict[str, str]]:
        return self.sql_transform.feature_inputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def with_transform(preprocessor: Any, transform: dict[str, Any]) -> Any:
    """``preprocessor`` behind a stored TRANSFORM (what :meth:`SqlTransform.to_dict` gave)."""
    return TransformedPreprocessor(preprocessor, SqlTransform.from_dict(transform))


# -- model_type='TRANSFORM_ONLY': a model that is only its fitted TRANSFORM --------------------

#: The flavor of a TRANSFORM_ONLY model: ``transform.json``, what SqlTransform.to_dict gave.
TRANSFORM_FLAVOR = "transform"
#: The ``task`` of a TRANSFORM_ONLY version's manifest.
TRANSFORM_ONLY_TASK = "transform"
_TRANSFORM_FILE = "transform.json"


def save_transform_model(model: Any, folder: Path) -> dict[str, Any]:
    """Write a TRANSFORM_ONLY model (a SqlTransform or its dict) as ``transform.json``."""
    data = model.to_dict() if isinstance(model, SqlTransform) else model
    SqlTransform.from_dict(data)  # refuse anything that does not load back
    (Path(folder) / _TRANSFORM_FILE).write_text(json.dumps(data, indent=1, sort_keys=True))
    return {"files": [_TRANSFORM_FILE], "format": "json", "library_version": "1"}


def load_transform_model(folder: Path, meta: dict[str, Any]) -> SqlTransform:
    path = Path(folder) / ((meta.get("files") or [_TRANSFORM_FILE])[0])
    try:
        return SqlTransform.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, InvalidArgument) as exc:
        raise ArtifactCorrupted(
            f"transform model file {path.name!r} cannot be read: {exc}", path=str(path)
        ) from exc


class _TransformOnlyInputs:
    """What ML.TRANSFORM and the signature read from ``predictor.preprocessor``."""

    def __init__(self, sql_transform: SqlTransform) -> None:
        self.sql_transform = sql_transform

    @property
    def input_schema(self) -> list[dict[str, str]]:
        return self.sql_transform.feature_inputs

    @property
    def features(self) -> list[str]:
        return self.sql_transform.output_names


class TransformOnlyPredictor:
    """The loaded form of a ``model_type='TRANSFORM_ONLY'`` version.

    It applies its TRANSFORM (:meth:`transform`, ML.TRANSFORM) and predicts nothing: every
    prediction entry point raises InvalidArgument naming the functions that apply.
    """

    task = TRANSFORM_ONLY_TASK
    flavor = TRANSFORM_FLAVOR
    label: str | None = None
    label_info = None

    def __init__(self, model: SqlTransform, config: dict[str, Any] | None = None) -> None:
        self.model = model
        self.preprocessor = _TransformOnlyInputs(model)
        self.config = dict(config or {})

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: Any) -> TransformOnlyPredictor:
        fitted = model if isinstance(model, SqlTransform) else SqlTransform.from_dict(model)
        return cls(fitted, data.get("config") or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "flavor": self.flavor,
            "label": None,
            "preprocessor": {},
            "label_info": None,
            "config": self.config,
        }

    @property
    def signature(self) -> dict[str, list[dict[str, str]]]:
        outputs = [{"name": n, "type": "unknown"} for n in self.model.output_names]
        return {"inputs": self.model.feature_inputs, "outputs": outputs}

    def transform(self, table: pa.Table) -> pa.Table:
        """The TRANSFORM's outputs for ``table``, as declared (ML.TRANSFORM)."""
        return self.model.apply(table, expand=False)

    def with_threads(self, threads: int) -> TransformOnlyPredictor:
        return self

    def _refuse(self, what: str) -> InvalidArgument:
        return InvalidArgument(
            f"{what} does not apply to a TRANSFORM_ONLY model: it only preprocesses data; "
            "use ML.TRANSFORM (its outputs) or ML.FEATURE_INFO (its statistics), e.g. as the "
            "input of another model's ML.PREDICT"
        )

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("prediction")

    def explain(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("explanation")

    def predict_raw(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("prediction")

    def __repr__(self) -> str:
        return f"TransformOnlyPredictor(outputs={self.model.output_names})"
