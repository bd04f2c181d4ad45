"""``CREATE [OR REPLACE] MODEL [IF NOT EXISTS] … OPTIONS(…) AS <query>``.

The training query runs in DuckDB (ML functions inside it included), the model type trains on the
Arrow result, and the registry stores the package as a new version that records the statement,
the tables it read (with their versions) and the job that ran it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from shipyard.engine import JobContext
from shipyard.errors import AlreadyExists, InvalidArgument, SQLError, Unsupported
from shipyard.metadata.service import model_version_uri, table_version_uri
from shipyard.registry.entities import Lineage
from shipyard.registry.service import NewVersion
from shipyard.sql import holdout, tuning
from shipyard.sql.arima import with_custom_holidays
from shipyard.sql.arima_holidays import named_training_queries
from shipyard.sql.contribution_analysis import (
    create_contribution_analysis_model,
    is_contribution_analysis,
)
from shipyard.sql.dialect import ShipyardBigQuery, TrainingQueries, literal_value, table_name
from shipyard.sql.entities import QueryResult
from shipyard.sql.expiration import pop_expiration
from shipyard.sql.imported import create_imported_model, is_imported
from shipyard.sql.modeltypes import MODEL_TYPES
from shipyard.sql.transform import (
    attach_transform,
    fit_transform,
    pop_transform,
    raw_feature_info,
)
from shipyard.sql.transform_only import create_transform_only_model, is_transform_only
from shipyard.warehouse import QualifiedName

if TYPE_CHECKING:
    from shipyard.registry.predictor import Predictor
    from shipyard.sql.service import SqlService


# register_created: leave the model's expiration as it is (ModelService.register's "unset")
_KEEP_EXPIRATION: Any = ...


def model_options(statement: exp.Create) -> dict[str, Any]:
    """OPTIONS(...) as a dict with lower-cased names; a repeated option is an error."""
    options: dict[str, Any] = {}
    properties = statement.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.RemoteWithConnectionModelProperty):
            raise Unsupported(
                "CREATE MODEL … REMOTE WITH CONNECTION creates a remote model (a hosted LLM or "
                "Cloud AI API endpoint); Shipyard trains and serves its models locally and has "
                "no remote models"
            )
        if not isinstance(prop, exp.Property) or "value" not in prop.args:
            raise Unsupported(
                f"CREATE MODEL does not support {prop.sql(dialect=ShipyardBigQuery)!r} yet"
            )
        key = prop.name.lower()
        if key in options:
            raise InvalidArgument(f"option {key!r} is given twice")
        value = prop.args["value"]
        options[key] = tuning.hparam_value(value) or literal_value(value)  # HPARAM_RANGE(…)
    return options


def existing_model(
    service: SqlService, qname: QualifiedName, *, replace: bool, if_not_exists: bool
) -> QueryResult | None:
    """CREATE MODEL on a name that exists: None to go on (OR REPLACE, or a new name), the
    do-nothing result of IF NOT EXISTS, or AlreadyExists."""
    if replace or not service.models.exists(str(qname)):
        return None
    if if_not_exists:
        return QueryResult(
            pa.table({}),
            statement_type="CREATE_MODEL",
            message=f"model {qname} already exists; nothing done",
        )
    raise AlreadyExists(
        f"model {qname} already exists; use CREATE OR REPLACE MODEL to add a version",
        resource=f"models/{qname}",
    )


def create_model(
    service: SqlService, job: JobContext, statement: exp.Create, text: str
) -> QueryResult:
    if is_imported(statement):  # model_type='ONNX' | 'XGBOOST': see shipyard.sql.imported
        return create_imported_model(service, job, statement, text)
    if is_transform_only(statement):  # model_type='TRANSFORM_ONLY': shipyard.sql.transform_only
        return create_transform_only_model(service, job, statement, text)
    if is_contribution_analysis(statement):  # shipyard.sql.contribution_analysis
        return create_contribution_analysis_model(service, job, statement, text)
    target = statement.this
    if isinstance(target, exp.Schema):
        raise Unsupported("INPUT(...)/OUTPUT(...) column lists are not supported yet")
    qname = QualifiedName.parse(table_name(target), kind="model")
    replace = bool(statement.args.get("replace"))
    if_not_exists = bool(statement.args.get("exists"))
    for clause in ("transform",):
        if statement.args.get(clause) is not None:
            raise Unsupported(f"CREATE MODEL … {clause.upper()}(…) is not supported yet")
    statement = statement.copy()
    transform_clause = pop_transform(statement)  # TRANSFORM(…): see shipyard.sql.transform
    # OPTIONS(expiration_timestamp=…): stored on the model, see shipyard.sql.expiration
    expires = pop_expiration(service, statement, f"model {qname}")

    options = model_options(statement)
    model_type = options.get("model_type")
    if model_type is None:
        raise InvalidArgument(
            f"CREATE MODEL {qname} needs OPTIONS(model_type=…); supported model types: "
            + ", ".join(sorted(MODEL_TYPES))
        )
    if not isinstance(model_type, str) or model_type.upper() not in MODEL_TYPES:
        raise Unsupported(
            f"model_type {model_type!r} is not supported; supported: "
            + ", ".join(sorted(MODEL_TYPES))
        )
    spec = MODEL_TYPES[model_type.upper()]
    test_split = holdout.plan_test_split(spec, options)  # data_split_test_fraction (tuning)
    plan = tuning.plan_tuning(spec.name, options)  # None without num_trials / HPARAM_*
    parsed = spec.parse_options(options) if plan is None else tuning.parse_base(spec, plan)

    # Refuse before training, not after: CREATE MODEL on an existing name is an error.
    existing = existing_model(service, qname, replace=replace, if_not_exists=if_not_exists)
    if existing is not None:
        return existing

    previous = _warm_start_from(service, str(qname), spec.name, parsed)

    query = statement.expression
    if query is None:
        raise SQLError(f"CREATE MODEL {qname} needs a training query: … AS SELECT …")
    holiday_inputs: list[dict[str, Any]] = []
    if isinstance(query, TrainingQueries):  # AS (training_data AS (…), custom_holiday AS (…))
        query, holiday_query = named_training_queries(spec.name, query)
        if holiday_query is not None:
            holidays, holiday_inputs = _training_data(service, holiday_query)
            parsed = with_custom_holidays(parsed, holidays)  # checked: shipyard.sql.arima_holidays
    job.progress(0.0, "reading training data")
    data, inputs = _training_data(service, query)
    inputs += [i for i in holiday_inputs if i not in inputs]
    fitted = None
    if transform_clause is not None:  # statistics computed once, stored with the model
        raw, (fitted, data) = data, fit_transform(transform_clause, data)
    job.log(f"training {spec.name} on {data.num_rows} rows × {data.num_columns} columns")
    extra_files: dict[str, bytes] = {}
    hparam_tuning = None
    if plan is None:
        trained = spec.train(
            data,
            parsed,
            label=None,
            progress=lambda fraction, message: job.progress(0.05 + 0.9 * fraction, message),
            warm_start=previous,
        )
    else:  # hyperparameter tuning: the optimal trial's model, every trial's files
        outcome = holdout.run_trials_with_test_split(spec, data, plan, job, test_split)
        trained, extra_files, hparam_tuning = outcome.best, outcome.files, outcome.summary
    predictor = trained.predictor()
    if fitted is not None:
        predictor = attach_transform(predictor, fitted, trained.label)
    signature = predictor.signature
    manifest = {
        "model_type": spec.name,
        "task": trained.task,
        "label": trained.label,
        "label_info": trained.label_info.to_dict() if trained.label_info else None,
        "feature_columns": list(trained.feature_names),
        "signature": signature,
        "preprocessing": trained.preprocessor.to_dict(),
        "predictor_config": predictor.config,
        "feature_info": (
            trained.preprocessor.feature_info()
            if fitted is None
            else raw_feature_info(raw, fitted, trained.preprocessor)
        ),
        "options": trained.options,
        "metrics": trained.eval_metrics,
        "training_info": trained.training_info,
        "global_explain": trained.global_explain,
        "evaluation_curves": trained.evaluation_curves,
        "hparam_tuning": hparam_tuning,
        "lineage": Lineage(statement=text, input_tables=inputs, job_id=job.job_id),
    }
    job.progress(0.97, "registering the model version")
    return register_created(
        service,
        qname,
        NewVersion(
            model=trained.model, flavor=trained.flavor, manifest=manifest, extra_files=extra_files
        ),
        replace=replace,
        if_not_exists=if_not_exists,
        job=job,
        text=text,
        inputs=inputs,
        properties={"model_type": spec.name},
        expires=expires,
    )


def register_created(
    service: SqlService,
    qname: QualifiedName,
    new: NewVersion,
    *,
    replace: bool,
    if_not_exists: bool,
    job: JobContext,
    text: str,
    inputs: list[dict[str, Any]],
    properties: dict[str, Any],
    expires: Any = _KEEP_EXPIRATION,
    description: str | None = None,
    what: str = "",
) -> QueryResult:
    """The end of every CREATE MODEL: register the version, set the model's expiration (CREATE
    [OR REPLACE] sets it: the option's time, else none; ``_KEEP_EXPIRATION`` leaves it), record
    the statement in lineage (the tables it read, with their fingerprints, and the version it
    wrote, with ``properties``), and answer. ``what`` follows the message's version number."""
    version = service.models.register(
        str(qname),
        new,
        replace=replace,
        if_not_exists=if_not_exists,
        description=description,
        expiration_time=expires,
    )
    if version is None:  # created concurrently by someone else while we trained
        return QueryResult(pa.table({}), statement_type="CREATE_MODEL", message="model exists")
    if service.metadata is not None:
        output = model_version_uri(str(qname), version.version)
        service.metadata.record_execution(
            "sql_statement",
            "CREATE_MODEL",
            {"statement": text, "statement_type": "CREATE_MODEL", "job_id": job.job_id},
            inputs=[table_version_uri(i["name"], i["version"]) for i in inputs],
            outputs=[output],
            artifact_properties={
                output: properties,
                **{
                    table_version_uri(i["name"], i["version"]): {"fingerprint": i["fingerprint"]}
                    for i in inputs
                },
            },
        )
    job.log(f"registered {qname} version {version.version}")
    return QueryResult(
        pa.table({}),
        statement_type="CREATE_MODEL",
        message=f"created model {qname} version {version.version}{what}",
        model={"name": str(qname), "version": version.version},
    )


