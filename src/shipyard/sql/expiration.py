"""``OPTIONS(expiration_timestamp=…)`` of CREATE MODEL and ALTER MODEL … SET OPTIONS.

BigQuery ML deletes a model once its expiration time has passed. Shipyard stores the time on
the model (``ws.models.get(m).expiration_time``) and deletes an expired model lazily: the
registry's lookups of an expired model delete it and answer NotFound ("… expired at … and was
deleted"), and listing models sweeps every expired one first
(:meth:`~shipyard.registry.service.ModelService.delete_expired`). The value is a TIMESTAMP
expression (``TIMESTAMP '2030-01-01 00:00:00+00'``,
``TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)``) evaluated once, when the statement runs;
a TIMESTAMP without a time zone is UTC, as in BigQuery. NULL means "never expires". A time that
has already passed is refused (DROP MODEL deletes a model now).

Example::

    CREATE MODEL demo.scratch
    OPTIONS(model_type='linear_reg', input_label_cols=['y'],
            expiration_timestamp=TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))
    AS SELECT * FROM demo.t
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from shipyard.errors import InvalidArgument
from shipyard.registry.service import check_expiration
from shipyard.sql.dialect import ShipyardBigQuery

if TYPE_CHECKING:
    from shipyard.sql.service import SqlService

__all__ = ["OPTION", "expiration_value", "pop_expiration"]

OPTION = "expiration_timestamp"


def expiration_value(service: SqlService, node: exp.Expression, what: str) -> datetime | None:
    """The expiration time an OPTIONS value spells (evaluated in DuckDB), checked."""
    if isinstance(node, exp.Null):
        return None
    text = node.sql(dialect=ShipyardBigQuery)
    try:
        rows = service.query_arrow(exp.select(node.copy().as_("v")))
        value: Any = rows.column(0)[0].as_py()
    except Exception as exc:  # DuckDB's errors and ours alike: the expression is at fault
        raise InvalidArgument(
            f"expiration_timestamp={text} is not a TIMESTAMP expression: {exc}", option=OPTION
        ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # BigQuery's TIMESTAMP is UTC
    elif value is not None:
        raise InvalidArgument(
            "expiration_timestamp must be a TIMESTAMP (e.g. TIMESTAMP '2030-01-01 00:00:00+00') "
            f"or NULL, got {text} ({type(value).__name__})",
            option=OPTION,
        )
    return check_expiration(value, what, future=True)


def pop_expiration(service: SqlService, statement: exp.Create, what: str) -> datetime | None:
    """Take ``expiration_timestamp`` out of a CREATE MODEL's OPTIONS (it is not a training
    option) and evaluate it; None when absent or NULL."""
    properties = statement.args.get("properties")
    if properties is None:
        return None
    found = [
        p for p in properties.expressions if type(p) is exp.Property and p.name.lower() == OPTION
    ]
    if len(found) > 1:
        raise InvalidArgument(f"option {OPTION!r} is given twice", option=OPTION)
    if not found:
        return None
    found[0].pop()
    return expiration_value(service, found[0].args["value"], what)
