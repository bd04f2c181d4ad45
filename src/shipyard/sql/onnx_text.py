"""Text in EXPORT MODEL's ONNX graph: token lists, ML.NGRAMS, ML.BAG_OF_WORDS, ML.TF_IDF,
ML.MULTI_HOT_ENCODER and the string concatenation of ML.FEATURE_CROSS.

A fitted TRANSFORM stores these functions as DuckDB list SQL with the vocabulary (and, for
ML.TF_IDF, the document frequencies) written in as constants (see
:mod:`shipyard.sql.preprocessing_functions`). This module recognises that SQL and builds the same
computation from standard ONNX operators (default domain, opset 20, and ``ai.onnx.ml``):

* a token list is two ``[batch, L]`` tensors: the tokens (STRING) and which positions hold one
  (BOOL, a prefix of each row). ``SPLIT(text, delimiter)`` is ``StringSplit`` (the same pieces as
  DuckDB's ``string_split`` for a non-empty delimiter); a raw ``ARRAY<STRING>`` column is an input
  ``[batch, n]`` whose rows are padded at the end with ''; ``[a, b]`` of STRING columns has a
  token per element ('' for a NULL one, which the lookup sends to index 0 as DuckDB does, so a
  vocabulary holding '' is refused there); a NULL list has no tokens (the functions give NULL
  and an empty list the same features);
* ML.NGRAMS joins shifted slices of the tokens with ``StringConcat``;
* ML.BAG_OF_WORDS / ML.TF_IDF / ML.MULTI_HOT_ENCODER map tokens to vocabulary indexes
  (``LabelEncoder``, 0 for an unknown term) and count them per row with
  ``ScatterElements(reduction='add')``; ML.TF_IDF divides by the row's token count and multiplies
  by each index's IDF, which DuckDB computes from the stored expression, so the values are
  bit-for-bit those of ML.PREDICT;
* ``a || b`` of STRING values is ``StringConcat`` (NULL if a part is NULL); ``CAST(x AS
  STRING)`` converts integers and BOOLs (ONNX's Cast prints them as DuckDB does) — not FLOAT64s,
  whose shortest round-trip digits ONNX's Cast does not print.

What has no standard ONNX form raises :class:`NotConvertible` with the reason (the
``FARM_FINGERPRINT`` behind ML.HASH_BUCKETIZE; ``LOWER``/``UPPER``, whose ONNX
StringNormalizer depends on the runtime's locale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlglot import exp

from shipyard.sql.onnx_ops import ML_DOMAIN, NULL_STRING, Builder, NotConvertible, Value, short

__all__ = [
    "TEXT_OPSET",
    "Compiler",
    "Tokens",
    "cast_to_text",
    "concat",
    "refuse",
    "sparse_columns",
    "tokens",
]

#: Default-domain opset of StringSplit, StringConcat and string Equal.
TEXT_OPSET = 20
_INT64_MAX = np.iinfo(np.int64).max
_INTEGER_TYPES = ("int", "uint")


class Compiler(Protocol):
    """What this module needs of :class:`shipyard.sql.onnx_graph.SqlToOnnx`."""

    b: Builder

    def compile(self, node: exp.Expression) -> Value: ...

    def constant(self, node: exp.Expression) -> Any: ...

    def has_columns(self, node: exp.Expression) -> bool: ...


@dataclass
class Tokens:
    """A list per row: ``tokens`` ``[batch, L]`` STRING, ``valid`` ``[batch, L]`` BOOL (the
    positions that hold a token: a prefix of each row)."""

    tokens: str
    valid: str
    #: built from STRING values, whose '' stands for a NULL element (``[a, b]``)
    nullable: bool = False


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_text_array(node: exp.Cast) -> bool:
    to = node.to
    if to is None or to.this != exp.DataType.Type.ARRAY or len(to.expressions) != 1:
        return False
    inner = to.expressions[0]
    return isinstance(inner, exp.DataType) and inner.this in (
        exp.DataType.Type.TEXT,
        exp.DataType.Type.VARCHAR,
    )


# -- token lists -------------------------------------------------------------------------------


def tokens(c: Compiler, node: exp.Expression) -> Tokens:
    """The token list an ``ARRAY<STRING>`` expression gives."""
    node = _unparen(node)
    if isinstance(node, exp.Cast) and _is_text_array(node):
        return tokens(c, node.this)
    if isinstance(node, exp.Split):
        return _split(c, node)
    if isinstance(node, exp.Column):
        value = c.compile(node)
        if value.kind != "list":
            raise NotConvertible(f"{short(node)}: a {value.raw_type or value.kind} used as a list")
        return _padded(c.b, value)
    if isinstance(node, exp.Case):
        return _ngrams(c, node)
    if isinstance(node, exp.Array) and c.has_columns(node):
        return _array(c, node)
    raise NotConvertible(f"{short(node)}: an ARRAY<STRING> built this way")


def _array(c: Compiler, node: exp.Array) -> Tokens:
    """``[a, b, 'x']``: one token per element, every row as long (a NULL element is one)."""
    b = c.b
    values = [c.compile(e) for e in node.expressions]
    column = next((v for v in values if v.kind == "string"), None)
    if column is None or any(v.kind not in ("string", "null") for v in values):
        raise NotConvertible(f"{short(node)}: an ARRAY of non-STRING values")
    shape = b.op("Shape", [column.name])
    # constants are [1, 1]: Expand makes every element [batch, 1]
    items = [
        b.op("Expand", [b.null_like("string").name if v.kind == "null" else v.name, shape])
        for v in values
    ]
    words = b.op("Concat", items, axis=1)
    every = b.op("Expand", [b.const(np.array([[True]]), "true"), b.op("Shape", [words])])
    return Tokens(words, every, nullable=True)


def _positions(b: Builder, tensor: str, start: int) -> str:
    """``[1, L]`` INT64 ``start, start + 1, …`` for a ``[batch, L]`` tensor."""
    length = b.op("Squeeze", [b.op("Shape", [tensor], start=1, end=2)])
    first = b.const(np.array(start, dtype=np.int64), "start")
    one = b.const(np.array(1, dtype=np.int64), "one")
    last = b.op("Add", [length, first])
    return b.op("Unsqueeze", [b.op("Range", [first, last, one]), b.ints(0)])


def _split(c: Compiler, node: exp.Split) -> Tokens:
    b = c.b
    delimiter = node.args.get("expression")
    if delimiter is None or c.has_columns(delimiter):
        raise NotConvertible(f"{short(node)}: a SPLIT without a constant delimiter")
    sep = c.constant(delimiter)
    if not isinstance(sep, str) or sep == "":
        raise NotConvertible(
            f"{short(node)}: SPLIT by {sep!r}",
            "ONNX's StringSplit splits on whitespace runs where DuckDB splits into characters "
            "(an empty delimiter), so the tokens would differ",
        )
    text = c.compile(node.this)
    if text.kind != "string":
        raise NotConvertible(f"{short(node)}: SPLIT of a {text.kind}")
    b.need_opset(TEXT_OPSET)
    pieces, counts = b.ops("StringSplit", [text.name], 2, delimiter=sep)
    words = b.op("Squeeze", [pieces, b.ints(1)])  # [batch, 1, L] → [batch, L]
    none = b.const(np.array([[0]], dtype=np.int64), "zero")
    counts = b.op("Where", [b.is_null(text), none, counts])  # '' is NULL: no tokens
    valid = b.op("Less", [_positions(b, words, 0), counts])
    return Tokens(words, valid)


def _padded(b: Builder, value: Value) -> Tokens:
    """An ``ARRAY<STRING>`` input: each row's tokens run up to its last non-'' entry."""
    b.need_opset(TEXT_OPSET)
    empty = b.const(np.array([[NULL_STRING]], dtype=object), "empty")
    filled = b.op("Not", [b.op("Equal", [value.name, empty])])
    ranks = _positions(b, value.name, 1)
    zero = b.const(np.array([[0]], dtype=np.int64), "zero")
    last = b.op("ReduceMax", [b.op("Where", [filled, ranks, zero]), b.ints(1)], keepdims=1)
    return Tokens(value.name, b.op("LessOrEqual", [ranks, last]))


