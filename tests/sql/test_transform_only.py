"""model_type='TRANSFORM_ONLY': a model that is only its fitted TRANSFORM, answered by
ML.TRANSFORM and ML.FEATURE_INFO, refused by the other ML functions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import shipyard as sy

_ROWS = [{"x": float(i), "city": ["oslo", "rome", "lima"][i % 3], "y": 2.0 * i} for i in range(30)]
_PREP = (
    "CREATE MODEL demo.prep "
    "TRANSFORM(ML.STANDARD_SCALER(x) OVER () AS x_s, ML.LABEL_ENCODER(city) OVER () AS city_id, "
    "ML.QUANTILE_BUCKETIZE(x, 3) OVER () AS x_bucket, y) "
    "OPTIONS(model_type='transform_only') AS SELECT * FROM demo.t"
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("transform_only"))
    workspace.load_table("demo.t", _ROWS)
    workspace.sql(_PREP)
    yield workspace
    workspace.close()


def _rows(ws: Any, sql: str) -> list[dict[str, Any]]:
    return ws.sql(sql).to_arrow().to_pylist()  # type: ignore[no-any-return]


def test_the_model_is_its_transform(ws: Any) -> None:
    version = ws.models.get_version("demo.prep")
    assert (version.model_type, version.flavor, version.task) == (
        "TRANSFORM_ONLY",
        "transform",
        "transform",
    )
    assert [c.name for c in version.signature.inputs] == ["x", "city", "y"]
    assert [c.name for c in version.signature.outputs] == ["x_s", "city_id", "x_bucket", "y"]
    out = _rows(ws, "SELECT * FROM ML.TRANSFORM(MODEL demo.prep, TABLE demo.t) ORDER BY y")
    xs = [r["x_s"] for r in out]
    assert abs(sum(xs)) < 1e-9 and xs[0] < 0 < xs[-1]  # standardised on the query's rows
    assert {r["city_id"] for r in out} == {1, 2, 3}  # vocabulary: lima, oslo, rome
    assert {r["x_bucket"] for r in out} == {"bin_1", "bin_2", "bin_3"}
    assert [r["y"] for r in out] == [r["y"] for r in _ROWS]  # no label: y passes through


def test_statistics_are_the_training_rows_not_the_new_ones(ws: Any) -> None:
    out = _rows(
        ws,
        "SELECT * FROM ML.TRANSFORM(MODEL demo.prep, "
        "(SELECT 14.5 AS x, 'rome' AS city, 0.0 AS y UNION ALL "
        "SELECT 14.5, 'paris', 1.0))",
    )
    assert [round(r["x_s"], 9) for r in out] == [0.0, 0.0]  # 14.5 is the training mean
    assert out[1]["city_id"] == 0  # unseen category: 0, as BigQuery ML
    assert out[0]["city_id"] == 3


def test_feature_info_describes_the_query_columns(ws: Any) -> None:
    info = {r["input"]: r for r in _rows(ws, "SELECT * FROM ML.FEATURE_INFO(MODEL demo.prep)")}
    assert set(info) == {"x", "city", "y"}  # the TRANSFORM's inputs, as BigQuery ML
    assert info["x"]["mean"] == pytest.approx(14.5)
    assert info["y"]["max"] == 58.0
    assert info["city"]["category_count"] == 3


def test_another_model_trains_and_predicts_through_it(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE MODEL demo.reg OPTIONS(model_type='linear_reg', "
        "input_label_cols=['y']) AS SELECT x_s, city_id, y FROM "
        "ML.TRANSFORM(MODEL demo.prep, TABLE demo.t)"
    )
    out = _rows(
        ws,
        "SELECT y, predicted_y FROM ML.PREDICT(MODEL demo.reg, "
        "(SELECT * FROM ML.TRANSFORM(MODEL demo.prep, TABLE demo.t)))",
    )
    assert all(abs(r["y"] - r["predicted_y"]) < 1e-3 for r in out)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM ML.PREDICT(MODEL demo.prep, TABLE demo.t)",
        "SELECT * FROM ML.EVALUATE(MODEL demo.prep)",
        "SELECT * FROM ML.EVALUATE(MODEL demo.prep, TABLE demo.t)",
        "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL demo.prep, TABLE demo.t)",
        "SELECT * FROM ML.WEIGHTS(MODEL demo.prep)",
        "SELECT * FROM ML.TRAINING_INFO(MODEL demo.prep)",
    ],
)
def test_other_ml_functions_refuse_it_naming_the_ones_that_apply(ws: Any, sql: str) -> None:
    with pytest.raises(sy.InvalidArgument) as info:
        ws.sql(sql)
    message = str(info.value)
    assert "TRANSFORM_ONLY" in message
    assert "ML.TRANSFORM" in message and "ML.FEATURE_INFO" in message


def test_its_predictor_refuses_to_predict(ws: Any) -> None:
    predictor = ws.models.load("demo.prep")
    with pytest.raises(sy.InvalidArgument, match="ML.TRANSFORM"):
        predictor.predict(pa.table({"x": [1.0], "city": ["rome"], "y": [0.0]}))
    assert predictor.transform(pa.table({"x": [14.5], "city": ["rome"], "y": [0.0]}))[
        "city_id"
    ].to_pylist() == [3]


def test_native_export_writes_the_transform(ws: Any, tmp_path: Path) -> None:
    result = ws.sql(f"EXPORT MODEL demo.prep OPTIONS(uri='{tmp_path / 'out'}')")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest.json",
        "transform.json",
    ]
    assert "no ONNX" in (result.message or "")


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='transform_only') AS SELECT * FROM demo.t",
            "needs a TRANSFORM",
        ),
        (
            "CREATE MODEL demo.bad TRANSFORM(x) OPTIONS(model_type='transform_only', "
            "input_label_cols=['y']) AS SELECT * FROM demo.t",
            "it has no label",
        ),
        (
            "CREATE MODEL demo.bad TRANSFORM(x) OPTIONS(model_type='TRANSFORM_ONLY', "
            "l2_reg=0.1) AS SELECT * FROM demo.t",
            "takes no option but model_type",
        ),
        (
            "CREATE MODEL demo.bad TRANSFORM(nope AS n) OPTIONS(model_type='transform_only') "
            "AS SELECT * FROM demo.t",
            "nope",
        ),
        (
            "CREATE MODEL demo.bad TRANSFORM(x) OPTIONS(model_type='transform_only') "
            "AS SELECT * FROM demo.t WHERE x < 0",
            "returned no rows",
        ),
    ],
)
def test_bad_statements_are_refused_and_store_nothing(ws: Any, sql: str, fragment: str) -> None:
    with pytest.raises((sy.InvalidArgument, sy.SQLError)) as info:
        ws.sql(sql)
    assert fragment in str(info.value)
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_create_on_an_existing_name_follows_create_model_rules(ws: Any) -> None:
    with pytest.raises(sy.AlreadyExists):
        ws.sql(_PREP)
    assert "already exists" in (
        ws.sql(_PREP.replace("MODEL", "MODEL IF NOT EXISTS", 1)).message or ""
    )
    ws.sql(_PREP.replace("CREATE MODEL", "CREATE OR REPLACE MODEL"))
    assert ws.models.get("demo.prep").latest_version == 2
