"""BigQuery ML's automatic feature preprocessing, on Arrow tables.

:class:`FeaturePreprocessor` learns, at training time, how each input column becomes model
features, and applies exactly that transform at prediction time (its
:meth:`~FeaturePreprocessor.to_dict` form is stored in the model package). :class:`LabelInfo`
(:mod:`shipyard.registry.labels`) does the same for classification labels.

The rules follow BigQuery ML's "Automatic feature preprocessing" page:

=====================================  ==================================================
Input column type                      Features
=====================================  ==================================================
INT64, NUMERIC, BIGNUMERIC, FLOAT64     one column; NULL (NaN, ±inf) → training mean;
(any Arrow integer, float or decimal)   z-scored with the training mean/stddev when
                                        ``standardize`` (stddev 0 → only centred)
BOOL, STRING, BYTES, DATE, TIME         ``one_hot``: one 0/1 column per training category,
(Arrow dictionary strings too)          plus one for NULL when training saw NULLs; an
                                        unseen category (or a NULL the training data never
                                        had) is all zeros. ``dummy``: the same without the
                                        most frequent category (ties: the first in sort
                                        order). ``label``: one column holding the
                                        category's 1-based rank; NULL/unseen → NaN.
                                        ``target`` (trees): the category's mean label
                                        (class shares when multiclass) from ``target``;
                                        NULL its own category, unseen → the prior
ARRAY<STRING> (list of strings)          multi-hot, whatever the encoding: one 0/1 column
                                        per element value; NULL array/element → NULL
STRUCT                                  one feature per field, ``<struct>_<field>``
TIMESTAMP (any Arrow timestamp)         one numeric column: seconds since the Unix epoch,
                                        imputed and standardized like numbers; with
                                        ``timestamp_components`` (LINEAR_REG,
                                        LOGISTIC_REG) also seven categorical components
                                        (UTC), encoded like the categories:
                                        ``_TS_DOM_<col>`` day of month 1-31,
                                        ``_TS_DOW_<col>`` day of week 1 (Sunday)-7,
                                        ``_TS_MOY_<col>`` month 1-12, ``_TS_HOD_<col>``
                                        hour 0-23, ``_TS_MOH_<col>`` minute 0-59,
                                        ``_TS_WOY_<col>`` week of year 0-53 (weeks begin
                                        on Sunday, BigQuery's ``EXTRACT(WEEK)``),
                                        ``_TS_YEAR_<col>`` year; NULL → their NULL category
=====================================  ==================================================

Where this differs from BigQuery ML (short "why" comments in the code too):

* Arrow timestamps without a time zone (DuckDB's TIMESTAMP, BigQuery's DATETIME) are treated
  as TIMESTAMP (their wall clock read as UTC), not one-hot encoded as BigQuery ML does for
  DATETIME: a one-hot per distinct instant is useless for prediction.
* ``label`` encoding maps NULL and unseen categories to NaN (XGBoost's "missing", which learns
  a default direction) instead of BigQuery ML's reserved code 0.
* ``dummy`` encoding: when several categories are the most frequent, BigQuery ML drops one at
  random; we drop the first in sort order, so retraining on the same data gives the same model.
* A feature that is NULL in every training row is refused (InvalidArgument): it carries no
  information and has no mean to impute with.
* Arrays of anything but strings are refused (InvalidArgument); BigQuery ML passes arrays of
  numbers through to the model types that take them.
* Statistics (means, categories, …) are learnt from the whole training input, as BigQuery ML
  documents for imputation ("the original input data"); TARGET encoding's label means only from
  the rows whose ``target`` is not NaN (the caller leaves evaluation rows out).

A STRUCT column becomes one feature per field, named ``<struct>_<field>`` and preprocessed by the
field's type (BigQuery ML's struct expansion: every field named, no nested STRUCT). Prediction
takes the STRUCT column (:attr:`input_schema` lists it with its struct type); :attr:`features`,
:meth:`feature_info` and the explanations name the expanded features.

Example::

    >>> import pyarrow as pa
    >>> t = pa.table({"x": [1.0, None, 3.0], "c": ["a", "b", None]})
    >>> p = FeaturePreprocessor.fit(t, ["x", "c"], standardize=True, categorical_encoding="one_hot")
    >>> p.feature_names_out
    ['x', 'c=a', 'c=b', 'c=<NULL>']
    >>> p.transform(t).shape
    (3, 4)

The timestamp components are matrix columns of their own (specs whose ``source`` is the
timestamp column), laid out right after the timestamp's Unix seconds: :attr:`features`,
:attr:`input_schema` and :meth:`feature_info` list input columns only, and
:attr:`input_offsets` gives each input column's first matrix column.
"""

from __future__ import annotations

import base64
import itertools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidArgument
from shipyard.registry.labels import MAX_LOGISTIC_CLASSES, LabelInfo
from shipyard.registry.statistics import NumericSource, numeric_source, numeric_stats
from shipyard.registry.statistics import one_array as _one_array

__all__ = [
    "DISTRIBUTION_TOP_VALUES",
    "MAX_LOGISTIC_CLASSES",
    "CategoricalEncoding",
    "FeaturePreprocessor",
    "LabelInfo",
    "category_counts",
    "feature_kind",
    "training_distribution",
]

CategoricalEncoding = Literal["one_hot", "dummy", "label", "target"]
_ENCODINGS: tuple[str, ...] = ("one_hot", "dummy", "label", "target")
#: Categorical values kept in a column's training distribution: the most frequent ones, as
#: TFDV's rank histogram (BigQuery ML's default num_rank_histogram_buckets), which is all that
#: ML.VALIDATE_DATA_SKEW compares.
DISTRIBUTION_TOP_VALUES = 50

_NULL_NAME = "<NULL>"
_FORMAT_VERSION = 1
# Rows per block when filling the C-ordered matrix: a column-major scratch block of the numeric
# columns this large is written column by column, then copied into the matrix (see
# FeaturePreprocessor._write_numeric); smaller blocks cost more Python per row (1 MiB: +20%).
_BLOCK_BYTES = 4 << 20
# Up to this many rows, an all-FLOAT64 input becomes the matrix in one Arrow call
# (RecordBatch.to_tensor) and is imputed/standardized in place: no per-column Python, which is
# most of the cost of a small batch (online serving). Larger inputs take the blocked writer.
_DENSE_ROWS = 2048
# Rows per block of a column-major matrix: its columns are contiguous, so blocks only bound the
# float64 scratch vector (8 MiB).
_F_BLOCK_ROWS = 1 << 20

# FeaturePreprocessor.fit computes the columns' statistics on up to this many threads, when the
# input holds at least this many values (below, a thread pool costs more than it saves).
_FIT_THREADS = 4
_PARALLEL_FIT_VALUES = 1_000_000

# Canonical Arrow types of the categorical kinds; categories are stored as JSON in these.
_CATEGORY_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp_part": pa.int64(),  # a component of a timestamp column (see TIMESTAMP_PARTS)
    "bytes": pa.binary(),
    "string_array": pa.string(),  # ARRAY<STRING>: multi-hot over its elements' vocabulary
}

#: The components of a TIMESTAMP feature for linear models, in matrix order: (processed input
#: prefix, what it is). BigQuery ML's "TIMESTAMP feature transformation" table.
TIMESTAMP_PARTS: tuple[tuple[str, str], ...] = (
    ("_TS_DOM_", "day of month"),
    ("_TS_DOW_", "day of week"),
    ("_TS_MOY_", "month of year"),
    ("_TS_HOD_", "hour of day"),
    ("_TS_MOH_", "minute of hour"),
    ("_TS_WOY_", "week of year"),
    ("_TS_YEAR_", "year"),
)


# --------------------------------------------------------------------------------------------
# column kinds


