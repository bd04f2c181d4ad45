"""OPTIONS(expiration_timestamp=…) on CREATE MODEL and ALTER MODEL: stored on the model, shown
by ws.models.get, and an expired model is deleted (NotFound, gone from the list)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import shipyard as sy

_TRAIN = "AS SELECT * FROM demo.t"
_LINEAR = "model_type='linear_reg', input_label_cols=['y']"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("expiration"))
    workspace.load_table("demo.t", [{"x": float(i), "y": 3.0 * i - 1} for i in range(20)])
    yield workspace
    workspace.close()


def test_create_model_stores_the_expiration(ws: Any) -> None:
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.a OPTIONS({_LINEAR}, "
        f"expiration_timestamp=TIMESTAMP '2040-06-01 12:00:00+00') {_TRAIN}"
    )
    model = ws.models.get("demo.a")
    assert model.expiration_time == datetime(2040, 6, 1, 12, tzinfo=UTC)
    assert ws.models.get_version("demo.a").model_type == "LINEAR_REG"  # not a training option
    # an expression is evaluated once, when the statement runs
    ws.sql(
        f"CREATE OR REPLACE MODEL demo.a OPTIONS({_LINEAR}, expiration_timestamp="
        f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 2 DAY)) {_TRAIN}"
    )
    expires = ws.models.get("demo.a").expiration_time
    assert timedelta(days=1, hours=23) < expires - datetime.now(UTC) <= timedelta(days=2)
    # CREATE OR REPLACE without the option: the replaced model never expires (BigQuery's new model)
    ws.sql(f"CREATE OR REPLACE MODEL demo.a OPTIONS({_LINEAR}) {_TRAIN}")
    assert ws.models.get("demo.a").expiration_time is None


def test_alter_model_sets_and_clears_the_expiration(ws: Any) -> None:
    ws.sql(f"CREATE OR REPLACE MODEL demo.b OPTIONS({_LINEAR}) {_TRAIN}")
    assert ws.models.get("demo.b").expiration_time is None
    ws.sql("ALTER MODEL demo.b SET OPTIONS(expiration_timestamp=TIMESTAMP '2035-01-01 00:00:00')")
    assert ws.models.get("demo.b").expiration_time == datetime(2035, 1, 1, tzinfo=UTC)  # UTC
    listed = {m.name: m for m in ws.models.list().items}
    assert listed["demo.b"].expiration_time == datetime(2035, 1, 1, tzinfo=UTC)
    ws.sql("ALTER MODEL demo.b SET OPTIONS(expiration_timestamp=NULL, description='kept')")
    model = ws.models.get("demo.b")
    assert (model.expiration_time, model.description) == (None, "kept")


def test_an_expired_model_is_deleted(ws: Any) -> None:
    ws.sql(f"CREATE OR REPLACE MODEL demo.c OPTIONS({_LINEAR}) {_TRAIN}")
    ws.sql(f"CREATE OR REPLACE MODEL demo.d OPTIONS({_LINEAR}) {_TRAIN}")
    soon = "TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 500 MILLISECOND)"
    ws.sql(f"ALTER MODEL demo.c SET OPTIONS(expiration_timestamp={soon})")
    ws.sql(f"ALTER MODEL demo.d SET OPTIONS(expiration_timestamp={soon})")
    assert ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.c, TABLE demo.t)").num_rows == 20
    time.sleep(0.6)
    with pytest.raises(sy.NotFound, match="demo.c not found: it expired at"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.c, TABLE demo.t)")
    with pytest.raises(sy.NotFound, match="demo.c"):  # deleted: a plain NotFound from now on
        ws.models.get("demo.c")
    names = [m.name for m in ws.models.list().items]  # the sweep deletes demo.d too
    assert "demo.c" not in names and "demo.d" not in names
    # the name is free again
    ws.sql(f"CREATE MODEL demo.c OPTIONS({_LINEAR}) {_TRAIN}")
    assert ws.models.get("demo.c").latest_version == 1


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("TIMESTAMP '2001-01-01 00:00:00+00'", "must be in the future"),
        ("'tomorrow'", "must be a TIMESTAMP"),
        ("3", "must be a TIMESTAMP"),
        ("DATE '2030-01-01'", "must be a TIMESTAMP"),
        ("TIMESTAMP 'not a time'", "not a TIMESTAMP expression"),
    ],
)
def test_bad_expirations_are_refused_and_change_nothing(ws: Any, value: str, fragment: str) -> None:
    ws.sql(f"CREATE OR REPLACE MODEL demo.e OPTIONS({_LINEAR}) {_TRAIN}")
    ws.sql("ALTER MODEL demo.e SET OPTIONS(expiration_timestamp=TIMESTAMP '2033-03-03 00:00:00')")
    with pytest.raises(sy.InvalidArgument, match=fragment):
        ws.sql(f"ALTER MODEL demo.e SET OPTIONS(expiration_timestamp={value}, description='x')")
    with pytest.raises(sy.InvalidArgument, match=fragment):
        ws.sql(f"CREATE MODEL demo.never OPTIONS({_LINEAR}, expiration_timestamp={value}) {_TRAIN}")
    model = ws.models.get("demo.e")
    assert model.expiration_time == datetime(2033, 3, 3, tzinfo=UTC)
    assert model.description is None  # nothing of the ALTER was written
    assert "demo.never" not in [m.name for m in ws.models.list().items]


def test_expiration_twice_is_refused(ws: Any) -> None:
    with pytest.raises(sy.InvalidArgument, match="given twice"):
        ws.sql(
            f"CREATE MODEL demo.never OPTIONS({_LINEAR}, expiration_timestamp=NULL, "
            f"expiration_timestamp=NULL) {_TRAIN}"
        )
