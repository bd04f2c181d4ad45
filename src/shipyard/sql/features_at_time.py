"""ML.FEATURES_AT_TIME and ML.ENTITY_FEATURES_AT_TIME: point-in-time feature lookups.

A feature table holds one row per update of an entity's features: ``entity_id``, the feature
columns, and ``feature_timestamp`` (when those values became known; names match whatever their
case). Training on the latest values leaks the future into the past; these functions return,
for a cut-off time, only what was known then:

* ``ML.FEATURES_AT_TIME(TABLE f [, time => t] [, num_rows => n] [, ignore_feature_nulls => b])``
  — one cut-off for every entity (default ``CURRENT_TIMESTAMP()``): each entity's ``n`` latest
  rows (default 1) with ``feature_timestamp <= t``;
* ``ML.ENTITY_FEATURES_AT_TIME(TABLE f, TABLE entity_times [, num_rows => n] [, …])`` — a
  cut-off per row of ``entity_times`` (``entity_id``, ``time``): that entity's ``n`` latest rows
  at or before its ``time``, with the ``time`` column added, so a training set of labelled events
  gets the features each event could have seen.

``ignore_feature_nulls => TRUE`` fills a NULL feature from the entity's latest earlier non-NULL
value of that feature (an update that carried only some features). Both run in DuckDB: a window
over the feature history for the fill and the ranking, and an ``ASOF JOIN`` — a merge of the two
tables sorted by time, not a join of every pair — when each lookup wants one row.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pyarrow as pa

from shipyard.errors import InvalidArgument
from shipyard.warehouse import quote_identifier

if TYPE_CHECKING:
    from shipyard.sql.functions import DataCall
    from shipyard.sql.service import SqlService

__all__ = ["ml_entity_features_at_time", "ml_features_at_time"]

_ENTITY, _FEATURE_TIME, _LOOKUP_TIME = "entity_id", "feature_timestamp", "time"


def ml_features_at_time(service: SqlService, call: DataCall) -> pa.Table:
    """Every entity's latest ``num_rows`` feature rows at or before ``time``."""
    call.check_params(_PARAMS | {"time": dt.datetime})
    (features,) = call.require_relations("feature_table")
    entity_name, stamp_name = _feature_columns(call, features)
    cutoff = _cutoff(call, features, stamp_name)
    entity, stamp = quote_identifier(entity_name), quote_identifier(stamp_name)
    query = f"""
        SELECT * EXCLUDE (__rank) FROM (
            SELECT *, row_number() OVER (PARTITION BY {entity} ORDER BY {stamp} DESC) AS __rank
            FROM ({_history(call, features, entity, stamp)})
            WHERE {stamp} <= ?
        ) WHERE __rank <= ? ORDER BY {entity}, {stamp} DESC"""
    return call.query(query, [cutoff, _num_rows(call)])


def _cutoff(call: DataCall, features: str, stamp: str) -> dt.datetime | dt.date:
    """``time`` (default: now) as a value of the timestamp column's own type, so DuckDB compares
    it as it is (against a TIMESTAMPTZ parameter every row of a plain TIMESTAMP column would be
    converted first: 1M rows, ~50 ms more) and can push the filter into the scan."""
    cutoff = call.params.get("time") or dt.datetime.now(dt.UTC)
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=dt.UTC)
    kind = call.schema(features).field(stamp).type
    if pa.types.is_date(kind):  # a day is at or before the cut-off when its midnight is
        return cutoff.astimezone(dt.UTC).date()
    if pa.types.is_timestamp(kind) and kind.tz is None:  # wall clock read as UTC
        return cutoff.astimezone(dt.UTC).replace(tzinfo=None)
    return cutoff


