"""``CREATE MODEL … TRANSFORM(…)``: fit the clause on the training data, and ``ML.TRANSFORM``.

Fitting evaluates each TRANSFORM output over the training query's rows in DuckDB. Every analytic
preprocessing function (``ML.STANDARD_SCALER(x) OVER ()`` …) has its statistics computed once,
by an aggregate query, and written into the output's SQL as constants; scalar functions and
plain expressions are kept as they are. The result (one DuckDB expression per output column, the
raw input columns and their types) is stored in the model package and applied unchanged by
:class:`~shipyard.registry.transform.SqlTransform` wherever the model predicts. The model trains
on the TRANSFORM's output only; query columns the TRANSFORM does not name are not features.

Statistics are computed on all rows of the training query (BigQuery ML computes them during
training; its reference does not say whether over the training split only). ``*`` and
``* EXCEPT (…)`` pass the query's columns through.

The model sees a STRUCT output (``ML.POLYNOMIAL_EXPAND``, ``ML.FEATURE_CROSS``) as one column
per field, ``<name>_<field>``, and a sparse ``ARRAY<STRUCT<index, value>>`` output
(``ML.ONE_HOT_ENCODER``, ``ML.MULTI_HOT_ENCODER``, ``ML.BAG_OF_WORDS``, ``ML.TF_IDF``) as one
column per index, ``<name>_0`` (the unknown value) … ``<name>_<n>``; ML.TRANSFORM returns the
outputs as declared. Other ARRAY outputs (``ML.NGRAMS``, ``ML.NORMALIZER``) are not features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from shipyard.errors import InvalidArgument, ShipyardError, SQLError
from shipyard.registry.predictor import Predictor
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.registry.transform import SqlTransform
from shipyard.sql.preprocessing_functions import sql_literal
from shipyard.sql.preprocessing_rewrite import Rewriter
from shipyard.warehouse import fetch_arrow
from shipyard.warehouse.functions import connect

if TYPE_CHECKING:
    from shipyard.sql.functions import MLCall
    from shipyard.sql.service import SqlService

__all__ = [
    "attach_transform",
    "fit_transform",
    "ml_transform",
    "pop_transform",
    "raw_feature_info",
]

_TRAINING = "__shipyard_training"
_MAX_SPARSE_WIDTH = 5_000


def pop_transform(statement: exp.Create) -> exp.TransformModelProperty | None:
    """Take the TRANSFORM clause out of a CREATE MODEL's properties (it is not an option)."""
    properties = statement.args.get("properties")
    if properties is None:
        return None
    found = [p for p in properties.expressions if isinstance(p, exp.TransformModelProperty)]
    for prop in found:
        prop.pop()
    if len(found) > 1:
        raise SQLError("CREATE MODEL takes one TRANSFORM clause, got several")
    return found[0] if found else None


def _projections(clause: exp.TransformModelProperty, data: pa.Table) -> list[exp.Expression]:
    """The clause's expressions with ``*`` / ``* EXCEPT (…)`` spelt out as query columns."""
    out: list[exp.Expression] = []
    for item in clause.expressions:
        star = item if isinstance(item, exp.Star) else None
        if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            star = item.this
        if star is None:
            out.append(item)
            continue
        listed = star.args.get("except_") or star.args.get("except") or star.args.get("exclude")
        excluded = {e.name for e in listed or []}
        unknown = excluded - set(data.column_names)
        if unknown:
            raise SQLError(
                f"TRANSFORM * EXCEPT names column(s) {', '.join(sorted(unknown))} that the "
                f"training query does not have; its columns: {', '.join(data.column_names)}"
            )
        out.extend(exp.column(c, quoted=True) for c in data.column_names if c not in excluded)
    return out


def fit_transform(
    clause: exp.TransformModelProperty, data: pa.Table
) -> tuple[SqlTransform, pa.Table]:
    """Fit the TRANSFORM on the training rows: the stored transform and the transformed rows."""
    cur = connect()  # with FARM_FINGERPRINT, which ML.HASH_BUCKETIZE calls
    try:
        cur.register(_TRAINING, data)
        columns: list[dict[str, Any]] = []
        used: list[str] = []
        for projection in _projections(clause, data):
            name = projection.alias_or_name
            body = projection.this if isinstance(projection, exp.Alias) else projection
            if not name or (not isinstance(projection, exp.Alias | exp.Column)):
                raise SQLError(
                    "every TRANSFORM expression needs a name: "
                    f"{projection.sql(dialect='bigquery')} AS name"
                )
            if name in [c["name"] for c in columns]:
                raise SQLError(f"TRANSFORM outputs the column {name!r} twice")
            inputs = list(dict.fromkeys(c.name for c in body.find_all(exp.Column)))
            missing = [i for i in inputs if i not in data.column_names]
            if missing:
                raise SQLError(
                    f"TRANSFORM column {name!r} reads {', '.join(missing)}, which the training "
                    f"query does not return; its columns: {', '.join(data.column_names)}",
                    highlight=missing[0],
                )
            columns.append(
                {
                    "name": name,
                    "sql": _fitted_sql(cur, body),
                    "inputs": inputs,
                    # the clause's own text: what EXPORT MODEL names when it cannot convert it
                    "source": body.sql(dialect="bigquery"),
                }
            )
            used.extend(i for i in inputs if i not in used)
        schema = [{"name": n, "type": str(data.schema.field(n).type)} for n in used]
        fitted = SqlTransform(columns, schema)
        _plan_expansion(fitted, fitted.apply(data, expand=False))
        return fitted, fitted.apply(data)
    finally:
        cur.close()


