"""Finding ``ML.<preprocessing function>(…)`` calls in a query and rewriting them into DuckDB SQL.

:mod:`shipyard.sql.preprocessing_functions` says what each function computes (its argument
checks, its statistics and its expression given them); this module places those pieces in a
query. An analytic function's statistics become one of three things:

* in ``CREATE MODEL … TRANSFORM(…)`` (``fit`` given, :mod:`shipyard.sql.transform`): constants
  computed once on the training rows, written into the stored expression;
* in a plain query whose ``SELECT`` does not aggregate: one uncorrelated scalar subquery per call
  over the same ``FROM … WHERE …`` (``(SELECT {'min': min(x), 'max': max(x)} FROM t WHERE …)``),
  which DuckDB runs once — the rows an empty ``OVER ()`` sees, so the values are the same;
* in a plain query that aggregates (``GROUP BY``, ``HAVING``, an aggregate in the select list):
  window aggregates over all rows (``min(x) OVER ()``), since the function sees grouped rows.

In both plain forms the statistics reach the expression through a lambda's parameter
(``list_transform([stats], lambda __s0: …)[1]``), never written inside another lambda: DuckDB
cannot plan a window or subquery whose argument holds a lambda (``ML.NGRAMS``) inside a lambda
body ("BoundReferenceExpression should not be used here yet").

Argument types are checked against the reference's (a numerical expression, a STRING, an
``ARRAY<STRING>``…): at fit time on the training rows' types, and in a plain query by a guard
DuckDB folds at planning time (``CASE WHEN typeof(x) … ELSE error('ML.X …') END``), so a wrong
type is an error naming the function, not a cast error. The stored TRANSFORM SQL carries no
guard (EXPORT MODEL compiles it to ONNX).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from shipyard.errors import SQLError
from shipyard.sql.preprocessing_functions import PREPROCESSING_FUNCTIONS, TYPE_KINDS, Built

__all__ = ["Rewriter", "find_calls", "ml_call_name", "rewrite_plain_query"]

_PLACEHOLDER = "__shipyard_pp_{}__"
_STATS_MARK = "__shipyard_stats__"
_ARG_MARK = "__shipyard_argument__"


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="duckdb")


def ml_call_name(node: exp.Expression) -> str | None:
    """``BUCKETIZE`` for ``ML.BUCKETIZE(…)`` (a Dot of the identifier ML and a call)."""
    if not isinstance(node, exp.Dot):
        return None
    head, call = node.this, node.expression
    if not (isinstance(head, exp.Identifier | exp.Column) and head.name.upper() == "ML"):
        return None
    if isinstance(call, exp.Anonymous):
        return str(call.name).upper()
    if isinstance(call, exp.Func):
        return str(call.sql_name()).upper()
    return None


def find_calls(tree: exp.Expr) -> list[exp.Dot]:
    """Every ``ML.<preprocessing function>(…)`` call, in the order they must be rewritten; an
    unknown ML.* scalar function is an error naming the valid ones."""
    from shipyard.sql.dialect import ML_TABLE_FUNCTIONS

    calls = []
    for node in tree.find_all(exp.Dot):
        name = ml_call_name(node)
        if name is None:
            continue
        if name not in PREPROCESSING_FUNCTIONS:
            if name in ML_TABLE_FUNCTIONS or name == "PREDICT":
                continue
            raise SQLError(
                f"unknown function ML.{name}; BigQuery ML preprocessing functions: "
                + ", ".join(f"ML.{n}" for n in sorted(PREPROCESSING_FUNCTIONS)),
                highlight=f"ML.{name}",
            )
        calls.append(node)
    # Subqueries first (a FROM subquery's calls are rewritten before the SELECT that reads it
    # copies its FROM clause), then calls outside the select list (WHERE …), then innermost first.
    return sorted(calls, key=_order, reverse=True)


def _order(node: exp.Expression) -> tuple[int, int, int]:
    selects, depth, parent = 0, 0, node.parent
    child: exp.Expr = node
    in_projection = 0
    while parent is not None:
        if isinstance(parent, exp.Select):
            if selects == 0 and child.arg_key == "expressions":
                in_projection = 1
            selects += 1
        depth += 1
        child, parent = parent, parent.parent
    return selects, -in_projection, depth


def _arguments(name: str, call: exp.Dot) -> list[exp.Expression]:
    inner = call.expression
    args = (
        list(inner.expressions)
        if isinstance(inner, exp.Anonymous)
        else list(inner.iter_expressions())
    )
    spec = PREPROCESSING_FUNCTIONS[name]
    for arg in args:
        if isinstance(arg, exp.Kwarg | exp.PropertyEQ):
            raise SQLError(
                f"ML.{name} takes positional arguments only, as in BigQuery ML: {spec.signature}; "
                f"got {arg.sql(dialect='bigquery')!r}",
                highlight=arg.sql(dialect="bigquery"),
            )
    if not spec.min_args <= len(args) <= spec.max_args:
        raise SQLError(
            f"ML.{name} takes {spec.min_args}"
            + (f" to {spec.max_args}" if spec.max_args != spec.min_args else "")
            + f" arguments, got {len(args)}: {spec.signature}",
            highlight=f"ML.{name}",
        )
    return args


def _type_error(name: str, argument: str, kind: str, got: str) -> str:
    return f"ML.{name} argument {argument} must be {TYPE_KINDS[kind][1]}, got {got.strip(chr(34))}"


class Rewriter:
    """Replaces ML.* preprocessing calls by DuckDB SQL, through placeholders.

    ``fit`` (TRANSFORM) turns ``{statistic: aggregate SQL}`` into ``{statistic: constant SQL}``
    computed on training rows, and ``type_of`` gives the DuckDB type of an expression over
    them; without ``fit`` the statistics are computed in the query itself (see the module
    docstring). :meth:`render_sql` gives the final DuckDB SQL.
    """

    def __init__(
        self,
        fit: Callable[[str, dict[str, str]], dict[str, str]] | None = None,
        type_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._fit = fit
        self._type_of = type_of
        self.raw: dict[str, str] = {}
        self._analytic: set[str] = set()  # placeholders of analytic calls

    def rewrite(self, tree: exp.Expr) -> exp.Expr:
        for call in find_calls(tree):
            self._replace(call)
        return tree

    def _replace(self, call: exp.Dot) -> None:
        name = ml_call_name(call)
        assert name is not None
        spec = PREPROCESSING_FUNCTIONS[name]
        window = call.parent if isinstance(call.parent, exp.Window) else None
        self._check_window(name, call, window)
        args = _arguments(name, call)
        built = spec.prepare(args)
        checks = [(a, self.render_sql(sql), kind) for a, sql, kind in built.checks]
        key = _PLACEHOLDER.format(len(self.raw))
        if self._fit is not None:
            self._check_types(name, checks)
            stats = {k: self.render_sql(v("")) for k, v in built.stats.items()}
            values = self._fit(name, stats) if stats else {}
            sql = built.render(values)
        else:
            sql = _guard(name, checks, self._plain(name, call, args, key))
        self.raw[key] = f"({sql})"
        if spec.analytic:
            self._analytic.add(key)
        (window or call).replace(exp.column(key))

    def _check_window(self, name: str, call: exp.Dot, window: exp.Window | None) -> None:
        spec = PREPROCESSING_FUNCTIONS[name]
        if spec.analytic and window is None:
            raise SQLError(
                f"ML.{name} is an analytic function: write {spec.signature}",
                highlight=f"ML.{name}",
            )
        if window is None:
            return
        if not spec.analytic:
            raise SQLError(
                f"ML.{name} is not an analytic function: drop OVER(); {spec.signature}",
                highlight=f"ML.{name}",
            )
        if any(window.args.get(k) for k in ("partition_by", "order", "spec")):
            raise SQLError(
                f"ML.{name} takes an empty OVER (): BigQuery ML's analytic functions compute "
                f"their statistics over all rows, with no PARTITION BY, ORDER BY or frame; "
                f"{spec.signature}",
                highlight=f"ML.{name}",
            )
        if call.expression.find(exp.Window):
            raise SQLError(
                f"ML.{name}'s argument holds a window function (… OVER (…)); analytic "
                "functions do not nest: compute the inner one in a subquery",
                highlight=f"ML.{name}",
            )

    def _check_types(self, name: str, checks: list[tuple[str, str, str]]) -> None:
        if self._type_of is None:
            return
        for argument, sql, kind in checks:
            got = self._type_of(sql)
            if got is not None and not re.fullmatch(TYPE_KINDS[kind][0], got):
                raise SQLError(_type_error(name, argument, kind, got), highlight=f"ML.{name}")

    def _plain(self, name: str, call: exp.Dot, args: list[exp.Expression], key: str) -> str:
        spec = PREPROCESSING_FUNCTIONS[name]
        built = spec.prepare(args)
        param = key.replace("pp", "s")
        parts: dict[str, str] = {}
        if built.stats:
            parts["stats"] = self._statistics(name, call, built)
        # an argument is evaluated once, outside the body's lambdas (the first one, or any:
        # ML.DISTANCE's two vectors)
        marks = {i: _ARG_MARK if i == 0 else f"__shipyard_argument{i}__" for i in range(len(args))}
        bound_args = [i for i, arg in enumerate(args) if self._must_bind(arg)]
        for i in bound_args:
            parts["arg" if i == 0 else f"arg{i}"] = _sql(args[i])
        if bound_args:
            built = spec.prepare(
                [exp.column(marks[i]) if i in bound_args else a for i, a in enumerate(args)]
            )
        if not parts:
            return built.render({})
        values = {k: f"{param}['stats']['{k}']" for k in built.stats}
        body = built.render(values)
        for i in bound_args:
            body = body.replace(f'"{marks[i]}"', marks[i])
            body = body.replace(marks[i], f"{param}['{'arg' if i == 0 else f'arg{i}'}']")
        bound = "{" + ", ".join(f"'{k}': {v}" for k, v in parts.items()) + "}"
        return f"list_transform([{bound}], lambda {param}: {body})[1]"

    def _must_bind(self, arg: exp.Expression) -> bool:
        """Whether an argument holds what DuckDB cannot plan inside a lambda body: another
        call's rewritten SQL (a subquery, a window), a window, a subquery or a lambda."""
        if isinstance(arg, exp.Struct):
            return False  # FEATURE_CROSS / POLYNOMIAL_EXPAND: no lambda in their SQL
        if arg.find(exp.Window, exp.Subquery, exp.Lambda):
            return True
        return any(c.name in self.raw for c in arg.find_all(exp.Column))

    def _statistics(self, name: str, call: exp.Dot, built: Built) -> str:
        """SQL of one STRUCT holding the call's statistics over the query's rows."""
        source = _stats_source(call)
        if source is None:
            inner = call.expression.sql(dialect="duckdb")  # placeholders included
            if any(k in inner for k in self._analytic):
                raise SQLError(
                    f"ML.{name}'s argument holds another analytic ML function, which a query "
                    "that aggregates (GROUP BY, HAVING, an aggregate in its select list) "
                    "cannot nest: compute the inner one in a subquery",
                    highlight=f"ML.{name}",
                )
            fields = ", ".join(f"'{k}': {v(' OVER ()')}" for k, v in built.stats.items())
            return "{" + fields + "}"
        fields = ", ".join(f"'{k}': {v('')}" for k, v in built.stats.items())
        return "(" + source.replace(_STATS_MARK, "{" + fields + "}", 1) + ")"

    def render_sql(self, sql: str) -> str:
        """Substitute placeholders (innermost last written, so loop until none remain)."""
        for _ in range(len(self.raw) + 1):
            if "__shipyard_pp_" not in sql:
                return sql
            for key in reversed(list(self.raw)):
                sql = sql.replace(f'"{key}"', self.raw[key]).replace(key, self.raw[key])
        return sql


