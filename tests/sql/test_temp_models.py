"""CREATE TEMP MODEL: a model that lives for one multi-statement script."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import shipyard as sy


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("temp-models"))
    workspace.load_table("demo.t", [{"x": float(i), "y": 2.0 * i + 1} for i in range(20)])
    yield workspace
    workspace.close()


def _models(ws: Any) -> list[str]:
    return [m.name for m in ws.models.list().items]


def test_temp_model_is_usable_in_its_script_then_dropped(ws: Any) -> None:
    result = ws.sql(
        """
        CREATE TEMP MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'])
          AS SELECT * FROM demo.t;
        ALTER MODEL m SET OPTIONS(description='scratch');
        CREATE TABLE demo.scored AS
          SELECT x, predicted_y FROM ML.PREDICT(MODEL m, TABLE demo.t);
        SELECT * FROM ML.EVALUATE(MODEL m)
        """
    )
    assert result.to_arrow()["r2_score"][0].as_py() == pytest.approx(1.0)
    scored = ws.sql("SELECT * FROM demo.scored ORDER BY x").to_arrow()
    assert scored["predicted_y"].to_pylist()[:3] == pytest.approx([1.0, 3.0, 5.0])
    assert _models(ws) == []  # gone with its script
    # the same bare name in a later script is a new TEMP model, or an error if not created
    with pytest.raises(sy.InvalidArgument, match="model name"):
        ws.sql("SELECT * FROM ML.PREDICT(MODEL m, TABLE demo.t)")


def test_temp_model_is_dropped_when_the_script_fails(ws: Any) -> None:
    with pytest.raises(sy.NotFound, match="demo.nope"):
        ws.sql(
            "CREATE TEMPORARY MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
            "AS SELECT * FROM demo.t; SELECT * FROM demo.nope"
        )
    assert _models(ws) == []


def test_temp_model_does_not_shadow_qualified_models(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT x, 10 * y AS y FROM demo.t"
    )
    rows = ws.sql(
        "CREATE TEMP MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT * FROM demo.t; "
        "SELECT a.predicted_y AS temp, b.predicted_y AS kept "
        "FROM ML.PREDICT(MODEL m, (SELECT 1.0 AS x)) AS a, "
        "ML.PREDICT(MODEL demo.m, (SELECT 1.0 AS x)) AS b"
    ).to_arrow()
    assert rows["temp"][0].as_py() == pytest.approx(3.0)
    assert rows["kept"][0].as_py() == pytest.approx(30.0)
    assert _models(ws) == ["demo.m"]


def test_temp_model_rules(ws: Any) -> None:
    with pytest.raises(sy.InvalidArgument, match="multi-statement script"):
        ws.sql(
            "CREATE TEMP MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
            "AS SELECT * FROM demo.t"
        )
    with pytest.raises(sy.InvalidArgument, match="has no dataset"):
        ws.sql(
            "CREATE TEMP MODEL demo.m2 OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
            "AS SELECT * FROM demo.t; SELECT 1"
        )
    assert "demo.m2" not in _models(ws)