def _ngrams(c: Compiler, node: exp.Case) -> Tokens:
    """``CASE WHEN doc IS NULL THEN NULL ELSE flatten(<n-grams of doc>) END`` (ML.NGRAMS)."""
    ifs = node.args.get("ifs") or []
    default = node.args.get("default")
    joiner = default.find(exp.ArrayToString) if default is not None else None
    sizes = default.find(exp.ArrayFilter) if default is not None else None
    if (
        len(ifs) != 1
        or not isinstance(ifs[0].this, exp.Is)
        or not isinstance(default, exp.Flatten)
        or joiner is None
        or sizes is None
        or c.has_columns(sizes.this)
    ):
        raise NotConvertible(short(node))
    doc = tokens(c, ifs[0].this.this)
    if doc.nullable:  # array_to_string skips a NULL element; '' would be joined
        raise NotConvertible(f"{short(node)}: ML.NGRAMS of an ARRAY built from columns")
    ns = c.constant(sizes.this)
    separator = c.constant(joiner.expression)
    if not isinstance(ns, list) or not ns or not isinstance(separator, str):
        raise NotConvertible(short(node))
    b = c.b
    b.need_opset(TEXT_OPSET)
    sep = b.const(np.array([[separator]], dtype=object), "sep")
    grams, valid = [], []
    for n in range(min(ns), max(ns) + 1):
        # the n-gram at position i joins tokens i … i + n - 1 and exists where token i + n - 1 does
        parts = [
            b.op(
                "Slice",
                [doc.tokens, b.ints(j), b.ints(j - n + 1 if j < n - 1 else _INT64_MAX), b.ints(1)],
            )
            for j in range(n)
        ]
        gram = parts[0]
        for part in parts[1:]:
            gram = b.op("StringConcat", [b.op("StringConcat", [gram, sep]), part])
        grams.append(gram)
        valid.append(b.op("Slice", [doc.valid, b.ints(n - 1), b.ints(_INT64_MAX), b.ints(1)]))
    if len(grams) == 1:
        return Tokens(grams[0], valid[0])
    return Tokens(b.op("Concat", grams, axis=1), b.op("Concat", valid, axis=1))


