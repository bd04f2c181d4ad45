"""A version lookup is one query on every metadata backend (SQLite and PostgreSQL), and answers
as the three it replaced did: by number, by alias, by the default alias, with each version's
aliases, and with the same errors in the same order (a missing model before a bad argument,
a bad argument before a missing alias or version)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import shipyard as sy
from shipyard.config import Settings
from shipyard.context import Context
from shipyard.registry.service import ModelService
from shipyard.services import Services

LINEAR = (
    "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
    "AS SELECT * FROM demo.t"
)


@pytest.fixture
def services(tmp_path: Path, metadata_url: str) -> Iterator[Services]:
    settings = Settings(home=tmp_path / "home", metadata={"url": metadata_url})
    built = Services.build(Context.open(settings))
    built.tables.load("demo.t", [{"x": float(i), "y": 2.0 * i + 1.0} for i in range(30)])
    built.sql.execute(LINEAR)
    built.sql.execute(LINEAR)
    yield built
    built.close()


@pytest.fixture
def selects(services: Services) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = services.ctx.metadata.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_lookup_by_number_alias_or_default_is_one_query(
    services: Services, selects: list[str]
) -> None:
    models = services.models
    models.set_alias("demo.m", "champion", 1)
    models.set_alias("demo.m", "staging", 1)
    selects.clear()
    default = models.get_version("demo.m")
    assert len(selects) == 1
    assert default.version == 2 and default.aliases == ["default"]
    first = models.get_version("demo.m", 1)
    assert first.version == 1 and first.aliases == ["champion", "staging"]
    assert models.get_version("demo.m", alias="CHAMPION") == first
    assert len(selects) == 3
    # what a fresh service (its manifest summaries not cached) reads is the same version
    fresh = ModelService(services.ctx)
    assert fresh.get_version("demo.m", 1) == first
    assert fresh.get_version("demo.m") == default
    listed = {v.version: v for v in models.versions("demo.m").items}
    assert listed[1] == first and listed[2] == default


def test_a_model_with_no_aliases_left_still_resolves_by_number(services: Services) -> None:
    models = services.models
    models.set_alias("demo.m", "default", 1)
    v2 = models.get_version("demo.m", 2)
    assert v2.aliases == []
    assert models.get_version("demo.m").version == 1


def test_lookup_errors_and_their_order(services: Services) -> None:
    models = services.models
    with pytest.raises(sy.NotFound, match=r"model demo\.nope not found"):
        models.get_version("demo.nope", 0)  # the model first, then the arguments
    with pytest.raises(sy.NotFound, match=r"model demo\.nope not found"):
        models.get_version("demo.nope", alias="has space")
    with pytest.raises(sy.InvalidArgument, match="not both"):
        models.get_version("demo.m", 1, alias="default")
    for bad in (0, -1, True, 1.0, "1"):
        with pytest.raises(sy.InvalidArgument, match="invalid version"):
            models.get_version("demo.m", bad)  # type: ignore[arg-type]
    with pytest.raises(sy.InvalidArgument, match="invalid alias"):
        models.get_version("demo.m", alias="has space")
    with pytest.raises(sy.InvalidArgument, match="cannot be a number"):
        models.get_version("demo.m", alias="3")
    with pytest.raises(sy.NotFound, match=r"no alias 'missing'; aliases: default"):
        models.get_version("demo.m", alias="missing")
    with pytest.raises(sy.NotFound, match=r"model demo\.m has no version 9") as info:
        models.get_version("demo.m", 9)
    assert info.value.details["resource"] == "models/demo.m/versions/9"
    with pytest.raises(sy.InvalidArgument, match="model name"):
        models.get_version("not a name")
    assert models.get_version("demo.m").version == 2  # nothing changed on the way