def _guard(name: str, checks: list[tuple[str, str, str]], sql: str) -> str:
    """``sql``, or DuckDB's error() naming the function when an argument has the wrong type
    (``typeof`` is known when DuckDB plans the query, so the check costs nothing per row)."""
    for argument, arg_sql, kind in reversed(checks):
        pattern = TYPE_KINDS[kind][0].replace("'", "''")
        message = _type_error(name, argument, kind, "").replace("'", "''")
        sql = (
            f"CASE WHEN regexp_full_match(typeof({arg_sql}), '{pattern}') THEN {sql} "
            f"ELSE error('{message}' || replace(typeof({arg_sql}), '\"', '')) END"
        )
    return sql


def _stats_source(call: exp.Dot) -> str | None:
    """``SELECT __mark__ FROM … WHERE …`` of the SELECT whose select list holds ``call``: the
    rows an empty OVER () sees there; None where those are grouped rows (or not known)."""
    select = call.parent
    child: exp.Expr = call
    while select is not None and not isinstance(select, exp.Select):
        child, select = select, select.parent
    if select is None or child.arg_key != "expressions":
        return None
    if any(select.args.get(k) for k in ("group", "having")):
        return None
    aliases = {p.alias for p in select.expressions if isinstance(p, exp.Alias) and p is not child}
    if aliases & {c.name for c in call.find_all(exp.Column)}:
        return None  # the argument may read another select-list alias, unknown to a subquery
    for projection in select.expressions:
        for node in projection.find_all(exp.AggFunc, exp.Unnest, exp.Explode):
            if not _under_window(node, projection):
                return None
    copy = select.copy()
    for key in ("order", "limit", "offset", "distinct", "qualify"):
        copy.set(key, None)
    copy.set("expressions", [exp.column(_STATS_MARK)])
    return copy.sql(dialect="duckdb")


def _under_window(node: exp.Expression, top: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None and parent is not top.parent:
        if isinstance(parent, exp.Window):
            return True
        parent = parent.parent
    return False


def rewrite_plain_query(tree: exp.Expr) -> Rewriter | None:
    """For ``to_duckdb``: rewrite the ML.* preprocessing calls of a query (in place) into DuckDB
    SQL that computes their statistics itself; None when it has none."""
    if not any(ml_call_name(n) for n in tree.find_all(exp.Dot)):
        return None
    for select in list(tree.find_all(exp.Select)):
        for projection in select.expressions:
            if isinstance(projection, exp.Alias) or not any(
                ml_call_name(n) for n in projection.find_all(exp.Dot)
            ):
                continue
            # the column is named as written, not after the DuckDB SQL it becomes
            name = projection.sql(dialect="bigquery")
            projection.replace(exp.alias_(projection.copy(), name, quoted=True))
    rewriter = Rewriter()
    rewriter.rewrite(tree)
    return rewriter
