"""The run search language: a filter expression and an order-by list, compiled to SQL.

A filter is comparisons joined by ``and`` (MLflow's syntax), ``or`` and parentheses::

    metrics.auc > 0.9 and params.max_depth = '6' and tags.team = 'x'
    attributes.status = 'FINISHED' and metrics.`val loss` <= 0.2
    attributes.name LIKE 'sweep-%' and tags.stage IN ('dev', 'prod')
    (params.model = 'xgb' or params.model = 'lgbm') and metrics.auc > 0.9

``and`` binds tighter than ``or`` (``a or b and c`` is ``a or (b and c)``), as in SQL; the keywords
are case-insensitive.

* ``metrics.<key>`` compares the run's latest value of the metric with a number
  (``= != <> > >= < <=``);
* ``params.<key>`` and ``tags.<key>`` compare strings (the same operators, plus ``LIKE``, ``ILIKE``
  and ``IN (…)``); a run without the key never matches;
* ``attributes.<name>`` (or the bare name): ``id``, ``name``, ``status``, ``created_by``,
  ``parent_run_id`` (strings), ``start_time`` and ``end_time`` (milliseconds since the epoch, or
  an ISO-8601 string).

Keys with spaces or other characters are quoted with backticks or double quotes. ``LIKE`` is
case-sensitive on every backend; ``ILIKE`` is not. Order by is a list of ``<identifier> [ASC|DESC]``
(default ASC); runs without the ordered key come last either way.

The parser is a tokenizer plus a recursive-descent parser; every error is an
:class:`~shipyard.errors.InvalidArgument` that names the 1-based position of the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, FromClause

from shipyard.errors import InvalidArgument
from shipyard.store.schema import run_latest_metrics, run_params, run_tags, runs

__all__ = [
    "BoolOp",
    "Comparison",
    "FilterExpr",
    "OrderKey",
    "compile_filter",
    "compile_order_by",
    "parse_filter",
    "parse_order_by",
]

_ENTITIES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
_STRING_ATTRIBUTES = {
    "id": runs.c.id,
    "run_id": runs.c.id,
    "name": runs.c.name,
    "run_name": runs.c.name,
    "status": runs.c.status,
    "created_by": runs.c.created_by,
    "parent_run_id": runs.c.parent_run_id,
}
_TIME_ATTRIBUTES = {"start_time": runs.c.start_time, "end_time": runs.c.end_time}
_NUMERIC_OPS = ("=", "!=", "<>", ">", ">=", "<", "<=")
_STRING_OPS = (*_NUMERIC_OPS, "LIKE", "ILIKE", "IN")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<backtick>`(?:[^`]|``)*`)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<op>!=|<>|>=|<=|=|>|<)
  | (?P<punct>[.(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number word backtick string op punct end
    text: str
    pos: int  # 0-based offset into the expression

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class Identifier:
    entity: str  # metrics params tags attributes
    key: str


@dataclass(frozen=True)
class Comparison:
    ident: Identifier
    op: str  # normalised: = != > >= < <= LIKE ILIKE IN
    value: Any  # float, str, or a tuple of str for IN


@dataclass(frozen=True)
class BoolOp:
    """``operands`` joined by ``op`` (``AND`` or ``OR``); never nests the same op directly."""

    op: str
    operands: tuple[FilterExpr, ...]


FilterExpr = Comparison | BoolOp
MAX_NESTING = 50  # parentheses deep: far beyond a person's filter, well within the stack


@dataclass(frozen=True)
class OrderKey:
    ident: Identifier
    desc: bool


def _error(text: str, pos: int, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid filter at position {pos + 1}: {problem}", position=pos + 1, expression=text
    )


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, expected: str, tok: Token | None = None) -> InvalidArgument:
        tok = tok or self.tok
        found = "the end of the expression" if tok.kind == "end" else repr(tok.text)
        return _error(self.text, tok.pos, f"expected {expected}, found {found}")

    def expect_end(self) -> None:
        tok = self.tok
        if tok.kind == "punct" and tok.text == ")":
            raise _error(self.text, tok.pos, "unbalanced ')': no '(' before it to close")
        if tok.kind != "end":
            raise self.fail("'and', 'or' or the end of the expression")

    def keyword(self, word: str) -> bool:
        return self.tok.kind == "word" and self.tok.upper == word

    # filter := or_expr END
    def filter(self) -> FilterExpr:
        expr = self.or_expr(0)
        self.expect_end()
        return expr

    # or_expr := and_expr ('or' and_expr)*
    def or_expr(self, nesting: int) -> FilterExpr:
        operands = [self.and_expr(nesting)]
        while self.keyword("OR"):
            self.advance()
            operands.append(self.and_expr(nesting))
        return _join("OR", operands)

    # and_expr := primary ('and' primary)*
    def and_expr(self, nesting: int) -> FilterExpr:
        operands = [self.primary(nesting)]
        while self.keyword("AND"):
            self.advance()
            operands.append(self.primary(nesting))
        return _join("AND", operands)

    # primary := '(' or_expr ')' | comparison
    def primary(self, nesting: int) -> FilterExpr:
        opening = self.tok
        if not (opening.kind == "punct" and opening.text == "("):
            return self.comparison()
        if nesting >= MAX_NESTING:
            raise _error(self.text, opening.pos, f"parentheses nest more than {MAX_NESTING} deep")
        self.advance()
        inner = self.or_expr(nesting + 1)
        if not (self.tok.kind == "punct" and self.tok.text == ")"):
            raise self.fail(f"'and', 'or' or ')' to close the '(' at position {opening.pos + 1}")
        self.advance()
        return inner

    # identifier := entity '.' name ('.' name)* | attribute
    def identifier(self) -> Identifier:
        first = self.tok
        keyword = first.kind == "word" and first.upper in ("AND", "OR")
        if first.kind != "word" or (keyword and self.tokens[self.i + 1].text != "."):
            raise self.fail("an identifier such as metrics.auc or params.depth")
        self.advance()
        if self.tok.kind == "punct" and self.tok.text == ".":
            entity = _ENTITIES.get(first.text.lower())
            if entity is None:
                raise _error(
                    self.text,
                    first.pos,
                    f"unknown entity {first.text!r}: use metrics, params, tags or attributes",
                )
            self.advance()
            parts = [self.name()]
            while self.tok.kind == "punct" and self.tok.text == ".":
                self.advance()
                parts.append(self.name())
            ident = Identifier(entity, ".".join(parts))
        else:
            ident = Identifier("attributes", first.text)
        if ident.entity == "attributes":
            key = ident.key.lower()
            if key not in _STRING_ATTRIBUTES and key not in _TIME_ATTRIBUTES:
                known = ", ".join(sorted({*_STRING_ATTRIBUTES, *_TIME_ATTRIBUTES}))
                raise _error(self.text, first.pos, f"unknown attribute {ident.key!r}: use {known}")
            ident = Identifier("attributes", key)
        return ident

    def name(self) -> str:
        tok = self.tok
        if tok.kind == "word":
            self.advance()
            return tok.text
        if tok.kind in ("backtick", "string") and len(tok.text) > 2:
            self.advance()
            quote = tok.text[0]
            return tok.text[1:-1].replace(quote * 2, quote)
        raise self.fail("a key name (quote odd names with backticks)")

    # comparison := identifier op value
    def comparison(self) -> Comparison:
        ident = self.identifier()
        op_tok = self.tok
        if op_tok.kind == "op":
            op = "!=" if op_tok.text == "<>" else op_tok.text
        elif op_tok.kind == "word" and op_tok.upper in ("LIKE", "ILIKE", "IN"):
            op = op_tok.upper
        else:
            raise self.fail("a comparison operator (= != > >= < <= LIKE ILIKE IN)")
        self.advance()
        numeric = ident.entity == "metrics"
        if numeric and op not in _NUMERIC_OPS:
            raise _error(self.text, op_tok.pos, f"metrics compare with {', '.join(_NUMERIC_OPS)}")
        is_time = ident.entity == "attributes" and ident.key in _TIME_ATTRIBUTES
        if is_time and op not in _NUMERIC_OPS:
            raise _error(self.text, op_tok.pos, f"{ident.key} compares with = != > >= < <=")
        value: Any
        if op == "IN":
            value = self.string_list()
        elif numeric:
            value = self.number()
        elif is_time:
            value = self.time_value()
        else:
            value = self.string()
        return Comparison(ident, op, value)

    def number(self) -> float:
        tok = self.tok
        if tok.kind != "number":
            raise self.fail("a number (metrics hold numbers)")
        self.advance()
        return float(tok.text)

    def string(self) -> str:
        tok = self.tok
        if tok.kind != "string":
            raise self.fail("a quoted string such as '6' (params and tags hold strings)")
        self.advance()
        quote = tok.text[0]
        return tok.text[1:-1].replace(quote * 2, quote)

    def string_list(self) -> tuple[str, ...]:
        if not (self.tok.kind == "punct" and self.tok.text == "("):
            raise self.fail("'(' to open the list")
        self.advance()
        values = [self.string()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            values.append(self.string())
        if not (self.tok.kind == "punct" and self.tok.text == ")"):
            raise self.fail("',' or ')'")
        self.advance()
        return tuple(values)

    def time_value(self) -> datetime:
        tok = self.tok
        if tok.kind == "number":
            self.advance()
            return datetime.fromtimestamp(float(tok.text) / 1000, UTC)
        if tok.kind == "string":
            text = self.string()
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                raise _error(self.text, tok.pos, f"{text!r} is not an ISO-8601 time") from None
            return when if when.tzinfo else when.replace(tzinfo=UTC)
        raise self.fail("milliseconds since the epoch or an ISO-8601 string")

    # order_by := identifier ('ASC' | 'DESC')?
    def order_key(self) -> OrderKey:
        ident = self.identifier()
        desc = False
        if self.tok.kind == "word" and self.tok.upper in ("ASC", "DESC"):
            desc = self.advance().upper == "DESC"
        if self.tok.kind != "end":
            raise self.fail("ASC, DESC or the end of the order-by clause")
        return OrderKey(ident, desc)


def _join(op: str, operands: list[FilterExpr]) -> FilterExpr:
    if len(operands) == 1:
        return operands[0]
    flat: list[FilterExpr] = []
    for operand in operands:  # (a and b) and c is a and b and c
        if isinstance(operand, BoolOp) and operand.op == op:
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    return BoolOp(op, tuple(flat))


def parse_filter(text: str | None) -> list[FilterExpr]:
    """The conjuncts of ``text``: a list whose items must all hold (an empty or blank filter is
    an empty list and matches every run). Each item is a :class:`Comparison` or, for ``or`` and
    parentheses, a :class:`BoolOp`."""
    if text is None or not text.strip():
        return []
    expr = _Parser(text).filter()
    if isinstance(expr, BoolOp) and expr.op == "AND":
        return list(expr.operands)
    return [expr]


def parse_order_by(items: list[str] | None) -> list[OrderKey]:
    out = []
    for item in items or []:
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgument(
                f"invalid order_by item {item!r}: expected e.g. 'metrics.auc DESC'"
            )
        out.append(_Parser(item).order_key())
    return out


# -- SQL ------------------------------------------------------------------------------------------


def _like(column: ColumnElement[Any], pattern: str, dialect: str) -> ColumnElement[bool]:
    """Case-sensitive LIKE everywhere (SQLite's LIKE ignores ASCII case): GLOB on SQLite."""
    if dialect != "sqlite":
        return column.like(pattern)
    glob = "".join(
        "*" if ch == "%" else "?" if ch == "_" else f"[{ch}]" if ch in "*?[" else ch
        for ch in pattern
    )
    return column.op("GLOB")(glob)


def _compare(column: ColumnElement[Any], op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == "LIKE":
        return _like(column, value, dialect)
    if op == "ILIKE":
        return column.ilike(value)
    if op == "IN":
        return column.in_(list(value))
    raise AssertionError(op)  # the parser admits nothing else


def compile_filter(conjuncts: list[FilterExpr], dialect: str) -> list[ColumnElement[bool]]:
    """WHERE clauses over ``runs`` (one per conjunct): EXISTS probes into the latest-metric,
    param and tag tables, joined with AND/OR as the filter says."""
    return [_compile(expr, dialect) for expr in conjuncts]


def _compile(expr: FilterExpr, dialect: str) -> ColumnElement[bool]:
    if isinstance(expr, BoolOp):
        parts = [_compile(operand, dialect) for operand in expr.operands]
        # SQLAlchemy parenthesises nested groups itself: OR inside AND comes out as (a OR b).
        return sa.and_(*parts) if expr.op == "AND" else sa.or_(*parts)
    entity, key = expr.ident.entity, expr.ident.key
    if entity == "attributes":
        column = _STRING_ATTRIBUTES.get(key, _TIME_ATTRIBUTES.get(key))
        assert column is not None
        return _compare(column, expr.op, expr.value, dialect)
    table = {"metrics": run_latest_metrics, "params": run_params, "tags": run_tags}[entity]
    return sa.exists().where(
        table.c.run_id == runs.c.id,
        table.c.key == key,
        _compare(table.c.value, expr.op, expr.value, dialect),
    )


_NULL_DEFAULTS: dict[str, Any] = {
    "metrics": 0.0,
    "params": "",
    "tags": "",
}


def compile_order_by(
    keys: list[OrderKey], source: FromClause
) -> tuple[FromClause, list[ColumnElement[Any]], list[ColumnElement[Any]]]:
    """The FROM clause (with outer joins for metric, param and tag keys), the labelled columns
    to select, and the ``page`` order (with ``.desc()``) — runs lacking a key sort last."""
    columns: list[ColumnElement[Any]] = []
    order: list[ColumnElement[Any]] = []
    for i, key in enumerate(keys):
        entity, name = key.ident.entity, key.ident.key
        expr: ColumnElement[Any]
        nullable = True
        default: Any
        if entity == "attributes":
            expr = _STRING_ATTRIBUTES.get(name, _TIME_ATTRIBUTES.get(name))  # type: ignore[assignment]
            nullable = bool(expr.nullable)  # type: ignore[attr-defined]
            default = datetime(1970, 1, 1, tzinfo=UTC) if name in _TIME_ATTRIBUTES else ""
        else:
            table = {"metrics": run_latest_metrics, "params": run_params, "tags": run_tags}[entity]
            alias = table.alias(f"o{i}")
            source = source.outerjoin(
                alias, sa.and_(alias.c.run_id == runs.c.id, alias.c.key == name)
            )
            expr = alias.c.value
            default = _NULL_DEFAULTS[entity]
        if nullable:
            missing = sa.case((expr.is_(None), 1), else_=0).label(f"_o{i}_missing")
            columns.append(missing)
            order.append(missing)
            expr = sa.func.coalesce(expr, default, type_=expr.type)
        value = expr.label(f"_o{i}")
        columns.append(value)
        order.append(value.desc() if key.desc else value)
    return source, columns, order