def _kind_of(dtype: pa.DataType) -> str | None:
    """The feature kind of an Arrow type: numeric, timestamp, a categorical kind, or None."""
    if pa.types.is_dictionary(dtype):
        return _kind_of(dtype.value_type)
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_time(dtype):
        return "time"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "bytes"
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and _kind_of(
        dtype.value_type
    ) == "string":
        return "string_array"
    return None


_SUPPORTED_TYPES_TEXT = (
    "integer, floating point, decimal, bool, string, bytes, date, time or timestamp columns, "
    "arrays of strings, and STRUCTs of those (one feature per field)"
)


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    return table.column(name)


def _categorical_values(col: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    """The column in its kind's canonical type (string, bool, date32, time64[us]), still chunked;
    an ARRAY<STRING>'s elements, flattened."""
    target = _CATEGORY_TYPES[kind]
    if kind == "string_array" and not pa.types.is_null(col.type):
        col = pc.list_flatten(col)
    if pa.types.is_null(col.type):
        return pa.chunked_array([pa.nulls(len(col), type=target)], type=target)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not col.type.equals(target):
        col = col.cast(target)
    return col


def _categories_to_json(values: pa.Array, kind: str) -> list[Any]:
    if kind in ("date", "time"):
        storage = pa.int32() if kind == "date" else pa.int64()
        return values.cast(storage).to_pylist()  # type: ignore[no-any-return]
    if kind == "bytes":  # JSON has no bytes: base64 text
        return [base64.b64encode(v).decode("ascii") for v in values.to_pylist()]
    return values.to_pylist()  # type: ignore[no-any-return]


def _categories_from_json(values: list[Any], kind: str) -> pa.Array:
    if kind == "date":
        return pa.array(values, type=pa.int32()).cast(pa.date32())
    if kind == "time":
        return pa.array(values, type=pa.int64()).cast(pa.time64("us"))
    if kind == "bytes":
        return pa.array([base64.b64decode(v) for v in values], type=pa.binary())
    return pa.array(values, type=_CATEGORY_TYPES[kind])


def _utc_timestamps(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A timestamp column as zone-less timestamps of its UTC instants (NULL type: NULLs)."""
    if pa.types.is_null(col.type):
        return col.cast(pa.timestamp("s"))
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if col.type.tz is not None:  # the storage is the UTC instant; calendar kernels read local
        col = col.cast(pa.int64()).cast(pa.timestamp(col.type.unit))
    return col


def _timestamp_part(utc: pa.ChunkedArray, prefix: str) -> pa.ChunkedArray:
    """The component ``prefix`` (a TIMESTAMP_PARTS prefix) of zone-less UTC timestamps, int64."""
    if prefix == "_TS_DOM_":
        part = pc.day(utc)
    elif prefix == "_TS_DOW_":  # BigQuery's DAYOFWEEK: Sunday 1 … Saturday 7
        part = pc.day_of_week(utc, count_from_zero=False, week_start=7)
    elif prefix == "_TS_MOY_":
        part = pc.month(utc)
    elif prefix == "_TS_HOD_":
        part = pc.hour(utc)
    elif prefix == "_TS_MOH_":
        part = pc.minute(utc)
    elif prefix == "_TS_WOY_":  # BigQuery's WEEK (strftime %U): days before the first Sunday: 0
        part = pc.week(
            utc, week_starts_monday=False, count_from_zero=True, first_week_is_fully_in_year=True
        )
    elif prefix == "_TS_YEAR_":
        part = pc.year(utc)
    else:
        raise InvalidArgument(
            f"unknown timestamp component {prefix!r}; valid: "
            + ", ".join(p for p, _ in TIMESTAMP_PARTS)
        )
    return part.cast(pa.int64())


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):  # as BigQuery shows BYTES: base64
        return base64.b64encode(value).decode("ascii")
    return str(value)


# --------------------------------------------------------------------------------------------
# per-column specs


@dataclass
class _NumericSpec:
    """A numeric or timestamp input column → one feature column."""

    name: str
    arrow_type: str
    kind: str  # "numeric" | "timestamp"
    impute: float
    center: float
    scale: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return 1

    def names_out(self) -> list[str]:
        return [self.name]

    @property
    def passthrough(self) -> bool:
        """No transform at all: values (NaN and ±inf included) reach the model as they are."""
        return math.isnan(self.impute)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arrow_type": self.arrow_type,
            "kind": self.kind,
            # JSON has no NaN: a pass-through column (nothing to impute with) is stored as null.
            "impute": None if self.passthrough else self.impute,
            "center": self.center,
            "scale": self.scale,
            "stats": self.stats,
        }


@dataclass
class _CategoricalSpec:
    """A categorical input column → one-hot/dummy columns or one label-encoded column."""

    name: str
    arrow_type: str
    kind: str  # "string" | "bool" | "date" | "time"
    encoding: str
    categories: pa.Array
    null_category: bool
    stats: dict[str, Any] = field(default_factory=dict)
    # A timestamp component (kind "timestamp_part"): the input column it is computed from, and
    # its TIMESTAMP_PARTS prefix. ``name`` is then the processed input, e.g. ``_TS_DOW_ts``.
    source: str | None = None
    part: str | None = None
    # TARGET encoding: the encoded row of each category (categories x columns), of NULL (None:
    # training had no NULL) and of an unseen value (the prior: the training label's mean, or
    # its class shares); ``target_names``: the columns' suffixes when there are several.
    target_values: np.ndarray | None = None
    target_null: np.ndarray | None = None
    target_prior: np.ndarray | None = None
    target_names: list[str] | None = None

    @property
    def _dropped(self) -> int:
        # DUMMY_ENCODING drops the first category, the most frequent one (``_fit_categorical``
        # stores it first): it becomes the all-zeros row.
        return 1 if self.encoding == "dummy" and len(self.categories) else 0

    @property
    def width(self) -> int:
        if self.encoding == "label":
            return 1
        if self.encoding == "target":
            assert self.target_prior is not None
            return len(self.target_prior)
        return len(self.categories) - self._dropped + (1 if self.null_category else 0)

    def dropped_names(self) -> list[str]:
        """The categories DUMMY_ENCODING left out of the matrix (``names_out``'s spelling): the
        most frequent one, whose weight is 0 by construction; empty for other encodings."""
        return [f"{self.name}={_display(v)}" for v in self.categories.to_pylist()[: self._dropped]]

    def names_out(self) -> list[str]:
        if self.encoding == "label":
            return [self.name]
        if self.encoding == "target":
            if not self.target_names:
                return [self.name]
            return [f"{self.name}={n}" for n in self.target_names]
        values = self.categories.to_pylist()[self._dropped :]
        names = [f"{self.name}={_display(v)}" for v in values]
        if self.null_category:
            names.append(f"{self.name}={_NULL_NAME}")
        return names

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "arrow_type": self.arrow_type,
            "kind": self.kind,
            "encoding": self.encoding,
            "categories": _categories_to_json(self.categories, self.kind),
            "null_category": self.null_category,
            "stats": self.stats,
        }
        if self.source is not None:
            data["source"], data["part"] = self.source, self.part
        if self.encoding == "target":
            assert self.target_values is not None and self.target_prior is not None
            data["target"] = {
                "values": self.target_values.tolist(),
                "null": None if self.target_null is None else self.target_null.tolist(),
                "prior": self.target_prior.tolist(),
                "names": self.target_names,
            }
        return data


_Spec = _NumericSpec | _CategoricalSpec


@dataclass(frozen=True)
class _Struct:
    """A STRUCT input column: its Arrow type and (field, feature name) per field."""

    name: str
    arrow_type: str
    fields: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arrow_type": self.arrow_type,
            "fields": [{"field": f, "feature": n} for f, n in self.fields],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Struct:
        return cls(
            name=str(data["name"]),
            arrow_type=str(data["arrow_type"]),
            fields=tuple((str(f["field"]), str(f["feature"])) for f in data["fields"]),
        )


def _struct_fields(name: str, dtype: pa.DataType) -> list[tuple[str, str]]:
    """(field, feature name) of a STRUCT feature column; refuses what BigQuery ML refuses."""
    fields = []
    for i in range(dtype.num_fields):
        f = dtype.field(i)
        if not f.name:
            raise InvalidArgument(
                f"STRUCT feature column {name!r} has an unnamed field (position {i + 1}); "
                "every field of a STRUCT feature must be named",
                column=name,
            )
        if pa.types.is_struct(f.type):
            raise InvalidArgument(
                f"STRUCT feature column {name!r} has a nested STRUCT field {f.name!r}; nested "
                "STRUCTs are not expanded: select its fields in the training query",
                column=name,
                field=f.name,
            )
        fields.append((f.name, f"{name}_{f.name}"))
    if not fields:
        raise InvalidArgument(f"STRUCT feature column {name!r} has no fields", column=name)
    return fields


def _expand_structs_for_fit(
    table: pa.Table, features: Sequence[str]
) -> tuple[pa.Table, list[str], list[_Struct]]:
    """``table`` with each STRUCT feature's fields added as ``<struct>_<field>`` columns, the
    feature names with each STRUCT replaced by its fields, and the STRUCTs."""
    if not any(pa.types.is_struct(table.schema.field(n).type) for n in features):
        return table, list(features), []
    expanded: list[str] = []
    structs: list[_Struct] = []
    for name in features:
        dtype = table.schema.field(name).type
        if not pa.types.is_struct(dtype):
            expanded.append(name)
            continue
        fields = _struct_fields(name, dtype)
        structs.append(_Struct(name, str(dtype), tuple(fields)))
        expanded.extend(n for _, n in fields)
    clash = sorted({n for n in expanded if expanded.count(n) > 1})
    taken = set(table.column_names) - set(features)
    clash += sorted({n for st in structs for _, n in st.fields if n in taken})
    if clash:
        raise InvalidArgument(
            f"the expanded STRUCT features {clash} clash with other columns of the training "
            "data (a STRUCT's field f becomes the feature <struct>_f); rename them",
            columns=clash,
        )
    return _expand_structs(table, structs), expanded, structs


def _expand_structs(table: pa.Table, structs: Sequence[_Struct]) -> pa.Table:
    """``table`` with the fields of ``structs`` appended as columns (a NULL STRUCT: NULLs)."""
    names = set(table.column_names)
    for st in structs:
        if st.name not in names:
            continue  # reported as missing by the caller, with every other missing column
        col = table.column(st.name)
        dtype = col.type
        if pa.types.is_null(dtype):  # SELECT NULL AS s: every field NULL
            for _, feature in st.fields:
                table = table.append_column(feature, pa.nulls(len(col)))
            continue
        if not pa.types.is_struct(dtype):
            raise InvalidArgument(
                f"input column {st.name!r} has type {dtype}, but the model was trained on "
                f"{st.arrow_type}: it must be a STRUCT with the fields "
                f"{[f for f, _ in st.fields]}",
                column=st.name,
                type=str(dtype),
                expected=st.arrow_type,
            )
        present = {dtype.field(i).name for i in range(dtype.num_fields)}
        missing = [f for f, _ in st.fields if f not in present]
        if missing:
            raise InvalidArgument(
                f"STRUCT input column {st.name!r} lacks the fields {missing}; the model was "
                f"trained on {st.arrow_type}",
                column=st.name,
                missing=missing,
            )
        for field_name, feature in st.fields:
            table = table.append_column(feature, pc.struct_field(col, field_name))
    return table


def _is_input(spec: _Spec) -> bool:
    """An input column's own spec (not a timestamp component)."""
    return isinstance(spec, _NumericSpec) or spec.source is None


def _fit_numeric(name: str, col: pa.ChunkedArray, kind: str, standardize: bool) -> _NumericSpec:
    stats = numeric_stats(numeric_source(col, kind), len(col))
    if stats["count"] == 0:
        raise InvalidArgument(
            f"feature column {name!r} is NULL in every training row; it carries no information "
            "and has no mean to impute with: drop it from the training query or fill it",
            column=name,
        )
    mean = stats["mean"] if stats["mean"] is not None else 0.0
    std = stats["stddev"] or 0.0
    center = mean if standardize else 0.0
    # stddev 0 (a constant column): leave it centred rather than dividing by zero.
    scale = std if (standardize and std > 0.0) else 1.0
    return _NumericSpec(
        name=name,
        arrow_type=str(col.type),
        kind=kind,
        impute=mean,
        center=center,
        scale=scale,
        stats={
            "min": stats["min"],
            "max": stats["max"],
            "mean": stats["mean"],
            "median": stats["median"],
            "stddev": stats["stddev"],
            "category_count": None,
            "null_count": stats["null_count"],
            "histogram": stats["histogram"],  # ML.VALIDATE_DATA_SKEW's baseline
        },
    )


def _sorted_value_counts(values: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct non-NULL ``values`` in sort order, and how many rows hold each.

    One hash pass, as the distinct values alone (``pc.unique``) would be, at ~1.5x its time
    (300k strings: +1.2 ms); the counts are ML.VALIDATE_DATA_SKEW's training distribution and
    spare DUMMY_ENCODING a counting pass of its own (-1.7 ms).
    """
    counted = pc.value_counts(values)
    present = pc.is_valid(counted.field("values"))
    uniques = counted.field("values").filter(present)
    counts = counted.field("counts").filter(present)
    order = pc.array_sort_indices(uniques)
    return uniques.take(order), counts.take(order).to_numpy(zero_copy_only=False)


def _most_frequent_first(categories: pa.Array, counts: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """``categories`` (sorted) and their ``counts`` with the most frequent one moved to the front.

    DUMMY_ENCODING drops the most frequent category (BigQuery ML's rule). BigQuery ML breaks
    a tie at random; we take the first in sort order, so the same data always encodes the same.
    """
    top = int(np.argmax(counts))  # the first maximum: the smallest value among ties
    order = [top, *(i for i in range(len(categories)) if i != top)]
    return categories.take(pa.array(order)), counts[order]


def _fit_categorical(
    name: str,
    col: pa.ChunkedArray,
    kind: str,
    encoding: str,
    *,
    source: str | None = None,
    part: str | None = None,
) -> _CategoricalSpec:
    if kind == "string_array":
        encoding = "multi_hot"  # whatever the encoding option: one column per element value
    values = _categorical_values(col, kind)
    null_count = values.null_count
    empty = null_count == len(values)
    null_rows = null_count
    if kind == "string_array":  # NULL arrays and NULL elements: the NULL category
        null_rows = col.null_count  # ML.FEATURE_INFO's null_count: NULL arrays
        null_count += null_rows
    if empty:
        raise InvalidArgument(
            f"feature column {name!r} is NULL in every training row; it carries no information: "
            "drop it from the training query or fill it",
            column=name,
        )
    categories, counts = _sorted_value_counts(values)
    top = np.argsort(-counts, kind="stable")[:DISTRIBUTION_TOP_VALUES]  # ties: sort order
    top_values = {
        "values": _categories_to_json(categories.take(pa.array(top)), kind),
        "counts": counts[top].tolist(),
    }
    if encoding == "dummy" and len(categories) > 1:
        categories, counts = _most_frequent_first(categories, counts)
    return _CategoricalSpec(
        name=name,
        arrow_type=str(col.type),
        kind=kind,
        encoding=encoding,
        categories=categories,
        # BigQuery ML maps NULL to an extra category; only worth a column if training had one.
        null_category=bool(null_count) and encoding != "label",
        stats={
            "min": None,
            "max": None,
            "mean": None,
            "median": None,
            "stddev": None,
            "category_count": len(categories),
            "null_count": null_rows,
            # the most frequent values and their rows: ML.VALIDATE_DATA_SKEW's baseline
            "top_values": top_values,
        },
        source=source,
        part=part,
    )


def _fit_target(
    spec: _CategoricalSpec,
    col: pa.ChunkedArray,
    target: np.ndarray,
    target_names: list[str] | None,
) -> _CategoricalSpec:
    """TARGET encoding of ``spec``'s categories from the label ``target`` (NaN: not a training
    row). One column, the category's mean label (regression; binary classification: 0/1 codes,
    so its share of the positive class), or with ``target_names`` (multiclass) one column per
    class, the category's share of it. NULL is a category of its own when training had NULLs; a
    category without training rows (and an unseen value at prediction) gets the prior: the
    training rows' mean or class shares."""
    values = _categorical_values(col, spec.kind)
    idx = pc.index_in(values, value_set=spec.categories).fill_null(-1)
    codes = idx.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    y = np.asarray(target, dtype=np.float64)
    rows = np.isfinite(y)
    k = len(spec.categories)
    slot = np.where(codes >= 0, codes, k)  # k: the NULL rows (no unseen value in training)
    slot, y = slot[rows], y[rows]
    if target_names:
        onehot = (y[:, None] == np.arange(len(target_names))[None, :]).astype(np.float64)
    else:
        onehot = y[:, None]
    width = onehot.shape[1]
    counts = np.bincount(slot, minlength=k + 1).astype(np.float64)
    sums = np.stack(
        [np.bincount(slot, weights=onehot[:, j], minlength=k + 1) for j in range(width)], axis=1
    )
    prior = onehot.mean(axis=0) if len(y) else np.zeros(width)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(counts[:, None] > 0, sums / counts[:, None], prior[None, :])
    null_rows = bool(values.null_count) and counts[k] > 0
    spec.target_values = table[:k]
    spec.target_null = table[k] if null_rows else None
    spec.target_prior = prior
    spec.target_names = list(target_names) if target_names else None
    spec.null_category = spec.target_null is not None
    return spec


def _target_from_dict(c: dict[str, Any]) -> dict[str, Any]:
    """The TARGET encoding fields of a stored categorical column (none for other encodings)."""
    if c["encoding"] != "target":
        return {}
    t = c["target"]
    values = np.asarray(t["values"], dtype=np.float64).reshape(len(c["categories"]), -1)
    prior = np.asarray(t["prior"], dtype=np.float64)
    if values.shape[1] != len(prior) and len(c["categories"]):
        raise InvalidArgument(f"preprocessor column {c['name']!r}: target widths differ")
    return {
        "target_values": values,
        "target_null": None if t.get("null") is None else np.asarray(t["null"], np.float64),
        "target_prior": prior,
        "target_names": t.get("names"),
    }


def _fit_timestamp_parts(name: str, col: pa.ChunkedArray, encoding: str) -> list[_CategoricalSpec]:
    """The seven component specs of the timestamp column ``name`` (TIMESTAMP_PARTS order)."""
    utc = _utc_timestamps(col)
    return [
        _fit_categorical(
            prefix + name,
            _timestamp_part(utc, prefix),
            "timestamp_part",
            encoding,
            source=name,
            part=prefix,
        )
        for prefix, _ in TIMESTAMP_PARTS
    ]


def _imputed(values: np.ndarray, impute: float) -> np.ndarray:
    """``values`` with NaN and ±inf (NULL is NaN by now) replaced by ``impute``."""
    missing = ~np.isfinite(values)
    if missing.any():
        return np.where(missing, impute, values)
    return values


def write_rows(
    rows: np.ndarray,
    columns: Iterable[tuple[int, np.ndarray, float, float | None]],
    first: int,
    scratch: np.ndarray,
) -> None:
    """Write ``len(rows)`` rows of a block's ``columns`` (from row ``first`` of the block, as
    :meth:`FeaturePreprocessor.numeric_blocks` gives them) into ``rows``, a slice of a model
    matrix or of a block buffer: each column ``(values - center) * inverse`` computed in float64
    and cast on the write, or ``values`` as they are. The one place this arithmetic is written:
    :meth:`FeaturePreprocessor.transform` and every path that builds the matrix a block at a
    time use it, so they hold the same bits. ``scratch``: float64, at least ``len(rows)`` long.
    """
    m = len(rows)
    t = scratch[:m]
    # Contiguous float64 columns (a column-major matrix or block) take the arithmetic in place:
    # the same float64 operations, one pass less (50k x 20: 3.4 -> 3.0 ms).
    in_place = rows.dtype == np.float64 and rows.strides[0] == rows.itemsize
    for offset, values, center, inverse in columns:
        target = rows[:, offset]
        v = values[first : first + m]
        if inverse is None:
            target[...] = v
        elif in_place:
            np.subtract(v, center, out=target)
            target *= inverse
        else:
            np.subtract(v, center, out=t)
            np.multiply(t, inverse, out=target, casting="same_kind")


def _runs(offsets: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(first, last, at)`` for each run of consecutive matrix columns in ``offsets``: columns
    ``first:last`` of the matrix are entries ``at:at + last - first`` of ``offsets``."""
    runs: list[tuple[int, int, int]] = []
    for at, offset in enumerate(offsets):
        if runs and runs[-1][1] == offset:
            first, _, begin = runs[-1]
            runs[-1] = (first, offset + 1, begin)
        else:
            runs.append((offset, offset + 1, at))
    return runs


def _assembled(
    columns: Iterable[tuple[int, int, Iterable[tuple[int, np.ndarray, float, float | None]]]],
    edges: list[tuple[int, int]],
    buffer: np.ndarray,
    scratch: np.ndarray,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """:meth:`FeaturePreprocessor.matrix_blocks`' blocks: the rows of each ``(lo, hi)`` edge
    pair written into ``buffer`` from the column blocks, across their boundaries."""
    pending = iter(edges)
    base, end = next(pending)
    for start, stop, parts in columns:
        listed = list(parts)
        pos = start
        while pos < stop:
            take = min(stop, end) - pos
            write_rows(buffer[pos - base : pos - base + take], listed, pos - start, scratch)
            pos += take
            if pos == end:
                yield base, end, buffer[: end - base]
                base, end = next(pending, (end, end))


def _row_major(
    blocks: Iterator[tuple[int, int, np.ndarray]], buffer: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``blocks`` copied into the C-contiguous ``buffer`` (the same values)."""
    for lo, hi, block in blocks:
        rows = buffer[: hi - lo]
        np.copyto(rows, block)
        yield lo, hi, rows


def _block_columns(
    parts: list[tuple[int, np.ndarray, float, float | None, float, bool]], start: int, stop: int
) -> Iterator[tuple[int, np.ndarray, float, float | None]]:
    """Each column's ``(offset, values, center, inverse)`` in rows ``start:stop`` of a batch,
    NaN and ±inf imputed where the column may hold them."""
    for offset, values, center, inv, impute, check in parts:
        v = values[start:stop]
        # One cheap sum tells whether any NaN/±inf needs imputing (einsum's plain sum is
        # faster than np.sum's pairwise one). It also reads the block in order, so the
        # consumer's strided write reads from cache.
        if check and not math.isfinite(np.einsum("i->", v)):
            v = _imputed(v, impute)
        yield offset, v, center, inv


# --------------------------------------------------------------------------------------------
# training distributions (ML.VALIDATE_DATA_SKEW's baseline)


def feature_kind(dtype: pa.DataType) -> str | None:
    """The preprocessing kind of a column type: ``numeric``, ``timestamp``, a categorical kind
    (``string``, ``bool``, ``date``, ``time``, ``bytes``, ``string_array``) or None."""
    return _kind_of(dtype)


def category_counts(col: pa.ChunkedArray, kind: str) -> tuple[list[Any], np.ndarray]:
    """The distinct non-NULL values of a categorical column (an ARRAY<STRING>'s elements) in
    sort order, spelt as the model package stores categories (dates as days, bytes as base64),
    and how many times each occurs."""
    values, counts = _sorted_value_counts(_categorical_values(col, kind))
    return _categories_to_json(values, kind), counts


def training_distribution(spec: _Spec) -> dict[str, Any] | None:
    """A column's training distribution as stored in ML.FEATURE_INFO's rows: ``{"kind",
    "histogram"}`` (numeric, timestamp: counts of a sample in equal-width buckets from the min
    to the max) or ``{"kind", "values", "counts"}`` (categorical: the
    :data:`DISTRIBUTION_TOP_VALUES` most frequent values, ties in sort order, and their rows);
    None when the column's statistics predate them (or there are none: a pass-through model)."""
    stats = spec.stats
    if isinstance(spec, _NumericSpec):
        if stats.get("histogram") is None:
            return None
        return {"kind": spec.kind, "histogram": stats["histogram"]}
    if stats.get("top_values") is None:
        return None
    return {"kind": spec.kind, **stats["top_values"]}


# --------------------------------------------------------------------------------------------
# the preprocessor


class FeaturePreprocessor:
    """Learnt automatic preprocessing: Arrow table in, C-contiguous float matrix out.

    Build it with :meth:`fit` (training) or :meth:`from_dict` (serving).
    """

    def __init__(
        self,
        specs: Sequence[_Spec],
        *,
        standardize: bool,
        categorical_encoding: str,
        structs: Sequence[_Struct] = (),
    ) -> None:
        self._specs = list(specs)
        # STRUCT input columns, expanded into one feature per field before anything else.
        self._structs = list(structs)
        self.standardize = standardize
        self.categorical_encoding = categorical_encoding
        offsets = []
        offset = 0
        for spec in self._specs:
            offsets.append(offset)
            offset += spec.width
        self._offsets = offsets
        self._width = offset
        # Input columns (not timestamp components) and their first matrix column each.
        self._inputs = [s for s in self._specs if _is_input(s)]
        self._input_offsets = [o for s, o in zip(self._specs, offsets, strict=True) if _is_input(s)]
        # The last input schema that passed _check_input, with its _DensePlan (or None).
        self._checked: tuple[pa.Schema, _DensePlan | None] | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        table: pa.Table,
        features: Sequence[str],
        *,
        standardize: bool,
        categorical_encoding: CategoricalEncoding | str = "one_hot",
        timestamp_components: bool = False,
        target: np.ndarray | None = None,
        target_names: Sequence[str] | None = None,
    ) -> FeaturePreprocessor:
        """Learn the transform of ``features`` (columns of ``table``) from the training data.

        ``timestamp_components``: a TIMESTAMP feature also becomes its seven calendar
        components (``_TS_DOM_<col>`` …, see :data:`TIMESTAMP_PARTS`), encoded with
        ``categorical_encoding`` — BigQuery ML does this for LINEAR_REG and LOGISTIC_REG.

        ``target`` (``categorical_encoding="target"``): the label of each row as float64 (NaN:
        not a training row, e.g. an evaluation row); regression values or binary 0/1 codes give
        one column per categorical feature, class codes with ``target_names`` (multiclass) one
        column per class.
        """
        if categorical_encoding not in _ENCODINGS:
            raise InvalidArgument(
                f"categorical_encoding {categorical_encoding!r} is not valid; "
                f"valid values: {', '.join(_ENCODINGS)}",
                categorical_encoding=categorical_encoding,
            )
        if categorical_encoding == "target" and (target is None or len(target) != table.num_rows):
            raise InvalidArgument(
                "categorical_encoding 'target' needs the label of every row (target=, one value "
                f"per row: {table.num_rows})"
            )
        if not features:
            raise InvalidArgument(
                "there are no feature columns: the training data needs at least one column "
                "besides the label",
                columns=list(table.column_names),
            )
        missing = [f for f in features if f not in table.column_names]
        if missing:
            raise InvalidArgument(
                f"feature columns {missing} are not in the training data; "
                f"its columns are: {list(table.column_names)}",
                missing=missing,
            )
        duplicated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
        if duplicated:
            raise InvalidArgument(
                f"the training data has duplicate column names {duplicated}; give every "
                "column a distinct name",
                duplicated=duplicated,
            )
        table, expanded, structs = _expand_structs_for_fit(table, features)
        columns: list[tuple[str, pa.ChunkedArray, str]] = []
        for name in expanded:
            col = _column(table, name)
            if pa.types.is_null(col.type):
                raise InvalidArgument(
                    f"feature column {name!r} is NULL in every training row; it carries no "
                    "information: drop it from the training query or fill it",
                    column=name,
                )
            kind = _kind_of(col.type)
            if kind is None:
                raise InvalidArgument(
                    f"feature column {name!r} has type {col.type}, which automatic "
                    f"preprocessing does not support; supported: {_SUPPORTED_TYPES_TEXT} "
                    "(cast or drop the column in the training query)",
                    column=name,
                    type=str(col.type),
                )
            columns.append((name, col, kind))
        if structs:  # the expanded features keep the STRUCT column's place
            order = {n: i for i, n in enumerate(expanded)}
            columns.sort(key=lambda c: order[c[0]])
        if timestamp_components:
            taken = set(features)
            for name, _, kind in columns:
                clash = [p + name for p, _ in TIMESTAMP_PARTS if p + name in taken]
                if kind == "timestamp" and clash:
                    raise InvalidArgument(
                        f"feature columns {clash} have the names of the components of the "
                        f"timestamp column {name!r}; rename them in the training query",
                        columns=clash,
                    )

        def fit_column(column: tuple[str, pa.ChunkedArray, str]) -> list[_Spec]:
            name, col, kind = column
            if kind == "timestamp" and timestamp_components:
                seconds = _fit_numeric(name, col, kind, standardize)
                return [seconds, *_fit_timestamp_parts(name, col, categorical_encoding)]
            if kind in ("numeric", "timestamp"):
                return [_fit_numeric(name, col, kind, standardize)]
            spec = _fit_categorical(name, col, kind, categorical_encoding)
            if spec.encoding == "target":
                assert target is not None
                names = [str(n) for n in target_names] if target_names else None
                spec = _fit_target(spec, col, target, names)
            return [spec]

        workers = min(len(columns), os.cpu_count() or 1, _FIT_THREADS)
        if workers > 1 and table.num_rows * len(columns) >= _PARALLEL_FIT_VALUES:
            # Columns are independent, and Arrow's and NumPy's kernels release the GIL: the
            # statistics of 300k x 20 rows take ~half the time on 2 cores. Same results: each
            # column is computed as it would be alone; map raises the first column's error.
            with ThreadPoolExecutor(workers) as pool:
                fitted = list(pool.map(fit_column, columns))
        else:
            fitted = [fit_column(column) for column in columns]
        specs = [spec for group in fitted for spec in group]
        return cls(
            specs,
            standardize=standardize,
            categorical_encoding=categorical_encoding,
            structs=structs,
        )

    @classmethod
    def passthrough(cls, columns: Sequence[tuple[str, str]]) -> FeaturePreprocessor:
        """No preprocessing: numeric columns ``(name, arrow type)`` become the matrix, in order.

        For models trained outside Shipyard on a numeric matrix (or a DataFrame of numbers):
        nothing is imputed, centred or scaled, and a NULL reaches the model as NaN (XGBoost and
        LightGBM read it as missing). No training statistics are known, so
        :meth:`feature_info` has none.

        >>> FeaturePreprocessor.passthrough([("x", "double"), ("n", "int64")]).features
        ['x', 'n']
        """
        specs: list[_Spec] = []
        seen: set[str] = set()
        for name, arrow_type in columns:
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"feature name {name!r} must be a non-empty string")
            if name in seen:
                raise InvalidArgument(
                    f"feature name {name!r} appears twice; give every feature a distinct name",
                    column=name,
                )
            seen.add(name)
            try:
                dtype = pa.type_for_alias(arrow_type) if isinstance(arrow_type, str) else None
            except ValueError:
                dtype = None
            if dtype is None or _kind_of(dtype) != "numeric":
                raise InvalidArgument(
                    f"feature {name!r} has type {arrow_type!r}; a pass-through feature must be "
                    "a numeric Arrow type (e.g. double, float, int64, int32)",
                    column=name,
                    type=str(arrow_type),
                )
            specs.append(
                _NumericSpec(
                    name=name,
                    arrow_type=str(dtype),
                    kind="numeric",
                    impute=math.nan,
                    center=0.0,
                    scale=1.0,
                )
            )
        if not specs:
            raise InvalidArgument("a model needs at least one feature column")
        return cls(specs, standardize=False, categorical_encoding="one_hot")

    def to_dict(self) -> dict[str, Any]:
        """A pure-JSON form (stored in the model package manifest)."""
        return {
            "format_version": _FORMAT_VERSION,
            "standardize": self.standardize,
            "categorical_encoding": self.categorical_encoding,
            "columns": [spec.to_dict() for spec in self._specs],
            # only when there are STRUCT features: older descriptions have no such key
            **({"structs": [st.to_dict() for st in self._structs]} if self._structs else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeaturePreprocessor:
        """Rebuild the preprocessor that :meth:`to_dict` described."""
        try:
            version = data.get("format_version")
            if version != _FORMAT_VERSION:
                raise InvalidArgument(
                    f"preprocessor format_version {version!r} is not supported; "
                    f"this Shipyard reads version {_FORMAT_VERSION}",
                    format_version=version,
                )
            specs: list[_Spec] = []
            for c in data["columns"]:
                if c["kind"] in ("numeric", "timestamp"):
                    specs.append(
                        _NumericSpec(
                            name=c["name"],
                            arrow_type=c["arrow_type"],
                            kind=c["kind"],
                            impute=math.nan if c["impute"] is None else float(c["impute"]),
                            center=float(c["center"]),
                            scale=float(c["scale"]),
                            stats=dict(c.get("stats") or {}),
                        )
                    )
                elif c["kind"] in _CATEGORY_TYPES:
                    source, part = c.get("source"), c.get("part")
                    if (c["kind"] == "timestamp_part") != (source is not None) or (
                        source is not None
                        and (
                            part not in {p for p, _ in TIMESTAMP_PARTS}
                            or not any(s.name == source and s.kind == "timestamp" for s in specs)
                        )
                    ):
                        raise InvalidArgument(
                            f"preprocessor column {c.get('name')!r}: a timestamp component "
                            "needs kind 'timestamp_part', a known part and its timestamp "
                            "column before it"
                        )
                    specs.append(
                        _CategoricalSpec(
                            name=c["name"],
                            arrow_type=c["arrow_type"],
                            kind=c["kind"],
                            encoding=c["encoding"],
                            categories=_categories_from_json(c["categories"], c["kind"]),
                            null_category=bool(c["null_category"]),
                            stats=dict(c.get("stats") or {}),
                            source=source,
                            part=part,
                            **_target_from_dict(c),
                        )
                    )
                else:
                    raise InvalidArgument(
                        f"preprocessor column {c.get('name')!r} has unknown kind {c['kind']!r}; "
                        f"valid kinds: numeric, timestamp, {', '.join(_CATEGORY_TYPES)}"
                    )
            structs = [_Struct.from_dict(st) for st in data.get("structs") or []]
            names = {s.name for s in specs}
            lost = [f for st in structs for _, f in st.fields if f not in names]
            if lost:
                raise InvalidArgument(
                    f"preprocessor STRUCT fields {lost} have no column description"
                )
            return cls(
                specs,
                standardize=bool(data["standardize"]),
                categorical_encoding=str(data["categorical_encoding"]),
                structs=structs,
            )
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            if isinstance(exc, InvalidArgument):
                raise
            raise InvalidArgument(
                f"the stored preprocessor description is malformed ({exc!r}); "
                "it must be what FeaturePreprocessor.to_dict() produced"
            ) from exc

    # -- description -------------------------------------------------------------------------

    @property
    def features(self) -> list[str]:
        """The input feature names, in order (a STRUCT column's as ``<struct>_<field>``)."""
        return [s.name for s in self._inputs]

    @property
    def input_offsets(self) -> list[int]:
        """The first matrix column of each input column (:attr:`features`' order): an input
        column's matrix columns (a timestamp's components included) are contiguous."""
        return list(self._input_offsets)

    @property
    def feature_names_out(self) -> list[str]:
        """Names of the matrix columns: ``x`` for numbers, ``c=value`` for one-hot columns."""
        names: list[str] = []
        for spec in self._specs:
            names.extend(spec.names_out())
        return names

    @property
    def input_schema(self) -> list[dict[str, str]]:
        """The training input columns as ``{"name", "type"}`` (Arrow type strings); a STRUCT
        column once, with its struct type, in its first field's place."""
        if not self._structs:
            return [{"name": s.name, "type": s.arrow_type} for s in self._inputs]
        owner = {f: st for st in self._structs for _, f in st.fields}
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for spec in self._inputs:
            st = owner.get(spec.name)
            if st is None:
                out.append({"name": spec.name, "type": spec.arrow_type})
            elif st.name not in seen:
                seen.add(st.name)
                out.append({"name": st.name, "type": st.arrow_type})
        return out

    def feature_info(self) -> list[dict[str, Any]]:
        """ML.FEATURE_INFO: training statistics per input column.

        Keys: input, min, max, mean, median (approximate), stddev, category_count, null_count.
        Numbers for numeric and timestamp (Unix seconds) columns, category_count for the rest.
        ``distribution`` (models trained since ML.VALIDATE_DATA_SKEW; absent before): the
        column's training distribution, see :func:`training_distribution`.
        """
        rows = []
        for spec in self._inputs:
            stats = spec.stats
            row = {
                "input": spec.name,
                "min": stats.get("min"),
                "max": stats.get("max"),
                "mean": stats.get("mean"),
                "median": stats.get("median"),
                "stddev": stats.get("stddev"),
                "category_count": stats.get("category_count"),
                "null_count": stats.get("null_count"),
            }
            distribution = training_distribution(spec)
            if distribution is not None:
                row["distribution"] = distribution
            rows.append(row)
        return rows

    def __repr__(self) -> str:
        return (
            f"FeaturePreprocessor(features={self.features}, width={self._width}, "
            f"standardize={self.standardize}, encoding={self.categorical_encoding!r})"
        )

    # -- transform ---------------------------------------------------------------------------

    def _check_input(self, table: pa.Table) -> None:
        names = set(table.column_names)
        columns = [c["name"] for c in self.input_schema]
        missing = [n for n in columns if n not in names]
        if missing:
            raise InvalidArgument(
                f"input is missing feature columns {missing}; the model expects the columns "
                f"{columns}",
                missing=missing,
                expected=columns,
            )
        for spec in self._inputs:
            dtype = table.schema.field(spec.name).type
            if pa.types.is_null(dtype):
                continue  # an all-NULL column (e.g. SELECT NULL AS x): imputed below
            if _kind_of(dtype) != spec.kind:
                expected = {
                    "numeric": "a number (integer, floating point or decimal)",
                    "timestamp": "a timestamp",
                    "string": "a string",
                    "bool": "a bool",
                    "date": "a date",
                    "time": "a time",
                    "bytes": "bytes",
                    "string_array": "an array of strings",
                }[spec.kind]
                raise InvalidArgument(
                    f"input column {spec.name!r} has type {dtype}, but the model was trained "
                    f"on {spec.arrow_type}: it must be {expected}",
                    column=spec.name,
                    type=str(dtype),
                    expected=spec.arrow_type,
                )

    def transform(
        self, table: pa.Table, *, dtype: Any = np.float32, order: Literal["C", "F"] = "C"
    ) -> np.ndarray:
        """The model matrix of ``table``: shape (rows, len(feature_names_out)), C-contiguous, or
        F-contiguous (column-major) with ``order="F"``; the same values either way.

        Column-major suits consumers that read either layout (XGBoost, LightGBM): each numeric
        column is then one contiguous copy instead of a strided write (300k x 20 float64 into
        float32: ~3 ms against ~14 ms). Extra columns are ignored; missing or incompatible
        columns raise InvalidArgument.
        """
        if order not in ("C", "F"):
            raise InvalidArgument(f"order must be 'C' or 'F', got {order!r}")
        if self._structs:
            table = _expand_structs(table, self._structs)
        plan = self._plan(table)
        n = table.num_rows
        if plan is not None and 0 < n <= _DENSE_ROWS:
            return plan.matrix(table, dtype, order)
        # calloc: untouched zeros cost nothing
        out = np.zeros((n, self._width), dtype=dtype, order=order)
        numeric: list[tuple[_NumericSpec, int, NumericSource]] = []
        utc: dict[str, pa.ChunkedArray] = {}  # timestamp columns with components, in UTC
        for spec, offset in zip(self._specs, self._offsets, strict=True):
            if isinstance(spec, _NumericSpec):
                col = table.column(spec.name)
                numeric.append((spec, offset, numeric_source(col, spec.kind)))
            elif spec.source is not None:
                assert spec.part is not None
                if spec.source not in utc:
                    utc[spec.source] = _utc_timestamps(table.column(spec.source))
                part = _timestamp_part(utc[spec.source], spec.part)
                self._write_categorical(out, spec, offset, part)
            else:
                self._write_categorical(out, spec, offset, table.column(spec.name))
        if numeric:
            self._write_numeric(out, numeric)
        return out

    def _plan(self, table: pa.Table) -> _DensePlan | None:
        """Check ``table``'s columns against the training schema (once per input schema:
        serving sends the same one); its fast plan when every feature is FLOAT64 there."""
        schema = table.schema
        checked = self._checked
        if checked is None or not checked[0].equals(schema):
            self._check_input(table)
            checked = (schema, self._dense_plan(schema))
            self._checked = checked
        return checked[1]

    def _dense_plan(self, schema: pa.Schema) -> _DensePlan | None:
        """The plan of a fast path for ``schema``: every feature numeric and FLOAT64 there."""
        specs = self._specs
        if not all(
            isinstance(s, _NumericSpec)
            and s.kind == "numeric"
            and pa.types.is_float64(schema.field(s.name).type)
            for s in specs
        ):
            return None
        numeric = [s for s in specs if isinstance(s, _NumericSpec)]
        names = [s.name for s in numeric]
        positions = [schema.get_field_index(name) for name in names]
        return _DensePlan(
            positions=None if positions == list(range(len(schema))) else positions,
            centers=np.array([s.center for s in numeric], dtype=np.float64),
            inverses=np.array(
                [1.0 if (s.center == 0.0 and s.scale == 1.0) else 1.0 / s.scale for s in numeric],
                dtype=np.float64,
            ),
            imputes=np.array([s.impute for s in numeric], dtype=np.float64),
            imputing=np.array([not s.passthrough for s in numeric], dtype=bool),
            identity=all(s.center == 0.0 and s.scale == 1.0 for s in numeric),
        )

    def numeric_blocks(
        self, table: pa.Table, *, rows: int, impute_nonfinite: bool = True
    ) -> Iterator[tuple[int, int, Iterator[tuple[int, np.ndarray, float, float | None]]]] | None:
        """The model matrix of ``table`` without building it, when every feature is numeric:
        ``(start, stop, columns)`` per block of at most ``rows`` rows, where ``columns`` gives
        each feature's ``(offset, values, center, inverse)`` in matrix column order: the
        block's values in float64 with NULL, NaN and ±inf imputed, and the matrix column is
        ``(values - center) * inverse`` (``inverse`` None: ``values`` as they are), exactly as
        :meth:`transform` writes it. None when a feature is not numeric (the caller then
        builds the matrix). Checks ``table`` as :meth:`transform` does.

        ``impute_nonfinite=False`` imputes NULLs only, and leaves NaN and ±inf in float
        columns as they are (no check per block): for a caller whose result is NaN or ±inf
        whenever an input is, and which then asks again with the imputation.
        """
        if self._structs or not all(isinstance(s, _NumericSpec) for s in self._specs):
            return None
        self._plan(table)
        columns = [
            (spec, offset, numeric_source(table.column(spec.name), spec.kind))
            for spec, offset in zip(self._specs, self._offsets, strict=True)
            if isinstance(spec, _NumericSpec)
        ]
        return self._numeric_blocks(columns, rows, impute_nonfinite=impute_nonfinite)

    def matrix_blocks(
        self,
        table: pa.Table,
        bounds: Sequence[int],
        *,
        impute_nonfinite: bool = True,
        order: Literal["C", "F"] = "C",
    ) -> Iterator[tuple[int, int, np.ndarray]] | None:
        """The model matrix of ``table`` a block of rows at a time, without the whole matrix,
        when every feature is numeric: ``(lo, hi, rows)`` for each pair of consecutive
        ``bounds`` (0 first, the row count last), whatever the input's chunks. ``rows`` is a
        C-contiguous float64 ``(hi - lo, width)`` view of one buffer, which the next block
        overwrites; its values are :meth:`transform`'s (:func:`write_rows`). None when a
        feature is not numeric. ``impute_nonfinite``: as in :meth:`numeric_blocks`.
        ``order="F"``: the buffer is column-major (``rows`` a view of its first ``hi - lo``
        rows, each feature's values contiguous, so they are written without a stride).
        """
        n = table.num_rows
        edges = list(itertools.pairwise(bounds))
        if not edges or bounds[0] != 0 or bounds[-1] != n or any(a >= b for a, b in edges):
            raise InvalidArgument(
                f"bounds must rise strictly from 0 to the row count {n}, got {list(bounds)}"
            )
        largest = max(b - a for a, b in edges)
        size = min(largest, 1 << 16)
        columns = self.numeric_blocks(table, rows=size, impute_nonfinite=impute_nonfinite)
        if columns is None:
            return None
        # Each block is written column-major (every feature's values land contiguously); a
        # row-major block is then one transposing copy of it, which costs less than writing
        # its columns strided (KMEANS' 300k x 20 blocks: ~24 -> ~12 ms).
        buffer = np.empty((largest, self._width), order="F")
        blocks = _assembled(columns, edges, buffer, np.empty(size))
        if order == "F" or self._width == 1:
            return blocks
        return _row_major(blocks, np.empty((largest, self._width)))

    @staticmethod
    def _numeric_blocks(
        columns: list[tuple[_NumericSpec, int, NumericSource]],
        block: int,
        *,
        impute_nonfinite: bool = True,
    ) -> Iterator[tuple[int, int, Iterator[tuple[int, np.ndarray, float, float | None]]]]:
        """The numeric columns' values, block by block (see :meth:`numeric_blocks`).

        Chunks are never combined: the rows go batch by batch (row ranges where every column is
        one chunk), and inside a batch in equal blocks of at most ``block`` rows. Only chunks
        with NULLs, or float chunks whose block sum is not finite, are checked element by
        element.
        """
        aligned = pa.Table.from_arrays(
            [source.data for _, _, source in columns], names=[str(i) for i in range(len(columns))]
        )
        row = 0
        for batch in aligned.to_batches():
            m = batch.num_rows
            if m == 0:
                continue
            parts: list[tuple[int, np.ndarray, float, float | None, float, bool]] = []
            for i, (spec, offset, source) in enumerate(columns):
                arr = batch.column(i)
                values = source.values(arr)
                check = source.nonfinite_possible and impute_nonfinite
                if spec.passthrough:
                    check = False  # NULL is NaN by now; nothing else changes
                elif arr.null_count:
                    values = _imputed(values, spec.impute)
                    check = False
                inv = None if (spec.center == 0.0 and spec.scale == 1.0) else 1.0 / spec.scale
                parts.append((offset, values, spec.center, inv, spec.impute, check))
            size = -(-m // -(-m // block))  # equal blocks of at most ``block`` rows
            for start in range(0, m, size):
                stop = min(m, start + size)
                yield row + start, row + stop, _block_columns(parts, start, stop)
            row += m

    @classmethod
    def _write_numeric(
        cls, out: np.ndarray, columns: list[tuple[_NumericSpec, int, NumericSource]]
    ) -> None:
        """Fill the numeric columns of ``out``, imputing NULL, NaN and ±inf.

        A block of rows is as many as keep their output in cache while all columns are written
        (a column-major ``out`` takes each batch whole: its columns are contiguous).
        """
        n, width = out.shape
        if out.flags.f_contiguous or width == 1:
            tmp = np.empty(min(_F_BLOCK_ROWS, n), dtype=np.float64)
            for start, stop, block_columns in cls._numeric_blocks(columns, _F_BLOCK_ROWS):
                write_rows(out[start:stop], block_columns, 0, tmp)
            return
        # A row-major ``out`` is written a block at a time through a column-major scratch block
        # of its numeric columns: each column lands contiguously, then one copy per run of
        # adjacent numeric columns transposes the block into ``out``. The same values; 300k x 20
        # float64: ~20 ms against ~38 for strided writes straight into ``out``.
        offsets = [offset for _, offset, _ in columns]
        block = max(1024, _BLOCK_BYTES // max(1, len(offsets) * out.itemsize))
        rows = min(block, n)
        scratch = np.empty((len(offsets), rows), dtype=out.dtype).T
        tmp = np.empty(rows, dtype=np.float64)
        position = {offset: j for j, offset in enumerate(offsets)}
        runs = _runs(offsets)
        for start, stop, block_columns in cls._numeric_blocks(columns, block):
            part = scratch[: stop - start]
            local = ((position[o], v, c, inv) for o, v, c, inv in block_columns)
            write_rows(part, local, 0, tmp)
            for first, last, at in runs:
                out[start:stop, first:last] = part[:, at : at + last - first]

    @staticmethod
    def _write_multi_hot(
        out: np.ndarray, spec: _CategoricalSpec, offset: int, col: pa.ChunkedArray
    ) -> None:
        """ARRAY<STRING>: a 1 in the column of each element's category (unseen elements: none);
        a NULL array or a NULL element sets the NULL column when training had one."""
        if pa.types.is_null(col.type):
            if spec.null_category:
                out[:, offset + spec.width - 1] = 1.0
            return
        arr = _one_array(col)
        if pa.types.is_large_list(arr.type):
            arr = arr.cast(pa.list_(arr.type.value_type))
        flat = pc.list_flatten(arr)
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        if not flat.type.equals(pa.string()):
            flat = flat.cast(pa.string())
        idx = pc.index_in(flat, value_set=spec.categories).fill_null(-1)
        codes = idx.to_numpy(zero_copy_only=False)
        hit = codes >= 0
        out[parents[hit], offset + codes[hit]] = 1.0
        if spec.null_category:
            null_rows = parents[flat.is_null().to_numpy(zero_copy_only=False)]
            out[null_rows, offset + spec.width - 1] = 1.0
            if arr.null_count:
                missing = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
                out[missing, offset + spec.width - 1] = 1.0

    @staticmethod
    def _write_categorical(
        out: np.ndarray, spec: _CategoricalSpec, offset: int, col: pa.ChunkedArray
    ) -> None:
        if spec.kind == "string_array":
            FeaturePreprocessor._write_multi_hot(out, spec, offset, col)
            return
        values = _categorical_values(col, spec.kind)
        codes = pc.index_in(values, value_set=spec.categories)
        idx = codes.fill_null(-1).to_numpy(zero_copy_only=False)
        if spec.encoding == "target":
            assert spec.target_values is not None and spec.target_prior is not None
            k = len(spec.categories)
            null = spec.target_null if spec.target_null is not None else spec.target_prior
            lookup = np.vstack([spec.target_values, spec.target_prior, null])
            slot = np.where(idx >= 0, idx, k)
            if values.null_count:
                slot[values.is_null().to_numpy(zero_copy_only=False)] = k + 1
            out[:, offset : offset + spec.width] = lookup[slot]
            return
        if spec.encoding == "label":
            # 1-based rank like ML.LABEL_ENCODER; NULL/unseen → NaN, XGBoost's "missing".
            column = idx.astype(out.dtype) + 1
            column[idx < 0] = np.nan
            out[:, offset] = column
            return
        dropped = spec._dropped
        rows = np.flatnonzero(idx >= dropped)
        out[rows, offset + idx[rows] - dropped] = 1.0
        if spec.null_category and values.null_count:
            null_rows = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
            out[null_rows, offset + spec.width - 1] = 1.0


@dataclass(frozen=True)
class _DensePlan:
    """The fast transform of a small all-FLOAT64 input (see ``_DENSE_ROWS``).

    The arithmetic is :meth:`FeaturePreprocessor._write_numeric`'s, element for element: NaN
    and ±inf (NULL is NaN) become the training mean unless the column is pass-through, then
    ``(value - center) * (1 / scale)`` in float64, then one cast to the matrix dtype. A column
    left as it is (centre 0, scale 1) computes ``(v - 0.0) * 1.0``, which is ``v`` bit for bit.
    """

    positions: list[int] | None  # the feature columns' indices; None: the table is exactly them
    centers: np.ndarray
    inverses: np.ndarray
    imputes: np.ndarray
    imputing: np.ndarray  # bool per column: False for pass-through columns
    identity: bool  # no column is centred or scaled

    def matrix(self, table: pa.Table, dtype: Any, order: str = "C") -> np.ndarray:
        batches = table.to_batches()
        if len(batches) != 1:
            batches = table.combine_chunks().to_batches()
        batch = batches[0]
        if self.positions is not None:
            batch = batch.select(self.positions)
        # to_tensor always copies (a test pins it): x is ours to change in place.
        x = batch.to_tensor(null_to_nan=True, row_major=order == "C").to_numpy()
        # One sum tells whether any value is NaN/±inf (einsum: a plain, cheap sum).
        if not math.isfinite(np.einsum("ij->", x)):
            missing = ~np.isfinite(x)
            missing &= self.imputing
            np.copyto(x, np.broadcast_to(self.imputes, x.shape), where=missing)
        if not self.identity:
            np.subtract(x, self.centers, out=x)
            np.multiply(x, self.inverses, out=x)
        return x.astype(dtype, copy=False)  # keeps the layout