# -- ML.BAG_OF_WORDS, ML.TF_IDF, ML.MULTI_HOT_ENCODER ------------------------------------------


def _lookup(c: Compiler, top: exp.Expression) -> tuple[exp.Expression, list[Any]]:
    """The document and the vocabulary of ``list_transform(doc, lambda __t: CAST(coalesce(
    list_position(<vocabulary>, __t), 0) AS BIGINT))``, the term → index map every one of the
    three functions starts from."""
    for mapped in top.find_all(exp.Transform):
        body = mapped.expression
        code = _unparen(body.this) if isinstance(body, exp.Lambda) else None
        position = code.this if isinstance(code, exp.Cast) else None
        position = position.this if isinstance(position, exp.Coalesce) else None
        if (
            isinstance(position, exp.Anonymous)
            and str(position.name).lower() == "list_position"
            and len(position.expressions) == 2
            and not c.has_columns(position.expressions[0])
        ):
            vocabulary = c.constant(position.expressions[0])
            if isinstance(vocabulary, list):
                return mapped.this, vocabulary
    raise NotConvertible(short(top))


def _weight(top: exp.Expression) -> exp.Expression:
    """The ``value`` of the ``{'index': __v, 'value': CAST(<weight> AS DOUBLE)}`` entries."""
    lam = top.expression if isinstance(top, exp.Transform) else None
    struct = lam.this if isinstance(lam, exp.Lambda) else None
    if not isinstance(struct, exp.Struct):
        raise NotConvertible(short(top))
    fields = {e.this.name: e.expression for e in struct.expressions if hasattr(e, "expression")}
    value = fields.get("value")
    if value is None or set(fields) != {"index", "value"}:
        raise NotConvertible(short(top))
    return _unparen(value.this if isinstance(value, exp.Cast) else value)


