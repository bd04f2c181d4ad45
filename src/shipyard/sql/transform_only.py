"""``CREATE MODEL m TRANSFORM(…) OPTIONS(model_type='TRANSFORM_ONLY') AS <query>``.

A transform-only model is its fitted TRANSFORM clause and nothing else: the clause's statistics
(means, quantiles, vocabularies …) are computed on the query's rows, exactly as for a trained
model's TRANSFORM (:mod:`shipyard.sql.transform`), and stored as the version's only file
(``transform.json``, flavor ``transform``). It has no label and trains nothing:

* ``ML.TRANSFORM(MODEL m, TABLE t)`` returns its outputs for new rows (as declared), so one set
  of preprocessing rules feeds the training query of other models and their ML.PREDICT input;
* ``ML.FEATURE_INFO(MODEL m)`` returns the statistics of its input columns over the query's rows
  (BigQuery ML describes a TRANSFORM's pre-transform columns);
* every other ML function (ML.PREDICT, ML.EVALUATE, ML.EXPLAIN_PREDICT, ML.WEIGHTS …) refuses it
  with InvalidArgument naming those two; so does a Predictor's ``predict`` (an endpoint).

BigQuery ML's rules: the TRANSFORM clause is required, OPTIONS takes ``model_type`` only
(Shipyard also takes ``expiration_timestamp``), and the query's columns are inputs, none a label.

Example::

    CREATE MODEL demo.prep
    TRANSFORM(ML.STANDARD_SCALER(x) OVER () AS x_scaled, ML.LABEL_ENCODER(city) OVER () AS city_id)
    OPTIONS(model_type='TRANSFORM_ONLY')
    AS SELECT x, city FROM demo.t;
    SELECT * FROM ML.TRANSFORM(MODEL demo.prep, TABLE demo.t);
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from shipyard.engine import JobContext
from shipyard.errors import InvalidArgument, SQLError
from shipyard.registry.entities import Lineage
from shipyard.registry.preprocessing import FeaturePreprocessor
from shipyard.registry.service import NewVersion
from shipyard.registry.transform import TRANSFORM_FLAVOR, TRANSFORM_ONLY_TASK
from shipyard.sql.dialect import statement_model_type, table_name
from shipyard.sql.entities import QueryResult
from shipyard.sql.expiration import pop_expiration
from shipyard.sql.refusals import Handler, refusing_handlers
from shipyard.sql.transform import fit_transform, pop_transform
from shipyard.warehouse import QualifiedName

if TYPE_CHECKING:
    from shipyard.sql.service import SqlService

__all__ = [
    "MODEL_TYPE",
    "create_transform_only_model",
    "handlers",
    "is_transform_only",
]

MODEL_TYPE = "TRANSFORM_ONLY"
#: The ML functions a TRANSFORM_ONLY model answers; the others refuse it.
APPLICABLE = ("TRANSFORM", "FEATURE_INFO")


def is_transform_only(statement: exp.Create) -> bool:
    """Whether a CREATE MODEL's OPTIONS say model_type='TRANSFORM_ONLY' (any case)."""
    return statement_model_type(statement) == MODEL_TYPE


def create_transform_only_model(
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
            "INPUT(...)/OUTPUT(...) do not apply to a TRANSFORM_ONLY model: its inputs are the "
            "query's columns"
        )
    qname = QualifiedName.parse(table_name(target), kind="model")
    replace = bool(statement.args.get("replace"))
    if_not_exists = bool(statement.args.get("exists"))
    statement = statement.copy()
    clause = pop_transform(statement)
    if clause is None:
        raise InvalidArgument(
            f"CREATE MODEL {qname} OPTIONS(model_type='TRANSFORM_ONLY') needs a TRANSFORM(…) "
            "clause: the model is that clause, e.g. TRANSFORM(ML.STANDARD_SCALER(x) OVER () AS "
            "x_scaled)"
        )
    expires = pop_expiration(service, statement, f"model {qname}")
    options = model_options(statement)
    extra = sorted(k for k in options if k != "model_type")
    if extra:
        raise InvalidArgument(
            f"a TRANSFORM_ONLY model takes no option but model_type (and "
            f"expiration_timestamp); got {', '.join(extra)}"
            + (
                ": it has no label, every query column is an input"
                if "input_label_cols" in extra
                else ""
            ),
            option=extra[0],
        )
    existing = existing_model(service, qname, replace=replace, if_not_exists=if_not_exists)
    if existing is not None:
        return existing
    query = statement.expression
    if query is None:
        raise SQLError(f"CREATE MODEL {qname} needs a query to fit its TRANSFORM: … AS SELECT …")

    job.progress(0.0, "reading the query's rows")
    tree = query.copy()
    read = tables_read(tree)
    data = service.query_arrow(tree)
    if data.num_rows == 0:
        raise InvalidArgument(
            f"the query of TRANSFORM_ONLY model {qname} returned no rows; its TRANSFORM's "
            "statistics are computed on them"
        )
    job.log(f"fitting the TRANSFORM of {qname} on {data.num_rows} rows")
    fitted, _ = fit_transform(clause, data)
    fitted.label = None
    declared = fitted.apply(data.slice(0, 1), expand=False)
    inputs = input_versions(service, read)
    manifest: dict[str, Any] = {
        "model_type": MODEL_TYPE,
        "task": TRANSFORM_ONLY_TASK,
        "label": None,
        "label_info": None,
        "feature_columns": fitted.output_names,
        "signature": {
            "inputs": fitted.feature_inputs,
            "outputs": [{"name": f.name, "type": str(f.type)} for f in declared.schema],
        },
        "preprocessing": {},
        "predictor_config": {},
        "feature_info": _feature_info(data.select([c["name"] for c in fitted.feature_inputs])),
        "options": {"model_type": MODEL_TYPE},
        "metrics": {},
        "training_info": [],
        "lineage": Lineage(statement=text, input_tables=inputs, job_id=job.job_id),
    }
    job.progress(0.9, "registering the model version")
    return register_created(
        service,
        qname,
        NewVersion(model=fitted.to_dict(), flavor=TRANSFORM_FLAVOR, manifest=manifest),
        replace=replace,
        if_not_exists=if_not_exists,
        job=job,
        text=text,
        inputs=inputs,
        properties={"model_type": MODEL_TYPE},
        expires=expires,
    )


def _feature_info(raw: pa.Table) -> list[dict[str, Any]]:
    """ML.FEATURE_INFO rows: statistics of the TRANSFORM's input columns over the query's rows
    (BigQuery ML describes a TRANSFORM's pre-transform columns); ARRAY, STRUCT and BYTES
    columns, and those NULL in every row, have no row."""
    rows: list[dict[str, Any]] = []
    for name in raw.column_names:
        try:
            fitted = FeaturePreprocessor.fit(raw.select([name]), [name], standardize=False)
        except InvalidArgument:
            continue
        rows.extend(fitted.feature_info())
    return rows


# -- the other ML functions refuse a TRANSFORM_ONLY model --------------------------------------


def handlers(existing: Mapping[str, Handler]) -> dict[str, Handler]:
    """Every ML function but ML.TRANSFORM and ML.FEATURE_INFO, refusing TRANSFORM_ONLY models."""
    return refusing_handlers(
        existing,
        model_type=MODEL_TYPE,
        applicable=APPLICABLE,
        advice=lambda model: (
            f", which only preprocesses data; use ML.TRANSFORM(MODEL {model}, TABLE …) for its "
            "outputs or ML.FEATURE_INFO for its statistics"
        ),
    )
