"""ALTER MODEL … SET OPTIONS(description=…, labels=[…]): stored on the model, and bad options
refused before anything changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("alter"))
    workspace.load_table("demo.t", [{"x": float(i), "y": 3.0 * i - 1} for i in range(20)])
    workspace.sql(
        "CREATE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t"
    )
    yield workspace
    workspace.close()


def test_alter_sets_description_and_labels(ws: Any) -> None:
    result = ws.sql(
        "ALTER MODEL demo.m SET OPTIONS(description='demand model', "
        "labels=[('team', 'ml'), ('stage', 'dev-1')])"
    )
    assert result.statement_type == "ALTER_MODEL"
    model = ws.models.get("demo.m")
    assert model.description == "demand model"
    assert model.labels == {"team": "ml", "stage": "dev-1"}
    # labels replace the old set; leaving description out leaves it alone
    ws.sql("ALTER MODEL `my-project.demo.m` SET OPTIONS(labels=[('team', 'data')])")
    model = ws.models.get("demo.m")
    assert (model.description, model.labels) == ("demand model", {"team": "data"})
    # NULL clears the description, [] the labels; the model still predicts
    ws.sql("ALTER MODEL demo.m SET OPTIONS(description=NULL, labels=[])")
    model = ws.models.get("demo.m")
    assert (model.description, model.labels) == (None, {})
    assert ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.m, TABLE demo.t)").num_rows == 20
    assert model.latest_version == 1  # ALTER adds no version


def test_alter_if_exists_on_a_missing_model_does_nothing(ws: Any) -> None:
    result = ws.sql("ALTER MODEL IF EXISTS demo.nope SET OPTIONS(description='x')")
    assert "no model demo.nope" in (result.message or "")
    assert "demo.nope" not in [m.name for m in ws.models.list().items]


def test_expiration_null_is_accepted(ws: Any) -> None:
    ws.sql("ALTER MODEL demo.m SET OPTIONS(expiration_timestamp=NULL, description='kept')")
    assert ws.models.get("demo.m").description == "kept"


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ("colour='red'", sy.InvalidArgument, "valid options: description, labels"),
        ("description=3", sy.InvalidArgument, "description must be a STRING"),
        ("labels='team'", sy.InvalidArgument, "array of (key, value) pairs"),
        ("labels=[('team', 'ml', 'x')]", sy.InvalidArgument, "('key', 'value') pair"),
        ("labels=[('Team', 'ml')]", sy.InvalidArgument, "label key 'Team'"),
        ("labels=[('team', 'Machine Learning')]", sy.InvalidArgument, "label value"),
        ("labels=[('team', 'a'), ('team', 'b')]", sy.InvalidArgument, "given twice"),
        ("description='a', description='b'", sy.InvalidArgument, "given twice"),
        (
            "expiration_timestamp=TIMESTAMP '2001-01-01 00:00:00+00'",
            sy.InvalidArgument,
            "must be in the future",
        ),
        ("kms_key_name='projects/p/keys/k'", sy.Unsupported, "kms_key_name"),
        ("vertex_ai_model_id='m'", sy.Unsupported, "vertex_ai_model_id"),
        # a bad option anywhere: nothing is written, not even the valid ones before it
        ("description='changed', colour='red'", sy.InvalidArgument, "colour"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(
    ws: Any, options: str, error: type[Exception], fragment: str
) -> None:
    ws.sql("ALTER MODEL demo.m SET OPTIONS(description='before', labels=[('k', 'v')])")
    with pytest.raises(error) as info:
        ws.sql(f"ALTER MODEL demo.m SET OPTIONS({options})")
    assert fragment in str(info.value)
    model = ws.models.get("demo.m")
    assert (model.description, model.labels) == ("before", {"k": "v"})


def test_alter_unknown_model_is_not_found(ws: Any) -> None:
    with pytest.raises(sy.NotFound, match="demo.nope"):
        ws.sql("ALTER MODEL demo.nope SET OPTIONS(description='x')")
