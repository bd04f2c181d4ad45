"""ML.FEATURES_AT_TIME and ML.ENTITY_FEATURES_AT_TIME: point-in-time feature lookups.

The expected rows are worked out by hand from the small history below, and the larger cases
against a plain-Python lookup over the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, NotFound, SQLError

UTC = dt.UTC


def _t(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, tzinfo=UTC)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("features-at-time"))
    # a: three updates, the second without f1, the third without f2; b: one update
    workspace.sql(
        """
        CREATE SCHEMA fs;
        CREATE TABLE fs.customer AS
        SELECT * FROM UNNEST([
          STRUCT('a' AS Entity_ID, 1.0 AS f1, 'x' AS f2,
                 TIMESTAMP '2024-01-01 00:00:00' AS feature_timestamp),
          STRUCT('a', NULL, 'y', TIMESTAMP '2024-01-02 00:00:00'),
          STRUCT('a', 3.0, NULL, TIMESTAMP '2024-01-03 00:00:00'),
          STRUCT('b', 10.0, 'z', TIMESTAMP '2024-01-02 12:00:00')]);
        CREATE TABLE fs.events AS
        SELECT * FROM UNNEST([
          STRUCT('a' AS entity_id, TIMESTAMP '2024-01-02 06:00:00' AS time, 1 AS label),
          STRUCT('b', TIMESTAMP '2024-01-01 00:00:00', 0),
          STRUCT('a', TIMESTAMP '2024-01-05 00:00:00', 0),
          STRUCT('b', TIMESTAMP '2024-01-03 00:00:00', 1),
          STRUCT('c', TIMESTAMP '2024-01-03 00:00:00', 1)])
        """
    )
    yield workspace
    workspace.close()


def _rows(ws: Any, sql: str) -> list[tuple[Any, ...]]:
    table = ws.sql(sql).to_arrow()
    return [tuple(row.values()) for row in table.to_pylist()]


def test_features_at_time_returns_each_entitys_latest_row_at_the_cutoff(ws: Any) -> None:
    sql = (
        "SELECT * FROM ML.FEATURES_AT_TIME(TABLE fs.customer, "
        "time => TIMESTAMP '2024-01-02 06:00:00')"
    )
    table = ws.sql(sql).to_arrow()
    assert table.column_names == ["Entity_ID", "f1", "f2", "feature_timestamp"]
    # b's only update (Jan 2, 12:00) is after the cut-off: b has no row
    assert _rows(ws, sql) == [("a", None, "y", _t(2))]


def test_the_cutoff_is_inclusive_and_defaults_to_now(ws: Any) -> None:
    at_update = (
        "SELECT f2 FROM ML.FEATURES_AT_TIME(TABLE fs.customer, "
        "time => TIMESTAMP '2024-01-02 12:00:00') ORDER BY f2"
    )
    assert _rows(ws, at_update) == [("y",), ("z",)]
    assert _rows(ws, "SELECT Entity_ID, f1 FROM ML.FEATURES_AT_TIME(TABLE fs.customer)") == [
        ("a", 3.0),
        ("b", 10.0),
    ]


def test_num_rows_returns_the_latest_rows_newest_first(ws: Any) -> None:
    rows = _rows(
        ws,
        "SELECT Entity_ID, feature_timestamp FROM ML.FEATURES_AT_TIME("
        "(SELECT * FROM fs.customer), num_rows => 2)",
    )
    assert rows == [("a", _t(3)), ("a", _t(2)), ("b", _t(2, 12))]


def test_ignore_feature_nulls_fills_from_the_entitys_earlier_rows(ws: Any) -> None:
    rows = _rows(
        ws,
        "SELECT Entity_ID, f1, f2 FROM ML.FEATURES_AT_TIME(TABLE fs.customer, num_rows => 3, "
        "ignore_feature_nulls => TRUE)",
    )
    assert rows == [("a", 3.0, "y"), ("a", 1.0, "y"), ("a", 1.0, "x"), ("b", 10.0, "z")]
    # without it, the NULLs stay
    plain = _rows(ws, "SELECT f1, f2 FROM ML.FEATURES_AT_TIME(TABLE fs.customer, num_rows => 3)")
    assert (3.0, None) in plain and (None, "y") in plain


def test_entity_features_at_time_gives_each_event_what_it_could_have_seen(ws: Any) -> None:
    table = ws.sql(
        "SELECT * FROM ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer, "
        "(SELECT entity_id, time FROM fs.events))"
    ).to_arrow()
    assert table.column_names == ["Entity_ID", "f1", "f2", "feature_timestamp", "time"]
    # in the events' order; b at Jan 1 and c (no features) have no row
    assert [tuple(r.values()) for r in table.to_pylist()] == [
        ("a", None, "y", _t(2), _t(2, 6)),
        ("a", 3.0, None, _t(3), _t(5)),
        ("b", 10.0, "z", _t(2, 12), _t(3)),
    ]


def test_entity_features_at_time_with_several_rows_and_filled_nulls(ws: Any) -> None:
    rows = _rows(
        ws,
        "SELECT Entity_ID, f1, f2, time FROM ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer, "
        "(SELECT entity_id, time FROM fs.events), num_rows => 2, ignore_feature_nulls => TRUE)",
    )
    assert rows == [
        ("a", 1.0, "y", _t(2, 6)),
        ("a", 1.0, "x", _t(2, 6)),
        ("a", 3.0, "y", _t(5)),
        ("a", 1.0, "y", _t(5)),
        ("b", 10.0, "z", _t(3)),
    ]


def test_a_training_set_joins_labels_to_point_in_time_features(ws: Any) -> None:
    rows = _rows(
        ws,
        """
        SELECT e.label, f.f1 FROM fs.events AS e
        JOIN ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer, (SELECT entity_id, time FROM fs.events),
                                        ignore_feature_nulls => TRUE) AS f
          ON f.Entity_ID = e.entity_id AND f.time = e.time
        ORDER BY e.time
        """,
    )
    assert rows == [(1, 1.0), (1, 10.0), (0, 3.0)]


def test_lookups_match_a_plain_python_lookup_on_random_histories(tmp_path: Any) -> None:
    rng = random.Random(7)
    history = [
        {
            "entity_id": f"e{rng.randrange(40)}",
            "value": rng.random(),
            "feature_timestamp": _t(1) + dt.timedelta(minutes=rng.randrange(10_000)),
        }
        for _ in range(600)
    ]
    lookups = [
        {
            "entity_id": f"e{rng.randrange(45)}",
            "time": _t(1) + dt.timedelta(minutes=rng.randrange(10_000)),
        }
        for _ in range(300)
    ]
    with sy.connect(tmp_path) as workspace:
        workspace.load_table("r.history", history)
        workspace.load_table("r.lookups", lookups)
        for num_rows in (1, 3):
            got = _rows(
                workspace,
                "SELECT entity_id, feature_timestamp, time FROM ML.ENTITY_FEATURES_AT_TIME("
                f"TABLE r.history, TABLE r.lookups, num_rows => {num_rows})",
            )
            want = []
            for lookup in lookups:
                seen = sorted(
                    (
                        h["feature_timestamp"]
                        for h in history
                        if h["entity_id"] == lookup["entity_id"]
                        and h["feature_timestamp"] <= lookup["time"]
                    ),
                    reverse=True,
                )[:num_rows]
                want += [(lookup["entity_id"], stamp, lookup["time"]) for stamp in seen]
            assert got == want  # in the lookups' order, newest first within one


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, num_rows => 0)", "num_rows must be at least 1"),
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, num_rows => 'two')", "must be an integer"),
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, time => 3)", "must be a TIMESTAMP"),
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, ignore_feature_nulls => 1)", "TRUE or FALSE"),
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, color => 3)", "valid parameters: ignore"),
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, num_rows => 1, num_rows => 2)", "twice"),
        ("ML.FEATURES_AT_TIME(TABLE fs.events)", "no column 'feature_timestamp'"),
        ("ML.FEATURES_AT_TIME((SELECT * EXCLUDE (f1, f2) FROM fs.customer))", "at least one"),
        (
            "ML.FEATURES_AT_TIME((SELECT Entity_ID, f1, 'x' AS feature_timestamp "
            "FROM fs.customer))",
            "must be a TIMESTAMP",
        ),
        ("ML.FEATURES_AT_TIME(TABLE fs.customer, TABLE fs.events)", "takes 1 relation"),
        ("ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer)", "takes 2 relations"),
        ("ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer, TABLE fs.customer)", "no column 'time'"),
        (
            "ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer, "
            "(SELECT Entity_ID, f1 AS time FROM fs.customer))",
            "must be a TIMESTAMP",
        ),
        (
            "ML.ENTITY_FEATURES_AT_TIME((SELECT *, feature_timestamp AS time "
            "FROM fs.customer), TABLE fs.events)",
            "rename it",
        ),
        (
            "ML.ENTITY_FEATURES_AT_TIME(TABLE fs.customer, TABLE fs.events, "
            "time => CURRENT_TIMESTAMP())",
            "has no parameter 'time'",
        ),
    ],
)
def test_bad_calls_name_the_problem(ws: Any, sql: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ws.sql(f"SELECT * FROM {sql}")


def test_a_missing_table_or_a_bad_argument_expression(ws: Any) -> None:
    with pytest.raises(NotFound, match="fs.nope"):
        ws.sql("SELECT * FROM ML.FEATURES_AT_TIME(TABLE fs.nope)")
    with pytest.raises(SQLError):
        ws.sql("SELECT * FROM ML.FEATURES_AT_TIME(TABLE fs.customer, time => no_such_column)")
    # nothing changed: the tables still answer
    assert ws.sql("SELECT count(*) AS n FROM fs.customer").to_arrow()["n"][0].as_py() == 4


@pytest.mark.parametrize("kind", ["DATETIME", "DATE"])
def test_a_wall_clock_or_date_timestamp_column_is_cut_at_the_same_instant(
    ws: Any, kind: str
) -> None:
    # DATETIME (no time zone: read as UTC) and DATE columns compare with the cut-off as they
    # are; a day is at or before the cut-off when its midnight is
    rows = _rows(
        ws,
        "SELECT Entity_ID, f1 FROM ML.FEATURES_AT_TIME("
        f"(SELECT Entity_ID, f1, CAST(CAST(feature_timestamp AS DATETIME) AS {kind}) "
        "AS feature_timestamp "
        "FROM fs.customer), time => TIMESTAMP '2024-01-02 06:00:00')",
    )
    want_b = [] if kind == "DATETIME" else [("b", 10.0)]  # b's Jan 2, 12:00 is a Jan 2 date
    assert rows == [("a", None), *want_b]