def _idf(c: Compiler, weight: exp.Expression, size: int) -> list[float] | None:
    """ML.TF_IDF's ``(count / len(doc)) * <idf of __v>``: the IDF of each index, from DuckDB."""
    if not isinstance(weight, exp.Mul):
        return None
    ratio = _unparen(weight.this)
    if not (
        isinstance(ratio, exp.Div)
        and isinstance(ratio.this, exp.Length)
        and isinstance(ratio.expression, exp.Length)
    ):
        return None
    # DuckDB evaluates the stored expression for every index, with __v a BIGINT as in ML.PREDICT
    every = exp.Anonymous(
        this="list_transform",
        expressions=[
            exp.Anonymous(
                this="range", expressions=[exp.Literal.number(0), exp.Literal.number(size)]
            ),
            exp.Lambda(this=weight.expression.copy(), expressions=[exp.to_identifier("__v")]),
        ],
    )
    values = c.constant(every)
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        return None
    return [float(v) for v in values]


def sparse_columns(
    c: Compiler, name: str, top: exp.Expression, size: int, ids: list[int]
) -> dict[str, Value]:
    """The model's columns ``name_<i>`` of a BAG_OF_WORDS / TF_IDF / MULTI_HOT_ENCODER output."""
    top = _unparen(top)
    if not isinstance(top, exp.Transform):
        raise NotConvertible(short(top))
    doc_sql, vocabulary = _lookup(c, top)
    width = max(size, len(vocabulary) + 1)  # every index the lookup can give
    weight = _weight(top)
    idf: list[float] | None = None
    if isinstance(top.this, exp.ArrayFilter):  # MULTI_HOT_ENCODER: distinct indexes, value 1.0
        kind = "presence"
        if c.constant(weight) != 1.0:
            raise NotConvertible(short(top))
    elif isinstance(weight, exp.Length):  # BAG_OF_WORDS: the count
        kind = "count"
    else:  # TF_IDF
        kind, idf = "tf_idf", _idf(c, weight, width)
        if idf is None:
            raise NotConvertible(short(top))
    b = c.b
    b.need_opset(TEXT_OPSET)  # ScatterElements' reduction, Shape's start/end
    doc = tokens(c, doc_sql)
    keys = [str(v) for v in vocabulary]  # '' may be a term: padding is masked, not looked up
    if doc.nullable and NULL_STRING in keys:
        raise NotConvertible(
            f"{short(top)}: a vocabulary holding '' over an ARRAY built from columns (ONNX "
            "inputs use '' for NULL)"
        )
    index = b.op(
        "LabelEncoder",
        [doc.tokens],
        domain=ML_DOMAIN,
        keys_strings=keys,
        values_int64s=list(range(1, len(keys) + 1)),
        default_int64=0,
    )
    zero_index = b.const(np.array([[0]], dtype=np.int64), "zero")
    index = b.op("Where", [doc.valid, index, zero_index])
    ones = b.op("Cast", [doc.valid], to=b.tp.DOUBLE)  # padding adds 0 to index 0
    rows = b.op("Shape", [doc.tokens], start=0, end=1)
    shape = b.op("Concat", [rows, b.ints(width)], axis=0)
    zeros = b.op("ConstantOfShape", [shape], value=_tensor(np.array([0.0])))
    counts = b.op("ScatterElements", [zeros, index, ones], axis=1, reduction="add")
    if kind == "presence":
        nothing = b.const(np.array([[0.0]]), "zero")
        values = b.op("Cast", [b.op("Greater", [counts, nothing])], to=b.tp.DOUBLE)
    elif idf is not None:
        axes = b.ints(1)
        length = b.op("ReduceSum", [ones, axes], keepdims=1)
        length = b.op("Max", [length, b.const(np.array([[1.0]]), "one")])  # no tokens: 0 / 1
        tf = b.op("Div", [counts, length])
        values = b.op("Mul", [tf, b.const(np.array([idf], dtype=np.float64), "idf")])
    else:
        values = counts
    out = {}
    for i in ids:
        column = b.op("Slice", [values, b.ints(i), b.ints(i + 1), b.ints(1)])
        out[f"{name}_{i}"] = Value(column, "double")
    return out