def _warm_start_from(
    service: SqlService, name: str, model_type: str, options: Any
) -> Predictor | None:
    """warm_start=TRUE: the model's current version (it must exist and have the same type)."""
    if not getattr(options, "warm_start", False):
        return None
    if not service.models.exists(name):
        raise InvalidArgument(
            f"warm_start=TRUE retrains an existing model, but model {name} does not exist; "
            "create it without warm_start first",
            resource=f"models/{name}",
        )
    current = service.models.get_version(name)
    if current.model_type != model_type:
        raise InvalidArgument(
            f"warm_start=TRUE keeps the model_type: model {name} is {current.model_type}, not "
            f"{model_type}",
            resource=f"models/{name}",
        )
    return service.models.load(name)


def tables_read(tree: exp.Expression) -> list[str]:
    """The warehouse tables (``dataset.name``) a statement names, CTEs and ML functions aside."""
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    read: list[str] = []
    for table in tree.find_all(exp.Table):
        if table.args.get("db") is None and table.name.lower() in cte_names:
            continue
        if isinstance(table.this, exp.Func | exp.Predict):
            continue
        if table.args.get("db") is None:
            continue
        try:
            name = str(QualifiedName.parse(table_name(table)))
        except InvalidArgument:
            continue
        if name not in read:
            read.append(name)
    return read


def _training_data(
    service: SqlService, query: exp.Expression
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Run the training query; return its rows and the tables it read, with their versions."""
    tree = query.copy()
    read = tables_read(tree)
    data = service.query_arrow(tree)
    return data, input_versions(service, read)


def input_versions(service: SqlService, read: list[str]) -> list[dict[str, Any]]:
    """The version and fingerprint of each warehouse table a statement read (views aside)."""
    inputs = []
    for name in read:
        qname = QualifiedName.parse(name)
        # A version already known is a table that exists: the catalog lookup (~2 ms) is spared
        version = service.tables.known_version(qname)
        if version is None:
            if not service.ctx.warehouse.exists(qname):
                continue
            version = service.tables.observed_version(qname)
        inputs.append(
            {"name": name, "version": version.version, "fingerprint": version.fingerprint}
        )
    return inputs
