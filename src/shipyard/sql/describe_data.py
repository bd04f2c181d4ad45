"""ML.DESCRIBE_DATA and ML.TFDV_DESCRIBE: descriptive statistics of a table or query, no model.

Both read the input's columns the way BigQuery ML does: a STRUCT column is expanded into one
column per field (named ``parent.field``); INT64/NUMERIC/FLOAT64 columns are numerical (cast to
DOUBLE); STRING, BYTES, BOOL, DATE, DATETIME, TIME and TIMESTAMP columns are categorical (cast to
VARCHAR, TIMESTAMP in UTC); an ARRAY column is described by its elements (unnested) plus the
lengths of its arrays; ``ARRAY<STRUCT<INT64, numerical>>`` (a sparse vector) by its values, with
``dimension = MAX(index) + 1``.

All the heavy work is DuckDB aggregates on the statement's cursor: one aggregate query for every
plain column, one per ARRAY column, one GROUP BY … LIMIT k query (a UNION ALL) for the top values
of every categorical column, and for ML.TFDV_DESCRIBE one more query for the equal-width
histograms. A ``TABLE t`` input is scanned by each; a query input is run once and its Arrow rows
registered, so that every statistic sees the same rows. Quantiles are exact
(``quantile_disc``: the smallest value whose share of the sorted values reaches the fraction,
NumPy's ``inverted_cdf``) where BigQuery's APPROX_QUANTILES is approximate.

NaN: ML.DESCRIBE_DATA's ``mean``, ``stdev``, ``min`` and ``max`` are NaN when the column holds
one, as BigQuery's AVG, STDDEV, MIN and MAX; ``median`` and ``quantiles`` are those of the
non-NaN values. ML.TFDV_DESCRIBE leaves NaN out of every statistic and counts it in the
histograms' ``numNan``, as TFDV does.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from shipyard.errors import InvalidArgument
from shipyard.warehouse import fetch_arrow, quote_identifier, quote_literal

if TYPE_CHECKING:
    from shipyard.sql.functions import DataCall
    from shipyard.sql.service import SqlService

__all__ = [
    "DESCRIBE_DATA_SCHEMA",
    "ml_describe_data",
    "ml_tfdv_describe",
    "tfdv_statistics",
]

DESCRIBE_DATA_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("num_rows", pa.int64()),
        ("num_nulls", pa.int64()),
        ("num_zeros", pa.int64()),
        ("min", pa.string()),
        ("max", pa.string()),
        ("mean", pa.float64()),
        ("stdev", pa.float64()),
        ("median", pa.float64()),
        ("quantiles", pa.list_(pa.float64())),
        ("unique", pa.int64()),
        ("avg_string_length", pa.float64()),
        ("num_values", pa.int64()),
        (
            "top_values",
            pa.list_(pa.struct([("value", pa.string()), ("count", pa.int64())])),
        ),
        ("min_array_length", pa.int64()),
        ("max_array_length", pa.int64()),
        ("avg_array_length", pa.float64()),
        ("total_array_length", pa.int64()),
        ("array_length_quantiles", pa.list_(pa.int64())),
        ("dimension", pa.int64()),
    ]
)

# parameter: (default, lowest, highest), as the BigQuery ML reference gives them
_DESCRIBE_PARAMS = {
    "num_quantiles": (2, 1, 100_000),
    "num_array_length_quantiles": (10, 1, 100_000),
    "top_k": (1, 1, 10_000),
}
_TFDV_PARAMS = {
    "num_histogram_buckets": (10, 1, 1_000),
    "num_quantiles_histogram_buckets": (10, 1, 1_000),
    "num_values_histogram_buckets": (10, 1, 1_000),
    "num_rank_histogram_buckets": (50, 1, 10_000),
}
# A relation that only reads a table: the statistics' queries may each scan it again.
_TABLE_SCAN = re.compile(r'SELECT \* FROM (?:"(?:[^"]|"")+"|\w+)(?:\.(?:"(?:[^"]|"")+"|\w+))*')
_NAMES = itertools.count()
# At most this many quantile fractions go to DuckDB's quantile_disc, which selects each fraction
# on its own (999 fractions of 300k values: ~0.2 s a column); more: one NumPy sort a column.
_SQL_FRACTIONS = 16
_TFDV_TOP_VALUES = 20  # tfdv.StatsOptions' num_top_values, which BigQuery ML does not expose
_SUPPORTED = (
    "numeric types, STRING, BYTES, BOOL, DATE, DATETIME, TIME, TIMESTAMP, STRUCTs of those, "
    "ARRAYs of those and ARRAY<STRUCT<INT64, numerical>>"
)


@dataclass(frozen=True)
class _Column:
    """One described column: its output name and how to read it from the input relation."""

    name: str
    expr: str  # DuckDB expression over the input relation (a column, or a STRUCT field of one)
    kind: str  # "numeric" | "categorical": of the values (the elements of an ARRAY)
    integer: bool  # integer values (TFDV's INT type)
    array: bool  # an ARRAY column: statistics over its elements, plus array lengths
    value_type: pa.DataType  # of the values (the elements of an ARRAY)
    sparse: tuple[str, str] | None = None  # ARRAY<STRUCT<index, value>>: the two field names

    def cast(self, expr: str) -> str:
        """``expr``, one value of this column, as DOUBLE or as VARCHAR (BigQuery's CAST)."""
        if self.kind == "numeric":
            return f"CAST({expr} AS DOUBLE)"
        t = self.value_type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_timestamp(t) and t.tz is not None:  # TIMESTAMP: in UTC, as BigQuery
            return f"(CAST(timezone('UTC', {expr}) AS VARCHAR) || '+00')"
        return f"CAST({expr} AS VARCHAR)"


def _scalar_kind(t: pa.DataType) -> tuple[str, bool] | None:
    """("numeric" | "categorical", integer) of a non-nested Arrow type; None: not supported."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_null(t):
        return "numeric", True
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric", False
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
        or getattr(pa.types, "is_string_view", lambda _: False)(t)
    ):
        return "categorical", False
    return None


def _columns(schema: pa.Schema, function: str) -> list[_Column]:
    """The described columns of ``schema``, in input order, STRUCTs expanded."""
    out: list[_Column] = []

    def walk(name: str, expr: str, t: pa.DataType) -> None:
        if pa.types.is_struct(t):
            for field in t:
                walk(
                    f"{name}.{field.name}",
                    f"struct_extract({expr}, {quote_literal(field.name)})",
                    field.type,
                )
            return
        scalar = _scalar_kind(t)
        if scalar is not None:
            out.append(_Column(name, expr, scalar[0], scalar[1], array=False, value_type=t))
            return
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            element = t.value_type
            inner = _scalar_kind(element)
            if inner is not None:
                out.append(_Column(name, expr, inner[0], inner[1], array=True, value_type=element))
                return
            if pa.types.is_struct(element) and element.num_fields == 2:
                index, value = element.field(0), element.field(1)
                index_kind = _scalar_kind(index.type)
                value_kind = _scalar_kind(value.type)
                if (
                    index_kind == ("numeric", True)
                    and value_kind is not None
                    and value_kind[0] == "numeric"
                ):
                    out.append(
                        _Column(
                            name,
                            expr,
                            "numeric",
                            value_kind[1],
                            array=True,
                            value_type=value.type,
                            sparse=(index.name, value.name),
                        )
                    )
                    return
        raise InvalidArgument(
            f"ML.{function} cannot describe column {name!r} of type {t}; "
            f"supported column types: {_SUPPORTED}"
        )

    for field in schema:
        walk(field.name, quote_identifier(field.name), field.type)
    return out


def _checked_params(call: DataCall, spec: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    """The STRUCT parameters with their defaults, each an integer within its documented range."""
    call.check_params(dict.fromkeys(spec, int))
    out = {}
    for key, (default, low, high) in spec.items():
        value = call.params.get(key)
        if value is None:
            value = default
        if not low <= value <= high:
            raise InvalidArgument(
                f"ML.{call.function} parameter {key!r} must be in [{low:,}, {high:,}], got {value}"
            )
        out[key] = int(value)
    return out


def _fractions(n: int) -> str:
    """``[0, 1/n, …, 1]`` as a DuckDB list literal: n quantiles' n + 1 boundaries."""
    return "[" + ", ".join(repr(i / n) for i in range(n + 1)) + "]"


def _float_string(value: float | None) -> str | None:
    """A FLOAT64 as BigQuery's CAST(… AS STRING) writes it: 1, 2.5, 1e+20, nan, inf."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _finite(value: Any) -> Any:
    """A double for proto3 JSON: NaN and ±inf are the strings the mapping uses."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


class _Profiler:
    """Runs the aggregate queries over one relation (DuckDB SQL) on a DuckDB cursor.

    A numeric value is read twice: ``r``, the value as DOUBLE, and ``v``, the same with NaN as
    NULL, so that each statistic is a plain aggregate (a FILTER clause per aggregate costs
    DuckDB several times more); NaN is then ``count(r) - count(v)``.
    """

    def __init__(
        self, cur: duckdb.DuckDBPyConnection, relation: str, schema: pa.Schema, function: str
    ) -> None:
        self.function = function
        self.cur = cur
        self.source = relation
        self.columns = _columns(schema, function)
        self.num_rows = 0

    def query(self, sql: str) -> dict[str, Any]:
        out = fetch_arrow(self.cur, sql).to_pylist()
        return out[0] if out else {}

    def _projection(self, column: _Column, expr: str, p: str) -> list[str]:
        """``{p}r`` and ``{p}v`` of a numeric value ``expr``, or ``{p}v`` of a categorical."""
        value = column.cast(expr)
        if column.kind != "numeric":
            return [f"{value} AS {p}v"]
        clean = value if column.integer else f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"
        return [f"{value} AS {p}r", f"{clean} AS {p}v"]

    def plain_relation(self) -> str:
        """The plain (non-ARRAY) columns' values, ``c<i>_r`` / ``c<i>_v``, one row per input row."""
        exprs = [
            e
            for i, column in enumerate(self.columns)
            if not column.array
            for e in self._projection(column, column.expr, f"c{i}_")
        ]
        return f"(SELECT {', '.join(exprs) or '1 AS one'} FROM {self.source})"

    def element_relation(self, column: _Column) -> str:
        """An ARRAY column's elements, ``r`` / ``v`` (and ``i``, a sparse vector's index)."""
        element = f"unnest({column.expr})"
        if column.sparse is None:
            exprs = self._projection(column, "e", "")
        else:
            index, field = column.sparse
            exprs = [
                *self._projection(column, f"struct_extract(e, {quote_literal(field)})", ""),
                f"struct_extract(e, {quote_literal(index)}) AS i",
            ]
        return f"(SELECT {', '.join(exprs)} FROM (SELECT {element} AS e FROM {self.source}))"

    def aggregates(self, column: _Column, fractions: list[float], p: str) -> list[str]:
        """Aggregate expressions over the values ``{p}r`` / ``{p}v`` (aliases prefixed ``p``);
        ``fractions``: the quantiles wanted of a numeric column (one sort for them all)."""
        v = f"{p}v"
        if column.kind == "numeric":
            return [
                f"count({p}r) AS {p}n",
                f"count({v}) AS {p}n_clean",
                f"CAST(coalesce(count_if({v} = 0), 0) AS BIGINT) AS {p}zeros",
                f"min({v}) AS {p}min",
                f"max({v}) AS {p}max",
                f"avg({v}) AS {p}mean",
                f"stddev_samp({v}) AS {p}std",
                f"quantile_disc({v}, [{', '.join(map(repr, fractions))}]) AS {p}quantiles",
            ]
        return [
            f"count({v}) AS {p}n",
            f"min({v}) AS {p}min",
            f"max({v}) AS {p}max",
            f"count(DISTINCT {v}) AS {p}unique",
            f"avg(length({v})) AS {p}avg_len",
        ]

    def profile(
        self, quantiles: list[int], length_quantiles: list[int], top: int
    ) -> list[dict[str, Any]]:
        """Every column's statistics: ``n`` (values), ``nulls``, ``nan``, ``min`` …, ``q<n>``
        (each number of quantiles' boundaries), ``median``, ``top`` ((value, count) pairs), and
        an ARRAY's ``len_*`` statistics."""
        # the interior boundaries and the median (the first and the last are the min and max),
        # by DuckDB's quantile_disc when they are few; else one sort each, in NumPy
        interior = {i / n for n in quantiles for i in range(1, n)}
        in_sql = len(interior) <= _SQL_FRACTIONS
        fractions = sorted(interior | {0.5}) if in_sql else [0.5]
        stats: list[dict[str, Any]] = [{} for _ in self.columns]
        exprs = ["count(*) AS num_rows"] + [
            e
            for i, column in enumerate(self.columns)
            if not column.array
            for e in self.aggregates(column, fractions, f"c{i}_")
        ]
        row = self.query(f"SELECT {', '.join(exprs)} FROM {self.plain_relation()}")
        self.num_rows = row["num_rows"]
        for i, column in enumerate(self.columns):
            if column.array:
                stats[i] = self.array_profile(column, fractions, length_quantiles)
            else:
                prefix = f"c{i}_"
                stats[i] = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
                stats[i]["nulls"] = self.num_rows - stats[i]["n"]
            if column.kind == "numeric":
                self._split_quantiles(stats[i], fractions, quantiles if in_sql else [])
                if not in_sql and stats[i]["n_clean"]:
                    relation, v = self._values(i)
                    stats[i].update(self.sorted_quantiles(relation, v, quantiles, "q"))
                elif not in_sql:
                    stats[i].update({f"q{n}": None for n in quantiles})
        self.top_values(stats, top)
        return stats

    @staticmethod
    def _split_quantiles(s: dict[str, Any], fractions: list[float], wanted: list[int]) -> None:
        s["nan"] = s["n"] - s["n_clean"]
        values = s.pop("quantiles")
        at = dict(zip(fractions, values, strict=True)) if values is not None else {}
        if at:
            at.update({0.0: s["min"], 1.0: s["max"]})
        s["median"] = at.get(0.5)
        for n in wanted:
            s[f"q{n}"] = [at[i / n] for i in range(n + 1)] if at else None

    def sorted_quantiles(
        self, relation: str, expr: str, quantiles: list[int], prefix: str
    ) -> dict[str, list[Any]]:
        """``{prefix}<n>``: the ``n + 1`` quantile boundaries of ``expr``'s non-NULL values in
        ``relation``, from one sort (NumPy), picked as quantile_disc picks them: the value at
        position ``ceil(i·N/n) - 1`` of the N sorted values."""
        column = fetch_arrow(
            self.cur, f"SELECT {expr} AS x FROM {relation} WHERE {expr} IS NOT NULL"
        ).column(0)
        ordered = np.sort(column.to_numpy())
        count = len(ordered)
        out: dict[str, list[Any]] = {}
        for n in quantiles:
            positions = np.maximum((np.arange(n + 1) * count + n - 1) // n - 1, 0)
            out[f"{prefix}{n}"] = ordered[positions].tolist()
        return out

    def array_profile(
        self, column: _Column, fractions: list[float], length_quantiles: list[int]
    ) -> dict[str, Any]:
        length = f"len({column.expr})"
        lengths = [
            f"count({column.expr}) AS present",
            f"CAST(coalesce(count_if({column.expr} IS NULL), 0) AS BIGINT) AS null_arrays",
            f"min({length}) AS len_min",
            f"max({length}) AS len_max",
            f"avg({length}) AS len_avg",
            f"CAST(sum({length}) AS BIGINT) AS len_sum",
            *(
                f"quantile_disc({length}, {_fractions(n)}) AS len_q{n}"
                for n in sorted(set(length_quantiles))
                if n < _SQL_FRACTIONS
            ),
        ]
        elements = [*self.aggregates(column, fractions, ""), "count(*) AS elements"]
        if column.sparse is not None:
            elements.append("max(i) + 1 AS dimension")
        row = self.query(
            f"SELECT * FROM (SELECT {', '.join(lengths)} FROM {self.source}) "
            f"CROSS JOIN (SELECT {', '.join(elements)} FROM {self.element_relation(column)})"
        )
        row["nulls"] = row["null_arrays"] + row["elements"] - row["n"]
        many = [n for n in length_quantiles if n >= _SQL_FRACTIONS]
        if many and row["present"]:
            row.update(self.sorted_quantiles(self.source, length, many, "len_q"))
        else:
            row.update({f"len_q{n}": None for n in many})
        return row

    def _values(self, i: int) -> tuple[str, str]:
        """(relation, value column) of column ``i``'s values."""
        column = self.columns[i]
        if column.array:
            return self.element_relation(column), "v"
        return self.plain_relation(), f"c{i}_v"

    def top_values(self, stats: list[dict[str, Any]], k: int) -> None:
        """``top``: the ``k`` most frequent non-NULL values of each categorical column, most
        frequent first, ties by value (one UNION ALL query for them all)."""
        parts = []
        for i, column in enumerate(self.columns):
            if column.kind != "categorical":
                continue
            stats[i]["top"] = []
            relation, v = self._values(i)
            parts.append(
                f"(SELECT {i} AS i, {v} AS value, count(*) AS cnt FROM {relation} "
                f"WHERE {v} IS NOT NULL GROUP BY ALL ORDER BY cnt DESC, value LIMIT {k})"
            )
        if not parts:
            return
        for row in fetch_arrow(self.cur, " UNION ALL ".join(parts)).to_pylist():
            stats[row["i"]]["top"].append((row["value"], row["cnt"]))
        for s in stats:
            if "top" in s:  # UNION ALL keeps no order across its parts
                s["top"].sort(key=lambda vc: (-vc[1], vc[0]))

    def histograms(self, stats: list[dict[str, Any]], buckets: int) -> None:
        """``hist``: (low, high, bucket counts) of each numeric column: equal-width buckets of
        its non-NaN values between their finite min and max (±inf counts in the edge buckets;
        one bucket when every value is the same), one query per relation."""
        by_relation: dict[str, list[str]] = {}
        shape: dict[int, tuple[float, float, int]] = {}
        for i, column in enumerate(self.columns):
            s = stats[i]
            if column.kind != "numeric" or s.get("min") is None:
                continue
            relation, v = self._values(i)
            lo, hi = float(s["min"]), float(s["max"])
            if not (math.isfinite(lo) and math.isfinite(hi)):
                finite = self.query(
                    f"SELECT min({v}) AS lo, max({v}) AS hi FROM {relation} WHERE isfinite({v})"
                )
                if finite.get("lo") is None:
                    continue  # only ±inf: no finite range to cut
                lo, hi = float(finite["lo"]), float(finite["hi"])
            n = buckets if hi > lo else 1
            bucket = (
                f"CAST(greatest(least(floor(({v} - {lo!r}) / {(hi - lo) / n!r}), {n - 1}), 0)"
                " AS INTEGER)"
                if n > 1
                else "0"
            )
            shape[i] = (lo, hi, n)
            # greatest/least skip a NULL: a NULL (or NaN) value must stay out explicitly
            by_relation.setdefault(relation, []).append(
                f"histogram(CASE WHEN {v} IS NOT NULL THEN {bucket} END) AS h{i}"
            )
        for relation, exprs in by_relation.items():
            row = self.query(f"SELECT {', '.join(exprs)} FROM {relation}")
            for key, counts in row.items():
                i = int(key[1:])
                lo, hi, n = shape[i]
                found = dict(counts or {})
                stats[i]["hist"] = (lo, hi, [found.get(j, 0) for j in range(n)])


@contextmanager
def _profiler(call: DataCall) -> Iterator[_Profiler]:
    """A :class:`_Profiler` of the call's one relation. A relation that only reads a table is
    queried in place; any other (a filter, a LIMIT, a join) is run once, its rows registered on
    the statement's cursor, so that every statistic sees the same rows."""
    (relation,) = call.require_relations("input")
    if _TABLE_SCAN.fullmatch(relation.strip()):
        yield _Profiler(call.cursor, f"({relation})", call.schema(relation), call.function)
        return
    (rows,) = call.inputs
    name = f"__shipyard_describe_{next(_NAMES)}"
    call.cursor.register(name, rows)
    try:
        yield _Profiler(call.cursor, name, rows.schema, call.function)
    finally:
        call.cursor.unregister(name)


# --- ML.DESCRIBE_DATA ---------------------------------------------------------------------


def ml_describe_data(service: SqlService, call: DataCall) -> pa.Table:
    """ML.DESCRIBE_DATA: one row per input column (STRUCT fields expanded), the columns of
    :data:`DESCRIBE_DATA_SCHEMA` in the reference's order."""
    params = _checked_params(call, _DESCRIBE_PARAMS)
    nq, nl = params["num_quantiles"], params["num_array_length_quantiles"]
    with _profiler(call) as profiler:
        stats = profiler.profile([nq], [nl], params["top_k"])
        rows = [
            _describe_row(column, s, profiler.num_rows, nq, nl)
            for column, s in zip(profiler.columns, stats, strict=True)
        ]
    return pa.Table.from_pylist(rows, schema=DESCRIBE_DATA_SCHEMA)


def _describe_row(
    column: _Column, s: dict[str, Any], num_rows: int, nq: int, nl: int
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(DESCRIBE_DATA_SCHEMA.names)
    row.update(name=column.name, num_rows=num_rows, num_nulls=s["nulls"], num_values=s["n"])
    if column.kind == "numeric":
        has_nan = bool(s["nan"])
        row.update(
            num_zeros=s["zeros"],
            min=_float_string(math.nan if has_nan else s["min"]),
            max=_float_string(math.nan if has_nan else s["max"]),
            mean=math.nan if has_nan else s["mean"],  # AVG and STDDEV: NaN in, NaN out
            stdev=math.nan if has_nan and s["n"] > 1 else s["std"],
            median=s["median"],
            quantiles=s[f"q{nq}"],
        )
    else:
        row.update(
            min=s["min"],
            max=s["max"],
            unique=s["unique"],
            avg_string_length=s["avg_len"],
            top_values=[{"value": v, "count": c} for v, c in s["top"]],
        )
    if column.array:
        row.update(
            min_array_length=s["len_min"],
            max_array_length=s["len_max"],
            avg_array_length=s["len_avg"],
            total_array_length=s["len_sum"],
            array_length_quantiles=s[f"len_q{nl}"],
        )
        if column.sparse is not None:
            row["dimension"] = s["dimension"]
    return row


# --- ML.TFDV_DESCRIBE ---------------------------------------------------------------------


def ml_tfdv_describe(service: SqlService, call: DataCall) -> pa.Table:
    """ML.TFDV_DESCRIBE: one row, one JSON column ``dataset_feature_statistics_list``."""
    params = _checked_params(call, _TFDV_PARAMS)
    with _profiler(call) as profiler:
        statistics = _tfdv(profiler, **params)
    text = json.dumps(statistics, separators=(",", ":"), allow_nan=False)
    json_type = pa.json_() if hasattr(pa, "json_") else pa.string()  # pyarrow >= 19: DuckDB JSON
    return pa.table({"dataset_feature_statistics_list": pa.array([text], type=json_type)})


def tfdv_statistics(
    table: pa.Table,
    *,
    num_histogram_buckets: int = 10,
    num_quantiles_histogram_buckets: int = 10,
    num_values_histogram_buckets: int = 10,
    num_rank_histogram_buckets: int = 50,
    function: str = "TFDV_DESCRIBE",
) -> dict[str, Any]:
    """TensorFlow Metadata's ``DatasetFeatureStatisticsList`` of ``table`` as its proto3 JSON
    form (``tensorflow_metadata/proto/v0/statistics.proto``), the subset TFDV's
    ``generate_statistics_from_csv`` fills for flat data::

        {"datasets": [{"numExamples": "<rows>", "features": [
          {"name": "<column>", "type": "INT" | "FLOAT" | "STRING",
           "numStats": {                           # INT and FLOAT features
             "commonStats": COMMON, "mean", "stdDev" (population), "numZeros": "<n>",
             "min", "median", "max",
             "histograms": [
               {"numNan": "<n>", "buckets": [BUCKET…], "type": "STANDARD"},   # equal width
               {"numNan": "<n>", "buckets": [BUCKET…], "type": "QUANTILES"}]}, # equal count
           "stringStats": {                        # STRING features
             "commonStats": COMMON, "unique": "<n>", "avgLength",
             "topValues": [{"value", "frequency"}…],                 # 20 most frequent
             "rankHistogram": {"buckets": [{"lowRank": "<r>", "highRank": "<r>",
                                            "label", "sampleCount"}…]}}}]}]}
        COMMON = {"numNonMissing": "<n>", "numMissing": "<n>", "minNumValues": "<n>",
                  "maxNumValues": "<n>", "avgNumValues", "totNumValues": "<n>",
                  "numValuesHistogram": {"buckets": [BUCKET…], "type": "QUANTILES"}}
        BUCKET = {"lowValue", "highValue", "sampleCount"}

    The names are the proto fields in lowerCamelCase, uint64 values are JSON strings, enums
    their names and a non-finite double ``"NaN"``/``"Infinity"``/``"-Infinity"``: the mapping
    ``google.protobuf.json_format.MessageToJson`` writes (and ``Parse`` reads, with the
    snake_case names and numbers for uint64 too). Unlike ``MessageToJson`` this writes zero
    counts rather than leaving them out; statistics that do not exist (the mean of a column
    without values) are left out. A feature is one input column (STRUCT fields expanded to
    ``parent.field``); an ARRAY column's values are its elements, its ``*NumValues`` the
    lengths of its arrays; a NULL is a missing example. NaN counts in ``numNan`` only.
    """
    cur = duckdb.connect()
    try:
        cur.register("__shipyard_tfdv_input", table)
        profiler = _Profiler(cur, "__shipyard_tfdv_input", table.schema, function)
        return _tfdv(
            profiler,
            num_histogram_buckets=num_histogram_buckets,
            num_quantiles_histogram_buckets=num_quantiles_histogram_buckets,
            num_values_histogram_buckets=num_values_histogram_buckets,
            num_rank_histogram_buckets=num_rank_histogram_buckets,
        )
    finally:
        cur.close()


def _tfdv(
    profiler: _Profiler,
    *,
    num_histogram_buckets: int,
    num_quantiles_histogram_buckets: int,
    num_values_histogram_buckets: int,
    num_rank_histogram_buckets: int,
) -> dict[str, Any]:
    nq = num_quantiles_histogram_buckets
    nv = num_values_histogram_buckets
    stats = profiler.profile([nq], [nv], max(_TFDV_TOP_VALUES, num_rank_histogram_buckets))
    profiler.histograms(stats, num_histogram_buckets)
    features = [
        _tfdv_feature(column, s, profiler.num_rows, nq, nv, num_rank_histogram_buckets)
        for column, s in zip(profiler.columns, stats, strict=True)
    ]
    return {"datasets": [{"numExamples": str(profiler.num_rows), "features": features}]}


def _quantile_buckets(bounds: list[Any] | None, total: int) -> list[dict[str, Any]]:
    """Equal-count buckets between consecutive quantile boundaries (TFDV's QUANTILES)."""
    if not bounds or total == 0:
        return []
    n = len(bounds) - 1
    return [
        {
            "lowValue": _finite(float(bounds[j])),
            "highValue": _finite(float(bounds[j + 1])),
            "sampleCount": total / n,
        }
        for j in range(n)
    ]


def _common_stats(column: _Column, s: dict[str, Any], num_rows: int, nv: int) -> dict[str, Any]:
    if column.array:
        present, missing = s["present"], s["null_arrays"]
        low, high, total = s["len_min"], s["len_max"], s["len_sum"]
        avg, bounds = s["len_avg"], s[f"len_q{nv}"]
    else:
        present = s["n"]
        missing = num_rows - present
        low = high = 1 if present else 0
        total, avg = present, 1.0 if present else 0.0
        bounds = [1] * (nv + 1)
    common: dict[str, Any] = {
        "numNonMissing": str(present),
        "numMissing": str(missing),
        "minNumValues": str(low or 0),
        "maxNumValues": str(high or 0),
        "avgNumValues": float(avg or 0.0),
        "totNumValues": str(total or 0),
    }
    if present:
        common["numValuesHistogram"] = {
            "buckets": _quantile_buckets(bounds, present),
            "type": "QUANTILES",
        }
    return common


def _tfdv_feature(
    column: _Column, s: dict[str, Any], num_rows: int, nq: int, nv: int, ranks: int
) -> dict[str, Any]:
    common = _common_stats(column, s, num_rows, nv)
    if column.kind == "categorical":
        top = s["top"]
        string_stats: dict[str, Any] = {"commonStats": common, "unique": str(s["unique"])}
        if top:
            string_stats["topValues"] = [
                {"value": v, "frequency": float(c)} for v, c in top[:_TFDV_TOP_VALUES]
            ]
            string_stats["avgLength"] = float(s["avg_len"])
            string_stats["rankHistogram"] = {
                "buckets": [
                    {"lowRank": str(r), "highRank": str(r), "label": v, "sampleCount": float(c)}
                    for r, (v, c) in enumerate(top[:ranks])
                ]
            }
        return {"name": column.name, "type": "STRING", "stringStats": string_stats}
    num_stats: dict[str, Any] = {"commonStats": common, "numZeros": str(s["zeros"])}
    counted = s["n"] - s["nan"]  # the values in the histograms
    if counted:
        num_stats.update(
            mean=_finite(s["mean"]),
            stdDev=_finite(_population_std(s["std"], counted)),
            min=_finite(s["min"]),
            median=_finite(s["median"]),
            max=_finite(s["max"]),
        )
    histograms = []
    if "hist" in s or s["nan"]:
        histograms.append(
            {
                "numNan": str(s["nan"]),
                "buckets": _standard_buckets(s.get("hist")),
                "type": "STANDARD",
            }
        )
        histograms.append(
            {
                "numNan": str(s["nan"]),
                "buckets": _quantile_buckets(s[f"q{nq}"], counted),
                "type": "QUANTILES",
            }
        )
    if histograms:
        num_stats["histograms"] = histograms
    return {
        "name": column.name,
        "type": "INT" if column.integer else "FLOAT",
        "numStats": num_stats,
    }


def _population_std(sample_std: float | None, n: int) -> float:
    """TFDV's standard deviation (of the population) from the sample one of ``n`` values."""
    if sample_std is None or n < 2:
        return 0.0
    return float(sample_std) * math.sqrt((n - 1) / n)


def _standard_buckets(hist: tuple[float, float, list[int]] | None) -> list[dict[str, Any]]:
    """TFDV's STANDARD histogram: equal-width buckets from the finite min to the finite max."""
    if hist is None:
        return []
    lo, hi, counts = hist
    width = (hi - lo) / len(counts)
    return [
        {
            "lowValue": lo + j * width,
            "highValue": hi if j == len(counts) - 1 else lo + (j + 1) * width,
            "sampleCount": float(count),
        }
        for j, count in enumerate(counts)
    ]
