"""The building blocks of EXPORT MODEL's preprocessing graph: values, the node builder, the
NotConvertible signal. :mod:`shipyard.sql.onnx_graph` (arithmetic, encoders, the whole graph) and
:mod:`shipyard.sql.onnx_text` (token lists and the text functions) both build on them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlglot import exp

__all__ = ["ML_DOMAIN", "ML_OPSET", "NULL_STRING", "Builder", "NotConvertible", "Value", "short"]

ML_DOMAIN = "ai.onnx.ml"
#: ai.onnx.ml opset this graph needs: LabelEncoder with keys_*/values_* attributes.
ML_OPSET = 2
#: ONNX strings have no NULL: a STRING input holds '' for NULL.
NULL_STRING = ""


class NotConvertible(Exception):
    """A part of the preprocessing has no ONNX form here; the message says which.

    ``why``, when given, is a whole sentence saying why that part cannot convert at all (rather
    than "not yet"); the export's message quotes it.
    """

    def __init__(self, what: str, why: str = "") -> None:
        super().__init__(what)
        self.why = why


@dataclass
class Value:
    """A tensor of the graph. ``[batch, 1]``: DOUBLE (NaN = NULL), STRING ('' = NULL) or BOOL;
    ``null`` is the constant NULL; ``list`` is a raw ``ARRAY<STRING>`` input, ``[batch, n]``
    STRING padded with ''; ``array`` an ``ARRAY<FLOAT64>`` value, ``[batch, n]`` DOUBLE padded
    with NaN (NaN = a NULL element; see :mod:`shipyard.sql.onnx_arrays`); ``domain`` lists the
    integers a bucket number can take."""

    name: str
    kind: str  # "double" | "string" | "bool" | "null" | "list" | "array"
    domain: tuple[int, ...] | None = None
    raw_type: str | None = None  # the Arrow type of a raw input column


class Builder:
    """Nodes, constants and inputs of the graph being built.

    ``opset``: the lowest default-domain opset the nodes need (13, the arithmetic; 20 once a
    string operator — StringSplit, StringConcat, string Equal — is used).
    """

    def __init__(self) -> None:
        from onnx import TensorProto

        self.tp = TensorProto
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.opset = 13
        self._ids = itertools.count()

    def fresh(self, hint: str) -> str:
        return f"shipyard_pre_{hint}_{next(self._ids)}"

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        return self.ops(op_type, inputs, 1, hint, **attrs)[0]

    def ops(
        self, op_type: str, inputs: list[str], n: int, hint: str = "", **attrs: Any
    ) -> list[str]:
        """A node with ``n`` outputs."""
        from onnx import helper

        domain = attrs.pop("domain", "")
        outs = [self.fresh(hint or op_type.lower()) for _ in range(n)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, domain=domain, **attrs))
        return outs

    def need_opset(self, version: int) -> None:
        self.opset = max(self.opset, version)

    def input(self, name: str, kind: str) -> Value:
        from onnx import helper

        elem = self.tp.STRING if kind in ("string", "list") else self.tp.DOUBLE
        shape = [None, None] if kind in ("list", "array") else [None, 1]
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return Value(name, kind)

    # -- small helpers ------------------------------------------------------------------------

    def double(self, value: Value) -> str:
        if value.kind == "double":
            return value.name
        if value.kind == "bool":
            return self.op("Cast", [value.name], to=self.tp.DOUBLE)
        if value.kind == "null":
            return self.const(np.array([[np.nan]]), "nan")
        raise NotConvertible("a STRING or ARRAY used as a number")

    def is_null(self, value: Value) -> str:
        if value.kind == "double":
            return self.op("IsNaN", [value.name])
        if value.kind == "string":
            hit = self.op(
                "LabelEncoder",
                [value.name],
                domain=ML_DOMAIN,
                keys_strings=[NULL_STRING],
                values_int64s=[1],
                default_int64=0,
            )
            return self.op("Cast", [hit], to=self.tp.BOOL)
        if value.kind in ("list", "array"):
            raise NotConvertible("an ARRAY tested for NULL")
        return self.const(np.array([[value.kind == "null"]]), "isnull")

    def null_like(self, kind: str) -> Value:
        if kind == "string":
            return Value(self.const(np.array([[NULL_STRING]], dtype=object), "null"), "string")
        return Value(self.const(np.array([[np.nan]]), "nan"), "double")

    def where(self, cond: str, yes: Value, no: Value) -> Value:
        kinds = {yes.kind, no.kind} - {"null"}
        if not kinds:
            return yes
        if kinds & {"list", "array"}:
            raise NotConvertible("a CASE with ARRAY branches")
        kind = "string" if "string" in kinds else "double"
        if kinds == {"bool"}:
            kind = "bool"
        if len(kinds) > 1 and "string" in kinds:
            raise NotConvertible("a CASE whose branches mix STRING and numbers")

        def as_kind(v: Value) -> str:
            if v.kind == "null":
                return self.null_like(kind).name
            if kind == "double":
                return self.double(v)
            return v.name

        return Value(self.op("Where", [cond, as_kind(yes), as_kind(no)]), kind)

    def ints(self, *values: int, hint: str = "ints") -> str:
        """A 1-D INT64 constant (axes, starts, ends, shapes)."""
        return self.const(np.array(values, dtype=np.int64), hint)


def short(node: exp.Expression, limit: int = 120) -> str:
    text = node.sql(dialect="duckdb")
    return text if len(text) <= limit else text[: limit - 1] + "…"