def _tensor(array: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(array)


# -- STRING values -----------------------------------------------------------------------------


def concat(c: Compiler, node: exp.DPipe) -> Value:
    """``a || b || …`` of STRING values: NULL when a part is NULL, as in DuckDB."""
    parts: list[exp.Expression] = []
    stack: list[exp.Expression] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, exp.DPipe):
            stack.extend([item.expression, item.this])
        else:
            parts.append(item)
    b = c.b
    b.need_opset(TEXT_OPSET)
    text: str | None = None
    nulls: list[str] = []
    for part in parts:
        if not c.has_columns(part):
            constant = c.constant(part)
            if constant is None:
                return b.null_like("string")
            piece = b.const(np.array([[str(constant)]], dtype=object), "str")
        else:
            value = c.compile(part)
            if value.kind == "null":
                return b.null_like("string")
            if value.kind != "string":
                raise NotConvertible(
                    f"{short(node)}: a {value.kind} concatenated as text (CAST it AS STRING)"
                )
            nulls.append(b.is_null(value))
            piece = value.name
        text = piece if text is None else b.op("StringConcat", [text, piece])
    assert text is not None
    if not nulls:
        return Value(text, "string")
    null = nulls[0]
    for other in nulls[1:]:
        null = b.op("Or", [null, other])
    return b.where(null, Value("", "null"), Value(text, "string"))


def cast_to_text(c: Compiler, node: exp.Cast, inner: Value) -> Value:
    """``CAST(x AS STRING)`` of an integer or BOOL column (or a bucket number)."""
    b = c.b
    raw = (inner.raw_type or "").lower()
    if inner.kind == "bool" or raw == "bool":
        number = b.op("Cast", [_no_nan(b, inner)], to=b.tp.INT64)
        words = b.op(
            "LabelEncoder",
            [number],
            domain=ML_DOMAIN,
            keys_int64s=[0, 1],
            values_strings=["false", "true"],
            default_string=NULL_STRING,
        )
    elif inner.domain is not None or (inner.kind == "double" and raw.startswith(_INTEGER_TYPES)):
        words = b.op("Cast", [b.op("Cast", [_no_nan(b, inner)], to=b.tp.INT64)], to=b.tp.STRING)
    else:
        what = inner.raw_type or "FLOAT64"
        raise NotConvertible(
            f"{short(node)}: a {what} value cast to STRING",
            f"ONNX's Cast does not print a {what} as DuckDB does (a FLOAT64 with its shortest "
            "round-trip digits), so the text would differ; only STRING, integer and BOOL "
            "values convert",
        )
    if inner.kind == "bool":
        return Value(words, "string")
    return b.where(b.is_null(inner), Value("", "null"), Value(words, "string"))


def _no_nan(b: Builder, value: Value) -> str:
    """The value as DOUBLE with NULL (NaN) as 0, safe to cast to an integer."""
    x = b.double(value)
    if value.kind == "bool":
        return x
    return b.op("Where", [b.op("IsNaN", [x]), b.const(np.array([[0.0]]), "zero"), x])


def refuse(node: exp.Expression) -> None:
    """Raise the reason ``node`` (or a part of it) has no ONNX form at all, if it is such."""
    for part in node.walk():
        _refuse(part)


def _refuse(node: exp.Expr) -> None:
    # FARM_FINGERPRINT (ML.HASH_BUCKETIZE's hash), or DuckDB's hash() in TRANSFORMs stored before
    if isinstance(node, exp.FarmFingerprint) or (
        isinstance(node, exp.Anonymous) and str(node.name).lower() == "hash"
    ):
        raise NotConvertible(
            short(node),
            "ML.HASH_BUCKETIZE buckets with a 64-bit hash (FARM_FINGERPRINT), and standard ONNX "
            "has no hash operator, so a value never seen in training cannot be put in its bucket",
        )
    if isinstance(node, exp.Lower | exp.Upper):
        raise NotConvertible(
            short(node),
            "ONNX's StringNormalizer changes case with the runtime's locale (and fails where "
            "en_US.UTF-8 is not installed), so it cannot promise DuckDB's LOWER/UPPER",
        )
