"""``CREATE MODEL m OPTIONS(model_type='CONTRIBUTION_ANALYSIS', …) AS <query>`` and
``ML.GET_INSIGHTS(MODEL m)``: which segments of the data drove a metric's change between test
and control rows (BigQuery ML's contribution analysis, also called key driver analysis).

Options (BigQuery ML's names, defaults and ranges):

* ``contribution_metric`` (required), one of three forms, case-insensitive:
  ``SUM(m)`` (summable), ``SUM(a)/SUM(b)`` (summable ratio),
  ``SUM(m)/COUNT(DISTINCT c)`` (summable by category); ``m``, ``a``, ``b`` numeric columns,
  ``c`` a BOOL, DATE, DATETIME, TIME, TIMESTAMP, STRING or INT64 column.
* ``is_test_col`` (required): a BOOL column, TRUE for test rows, FALSE for control rows.
* ``dimension_id_cols``: INT64, BOOL or STRING columns (50 at most, 13 with
  ``min_apriori_support=0``); by default every query column the two
  options above do not name. The query must have exactly the columns the options name. Rows
  with a NULL dimension (or a NULL ``is_test_col``) are left out.
* ``min_apriori_support`` in [0, 1] (default 0.1) or ``top_k_insights_by_apriori_support`` in
  [1, 1,000,000] (not both): keep the segments whose apriori support (their share of the
  population's metric, the greater of test and control) reaches the threshold, or the k with
  the highest support. Metric columns must be non-negative unless ``min_apriori_support=0``.
* ``pruning_method``: ``'NO_PRUNING'`` (default) or ``'PRUNE_REDUNDANT_INSIGHTS'``: a segment
  is dropped when a more descriptive segment (its dimension values and more) has the same
  ``metric_test`` and ``metric_control``; the ``all`` segment is never dropped.

A segment is one combination of values of some of the dimensions (``['city=Oslo',
'store=3']``); ``['all']`` is the whole population. Up to 7 dimensions (13 with
``min_apriori_support=0``, BigQuery's limit then) every segment of every subset of the
dimensions is computed by ONE DuckDB query (``GROUP BY GROUPING SETS`` over the dimensions with
the test/control split as filtered aggregates); with more, and a support threshold, the
segments are searched level by level, pruned parents' children never computed
(:mod:`shipyard.sql.contribution_search`; up to 50 dimensions, BigQuery's limit). The
metrics come from the segment's and the population's sums, and the table is stored in the
model package at CREATE time (:mod:`shipyard.registry.insights`); ML.GET_INSIGHTS returns it,
ordered by ``contribution`` descending. Every other ML function refuses the model, naming
ML.GET_INSIGHTS.

Example::

    CREATE MODEL demo.sales_drivers OPTIONS(
      model_type='CONTRIBUTION_ANALYSIS', contribution_metric='SUM(revenue)',
      is_test_col='is_2024', dimension_id_cols=['region', 'channel'],
      min_apriori_support=0.05)
    AS SELECT region, channel, revenue, year = 2024 AS is_2024 FROM demo.sales;
    SELECT * FROM ML.GET_INSIGHTS(MODEL demo.sales_drivers);
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field
from sqlglot import exp

from shipyard.engine import JobContext
from shipyard.errors import InvalidArgument, SQLError
from shipyard.registry.entities import Lineage
from shipyard.registry.insights import CONTRIBUTION_ANALYSIS_TASK, INSIGHTS_FLAVOR
from shipyard.registry.service import NewVersion
from shipyard.sql.contribution_search import search_segments
from shipyard.sql.dialect import statement_model_type, table_name
from shipyard.sql.entities import QueryResult
from shipyard.sql.expiration import pop_expiration
from shipyard.sql.options import BaseOptions, validate_options
from shipyard.sql.refusals import Handler, refusing_handlers
from shipyard.warehouse import QualifiedName, fetch_arrow, quote_identifier, quote_literal

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "MAX_DIMENSIONS",
    "MAX_UNPRUNED_DIMENSIONS",
    "MODEL_TYPE",
    "ContributionAnalysisOptions",
    "compute_insights",
    "create_contribution_analysis_model",
    "handlers",
    "is_contribution_analysis",
    "ml_get_insights",
]

MODEL_TYPE = "CONTRIBUTION_ANALYSIS"
#: Dimension columns at most when a support threshold prunes the search (min_apriori_support
#: > 0, or top_k_insights_by_apriori_support): BigQuery ML's limit.
MAX_DIMENSIONS = 50
#: Dimension columns at most when nothing prunes (min_apriori_support=0): every subset of the
#: dimensions is a grouping set, 2**13 = 8,192 of them.
MAX_UNPRUNED_DIMENSIONS = 13
#: Up to this many dimensions the single GROUPING SETS query is used even with a threshold: it
#: is faster there (1.3-3x at 7 dimensions, 300,000 rows); the level-by-level search is faster
#: from 8 at the default min_apriori_support=0.1 (2x at 8, 6x at 9, 22x at 10 dimensions,
#: 100,000 rows; at 0.01: 0.7x at 8, 1.8x at 9), and the single query's 2**d grouping sets
#: soon run out of memory (12 dimensions of 1,000,000 rows: 19 GB).
_SINGLE_MAX = 7


MetricKind = Literal["summable", "ratio", "category"]

_IDENT = r"\s*(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)\s*"
_METRIC_FORMS: list[tuple[MetricKind, re.Pattern[str]]] = [
    ("summable", re.compile(rf"^\s*SUM\s*\({_IDENT}\)\s*$", re.I)),
    ("ratio", re.compile(rf"^\s*SUM\s*\({_IDENT}\)\s*/\s*SUM\s*\({_IDENT}\)\s*$", re.I)),
    (
        "category",
        re.compile(rf"^\s*SUM\s*\({_IDENT}\)\s*/\s*COUNT\s*\(\s*DISTINCT\s+{_IDENT}\)\s*$", re.I),
    ),
]
_METRIC_HELP = (
    "SUM(metric_col), SUM(numerator_col)/SUM(denominator_col) or "
    "SUM(metric_col)/COUNT(DISTINCT category_col)"
)

_SUMMABLE_COLUMNS = [
    "metric_test",
    "metric_control",
    "difference",
    "relative_difference",
    "unexpected_difference",
    "relative_unexpected_difference",
    "apriori_support",
    "contribution",
]
_RATIO_COLUMNS = [
    "metric_test",
    "metric_control",
    "metric_test_over_metric_control",
    "metric_test_over_complement",
    "metric_control_over_complement",
    "aumann_shapley_attribution",
    "apriori_support",
    "contribution",
]
_CATEGORY_COLUMNS = [
    "metric_test",
    "metric_control",
    "difference",
    "relative_difference",
    "metric_test_over_population",
    "metric_control_over_population",
    "apriori_support",
    "contribution",
]
#: The metric columns ML.GET_INSIGHTS returns for each metric kind, after contributors and the
#: dimension columns (BigQuery ML's names and order).
OUTPUT_COLUMNS: dict[MetricKind, list[str]] = {
    "summable": _SUMMABLE_COLUMNS,
    "ratio": _RATIO_COLUMNS,
    "category": _CATEGORY_COLUMNS,
}


class ContributionAnalysisOptions(BaseOptions):
    """CONTRIBUTION_ANALYSIS options (BigQuery ML's names, defaults and ranges)."""

    model_type: Literal["CONTRIBUTION_ANALYSIS"] = "CONTRIBUTION_ANALYSIS"
    contribution_metric: str | None = None
    is_test_col: str | None = None
    dimension_id_cols: list[str] | None = None
    min_apriori_support: float | None = Field(None, ge=0.0, le=1.0)
    top_k_insights_by_apriori_support: int | None = Field(None, ge=1, le=1_000_000)
    pruning_method: Literal["NO_PRUNING", "PRUNE_REDUNDANT_INSIGHTS"] = "NO_PRUNING"


@dataclass(frozen=True)
class Metric:
    """A parsed ``contribution_metric``: its kind and the query columns it names."""

    kind: MetricKind
    numerator: str
    denominator: str | None = None  # ratio: the SUM(b) column
    category: str | None = None  # by category: the COUNT(DISTINCT c) column


def is_contribution_analysis(statement: exp.Create) -> bool:
    """Whether a CREATE MODEL's OPTIONS say model_type='CONTRIBUTION_ANALYSIS' (any case)."""
    return statement_model_type(statement) == MODEL_TYPE


# -- options and columns -----------------------------------------------------------------------


def _column(schema: pa.Schema, name: str, option: str) -> str:
    """The query column ``name`` names (case-insensitive, as BigQuery), or an error."""
    bare = name[1:-1] if name.startswith("`") and name.endswith("`") else name
    for field in schema:
        if field.name.lower() == bare.lower():
            return field.name
    raise InvalidArgument(
        f"option {option} names column {bare!r}, which the query does not return; its "
        f"columns: {', '.join(schema.names)}",
        option=option,
    )


def parse_metric(text: str, schema: pa.Schema) -> Metric:
    """``contribution_metric`` as a :class:`Metric`, its columns checked against ``schema``."""
    for kind, pattern in _METRIC_FORMS:
        match = pattern.match(text)
        if match is None:
            continue
        cols = [_column(schema, g, "contribution_metric") for g in match.groups()]
        for col in cols[: 2 if kind == "ratio" else 1]:
            t = schema.field(col).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
                raise InvalidArgument(
                    f"contribution_metric {text!r} sums column {col!r} of type {t}; a summed "
                    "column must be numeric (INT64, FLOAT64, NUMERIC)",
                    option="contribution_metric",
                )
        if kind == "ratio":
            return Metric(kind, cols[0], denominator=cols[1])
        if kind == "category":
            t = schema.field(cols[1]).type
            if not (
                pa.types.is_integer(t)
                or pa.types.is_boolean(t)
                or pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or pa.types.is_temporal(t)
            ):
                raise InvalidArgument(
                    f"contribution_metric {text!r} counts the distinct values of column "
                    f"{cols[1]!r} of type {t}; the categorical column must be BOOL, DATE, "
                    "DATETIME, TIME, TIMESTAMP, STRING or INT64",
                    option="contribution_metric",
                )
            return Metric(kind, cols[0], category=cols[1])
        return Metric(kind, cols[0])
    raise InvalidArgument(
        f"contribution_metric {text!r} is not of a supported form; use {_METRIC_HELP} "
        "(compute anything else in the query)",
        option="contribution_metric",
    )


def _dimension_ok(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    )


def resolve_columns(
    options: ContributionAnalysisOptions, schema: pa.Schema
) -> tuple[Metric, str, list[str]]:
    """The metric, the is_test column and the dimension columns, checked against the query's
    columns and types."""
    if options.contribution_metric is None:
        raise InvalidArgument(
            "a CONTRIBUTION_ANALYSIS model needs option contribution_metric: " + _METRIC_HELP,
            option="contribution_metric",
        )
    if options.is_test_col is None:
        raise InvalidArgument(
            "a CONTRIBUTION_ANALYSIS model needs option is_test_col: the BOOL column that is "
            "TRUE for test rows and FALSE for control rows",
            option="is_test_col",
        )
    metric = parse_metric(options.contribution_metric, schema)
    is_test = _column(schema, options.is_test_col, "is_test_col")
    if not pa.types.is_boolean(schema.field(is_test).type):
        raise InvalidArgument(
            f"is_test_col {is_test!r} has type {schema.field(is_test).type}; it must be BOOL "
            "(TRUE: test row, FALSE: control row), e.g. year = 2024 AS is_test in the query",
            option="is_test_col",
        )
    used = {metric.numerator, metric.denominator, metric.category, is_test} - {None}
    if options.dimension_id_cols is None:
        dims = [n for n in schema.names if n not in used]
    else:
        dims = []
        for name in options.dimension_id_cols:
            col = _column(schema, name, "dimension_id_cols")
            if col in used:
                raise InvalidArgument(
                    f"dimension_id_cols names column {col!r}, which contribution_metric or "
                    "is_test_col already uses",
                    option="dimension_id_cols",
                )
            if col in dims:
                raise InvalidArgument(
                    f"dimension_id_cols names column {col!r} twice", option="dimension_id_cols"
                )
            dims.append(col)
        extra = [n for n in schema.names if n not in used and n not in dims]
        if extra:
            raise InvalidArgument(
                f"the query of a CONTRIBUTION_ANALYSIS model must return exactly the columns "
                f"its options name; it also returns {', '.join(extra)}: drop them from the "
                "query or add them to dimension_id_cols",
                option="dimension_id_cols",
            )
    if not dims:
        raise InvalidArgument(
            "a CONTRIBUTION_ANALYSIS model needs at least one dimension column "
            "(dimension_id_cols, or query columns the metric and is_test_col do not use)",
            option="dimension_id_cols",
        )
    if len(dims) > MAX_DIMENSIONS:
        raise InvalidArgument(
            f"a CONTRIBUTION_ANALYSIS model takes at most {MAX_DIMENSIONS} dimension columns, "
            f"got {len(dims)}: {', '.join(dims)}; name fewer in dimension_id_cols",
            option="dimension_id_cols",
        )
    if len(dims) > MAX_UNPRUNED_DIMENSIONS and options.min_apriori_support == 0:
        raise InvalidArgument(
            f"with min_apriori_support=0 a CONTRIBUTION_ANALYSIS model takes at most "
            f"{MAX_UNPRUNED_DIMENSIONS} dimension columns (every segment of every subset is "
            f"kept), got {len(dims)}; set min_apriori_support above 0 (up to {MAX_DIMENSIONS} "
            "dimension columns) or name fewer in dimension_id_cols",
            option="min_apriori_support",
        )
    for col in dims:
        t = schema.field(col).type
        if not _dimension_ok(t):
            raise InvalidArgument(
                f"dimension column {col!r} has type {t}; dimension columns must be INT64, BOOL "
                "or STRING: cast it, or bucketize it (ML.BUCKETIZE) in the query",
                option="dimension_id_cols",
            )
    return metric, is_test, dims


# -- the computation ---------------------------------------------------------------------------


def _analysed(dims: list[str], is_test: str) -> str:
    """The filter of the rows the analysis reads: every dimension and ``is_test`` not NULL."""
    return " AND ".join(f"{quote_identifier(c)} IS NOT NULL" for c in [*dims, is_test])


def _aggregates(metric: Metric, t: str) -> list[str]:
    """A segment's sums (``_nt``, ``_nc`` …: test and control, as filtered aggregates), ``t``
    the quoted is_test column."""
    n = f"CAST({quote_identifier(metric.numerator)} AS DOUBLE)"
    aggregates = [
        f"SUM({n}) FILTER (WHERE {t}) AS _nt",
        f"SUM({n}) FILTER (WHERE NOT {t}) AS _nc",
    ]
    if metric.denominator is not None:
        d = f"CAST({quote_identifier(metric.denominator)} AS DOUBLE)"
        aggregates += [
            f"SUM({d}) FILTER (WHERE {t}) AS _dt",
            f"SUM({d}) FILTER (WHERE NOT {t}) AS _dc",
        ]
    if metric.category is not None:
        c = quote_identifier(metric.category)
        aggregates += [
            f"COUNT(DISTINCT {c}) FILTER (WHERE {t}) AS _kt",
            f"COUNT(DISTINCT {c}) FILTER (WHERE NOT {t}) AS _kc",
        ]
    return aggregates


def insights_sql(
    metric: Metric,
    is_test: str,
    dims: list[str],
    *,
    min_support: float | None,
    top_k: int | None,
    cube: str | None = None,
) -> str:
    """The one DuckDB query over the query's rows (relation :data:`_ROWS`) that returns the
    insights table; or, given ``cube`` (a table of the segments the apriori search found, of
    the same columns), the query that scores those segments the same way."""
    t = quote_identifier(is_test)
    full = (1 << len(dims)) - 1
    qdims = [quote_identifier(d) for d in dims]

    def sets() -> str:
        return ", ".join(
            "(" + ", ".join(qdims[i] for i in range(len(dims)) if mask >> i & 1) + ")"
            for mask in range(1 << len(dims))
        )

    aggregates = _aggregates(metric, t)
    sums = ["_nt", "_nc"] + (["_dt", "_dc"] if metric.denominator else [])
    zeros = ", ".join(f"COALESCE({s}, 0.0) AS {s}" for s in sums)
    # the population's sums (the "all" segment): _pnt, _pnc …, written _NT, _NC … below
    population = sums + (["_kt", "_kc"] if metric.category else [])
    pop_cols = ", ".join(f"{s} AS _p{s[1:]}" for s in population)
    parts = ", ".join(
        f"CASE WHEN {q} IS NULL THEN NULL "
        f"ELSE {quote_literal(name + '=')} || CAST({q} AS VARCHAR) END"
        for name, q in zip(dims, qdims, strict=True)
    )
    contributors = (
        f"CASE WHEN _gid = {full} THEN ['all'] "
        f"ELSE [e FOR e IN [{parts}] IF e IS NOT NULL] END AS contributors"
    )
    not_null = _analysed(dims, is_test)

    if metric.kind == "summable":
        metrics = """
          _nt AS metric_test,
          _nc AS metric_control,
          _nt - _nc AS difference,
          (_nt - _nc) / NULLIF(_nc, 0) AS relative_difference,
          _nt - _nc * ((_NT - _nt) / NULLIF(_NC - _nc, 0)) AS unexpected_difference,
          (_nt - _nc * ((_NT - _nt) / NULLIF(_NC - _nc, 0)))
            / NULLIF(_nc * ((_NT - _nt) / NULLIF(_NC - _nc, 0)), 0)
            AS relative_unexpected_difference,
          _support AS apriori_support,
          ABS(_nt - _nc) AS contribution"""
        consts = ""
    elif metric.kind == "ratio":
        # Aumann-Shapley: along the straight path from the control totals (N0, D0) to the test
        # totals (N1, D1), R = N/D; a segment's attribution is the integral of dR/dN * its
        # numerator change + dR/dD * its denominator change, i.e. dn * I1 - dd * I2 with
        # I1 = integral of 1/D(t) dt and I2 = integral of N(t)/D(t)^2 dt (in closed form).
        # The attributions of a partition of the population add up to R1 - R0.
        consts = """,
        k AS (SELECT *,
          CASE WHEN _DC <= 0 OR _DT <= 0 THEN NULL
               WHEN _DT = _DC THEN 1.0 / _DC
               ELSE LN(_DT / _DC) / (_DT - _DC) END AS _i1
          FROM pop),
        k2 AS (SELECT *,
          CASE WHEN _DC <= 0 OR _DT <= 0 THEN NULL
               WHEN _DT = _DC THEN (_NC + (_NT - _NC) / 2.0) / (_DC * _DC)
               ELSE (_NC - (_NT - _NC) / (_DT - _DC) * _DC) * (1.0 / _DC - 1.0 / _DT)
                      / (_DT - _DC)
                    + (_NT - _NC) / (_DT - _DC) * _i1 END AS _i2
          FROM k)"""
        metrics = """
          _nt / NULLIF(_dt, 0) AS metric_test,
          _nc / NULLIF(_dc, 0) AS metric_control,
          (_nt / NULLIF(_dt, 0)) / NULLIF(_nc / NULLIF(_dc, 0), 0)
            AS metric_test_over_metric_control,
          (_nt / NULLIF(_dt, 0)) / NULLIF((_NT - _nt) / NULLIF(_DT - _dt, 0), 0)
            AS metric_test_over_complement,
          (_nc / NULLIF(_dc, 0)) / NULLIF((_NC - _nc) / NULLIF(_DC - _dc, 0), 0)
            AS metric_control_over_complement,
          (_nt - _nc) * _i1 - (_dt - _dc) * _i2 AS aumann_shapley_attribution,
          _support AS apriori_support,
          ABS((_nt - _nc) * _i1 - (_dt - _dc) * _i2) AS contribution"""
    else:
        metrics = """
          _nt / NULLIF(_kt, 0) AS metric_test,
          _nc / NULLIF(_kc, 0) AS metric_control,
          _nt / NULLIF(_kt, 0) - _nc / NULLIF(_kc, 0) AS difference,
          (_nt / NULLIF(_kt, 0) - _nc / NULLIF(_kc, 0)) / NULLIF(_nc / NULLIF(_kc, 0), 0)
            AS relative_difference,
          (_nt / NULLIF(_kt, 0)) / NULLIF(_NT / NULLIF(_KT, 0), 0)
            AS metric_test_over_population,
          (_nc / NULLIF(_kc, 0)) / NULLIF(_NC / NULLIF(_KC, 0), 0)
            AS metric_control_over_population,
          _support AS apriori_support,
          ABS(_nt / NULLIF(_kt, 0) - _nc / NULLIF(_kc, 0)) AS contribution"""
        consts = ""
    metrics, consts = (
        re.sub(r"\b_([NDK])([TC])\b", lambda m: f"_p{m[1].lower()}{m[2].lower()}", text)
        for text in (metrics, consts)
    )
    constants = "k2" if metric.kind == "ratio" else "pop"
    # the apriori support first, so that only the kept segments get their metrics
    support = (
        "GREATEST(_nt / NULLIF((SELECT _pnt FROM pop), 0), "
        "_nc / NULLIF((SELECT _pnc FROM pop), 0)) AS _support"
    )
    if top_k is not None:
        keep = (
            "QUALIFY row_number() OVER (ORDER BY _support DESC NULLS LAST, _gid DESC, "
            f"{', '.join(qdims)}) <= {int(top_k)}"
        )
    elif min_support:
        keep = f"WHERE _support >= {float(min_support)!r}"
    else:
        keep = ""
    source = (
        f"SELECT {', '.join(qdims)}, GROUPING_ID({', '.join(qdims)}) AS _gid, "
        f"{', '.join(aggregates)} FROM kept GROUP BY GROUPING SETS ({sets()})"
        if cube is None
        else f"SELECT * FROM {cube}"
    )
    return f"""
        WITH kept AS (SELECT * FROM {_ROWS} WHERE {not_null}),
        cube AS MATERIALIZED ({source}),
        seg AS (SELECT * REPLACE ({zeros}) FROM cube),
        pop AS (SELECT {pop_cols} FROM seg WHERE _gid = {full}){consts},
        scored AS (SELECT *, {support} FROM seg {keep}),
        insights AS (
          SELECT {contributors}, {", ".join(qdims)}, _gid, {metrics}
          FROM scored CROSS JOIN {constants})
        SELECT * EXCLUDE (_gid) FROM insights
        ORDER BY contribution DESC NULLS LAST, apriori_support DESC NULLS LAST, _gid DESC,
          contributors
    """


def _check_data(cur: Any, metric: Metric, is_test: str, dims: list[str], nonnegative: bool) -> None:
    """Test and control rows both present; metric columns non-negative when support prunes."""
    t = quote_identifier(is_test)
    not_null = _analysed(dims, is_test)
    summed = [metric.numerator] + ([metric.denominator] if metric.denominator else [])
    mins = ", ".join(f"MIN({quote_identifier(c)})" for c in summed)
    row = fetch_arrow(
        cur,
        f"SELECT COUNT(*) FILTER (WHERE {t}), COUNT(*) FILTER (WHERE NOT {t}), {mins} "
        f"FROM {_ROWS} WHERE {not_null}",
    ).to_pylist()[0]
    values = list(row.values())
    n_test, n_control = values[0], values[1]
    if not n_test or not n_control:
        raise InvalidArgument(
            f"a CONTRIBUTION_ANALYSIS model compares test and control rows, but the query has "
            f"{n_test} test (is_test_col {is_test!r} TRUE) and {n_control} control (FALSE) "
            "rows with no NULL dimension; it needs both"
        )
    if nonnegative:
        for col, low in zip(summed, values[2:], strict=True):
            if low is not None and low < 0:
                raise InvalidArgument(
                    f"metric column {col!r} has negative values (minimum {low}); the apriori "
                    "support needs non-negative metrics: set min_apriori_support=0 to keep "
                    "every segment, or shift the column in the query",
                    option="contribution_metric",
                )


def _prune_redundant(table: pa.Table, dims: list[str]) -> pa.Table:
    """Drop a segment when a more descriptive one (its dimension values and more) has the same
    metric_test and metric_control; the ``all`` segment stays. Runs over the insights (one
    row per segment), not over the data."""
    columns = [table[d].to_pylist() for d in dims]
    tests = table["metric_test"].to_pylist()
    controls = table["metric_control"].to_pylist()
    keys: dict[tuple[tuple[int, Any], ...], int] = {}
    for row in range(table.num_rows):
        keys[tuple((i, col[row]) for i, col in enumerate(columns) if col[row] is not None)] = row

    def same(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)

    redundant: set[int] = set()
    for key, row in keys.items():
        for size in range(1, len(key)):
            for subset in itertools.combinations(key, size):
                other = keys.get(subset)
                if (
                    other is not None
                    and other not in redundant
                    and same(tests[other], tests[row])
                    and same(controls[other], controls[row])
                ):
                    redundant.add(other)
    if not redundant:
        return table
    mask = pa.array([i not in redundant for i in range(table.num_rows)])
    return table.filter(mask)


def compute_insights(
    cur: Any,
    schema: pa.Schema,
    options: ContributionAnalysisOptions,
    *,
    strategy: Literal["auto", "single", "apriori"] = "auto",
) -> tuple[pa.Table, MetricKind, list[str]]:
    """The insights table of the query's rows (relation :data:`_ROWS` on ``cur``, of columns
    ``schema``): one row per kept segment. ``strategy`` picks how the segments are found: one
    GROUPING SETS query over every subset of the dimensions (``single``), or the level-by-level
    search a support threshold allows (``apriori``, :mod:`shipyard.sql.contribution_search`);
    ``auto`` searches past :data:`_SINGLE_MAX` dimensions. Both give the same table."""
    metric, is_test, dims = resolve_columns(options, schema)
    min_support = options.min_apriori_support
    top_k = options.top_k_insights_by_apriori_support
    if min_support is not None and top_k is not None:
        raise InvalidArgument(
            "options min_apriori_support and top_k_insights_by_apriori_support exclude each "
            "other: give one",
            option="top_k_insights_by_apriori_support",
        )
    if min_support is None and top_k is None:
        min_support = 0.1
    _check_data(cur, metric, is_test, dims, nonnegative=min_support != 0)
    cube = None
    if strategy == "apriori" or (
        strategy == "auto" and (min_support or top_k is not None) and len(dims) > _SINGLE_MAX
    ):
        cube = search_segments(
            cur,
            _ROWS,
            dims,
            _aggregates(metric, quote_identifier(is_test)),
            _analysed(dims, is_test),
            min_support=min_support,
            top_k=top_k,
            exhaustive_max=MAX_UNPRUNED_DIMENSIONS,
        )
    try:
        table = fetch_arrow(
            cur,
            insights_sql(metric, is_test, dims, min_support=min_support, top_k=top_k, cube=cube),
        )
    finally:
        if cube is not None:
            cur.execute(f"DROP TABLE IF EXISTS {cube}")
    if options.pruning_method == "PRUNE_REDUNDANT_INSIGHTS":
        table = _prune_redundant(table, dims)
    # DOUBLE metric columns, contributors ARRAY<STRING>, dimension columns as in the query
    fields = [pa.field("contributors", pa.list_(pa.string()))]
    fields += [schema.field(d) for d in dims]
    fields += [pa.field(c, pa.float64()) for c in OUTPUT_COLUMNS[metric.kind]]
    out = pa.schema([pa.field(f.name, f.type) for f in fields])
    return table.select(out.names).cast(out), metric.kind, dims


#: The query's rows, as CREATE MODEL hands them to :func:`compute_insights`: a view of the
#: query on the statement's cursor (DuckDB reads the tables itself, in each of the two passes,
#: never copying the rows out), or its Arrow rows when it holds ML functions.
_ROWS = "__shipyard_contribution_rows"


def _rows_relation(service: SqlService, cur: Any, tree: exp.Expression) -> pa.Schema:
    """Define :data:`_ROWS` on ``cur`` from the query ``tree``; its columns."""
    from shipyard.sql.dialect import MLDataFunction, MLFunction, to_duckdb

    if tree.find(exp.Predict, MLFunction, MLDataFunction) is not None:
        cur.register(_ROWS, service.query_arrow(tree))  # ML results exist only as Arrow
    else:
        cur.execute(f"CREATE TEMP VIEW {_ROWS} AS {to_duckdb(tree)}")
    return fetch_arrow(cur, f"SELECT * FROM {_ROWS} LIMIT 0").schema


# -- CREATE MODEL ------------------------------------------------------------------------------


def create_contribution_analysis_model(
    service: SqlService, job: JobContext, statement: exp.Create, text: str
) -> QueryResult:
    from shipyard.sql.create_model import (
        existing_model,
        input_versions,
        model_options,
        register_created,
        tables_read,
    )

    target = statement.this
    if isinstance(target, exp.Schema):
        raise InvalidArgument(
            "INPUT(...)/OUTPUT(...) do not apply to a CONTRIBUTION_ANALYSIS model: its columns "
            "are the query's"
        )
    qname = QualifiedName.parse(table_name(target), kind="model")
    replace = bool(statement.args.get("replace"))
    if_not_exists = bool(statement.args.get("exists"))
    if statement.args.get("transform") is not None:
        raise InvalidArgument(
            f"CREATE MODEL {qname}: a CONTRIBUTION_ANALYSIS model takes no TRANSFORM(…) "
            "clause; compute the columns in its query"
        )
    statement = statement.copy()
    expires = pop_expiration(service, statement, f"model {qname}")
    options: ContributionAnalysisOptions = validate_options(
        ContributionAnalysisOptions, MODEL_TYPE, model_options(statement), {}
    )
    existing = existing_model(service, qname, replace=replace, if_not_exists=if_not_exists)
    if existing is not None:
        return existing
    query = statement.expression
    if query is None:
        raise SQLError(
            f"CREATE MODEL {qname} needs a query with the test and control rows: … AS SELECT …"
        )
    job.progress(0.0, "reading the query's rows")
    tree = query.copy()
    read = tables_read(tree)
    cur = service.ctx.warehouse.cursor()
    try:
        schema = _rows_relation(service, cur, tree)
        job.log(f"computing the segments of {qname}")
        insights, kind, dims = compute_insights(cur, schema, options)
    finally:
        cur.close()  # and with it the view
    job.log(f"{insights.num_rows} insights")
    inputs = input_versions(service, read)
    given = {k: v for k, v in options.model_dump().items() if v is not None}
    manifest: dict[str, Any] = {
        "model_type": MODEL_TYPE,
        "task": CONTRIBUTION_ANALYSIS_TASK,
        "label": None,
        "label_info": None,
        "feature_columns": dims,
        "signature": {
            "inputs": [{"name": f.name, "type": str(f.type)} for f in schema],
            "outputs": [{"name": f.name, "type": str(f.type)} for f in insights.schema],
        },
        "preprocessing": {},
        "predictor_config": {"metric_kind": kind, "dimension_id_cols": dims},
        "options": given,
        "metrics": {"num_insights": insights.num_rows},
        "training_info": [],
        "lineage": Lineage(statement=text, input_tables=inputs, job_id=job.job_id),
    }
    job.progress(0.9, "registering the model version")
    return register_created(
        service,
        qname,
        NewVersion(model=insights, flavor=INSIGHTS_FLAVOR, manifest=manifest),
        replace=replace,
        if_not_exists=if_not_exists,
        job=job,
        text=text,
        inputs=inputs,
        properties={"model_type": MODEL_TYPE},
        expires=expires,
        what=f" ({insights.num_rows} insights)",
    )


# -- ML.GET_INSIGHTS, and the other functions refusing the model ------------------------------


def ml_get_insights(service: SqlService, call: MLCall) -> pa.Table:
    """ML.GET_INSIGHTS(MODEL m): the insights stored at CREATE MODEL time."""
    call.check_params({})
    if call.input is not None:
        raise InvalidArgument(
            "ML.GET_INSIGHTS takes only the model: ML.GET_INSIGHTS(MODEL m); its insights were "
            "computed by CREATE MODEL"
        )
    version = service.models.get_version(call.model)
    if version.model_type != MODEL_TYPE:
        raise InvalidArgument(
            f"ML.GET_INSIGHTS applies to CONTRIBUTION_ANALYSIS models; model {call.model} is "
            f"{version.model_type}",
            resource=f"models/{call.model}",
        )
    table = service.models.load(call.model).model
    if not isinstance(table, pa.Table):  # pragma: no cover - the flavor loads a table
        raise InvalidArgument(f"model {call.model} holds no insights table")
    return table


def handlers(existing: Mapping[str, Handler]) -> dict[str, Handler]:
    """Every ML function but ML.GET_INSIGHTS, refusing CONTRIBUTION_ANALYSIS models."""
    return refusing_handlers(
        existing,
        model_type=MODEL_TYPE,
        applicable=("GET_INSIGHTS",),
        advice=lambda model: f"; ML.GET_INSIGHTS(MODEL {model}) returns its insights",
    )
