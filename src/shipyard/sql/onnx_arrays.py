"""Numeric arrays in EXPORT MODEL's ONNX graph: ``ARRAY<FLOAT64>`` inputs, ML.NORMALIZER and
element access (``v[OFFSET(i)]``).

Shipyard trains on scalar features, so a TRANSFORM reads an array through one of its elements:
``ML.NORMALIZER(v, p)[OFFSET(0)]``, ``v[OFFSET(1)]``, ``ML.NORMALIZER([a, b])[SAFE_OFFSET(0)]``.
ML.NORMALIZER is stored as DuckDB list SQL (:mod:`shipyard.sql.preprocessing_functions`)::

    list_transform(CAST(v AS DOUBLE[]), lambda __v: __v / <norm, 1 where it is 0 or NULL>)

with ``<norm>`` = ``power(list_sum(list_transform(…, lambda __v: power(abs(__v), p))), 1/p)``
(``list_max(… abs(__v))`` for ``p = +inf``). This module compiles that SQL from its parts, so the
graph computes what DuckDB computes:

* an array is a ``[batch, n]`` DOUBLE tensor, each row's elements first, then NaN up to ``n``:
  NaN is a NULL element, and a NULL or empty array is all NaN. A raw ``ARRAY<FLOAT64>`` (or
  ``ARRAY<INT64>``, ``ARRAY<NUMERIC>``) column is such an input, of any width ``n`` (0 included);
  ``[a, b, 3]`` of numeric columns is one column per element;
* the padding is exact for what converts: DuckDB's ``list[i]`` past a row's end is NULL, as is
  the NaN found there; ``list_sum`` / ``list_max`` / ``list_min`` skip NULL elements (NULL when
  none is left: the mask of NaN gives that); ``list_transform`` with an element-wise lambda
  (``+ - * /``, ``abs``, ``power`` of the element) keeps a NULL element NULL, and NaN stays NaN.
  So a row gives the same features whatever its padding. What would see the padding
  (``ARRAY_LENGTH``, ``IS NULL`` of an array, a lambda that replaces NULL elements) is refused;
* ``list_sum`` is ``ReduceSum``, ``list_max`` / ``list_min`` are ``TopK`` (opset 13 has no
  ``ReduceMax`` with axes as an input), ``power`` / ``abs`` are ``Pow`` / ``Abs``; values equal
  ML.PREDICT's to the last bits (the sum's order may differ: ~1e-16 relative).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
from sqlglot import exp

from shipyard.sql.onnx_ops import Builder, NotConvertible, Value, short

__all__ = [
    "ArrayCompiler",
    "array",
    "element",
    "element_type",
    "is_numeric_array_type",
    "length",
    "reduce",
    "reducer",
    "refers",
]

_LIST_TYPE = re.compile(r"^(?:large_|fixed_size_)?list<(?:[^:<>]+: )?(?P<inner>.+)>(?:\[\d+\])?$")
_NUMERIC = ("int", "uint", "double", "float", "halffloat", "decimal")
#: DuckDB list functions that reduce an array to one value, by sqlglot node or name.
_REDUCERS = {"list_sum": "sum", "list_max": "max", "list_min": "min"}
#: Element-wise operations that keep a NULL (NaN) element NULL, allowed in a lambda's body.
_ELEMENTWISE = (exp.Paren, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Abs, exp.Pow)


class ArrayCompiler(Protocol):
    """What this module needs of :class:`shipyard.sql.onnx_graph.SqlToOnnx`."""

    b: Builder

    def compile(self, node: exp.Expression) -> Value: ...

    def constant(self, node: exp.Expression) -> Any: ...

    def has_columns(self, node: exp.Expression) -> bool: ...

    def bound(self, name: str, value: Value) -> AbstractContextManager[None]: ...


def is_numeric_array_type(arrow_type: str) -> bool:
    """Whether an Arrow type string (``list<l: double>`` …) is an array of numbers."""
    match = _LIST_TYPE.match(arrow_type.lower())
    return match is not None and match.group("inner").startswith(_NUMERIC)


def element_type(arrow_type: str | None) -> str | None:
    """The element type of a list type string (``int64`` of ``list<l: int64>``)."""
    match = _LIST_TYPE.match((arrow_type or "").lower())
    return match.group("inner") if match else None


def refers(node: exp.Expression, names: set[str]) -> bool:
    """Whether ``node`` reads one of the lambda variables ``names`` (a lambda that binds the same
    name again hides it)."""
    if not names:
        return False
    if isinstance(node, exp.Lambda):
        inner = names - {p.name for p in node.expressions}
        return refers(node.this, inner)
    if isinstance(node, exp.Identifier):
        return node.name in names
    return any(refers(child, names) for child in node.iter_expressions())


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_double_array(to: exp.DataType | None) -> bool:
    if to is None or to.this != exp.DataType.Type.ARRAY or len(to.expressions) != 1:
        return False
    inner = to.expressions[0]
    return isinstance(inner, exp.DataType) and inner.this == exp.DataType.Type.DOUBLE


# -- arrays ------------------------------------------------------------------------------------


def array(c: ArrayCompiler, node: exp.Expression) -> Value:
    """The ``[batch, n]`` DOUBLE tensor (NaN-padded) of an ``ARRAY<FLOAT64>`` expression."""
    node = _unparen(node)
    if not c.has_columns(node):
        return _constant_array(c, node)
    if isinstance(node, exp.Column):
        value = c.compile(node)
        if value.kind != "array":
            raise NotConvertible(
                f"{short(node)}: a {value.raw_type or value.kind} used as an ARRAY"
            )
        return value
    if isinstance(node, exp.Cast) and _is_double_array(node.to):
        inner = array(c, node.this)
        return Value(inner.name, "array")  # the elements are DOUBLE already
    if isinstance(node, exp.Array):
        return _from_columns(c, node)
    if isinstance(node, exp.Transform):
        return _transform(c, node)
    raise NotConvertible(f"{short(node)}: an ARRAY<FLOAT64> built this way")


def _constant_array(c: ArrayCompiler, node: exp.Expression) -> Value:
    values = c.constant(node)
    if values is None:
        values = []
    if not isinstance(values, list) or not all(
        v is None or isinstance(v, int | float) for v in values
    ):
        raise NotConvertible(f"{short(node)}: expected an ARRAY of numbers")
    row = np.array([[np.nan if v is None else float(v) for v in values]], dtype=np.float64)
    return Value(c.b.const(row.reshape(1, len(values)), "array"), "array")


def _from_columns(c: ArrayCompiler, node: exp.Array) -> Value:
    """``[a, b, 3]``: one column per element (NULL ones NaN), every row as long."""
    b = c.b
    values = [c.compile(e) for e in node.expressions]
    if any(v.kind not in ("double", "bool", "null") for v in values):
        raise NotConvertible(f"{short(node)}: an ARRAY of non-numeric values used as numbers")
    columns = [b.double(v) for v in values]
    anchor = next(
        name for name, e in zip(columns, node.expressions, strict=True) if c.has_columns(e)
    )
    shape = b.op("Shape", [anchor])  # constants are [1, 1]: Expand makes them [batch, 1]
    items = [b.op("Expand", [col, shape]) for col in columns]
    return Value(items[0] if len(items) == 1 else b.op("Concat", items, axis=1), "array")


def _transform(c: ArrayCompiler, node: exp.Transform) -> Value:
    """``list_transform(x, lambda v: <element-wise body>)``: the body on every element at once."""
    source = array(c, node.this)
    lam = node.expression
    if not isinstance(lam, exp.Lambda) or len(lam.expressions) != 1:
        raise NotConvertible(short(node))
    name = lam.expressions[0].name
    _check_elementwise(node, lam.this, name)
    b = c.b
    with c.bound(name, Value(source.name, "double")):
        body = c.compile(lam.this)
    # a body that reads the element is [batch, n] already; Expand keeps any other one as wide.
    # DuckDB's element-wise functions give NULL for a NULL element (power(NULL, 0) too, where
    # ONNX's Pow gives 1): so does the graph, and the padding stays NaN
    out = b.op("Expand", [b.double(body), b.op("Shape", [source.name])])
    nan = b.const(np.array([[np.nan]]), "nan")
    return Value(b.op("Where", [b.op("IsNaN", [source.name]), nan, out]), "array")


def _check_elementwise(top: exp.Expression, body: exp.Expression, name: str) -> None:
    """Refuse a lambda whose body could turn a NULL element (or the padding) into a value."""
    if not refers(body, {name}):
        raise NotConvertible(f"{short(top)}: a list_transform whose lambda ignores its element")
    stack = [body]
    while stack:
        part = stack.pop()
        if not refers(part, {name}):
            continue  # compiled as any [batch, 1] value
        if isinstance(part, exp.Identifier):
            continue
        if not isinstance(part, _ELEMENTWISE):
            raise NotConvertible(
                f"{short(top)}: a list_transform whose lambda applies {type(part).__name__} to "
                "the element"
            )
        stack.extend(part.iter_expressions())


# -- values from arrays ------------------------------------------------------------------------


def _pad(b: Builder, tensor: str, width: int, value: float) -> str:
    """``tensor`` ``[batch, n]`` with ``width`` more columns of ``value``."""
    rows = b.op("Slice", [b.op("Shape", [tensor]), b.ints(0), b.ints(1)])
    shape = b.op("Concat", [rows, b.ints(width)], axis=0)
    fill = b.op("ConstantOfShape", [shape], value=_tensor(np.array([value])))
    return b.op("Concat", [tensor, fill], axis=1)


def element(c: ArrayCompiler, node: exp.Bracket) -> Value:
    """``x[i]`` (BigQuery's ``x[OFFSET(i - 1)]``, ``SAFE_OFFSET``, ``ORDINAL``): NULL past the
    row's end, as in DuckDB. sqlglot holds the index 0-based (DuckDB's ``x[1]`` is offset 0)."""
    if len(node.expressions) != 1 or c.has_columns(node.expressions[0]):
        raise NotConvertible(f"{short(node)}: an element at an index computed from columns")
    offset = c.constant(node.expressions[0])
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise NotConvertible(f"{short(node)}: an element at {offset!r}")
    if offset < 0:
        raise NotConvertible(
            short(node),
            "DuckDB counts an index below 1 from the end of each row (or gives NULL), which the "
            "graph's padded rows cannot tell",
        )
    source = array(c, node.this)
    b = c.b
    padded = _pad(b, source.name, offset + 1, np.nan)  # wide enough for any input width
    item = b.op("Slice", [padded, b.ints(offset), b.ints(offset + 1), b.ints(1)])
    raw = source.raw_type if isinstance(_unparen(node.this), exp.Column) else None
    return Value(item, "double", raw_type=element_type(raw))


def reduce(c: ArrayCompiler, node: exp.Expression, how: str) -> Value:
    """``list_sum`` / ``list_max`` / ``list_min`` of an array: NULL elements skipped, NULL when
    none is left."""
    args = list(node.expressions) if isinstance(node, exp.Anonymous) else [node.this]
    if len(args) != 1:
        raise NotConvertible(short(node))
    source = array(c, args[0])
    b = c.b
    missing = b.op("IsNaN", [source.name])
    present = b.op("Cast", [b.op("Not", [missing])], to=b.tp.DOUBLE)
    count = b.op("ReduceSum", [present, b.ints(1)], keepdims=1)
    if how == "sum":
        zero = b.const(np.array([[0.0]]), "zero")
        result = b.op("ReduceSum", [b.op("Where", [missing, zero, source.name]), b.ints(1)])
    else:  # TopK of the elements, NULL ones masked; one extra column for a width-0 input
        fill = -np.inf if how == "max" else np.inf
        masked = b.op("Where", [missing, b.const(np.array([[fill]]), "fill"), source.name])
        values, _ = b.ops(
            "TopK",
            [_pad(b, masked, 1, fill), b.ints(1)],
            2,
            axis=1,
            largest=1 if how == "max" else 0,
        )
        result = values
    none = b.op("Equal", [count, b.const(np.array([[0.0]]), "zero")])
    return Value(b.op("Where", [none, b.const(np.array([[np.nan]]), "nan"), result]), "double")


def reducer(node: exp.Expression) -> str | None:
    """``sum`` / ``max`` / ``min`` when ``node`` is a list reduction this module converts."""
    if isinstance(node, exp.ArrayMax):
        return "max"
    if isinstance(node, exp.ArrayMin):
        return "min"
    if isinstance(node, exp.ArraySum):
        return "sum"
    if isinstance(node, exp.Anonymous):
        return _REDUCERS.get(str(node.name).lower())
    return None


def length(c: ArrayCompiler, node: exp.Expression) -> None:
    """Refuse the length of a numeric array (the padding hides it); return for other values."""
    try:
        array(c, node.this)
    except NotConvertible:
        return
    raise NotConvertible(
        short(node),
        "the graph's ARRAY<FLOAT64> inputs are padded with NaN (a NULL element), so a row's "
        "length is not known",
    )


def _tensor(values: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(values)