def _plan_expansion(fitted: SqlTransform, outputs: pa.Table) -> None:
    """STRUCT outputs → a column per field; sparse ARRAY<STRUCT<index, value>> outputs → a
    column per index seen in training (0, the unknown value, included): what the model uses."""
    names = set(outputs.column_names)
    for column in fitted.columns:
        dtype = outputs.schema.field(column["name"]).type
        if pa.types.is_struct(dtype):
            fields = [dtype.field(i).name for i in range(dtype.num_fields)]
            column["expand"] = {"fields": fields}
            new = [f"{column['name']}_{f}" for f in fields]
        elif _is_sparse(dtype):
            entries = pc.list_flatten(outputs[column["name"]])
            top = pc.max(pc.struct_field(entries, "index")).as_py() if len(entries) else None
            size = 1 if top is None else int(top) + 1
            if size > _MAX_SPARSE_WIDTH:
                raise SQLError(
                    f"TRANSFORM output {column['name']!r} has {size} indexes; a sparse output "
                    f"becomes one feature per index, at most {_MAX_SPARSE_WIDTH}: lower its top_k"
                )
            column["expand"] = {"size": size}
            new = [f"{column['name']}_{i}" for i in range(size)]
        else:
            continue
        clash = names & set(new)
        if clash:
            raise SQLError(
                f"TRANSFORM output {column['name']!r} expands into {', '.join(sorted(clash))}, "
                "which another output already names; rename one of them"
            )
        names |= set(new)


def _is_sparse(dtype: pa.DataType) -> bool:
    if not pa.types.is_list(dtype) or not pa.types.is_struct(dtype.value_type):
        return False
    struct = dtype.value_type
    return [struct.field(i).name for i in range(struct.num_fields)] == ["index", "value"]


def _fitted_sql(cur: duckdb.DuckDBPyConnection, body: exp.Expression) -> str:
    """DuckDB SQL for one TRANSFORM expression, its statistics computed on the training rows."""

    def fit(function: str, stats: dict[str, str]) -> dict[str, str]:
        names = list(stats)
        sql = ", ".join(f"{stats[k]} AS s{i}" for i, k in enumerate(names))
        row = fetch_arrow(cur, f"SELECT {sql} FROM {_TRAINING}").to_pylist()[0]
        return {k: sql_literal(row[f"s{i}"]) for i, k in enumerate(names)}

    def type_of(sql: str) -> str | None:
        """DuckDB's type of an argument over the training rows (None when there are none)."""
        rows = fetch_arrow(cur, f"SELECT typeof({sql}) AS t FROM {_TRAINING} LIMIT 1")
        return rows.column(0)[0].as_py() if rows.num_rows else None

    holder = exp.select(body.copy())  # a parent, so that a call at the top can be replaced
    rewriter = Rewriter(fit, type_of)
    rewriter.rewrite(holder)
    return rewriter.render_sql(holder.expressions[0].sql(dialect="duckdb"))


def ml_transform(service: SqlService, call: MLCall) -> pa.Table:
    """ML.TRANSFORM(MODEL m, TABLE t): the model's TRANSFORM outputs for new rows."""
    call.check_params({})
    rows = call.require_input()
    predictor = service.models.load(call.model)
    fitted = getattr(predictor.preprocessor, "sql_transform", None)
    if fitted is None:
        raise InvalidArgument(
            f"model {call.model} was trained without a TRANSFORM clause; ML.TRANSFORM needs a "
            "model created with CREATE MODEL … TRANSFORM(…)",
            resource=f"models/{call.model}",
        )
    out: pa.Table = fitted.apply(rows, expand=False)  # as declared, as BigQuery ML shows it
    return out


def raw_feature_info(
    raw: pa.Table, fitted: SqlTransform, trained: FeaturePreprocessor
) -> list[dict[str, Any]]:
    """ML.FEATURE_INFO of a model trained with TRANSFORM: BigQuery ML describes the query's
    pre-transform columns — here those the feature outputs read (the model's raw inputs; call
    after :func:`attach_transform`, which names the label). Raw columns the preprocessing cannot
    describe (ARRAY, STRUCT, BYTES) leave the transformed features' statistics in place."""
    needed = {c["name"] for c in fitted.feature_inputs}
    names = [name for name in raw.column_names if name in needed]  # the query's order
    try:
        described = FeaturePreprocessor.fit(raw, names, standardize=False)
    except ShipyardError:
        return trained.feature_info()
    return described.feature_info()


def attach_transform(predictor: Predictor, fitted: SqlTransform, label: str | None) -> Predictor:
    """The trained predictor, taking raw rows through the fitted TRANSFORM first."""
    fitted.label = label
    data = predictor.to_dict()
    data["config"] = {**predictor.config, "transform": fitted.to_dict()}
    return Predictor.from_dict(data, predictor.model)
