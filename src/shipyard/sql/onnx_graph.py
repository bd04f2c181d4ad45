"""The preprocessing half of an exported ONNX graph: raw columns in, the model's features out.

EXPORT MODEL (:mod:`shipyard.sql.export`) joins this graph to the model's own (skl2onnx /
onnxmltools). It is built when a model has non-numeric features or a TRANSFORM clause; the graph
then takes one input per raw column, shape ``[batch, 1]``, named as the column:

* numbers: DOUBLE, NaN for NULL; TIMESTAMP: DOUBLE seconds since the Unix epoch (a linear
  model's calendar components of it, ``_TS_DOM_<col>`` …, are computed in the graph:
  :mod:`shipyard.sql.onnx_calendar`);
* STRING: STRING, with ``''`` standing for NULL (ONNX strings have no NULL; a model whose
  training data had ``''`` as a category does not convert);
* BOOL, DATE, TIME: DOUBLE, NaN for NULL: 1/0, days since 1970-01-01, microseconds since
  midnight;
* ARRAY<STRING> (read by a TRANSFORM's text functions): STRING ``[batch, n]``, each row's
  elements first, padded at the end with ``''`` (NULL and ``[]`` are all ``''``);
* ARRAY<FLOAT64> (and other arrays of numbers, read by ML.NORMALIZER or ``v[OFFSET(i)]``):
  DOUBLE ``[batch, n]``, each row's elements first, padded at the end with NaN (a NULL element
  is NaN; NULL and ``[]`` are all NaN); any ``n``, see :mod:`shipyard.sql.onnx_arrays`.

It reproduces :class:`~shipyard.registry.preprocessing.FeaturePreprocessor` exactly: numbers
imputed (NaN, ±inf → the training mean) and standardized; categories one-hot / dummy / label
encoded against the training vocabulary (``ai.onnx.ml`` LabelEncoder for strings, Equal for the
rest), unseen values as Shipyard encodes them.

A TRANSFORM clause is stored as DuckDB SQL with its statistics written in as constants
(:mod:`shipyard.sql.transform`); :class:`SqlToOnnx` compiles the arithmetic part of that SQL:
column references, numbers and strings, ``+ - * /``, comparisons, ``AND/OR/NOT``, ``CASE``,
``IS NULL``, ``COALESCE``, ``GREATEST/LEAST``, casts between numbers, the bucket search of
ML.BUCKETIZE / ML.QUANTILE_BUCKETIZE (``'bin_' || …``) and the vocabulary lookup of
ML.LABEL_ENCODER / ML.ONE_HOT_ENCODER. Subexpressions without columns are evaluated once (DuckDB)
and become constants. So ML.STANDARD_SCALER, ML.MIN_MAX_SCALER, ML.MAX_ABS_SCALER,
ML.ROBUST_SCALER, ML.BUCKETIZE, ML.QUANTILE_BUCKETIZE, ML.IMPUTER, ML.POLYNOMIAL_EXPAND,
ML.LABEL_ENCODER, ML.ONE_HOT_ENCODER and plain arithmetic convert. Token lists, string
concatenation and casts to STRING (ML.NGRAMS, ML.BAG_OF_WORDS, ML.TF_IDF, ML.MULTI_HOT_ENCODER,
ML.FEATURE_CROSS) are :mod:`shipyard.sql.onnx_text`'s, with opset-20 string operators; numeric
arrays (ML.NORMALIZER, element access, ``ABS``/``POWER``) are :mod:`shipyard.sql.onnx_arrays`'s.
The rest (ML.HASH_BUCKETIZE, LOWER/UPPER …) does not convert: :class:`NotConvertible` says which
SQL (and why, where it never can), and the export names the ML function.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import numpy as np
import sqlglot
from sqlglot import exp

from shipyard.sql import onnx_arrays, onnx_calendar, onnx_text
from shipyard.sql.onnx_ops import ML_DOMAIN, ML_OPSET, NotConvertible, Value
from shipyard.sql.onnx_ops import NULL_STRING as _NULL_STRING
from shipyard.sql.onnx_ops import Builder as _Builder
from shipyard.sql.onnx_ops import short as _short
from shipyard.warehouse.functions import connect

__all__ = [
    "ML_DOMAIN",
    "ML_OPSET",
    "NotConvertible",
    "SqlToOnnx",
    "feature_width",
    "preprocessing_graph",
]

_NUMERIC_CASTS = {"DOUBLE", "FLOAT", "BIGINT", "INT", "SMALLINT", "TINYINT", "DECIMAL", "UBIGINT"}
_TEXT_CASTS = {"TEXT", "VARCHAR", "CHAR"}


def _raw_kind(arrow_type: str) -> str:
    text = arrow_type.lower()
    if text.startswith(("string", "large_string", "utf8", "dictionary")) or text == "str":
        return "string"
    if text.startswith(("list<", "large_list<")) and text.endswith(
        ("string>", "utf8>", "large_string>")
    ):
        return "list"
    if onnx_arrays.is_numeric_array_type(text):
        return "array"
    return "double"


def _is_numeric_type(arrow_type: str | None) -> bool:
    if arrow_type is None:
        return True
    text = arrow_type.lower()
    return text.startswith(("int", "uint", "double", "float", "halffloat", "decimal"))


# --------------------------------------------------------------------------------------------
# the TRANSFORM clause's SQL → ONNX


class SqlToOnnx:
    """Compiles the DuckDB SQL of fitted TRANSFORM outputs into graph nodes."""

    def __init__(self, builder: _Builder, columns: dict[str, Value]) -> None:
        self.b = builder
        self.columns = columns
        self._duck = connect()  # with FARM_FINGERPRINT, for constant subexpressions
        self._scope: dict[str, Value] = {}  # lambda variables being compiled, by name

    # -- constants ----------------------------------------------------------------------------

    def _constant(self, node: exp.Expression) -> Any:
        try:
            row = self._duck.execute(f"SELECT {node.sql(dialect='duckdb')}").fetchone()
        except duckdb.Error as exc:
            raise NotConvertible(f"{node.sql(dialect='duckdb')}: {exc}") from None
        return None if row is None else row[0]

    def _const_value(self, value: Any) -> Value:
        if value is None:
            return Value(self.b.const(np.array([[np.nan]]), "nan"), "null")
        if isinstance(value, bool):
            return Value(self.b.const(np.array([[value]]), "bool"), "bool")
        if isinstance(value, int | float | decimal.Decimal):
            return Value(self.b.const(np.array([[float(value)]]), "num"), "double")
        if isinstance(value, str):
            return Value(self.b.const(np.array([[value]], dtype=object), "str"), "string")
        raise NotConvertible(f"the constant {value!r} ({type(value).__name__})")

    def constant(self, node: exp.Expression) -> Any:
        """The value of a subexpression without columns, evaluated by DuckDB."""
        return self._constant(node)

    def has_columns(self, node: exp.Expression) -> bool:
        return self._has_columns(node)

    def _has_columns(self, node: exp.Expression) -> bool:
        return (
            any(True for _ in node.find_all(exp.Column))
            or any(True for _ in node.find_all(exp.Lambda))
            or onnx_arrays.refers(node, set(self._scope))
        )

    @contextmanager
    def bound(self, name: str, value: Value) -> Iterator[None]:
        """Compile with the lambda variable ``name`` standing for ``value``."""
        outer = self._scope.get(name)
        self._scope[name] = value
        try:
            yield
        finally:
            if outer is None:
                del self._scope[name]
            else:
                self._scope[name] = outer

    # -- expressions --------------------------------------------------------------------------

    def compile(self, node: exp.Expression) -> Value:  # one branch per SQL node
        b = self.b
        if not self._has_columns(node):
            return self._const_value(self._constant(node))
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, exp.Column | exp.Identifier) and node.name in self._scope:
            return self._scope[node.name]
        if isinstance(node, exp.Column):
            value = self.columns.get(node.name)
            if value is None:
                raise NotConvertible(f"the column {node.name!r}, which is not an input")
            return value
        if isinstance(node, exp.Cast | exp.Transform | exp.Array) and self._is_array(node):
            return onnx_arrays.array(self, node)
        if isinstance(node, exp.Cast):
            return self._cast(node)
        if isinstance(node, exp.Bracket):
            return onnx_arrays.element(self, node)
        how = onnx_arrays.reducer(node)
        if how is not None:
            return onnx_arrays.reduce(self, node, how)
        if isinstance(node, exp.Abs):
            return Value(b.op("Abs", [b.double(self.compile(node.this))]), "double")
        if isinstance(node, exp.Pow):  # NULL when either is NULL (ONNX: Pow(NaN, 0) = 1)
            base, power = b.double(self.compile(node.this)), b.double(self.compile(node.expression))
            null = b.op("Or", [b.op("IsNaN", [base]), b.op("IsNaN", [power])])
            nan = b.const(np.array([[np.nan]]), "nan")
            return Value(b.op("Where", [null, nan, b.op("Pow", [base, power])]), "double")
        if isinstance(node, exp.Length | exp.ArraySize) and not isinstance(
            node.this, exp.ArrayFilter
        ):
            onnx_arrays.length(self, node)
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
            return self._arithmetic(node)
        if isinstance(node, exp.Neg):
            inner = self.compile(node.this)
            return Value(b.op("Neg", [b.double(inner)]), "double")
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return Value(b.is_null(self.compile(node.this)), "bool")
        if isinstance(node, exp.Not):
            return Value(b.op("Not", [self._bool(node.this)]), "bool")
        if isinstance(node, exp.And | exp.Or):
            op = "And" if isinstance(node, exp.And) else "Or"
            return Value(b.op(op, [self._bool(node.this), self._bool(node.expression)]), "bool")
        if isinstance(node, exp.EQ | exp.NEQ | exp.LT | exp.LTE | exp.GT | exp.GTE):
            return self._compare(node)
        if isinstance(node, exp.Coalesce):
            args = [node.this, *node.expressions]
            result = self.compile(args[-1])
            for arg in reversed(args[:-1]):
                value = self.compile(arg)
                result = b.where(b.is_null(value), result, value)
            return result
        if isinstance(node, exp.Greatest | exp.Least):
            op = "Max" if isinstance(node, exp.Greatest) else "Min"
            args = [b.double(self.compile(a)) for a in [node.this, *node.expressions]]
            return Value(b.op(op, args), "double")
        if isinstance(node, exp.Length) and isinstance(node.this, exp.ArrayFilter):
            return self._bucket_count(node.this)
        if isinstance(node, exp.Anonymous) and str(node.name).lower() == "list_position":
            return self._list_position(node)
        if isinstance(node, exp.DPipe):
            return self._bucket_name(node) or onnx_text.concat(self, node)
        onnx_text.refuse(node)
        raise NotConvertible(_short(node))

    @staticmethod
    def _is_array(node: exp.Expression) -> bool:
        """A numeric array: ``CAST(… AS DOUBLE[])``, ``list_transform``, ``[a, b]``."""
        if isinstance(node, exp.Cast):
            to = node.to
            return to is not None and to.this == exp.DataType.Type.ARRAY
        return isinstance(node, exp.Transform | exp.Array)

    def _bool(self, node: exp.Expression) -> str:
        value = self.compile(node)
        if value.kind == "bool":
            return value.name
        if value.kind == "double":  # SQL truthiness of a number: non-zero
            zero = self.b.const(np.array([[0.0]]), "zero")
            return self.b.op("Not", [self.b.op("Equal", [value.name, zero])])
        raise NotConvertible(f"{_short(node)} as a condition")

    def _cast(self, node: exp.Cast) -> Value:
        target = node.to.this.name if node.to is not None else ""
        inner = self.compile(node.this)
        if target in _NUMERIC_CASTS:
            if inner.kind == "string":
                raise NotConvertible(f"{_short(node)}: a STRING cast to a number")
            if not _is_numeric_type(inner.raw_type):
                raise NotConvertible(f"{_short(node)}: a {inner.raw_type} column cast to a number")
            if inner.kind == "bool":
                return Value(self.b.double(inner), "double")
            return Value(inner.name, inner.kind, inner.domain)
        if target in _TEXT_CASTS and inner.kind in ("string", "null"):
            return inner
        if target in _TEXT_CASTS and inner.kind in ("double", "bool"):
            return onnx_text.cast_to_text(self, node, inner)
        onnx_text.refuse(node)
        raise NotConvertible(_short(node))

    def _arithmetic(self, node: exp.Expression) -> Value:
        left, right = self.compile(node.this), self.compile(node.expression)
        ops: dict[type, str] = {exp.Add: "Add", exp.Sub: "Sub", exp.Mul: "Mul", exp.Div: "Div"}
        op = ops[type(node)]
        domain = None
        if op == "Add" and (left.domain is not None) != (right.domain is not None):
            # 1 + <bucket count>: keep track of the integers it can take
            known = left if left.domain is not None else right
            other = right if known is left else left
            shift = self._constant(node.expression if known is left else node.this)
            if other.kind == "double" and isinstance(shift, int | float | decimal.Decimal):
                domain = tuple(int(d + shift) for d in known.domain or ())
        return Value(self.b.op(op, [self.b.double(left), self.b.double(right)]), "double", domain)

    def _case(self, node: exp.Case) -> Value:
        default = node.args.get("default")
        result = self.compile(default) if default is not None else Value("", "null")
        if result.kind == "null":
            result = Value(self.b.const(np.array([[np.nan]]), "nan"), "null")
        for branch in reversed(node.args.get("ifs") or []):
            cond = self._bool(branch.this)
            result = self.b.where(cond, self.compile(branch.args["true"]), result)
        return result

    def _compare(self, node: exp.Expression) -> Value:
        b = self.b
        left, right = self.compile(node.this), self.compile(node.expression)
        if "string" in (left.kind, right.kind):
            return self._compare_strings(node, left, right)
        x, y = b.double(left), b.double(right)
        if isinstance(node, exp.NEQ):
            return Value(b.op("Not", [b.op("Equal", [x, y])]), "bool")
        ops: dict[type, str] = {
            exp.EQ: "Equal",
            exp.LT: "Less",
            exp.LTE: "LessOrEqual",
            exp.GT: "Greater",
            exp.GTE: "GreaterOrEqual",
        }
        return Value(b.op(ops[type(node)], [x, y]), "bool")

    def _compare_strings(self, node: exp.Expression, left: Value, right: Value) -> Value:
        if not isinstance(node, exp.EQ | exp.NEQ):
            raise NotConvertible(f"{_short(node)}: STRING ordering")
        constant = node.expression if not self._has_columns(node.expression) else node.this
        column = left if constant is node.expression else right
        if self._has_columns(constant) or column.kind != "string":
            raise NotConvertible(f"{_short(node)}: STRING comparison of two columns")
        text = self._constant(constant)
        hit = self.b.op(
            "LabelEncoder",
            [column.name],
            domain=ML_DOMAIN,
            keys_strings=[str(text)],
            values_int64s=[1],
            default_int64=0,
        )
        equal = self.b.op("Cast", [hit], to=self.b.tp.BOOL)
        if isinstance(node, exp.NEQ):
            equal = self.b.op("Not", [equal])
        return Value(equal, "bool")

    def _const_list(self, node: exp.Expression) -> list[Any]:
        if self._has_columns(node):
            raise NotConvertible(f"{_short(node)}: a list built from columns")
        values = self._constant(node)
        if not isinstance(values, list):
            raise NotConvertible(f"{_short(node)}: expected a list")
        return values

    def _bucket_count(self, node: exp.ArrayFilter) -> Value:
        """``len(list_filter(bounds, lambda b: b <= x))``: how many boundaries are ≤ x."""
        bounds = self._const_list(node.this)
        body = node.expression.this if isinstance(node.expression, exp.Lambda) else None
        if not isinstance(body, exp.LTE | exp.LT) or not isinstance(body.this, exp.Identifier):
            raise NotConvertible(_short(node))
        x = self.b.double(self.compile(body.expression))
        if not bounds:
            return Value(self.b.const(np.array([[0.0]]), "zero"), "double", (0,))
        row = self.b.const(np.array([bounds], dtype=np.float64), "bounds")
        op = "LessOrEqual" if isinstance(body, exp.LTE) else "Less"
        hits = self.b.op("Cast", [self.b.op(op, [row, x])], to=self.b.tp.DOUBLE)
        axes = self.b.const(np.array([1], dtype=np.int64), "axes")
        count = self.b.op("ReduceSum", [hits, axes], keepdims=1)
        return Value(count, "double", tuple(range(len(bounds) + 1)))

    def _list_position(self, node: exp.Anonymous) -> Value:
        """``list_position(vocabulary, x)``: the 1-based position of x, NULL when absent."""
        vocabulary, needle = node.expressions
        values = self._const_list(vocabulary)
        x = self.compile(needle)
        b = self.b
        if x.kind == "string":
            if _NULL_STRING in values:
                raise NotConvertible("a vocabulary holding '' (ONNX inputs use '' for NULL)")
            code = b.op(
                "LabelEncoder",
                [x.name],
                domain=ML_DOMAIN,
                keys_strings=[str(v) for v in values],
                values_int64s=list(range(1, len(values) + 1)),
                default_int64=0,
            )
            position = b.op("Cast", [code], to=b.tp.DOUBLE)
        else:
            row = b.const(np.array([values], dtype=np.float64), "vocab")
            hits = b.op("Cast", [b.op("Equal", [b.double(x), row])], to=b.tp.DOUBLE)
            ranks = b.const(np.arange(1, len(values) + 1, dtype=np.float64).reshape(-1, 1))
            position = b.op("MatMul", [hits, ranks])
        zero = b.const(np.array([[0.0]]), "zero")
        absent = b.op("Equal", [position, zero])
        return b.where(absent, Value("", "null"), Value(position, "double"))

    def _bucket_name(self, node: exp.DPipe) -> Value | None:
        """``'bin_' || CAST(<bucket number> AS VARCHAR)``: a bucket's name, via one lookup
        (None for other concatenations)."""
        prefix = node.this
        number = node.expression
        if self._has_columns(prefix) or not isinstance(number, exp.Cast):
            return None
        if not isinstance(number.this, exp.Paren | exp.Add | exp.Length):
            return None
        value = self.compile(number.this)
        if value.domain is None:
            return None
        text = str(self._constant(prefix))
        as_int = self.b.op("Cast", [self.b.op("Round", [value.name])], to=self.b.tp.INT64)
        name = self.b.op(
            "LabelEncoder",
            [as_int],
            domain=ML_DOMAIN,
            keys_int64s=list(value.domain),
            values_strings=[f"{text}{d}" for d in value.domain],
            default_string=_NULL_STRING,
        )
        return Value(name, "string")


def _top(sql: str) -> exp.Expression:
    node: Any = sqlglot.parse_one(sql, read="duckdb")
    while isinstance(node, exp.Paren):
        node = node.this
    assert isinstance(node, exp.Expression)
    return node


def _blocking_functions(column: dict[str, Any]) -> str:
    source = column.get("source") or ""
    names = list(dict.fromkeys(re.findall(r"\bML\.([A-Z_]+)", source.upper())))
    return ", ".join(f"ML.{n}" for n in names)


def _transform_values(
    b: _Builder, transform: dict[str, Any], needed: set[str], raw: dict[str, Value]
) -> dict[str, Value]:
    """The TRANSFORM outputs the model reads (expanded as it was trained), by name."""
    from shipyard.errors import Unsupported

    compiler = SqlToOnnx(b, raw)
    out: dict[str, Value] = {}
    for column in transform["columns"]:
        name, spec = column["name"], column.get("expand") or {}
        try:
            if "fields" in spec:
                wanted = [f for f in spec["fields"] if f"{name}_{f}" in needed]
                if not wanted:
                    continue
                top = _top(column["sql"])
                if not isinstance(top, exp.Struct):
                    raise NotConvertible(_short(top))
                fields = {e.this.name: e.expression for e in top.expressions}
                for f in wanted:
                    out[f"{name}_{f}"] = compiler.compile(fields[f])
            elif "size" in spec:
                wanted_ids = [i for i in range(int(spec["size"])) if f"{name}_{i}" in needed]
                if not wanted_ids:
                    continue
                top = _top(column["sql"])
                if isinstance(top, exp.Array):
                    out.update(_sparse(b, compiler, name, top, wanted_ids))
                else:  # ML.BAG_OF_WORDS, ML.TF_IDF, ML.MULTI_HOT_ENCODER
                    size = int(spec["size"])
                    out.update(onnx_text.sparse_columns(compiler, name, top, size, wanted_ids))
            elif name in needed:
                out[name] = compiler.compile(_top(column["sql"]))
        except NotConvertible as exc:
            functions = _blocking_functions(column)
            what = f"TRANSFORM output {name!r}" + (f" ({functions})" if functions else "")
            reason = f"{exc}: {exc.why}" if exc.why else f"{exc} has no ONNX form here"
            raise Unsupported(
                f"the {what} does not convert to ONNX: {reason}; "
                "EXPORT MODEL … OPTIONS(format='NATIVE') (the default) still writes the model "
                "with its TRANSFORM, which Shipyard applies wherever the model predicts",
                column=name,
            ) from None
    return out


def _sparse(
    b: _Builder, compiler: SqlToOnnx, name: str, top: exp.Expression, ids: list[int]
) -> dict[str, Value]:
    """An ``ARRAY<STRUCT<index, value>>`` of fixed entries → one column per index."""
    if not isinstance(top, exp.Array) or not all(
        isinstance(e, exp.Struct) for e in top.expressions
    ):
        raise NotConvertible(_short(top))
    entries = []
    for struct in top.expressions:
        fields = {e.this.name: e.expression for e in struct.expressions}
        if set(fields) != {"index", "value"}:
            raise NotConvertible(_short(struct))
        index = b.double(compiler.compile(fields["index"]))
        value = b.double(compiler.compile(fields["value"]))
        entries.append((index, value))
    zero = b.const(np.array([[0.0]]), "zero")
    out = {}
    for i in ids:
        target = b.const(np.array([[float(i)]]), "index")
        parts = [b.op("Where", [b.op("Equal", [idx, target]), val, zero]) for idx, val in entries]
        total = parts[0] if len(parts) == 1 else b.op("Sum", parts)
        out[f"{name}_{i}"] = Value(total, "double")
    return out


# --------------------------------------------------------------------------------------------
# FeaturePreprocessor → ONNX


def _numeric(b: _Builder, spec: dict[str, Any], value: Value) -> str:
    x = b.double(value)
    if spec.get("impute") is not None:
        missing = b.op("Or", [b.op("IsNaN", [x]), b.op("IsInf", [x])])
        x = b.op("Where", [missing, b.const(np.array([[float(spec["impute"])]]), "impute"), x])
    center, scale = float(spec["center"]), float(spec["scale"])
    if center != 0.0 or scale != 1.0:  # (x - center) * (1 / scale), as Shipyard computes it
        x = b.op("Sub", [x, b.const(np.array([[center]]), "center")])
        x = b.op("Mul", [x, b.const(np.array([[1.0 / scale]]), "inv_scale")])
    return x


def _categorical(b: _Builder, spec: dict[str, Any], value: Value) -> str:
    name, kind, encoding = spec["name"], spec["kind"], spec["encoding"]
    categories = list(spec["categories"])
    k = len(categories)
    if kind == "string":
        if value.kind != "string":
            raise NotConvertible(f"the STRING feature {name!r} computed as a number")
        if _NULL_STRING in categories:
            raise NotConvertible(
                f"the feature {name!r}, whose training data has '' as a category (ONNX string "
                "inputs use '' for NULL)"
            )
        code = b.op(
            "LabelEncoder",
            [value.name],
            domain=ML_DOMAIN,
            keys_strings=[*[str(c) for c in categories], _NULL_STRING],
            values_int64s=[*range(k), -2],
            default_int64=-1,
        )
        row = b.const(np.arange(k, dtype=np.int64).reshape(1, -1), "codes")
        onehot = b.op("Cast", [b.op("Equal", [code, row])], to=b.tp.DOUBLE)
        null = b.op(
            "Cast",
            [b.op("Equal", [code, b.const(np.array([[-2]], dtype=np.int64))])],
            to=b.tp.DOUBLE,
        )
    else:  # bool, date, time: numeric codes
        x = b.double(value)
        row = b.const(np.array([[float(c) for c in categories]], dtype=np.float64), "cats")
        onehot = b.op("Cast", [b.op("Equal", [x, row])], to=b.tp.DOUBLE)
        null = b.op("Cast", [b.op("IsNaN", [x])], to=b.tp.DOUBLE)
    if encoding == "target":  # the category's row, NULL's, or the prior for unseen values
        target = spec["target"]
        values = np.asarray(target["values"], dtype=np.float64).reshape(k, -1)
        prior = np.asarray(target["prior"], dtype=np.float64).reshape(1, -1)
        null_row = (
            prior if target.get("null") is None else np.asarray(target["null"]).reshape(1, -1)
        )
        seen = b.op("MatMul", [onehot, b.const(np.ones((k, 1)), "ones")])
        one = b.const(np.array([[1.0]]), "one")
        unseen = b.op("Sub", [b.op("Sub", [one, seen]), null])
        known = b.op("MatMul", [onehot, b.const(values, "target")])
        nulls = b.op("MatMul", [null, b.const(null_row, "target_null")])
        others = b.op("MatMul", [unseen, b.const(prior, "target_prior")])
        return b.op("Add", [b.op("Add", [known, nulls]), others])
    if encoding == "label":
        ranks = b.const(np.arange(1, k + 1, dtype=np.float64).reshape(-1, 1), "ranks")
        rank = b.op("MatMul", [onehot, ranks])
        zero = b.const(np.array([[0.0]]), "zero")
        nan = b.const(np.array([[np.nan]]), "nan")
        return b.op("Where", [b.op("Equal", [rank, zero]), nan, rank])
    pieces = []
    dropped = 1 if encoding == "dummy" and k else 0
    if k - dropped > 0:
        if dropped:
            starts = b.const(np.array([1], dtype=np.int64), "start")
            ends = b.const(np.array([k], dtype=np.int64), "end")
            axes = b.const(np.array([1], dtype=np.int64), "axis")
            onehot = b.op("Slice", [onehot, starts, ends, axes])
        pieces.append(onehot)
    if spec.get("null_category"):
        pieces.append(null)
    if not pieces:
        raise NotConvertible(f"the feature {name!r}, which encodes to no column")
    return pieces[0] if len(pieces) == 1 else b.op("Concat", pieces, axis=1)


def preprocessing_graph(
    preprocessing: dict[str, Any],
    transform: dict[str, Any] | None,
    *,
    double: bool,
    opsets: dict[str, int],
) -> Any:
    """The ONNX model: raw columns (one input each) → ``features`` ``[batch, width]``.

    ``preprocessing``: a FeaturePreprocessor's ``to_dict()``; ``transform``: a SqlTransform's
    (or None); ``double``: DOUBLE features, else FLOAT (tree models); ``opsets``: the opset
    imports to declare (those of the model graph it is joined to).
    """
    from onnx import helper

    b = _Builder()
    specs = preprocessing.get("columns") or []
    # A timestamp's calendar components (LINEAR_REG / LOGISTIC_REG) are computed from it.
    inputs = [s for s in specs if s.get("source") is None]
    odd = [s["name"] for s in inputs if s["kind"] in ("bytes", "string_array")]
    if odd:  # automatic preprocessing's BYTES one-hot and ARRAY<STRING> multi-hot
        raise NotConvertible(
            f"the BYTES or ARRAY<STRING> feature {odd[0]!r} (the graph's inputs are numbers and "
            "strings)"
        )
    if transform:
        raw = {
            c["name"]: Value(
                **{**vars(b.input(c["name"], _raw_kind(c["type"]))), "raw_type": c["type"]}
            )
            for c in _feature_inputs(transform)
        }
        values = _transform_values(b, transform, {s["name"] for s in inputs}, raw)
    else:
        values = {
            s["name"]: b.input(s["name"], "string" if s["kind"] == "string" else "double")
            for s in inputs
        }
    calendars: dict[str, dict[str, str]] = {}
    pieces = []
    for spec in specs:
        if feature_width(spec) == 0:  # DUMMY_ENCODING of one category (and no NULL)
            continue
        source = spec.get("source")
        if source is not None:
            if source not in calendars and source in values:
                calendars[source] = onnx_calendar.timestamp_parts(b, b.double(values[source]))
            part = calendars.get(source, {}).get(spec.get("part", ""))
            if part is None:
                raise NotConvertible(f"the timestamp component {spec['name']!r}")
            pieces.append(_categorical(b, spec, Value(part, "double")))
            continue
        value = values.get(spec["name"])
        if value is None:
            raise NotConvertible(f"the feature {spec['name']!r}, which the TRANSFORM does not make")
        if spec["kind"] in ("numeric", "timestamp"):
            pieces.append(_numeric(b, spec, value))
        else:
            pieces.append(_categorical(b, spec, value))
    if not pieces:
        raise NotConvertible("a model whose features encode to no column")
    out = pieces[0] if len(pieces) == 1 else b.op("Concat", pieces, axis=1)
    if not double:
        out = b.op("Cast", [out], to=b.tp.FLOAT)
    b.nodes.append(helper.make_node("Identity", [out], ["features"]))
    b.nodes = _reachable(b.nodes, "features")  # attempts that were given up leave nodes behind
    used = {name for node in b.nodes for name in node.input}
    b.initializers = [i for i in b.initializers if i.name in used]  # constants left unused
    opsets = {**opsets, "": max(opsets.get("", 0), b.opset)}
    width = sum(feature_width(s) for s in specs)
    graph = helper.make_graph(
        b.nodes,
        "shipyard_preprocessing",
        b.inputs,
        [
            helper.make_tensor_value_info(
                "features", b.tp.DOUBLE if double else b.tp.FLOAT, [None, width]
            )
        ],
        initializer=b.initializers,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()]
    )


def _reachable(nodes: list[Any], output: str) -> list[Any]:
    """The nodes ``output`` depends on, in their order."""
    needed, keep = {output}, []
    for node in reversed(nodes):
        if needed & set(node.output):
            keep.append(node)
            needed |= set(node.input)
    return keep[::-1]


def _feature_inputs(transform: dict[str, Any]) -> list[dict[str, str]]:
    label = transform.get("label")
    needed = {i for c in transform["columns"] if c["name"] != label for i in c["inputs"]}
    return [c for c in transform["input_schema"] if c["name"] in needed]


def feature_width(spec: dict[str, Any]) -> int:
    """How many feature columns one FeaturePreprocessor column spec becomes."""
    if spec["kind"] in ("numeric", "timestamp") or spec.get("encoding") == "label":
        return 1
    if spec.get("encoding") == "target":
        return len(spec["target"]["prior"])
    k = len(spec["categories"])
    dropped = 1 if spec.get("encoding") == "dummy" and k else 0
    return k - dropped + (1 if spec.get("null_category") else 0)