def ml_entity_features_at_time(service: SqlService, call: DataCall) -> pa.Table:
    """For each (``entity_id``, ``time``) row, that entity's latest ``num_rows`` feature rows at
    or before ``time``, then ``time``; a lookup with no such row returns nothing."""
    call.check_params(_PARAMS)
    features, lookups = call.require_relations("feature_table", "entity_time_table")
    entity, stamp = (quote_identifier(c) for c in _feature_columns(call, features))
    if any(name.lower() == _LOOKUP_TIME for name in call.schema(features).names):
        raise InvalidArgument(
            f"ML.{call.function}: the feature table has a column named {_LOOKUP_TIME!r}, "
            "which the output adds (the lookup time); rename it in a query"
        )
    lookup_schema = call.schema(lookups)
    lookup_entity = quote_identifier(_column(call, lookup_schema, _ENTITY, "entity_time_table"))
    time_name = _column(call, lookup_schema, _LOOKUP_TIME, "entity_time_table")
    _require_time(call, lookup_schema, time_name, "entity_time_table")
    lookup_time = quote_identifier(time_name)
    history = _history(call, features, entity, stamp)
    lookup = f"""SELECT {lookup_entity} AS __entity, {lookup_time} AS __time,
                        row_number() OVER () AS __lookup FROM ({lookups})"""
    num_rows = _num_rows(call)
    if num_rows == 1:  # a merge by time: each lookup meets its entity's latest row directly
        query = f"""
            SELECT f.*, l.__time AS {_LOOKUP_TIME}
            FROM ({lookup}) l ASOF JOIN ({history}) f
              ON l.__entity = f.{entity} AND l.__time >= f.{stamp}
            ORDER BY l.__lookup"""
    else:
        query = f"""
            SELECT f.*, l.__time AS {_LOOKUP_TIME}
            FROM ({lookup}) l JOIN ({history}) f
              ON l.__entity = f.{entity} AND f.{stamp} <= l.__time
            QUALIFY row_number() OVER (PARTITION BY l.__lookup ORDER BY f.{stamp} DESC)
                <= {num_rows}
            ORDER BY l.__lookup, f.{stamp} DESC"""
    return call.query(query)


_PARAMS: dict[str, type | tuple[type, ...]] = {"num_rows": int, "ignore_feature_nulls": bool}


def _num_rows(call: DataCall) -> int:
    num_rows = call.params.get("num_rows")
    if num_rows is None:
        return 1
    if num_rows < 1:
        raise InvalidArgument(f"ML.{call.function}: num_rows must be at least 1, got {num_rows}")
    return int(num_rows)


def _history(call: DataCall, features: str, entity: str, stamp: str) -> str:
    """The feature rows, NULL features filled from the entity's earlier rows when asked."""
    if not call.params.get("ignore_feature_nulls"):
        return features
    window = (
        f"OVER (PARTITION BY {entity} ORDER BY {stamp} "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    columns = []
    for name in call.schema(features).names:
        quoted = quote_identifier(name)
        if quoted in (entity, stamp):
            columns.append(quoted)
        else:
            columns.append(f"last_value({quoted} IGNORE NULLS) {window} AS {quoted}")
    return f"SELECT {', '.join(columns)} FROM ({features})"


def _feature_columns(call: DataCall, features: str) -> tuple[str, str]:
    """The feature relation's entity and timestamp columns, once its shape is checked."""
    schema = call.schema(features)
    entity = _column(call, schema, _ENTITY, "feature table")
    stamp = _column(call, schema, _FEATURE_TIME, "feature table")
    _require_time(call, schema, stamp, "feature table")
    if len(schema) < 3:
        raise InvalidArgument(
            f"ML.{call.function}: the feature table needs at least one feature column besides "
            f"{_ENTITY} and {_FEATURE_TIME}; it has: {', '.join(schema.names)}"
        )
    return entity, stamp


def _column(call: DataCall, schema: pa.Schema, wanted: str, what: str) -> str:
    """``wanted`` among ``schema``'s columns, whatever its case: its name there."""
    for name in schema.names:
        if name.lower() == wanted:
            return name
    raise InvalidArgument(
        f"ML.{call.function}: the {what} has no column {wanted!r} (case-insensitive); "
        f"it has: {', '.join(schema.names) or 'no columns'}"
    )


def _require_time(call: DataCall, schema: pa.Schema, name: str, what: str) -> None:
    kind = schema.field(name).type
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise InvalidArgument(
            f"ML.{call.function}: column {name!r} of the {what} must be a TIMESTAMP, got {kind}"
        )
