"""``ALTER MODEL [IF EXISTS] m SET OPTIONS(description=…, labels=[('k', 'v'), …])``.

BigQuery ML's options are ``description`` (STRING; NULL clears it), ``labels``
(``ARRAY<STRUCT<STRING, STRING>>``, which replaces the model's labels; ``[]`` clears them),
``expiration_timestamp``, ``kms_key_name``, ``vertex_ai_model_id``, ``deploy_model`` and
``endpoint_idle_ttl``. Shipyard stores the first three on the model (``ws.models.get(m)``;
``expiration_timestamp`` is a TIMESTAMP in the future, or NULL for "never expires": see
:mod:`shipyard.sql.expiration`); the others are refused with ``Unsupported``. Every option is
checked before anything is written.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from shipyard.errors import InvalidArgument, NotFound, Unsupported
from shipyard.sql import expiration
from shipyard.sql.dialect import AlterModel, ShipyardBigQuery, literal_value, table_name
from shipyard.sql.entities import QueryResult
from shipyard.warehouse import QualifiedName

if TYPE_CHECKING:
    from shipyard.sql.service import SqlService

__all__ = ["ALTER_MODEL_OPTIONS", "alter_model"]

#: BigQuery ML's ALTER MODEL options; True where Shipyard stores them.
ALTER_MODEL_OPTIONS: dict[str, bool] = {
    "description": True,
    "labels": True,
    "expiration_timestamp": True,
    "kms_key_name": False,
    "vertex_ai_model_id": False,
    "deploy_model": False,
    "endpoint_idle_ttl": False,
}
# BigQuery's label rules: keys start with a lowercase letter; keys and values use lowercase
# letters, digits, '_' and '-', at most 63 characters; at most 64 labels.
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_\-]{0,63}$")
_MAX_LABELS = 64


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        raise InvalidArgument(
            f"labels must be an array of (key, value) pairs, e.g. [('team', 'ml')], got {value!r}"
        )
    out: dict[str, str] = {}
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise InvalidArgument(f"each label is a ('key', 'value') pair of strings, got {pair!r}")
        key, val = pair
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise InvalidArgument(
                f"label key {key!r} is not valid: it starts with a lowercase letter and has at "
                "most 63 lowercase letters, digits, '_' or '-'"
            )
        if not isinstance(val, str) or not _LABEL_VALUE.match(val):
            raise InvalidArgument(
                f"label value {val!r} (key {key!r}) is not valid: at most 63 lowercase letters, "
                "digits, '_' or '-'"
            )
        if key in out:
            raise InvalidArgument(f"label key {key!r} is given twice")
        out[key] = val
    if len(out) > _MAX_LABELS:
        raise InvalidArgument(f"a model has at most {_MAX_LABELS} labels, got {len(out)}")
    return out


def _option_value(service: SqlService, name: str, node: exp.Expression, model: str) -> Any:
    if name == expiration.OPTION:
        # TIMESTAMP '…', TIMESTAMP_ADD(CURRENT_TIMESTAMP(), …): DuckDB evaluates it.
        return expiration.expiration_value(service, node, f"model {model}")
    return literal_value(node)


def alter_model(service: SqlService, statement: AlterModel) -> QueryResult:
    qname = QualifiedName.parse(table_name(statement.this), kind="model")
    options: dict[str, Any] = {}
    properties = statement.args.get("options")
    for prop in properties.expressions if properties is not None else []:
        if type(prop) is not exp.Property:
            raise InvalidArgument(
                f"ALTER MODEL … SET OPTIONS takes key=value pairs, got "
                f"{prop.sql(dialect=ShipyardBigQuery)!r}"
            )
        key = prop.name.lower()
        if key not in ALTER_MODEL_OPTIONS:
            raise InvalidArgument(
                f"ALTER MODEL has no option {key!r}; valid options: "
                + ", ".join(ALTER_MODEL_OPTIONS),
                option=key,
            )
        if key in options:
            raise InvalidArgument(f"option {key!r} is given twice")
        options[key] = _option_value(service, key, prop.args["value"], str(qname))
    if not options:
        raise InvalidArgument("ALTER MODEL … SET OPTIONS(…) needs at least one option")
    for key in options:
        if ALTER_MODEL_OPTIONS[key]:
            continue
        raise Unsupported(
            f"ALTER MODEL option {key!r} is not supported: it configures a Google Cloud service "
            "Shipyard does not use",
            option=key,
        )
    description: Any = ...
    if "description" in options:
        description = options["description"]
        if description is not None and not isinstance(description, str):
            raise InvalidArgument(f"description must be a STRING, got {description!r}")
    labels = None
    if "labels" in options:
        labels = _labels(options["labels"] if options["labels"] is not None else [])
    if not service.models.exists(str(qname)):
        if statement.args.get("exists"):
            return QueryResult(
                pa.table({}), statement_type="ALTER_MODEL", message=f"no model {qname}"
            )
        raise NotFound(f"model {qname} not found", resource=f"models/{qname}")
    service.models.update(
        str(qname),
        description=description,
        labels=labels,
        expiration_time=options.get(expiration.OPTION, ...),
    )
    return QueryResult(
        pa.table({}),
        statement_type="ALTER_MODEL",
        message=f"altered model {qname}: {', '.join(options)}",
    )
