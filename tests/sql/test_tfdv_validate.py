"""ML.TFDV_VALIDATE through SQL on a real workspace: the Anomalies JSON of two ML.TFDV_DESCRIBE
statistics, its values the same as ML.VALIDATE_DATA_DRIFT's on the same rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument, ShipyardError, SQLError
from shipyard.sql.tfdv_validate import tfdv_validate

N = 2000
X_BASE = np.arange(N) % 11  # integers 0..10
C_BASE = {"a": 1000, "b": 600, "c": 400}
C_STUDY = {"a": 500, "b": 500, "c": 700, "d": 300}

BASE = "(SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.base))"
STUDY = "(SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.study))"


def _categories(counts: dict[str, int]) -> list[str]:
    return [k for k, n in counts.items() for _ in range(n)]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("tfdv_validate"))
    y = np.random.default_rng(5).normal(size=N)
    workspace.load_table(
        "d.base",
        pa.table(
            {"x": X_BASE.astype(float), "c": _categories(C_BASE), "y": y, "only_base": np.ones(N)}
        ),
    )
    workspace.load_table(
        "d.study",
        pa.table(
            {
                "x": X_BASE + 5.0,  # shifted: half the range overlaps
                "c": _categories(C_STUDY),  # re-weighted, one new value
                "y": y,
                "only_study": np.ones(N),
            }
        ),
    )
    workspace.load_table("d.mixed", pa.table({"x": [str(v) for v in X_BASE]}))  # x as STRING
    workspace.load_table("d.none", pa.table({"x": pa.array([], pa.float64())}))
    yield workspace
    workspace.close()


def _validate(ws: Any, args: str, where: str = "") -> dict[str, Any]:
    out = ws.sql(f"SELECT ML.TFDV_VALIDATE({args}) AS anomalies {where}").to_arrow()
    assert out.column_names == ["anomalies"]
    return json.loads(out.column(0)[0].as_py())  # type: ignore[no-any-return]


def _measurements(anomalies: dict[str, Any], field: str) -> dict[str, dict[str, Any]]:
    """{feature: its one measurement} from driftSkewInfo."""
    out = {}
    for info in anomalies.get("driftSkewInfo", []):
        (measurement,) = info[field]
        out[".".join(info["path"]["step"])] = measurement
    return out


def _drift(ws: Any, struct: str = "") -> dict[str, dict[str, Any]]:
    rows = ws.sql(
        f"SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study{struct})"
    ).to_arrow()
    return {r["input"]: r for r in rows.to_pylist()}


def test_identical_statistics_have_no_anomaly(ws: Any) -> None:
    out = _validate(ws, f"{BASE}, {BASE}")
    assert "anomalyInfo" not in out and "dataMissing" not in out
    assert out["anomalyNameFormat"] == "SERIALIZED_PATH"
    got = _measurements(out, "skewMeasurements")  # SKEW: the default detection type
    assert list(got) == ["x", "c", "y", "only_base"]  # every feature, in the statistics' order
    assert {k: m["type"] for k, m in got.items()} == {
        "x": "JENSEN_SHANNON_DIVERGENCE",
        "c": "L_INFTY",
        "y": "JENSEN_SHANNON_DIVERGENCE",
        "only_base": "JENSEN_SHANNON_DIVERGENCE",
    }
    assert all(m["value"] == 0.0 and m["threshold"] == 0.3 for m in got.values())


def test_drift_values_are_validate_data_drifts(ws: Any) -> None:
    out = _validate(ws, f"{BASE}, {STUDY}, 'DRIFT'")
    got = _measurements(out, "driftMeasurements")
    drift = _drift(ws)
    for name in ("x", "c", "y"):
        assert got[name]["type"] == drift[name]["metric"]
        assert got[name]["value"] == pytest.approx(drift[name]["value"], rel=1e-12, abs=1e-15)
    assert got["x"]["value"] > 0.3 and got["y"]["value"] == 0.0
    # x shifted: an anomaly, described as TFDV describes it; c (L_INFTY 0.25) is not one;
    # only_study has no previous data (see test_skew_and_drift_name_their_sides_and_features)
    assert list(out["anomalyInfo"]) == ["x", "only_study"]
    x = out["anomalyInfo"]["x"]
    assert x["path"] == {"step": ["x"]} and x["severity"] == "ERROR"
    assert x["reason"] == [
        {
            "type": "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
            "shortDescription": "High approximate Jensen-Shannon divergence between current "
            "and previous",
            "description": "The approximate Jensen-Shannon divergence between current and "
            f"previous is {got['x']['value']:.6g} (up to six significant digits), above the "
            "threshold 0.3.",
        }
    ]
    assert x["description"] == x["reason"][0]["description"]
    assert x["shortDescription"] == x["reason"][0]["shortDescription"]


def test_categorical_jensen_shannon_matches_validate_data_drift(ws: Any) -> None:
    out = _validate(ws, f"{BASE}, {STUDY}, 'DRIFT', 0.3, 'JENSEN_SHANNON_DIVERGENCE'")
    got = _measurements(out, "driftMeasurements")
    drift = _drift(ws, ", STRUCT('JENSEN_SHANNON_DIVERGENCE' AS categorical_metric_type)")
    assert got["c"]["type"] == "JENSEN_SHANNON_DIVERGENCE"
    assert got["c"]["value"] == pytest.approx(drift["c"]["value"], rel=1e-12)


def test_thresholds_decide_the_anomalies(ws: Any) -> None:
    # c's L_INFTY is 0.25 (the share of "a" halves: 0.5 -> 0.25), the largest difference at "a"
    out = _validate(ws, f"{BASE}, {STUDY}, 'DRIFT', 0.1, 'L_INFTY', 0.9")
    got = _measurements(out, "driftMeasurements")
    assert got["c"] == {"type": "L_INFTY", "value": pytest.approx(0.25), "threshold": 0.1}
    assert got["x"]["threshold"] == 0.9
    assert list(out["anomalyInfo"]) == ["c", "only_study"]
    assert out["anomalyInfo"]["c"]["reason"][0] == {
        "type": "COMPARATOR_L_INFTY_HIGH",
        "shortDescription": "High Linfty distance between current and previous",
        "description": "The Linfty distance between current and previous is 0.25 (up to six "
        "significant digits), above the threshold 0.1. The feature value with maximum "
        "difference is: a",
    }
    # a per-feature threshold wins over the defaults
    out = _validate(
        ws,
        f"{BASE}, {STUDY}, 'DRIFT', 0.1, 'L_INFTY', 0.9, 'JENSEN_SHANNON_DIVERGENCE', "
        "[('c', 0.5), ('x', 0.05)]",
    )
    got = _measurements(out, "driftMeasurements")
    assert (got["c"]["threshold"], got["x"]["threshold"]) == (0.5, 0.05)
    assert list(out["anomalyInfo"]) == ["x", "only_study"]


def test_skew_and_drift_name_their_sides_and_features(ws: Any) -> None:
    skew = _validate(ws, f"{BASE}, {STUDY}, 'SKEW', 0.1")
    drift = _validate(ws, f"{BASE}, {STUDY}, 'drift', 0.1")  # case-insensitive, as the metrics
    assert all(
        "skewMeasurements" in i and "driftMeasurements" not in i for i in skew["driftSkewInfo"]
    )
    assert all("driftMeasurements" in i for i in drift["driftSkewInfo"])
    assert skew["anomalyInfo"]["c"]["shortDescription"] == (
        "High Linfty distance between training and serving"
    )
    # SKEW checks the training (base) features: serving lacks only_base
    assert skew["anomalyInfo"]["only_base"]["reason"] == [
        {
            "type": "COMPARATOR_CONTROL_DATA_MISSING",
            "shortDescription": "serving data missing",
            "description": "serving data is missing.",
        }
    ]
    assert "only_study" not in skew["anomalyInfo"]
    # DRIFT checks the current (study) features: the previous data lacks only_study
    assert drift["anomalyInfo"]["only_study"]["shortDescription"] == "previous data missing"
    assert "only_base" not in drift["anomalyInfo"]
    assert list(_measurements(drift, "driftMeasurements")) == ["x", "c", "y"]


def test_saved_statistics_in_a_table(ws: Any) -> None:
    ws.sql(
        "CREATE OR REPLACE TABLE d.saved AS "
        "SELECT 'base' AS side, 0.9 AS limit_, * FROM ML.TFDV_DESCRIBE(TABLE d.base) UNION ALL "
        "SELECT 'study', 0.1, * FROM ML.TFDV_DESCRIBE(TABLE d.study)"
    )
    rows = ws.sql(
        "SELECT side, ML.TFDV_VALIDATE(dataset_feature_statistics_list, "
        f"{BASE}, 'DRIFT', limit_) AS anomalies FROM d.saved ORDER BY side"
    ).to_arrow()
    base, study = (json.loads(a) for a in rows.column("anomalies").to_pylist())
    assert rows.column("side").to_pylist() == ["base", "study"]
    assert "anomalyInfo" not in base
    assert _measurements(study, "driftMeasurements")["c"]["threshold"] == 0.1  # its row's
    assert "c" in study["anomalyInfo"]
    # the same statistics through a variable-free scalar subquery give the same JSON
    direct = _validate(ws, f"{BASE}, {STUDY}, 'DRIFT', 0.1")
    assert _measurements(direct, "driftMeasurements")["x"]["value"] == pytest.approx(
        _measurements(study, "driftMeasurements")["x"]["value"]
    )


def test_type_mismatch_follows_the_categorical_metric(ws: Any) -> None:
    mixed = "(SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.mixed))"
    base_x = "(SELECT * FROM ML.TFDV_DESCRIBE((SELECT x FROM d.base)))"
    linf = _validate(ws, f"{base_x}, {mixed}, 'DRIFT'")
    # numbers on one side, strings on the other: L_INFTY against no value counts
    assert _measurements(linf, "driftMeasurements")["x"]["type"] == "L_INFTY"
    jsd = _validate(ws, f"{base_x}, {mixed}, 'DRIFT', 0.3, 'JENSEN_SHANNON_DIVERGENCE'")
    assert "driftSkewInfo" not in jsd and "anomalyInfo" not in jsd  # left out of the report


def test_empty_data_is_data_missing(ws: Any) -> None:
    none = "(SELECT * FROM ML.TFDV_DESCRIBE(TABLE d.none))"
    base_x = "(SELECT * FROM ML.TFDV_DESCRIBE((SELECT x FROM d.base)))"
    out = _validate(ws, f"{base_x}, {none}, 'DRIFT'")
    assert out["dataMissing"] is True
    assert _measurements(out, "driftMeasurements")["x"]["value"] == 1.0  # values vs none


def test_statistics_from_outside_bigquery() -> None:
    """TFDV's own JSON: snake_case names, uint64 counts as numbers, a NaN and a -inf bucket,
    buckets of unequal width, top values without a rank histogram, a BYTES feature."""
    base = {
        "datasets": [
            {
                "num_examples": 10,
                "features": [
                    {
                        "path": {"step": ["n"]},
                        "num_stats": {
                            "histograms": [
                                {
                                    "num_nan": 1,
                                    "buckets": [
                                        {
                                            "low_value": "-Infinity",
                                            "high_value": 0,
                                            "sample_count": 2,
                                        },
                                        {"low_value": 0, "high_value": 1, "sample_count": 4},
                                        {"low_value": 1, "high_value": 4, "sample_count": 4},
                                    ],
                                }
                            ]
                        },
                    },
                    {
                        "name": "s",
                        "string_stats": {
                            "top_values": [
                                {"value": "u", "frequency": 6},
                                {"value": "v", "frequency": 4},
                            ]
                        },
                    },
                    {"name": "b", "bytes_stats": {"unique": "3"}},
                ],
            }
        ]
    }
    study = json.loads(json.dumps(base))
    buckets = study["datasets"][0]["features"][0]["num_stats"]["histograms"][0]["buckets"]
    buckets[1]["sample_count"], buckets[2]["sample_count"] = 8, 0
    study["datasets"][0]["features"][1]["string_stats"]["top_values"][0]["frequency"] = "4"
    out = tfdv_validate(base, json.dumps(study), "DRIFT")
    got = _measurements(out, "driftMeasurements")
    assert list(got) == ["n", "s"]  # BYTES: no distribution to compare
    # n: [0, 1) and [1, 4) hold 0.5/0.5 against 1/0 (the -inf bucket and NaN left out)
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    m = (p + q) / 2
    jsd = 0.5 * (0.5 * np.log2(0.5 / m[0]) + 0.5 * np.log2(0.5 / m[1])) + 0.5 * np.log2(1 / m[0])
    assert got["n"]["value"] == pytest.approx(jsd, rel=1e-12)
    assert got["s"]["value"] == pytest.approx(0.1)  # u: 0.6 -> 0.5


_SKEW = f"{BASE}, {BASE}, 'SKEW'"
_DEFAULTS = f"{_SKEW}, 0.3, 'L_INFTY', 0.3, 'JENSEN_SHANNON_DIVERGENCE'"
_NOT_STATS = "is not a DatasetFeatureStatisticsList"
BAD_ARGUMENTS = [
    ("'nope', '{}'", SQLError, f"base_statistics {_NOT_STATS} in JSON form"),
    (f"{BASE}, '{{\"features\": []}}'", SQLError, f"study_statistics {_NOT_STATS}"),
    (f"{BASE}, 3", SQLError, "study_statistics must be a JSON value"),
    (
        f"{BASE}, {BASE}, 'SHIFT'",
        InvalidArgument,
        "detection_type 'SHIFT' is not valid; valid values: SKEW, DRIFT",
    ),
    (f"{_SKEW}, 1.0", InvalidArgument, "categorical_default_threshold must be in [0, 1)"),
    (
        f"{_SKEW}, 0.3, 'L_INFTY', -0.1",
        InvalidArgument,
        "numerical_default_threshold must be in [0, 1)",
    ),
    (
        f"{_SKEW}, 0.3, 'L2'",
        InvalidArgument,
        "categorical_metric_type 'L2' is not valid; valid values: L_INFTY, "
        "JENSEN_SHANNON_DIVERGENCE",
    ),
    (
        f"{_SKEW}, 0.3, 'L_INFTY', 0.3, 'L_INFTY'",
        InvalidArgument,
        "numerical_metric_type 'L_INFTY' is not valid; valid values: JENSEN_SHANNON_DIVERGENCE",
    ),
    (f"{_SKEW}, '0.3'", SQLError, "categorical_default_threshold must be a numerical expression"),
    (f"{_DEFAULTS}, [('x', 2.0)]", InvalidArgument, "threshold of 'x' must be in [0, 1)"),
    (
        f"{_DEFAULTS}, [('nope', 0.2)]",
        SQLError,
        "thresholds name the column 'nope', which it does not compare; its columns: c, "
        "only_base, x, y",
    ),
    (f"{_DEFAULTS}, 0.2", SQLError, "thresholds must be an ARRAY<STRUCT<STRING, FLOAT64>>"),
    (BASE, SQLError, "ML.TFDV_VALIDATE takes 2 to 8 arguments, got 1"),
    (f"{BASE}, {BASE}, detection_type => 'DRIFT'", SQLError, "takes positional arguments only"),
]


@pytest.mark.parametrize(("args", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_errors_naming_the_function(
    ws: Any, args: str, error: type[ShipyardError], message: str
) -> None:
    with pytest.raises(error, match="ML.TFDV_VALIDATE") as raised:
        ws.sql(f"SELECT ML.TFDV_VALIDATE({args})")
    assert message in str(raised.value)
    assert ws.sql("SELECT count(*) AS n FROM d.base").to_arrow().column(0)[0].as_py() == N


def test_null_statistics_give_null(ws: Any) -> None:
    out = ws.sql(f"SELECT ML.TFDV_VALIDATE(NULL, {BASE}) AS v").to_arrow()
    assert out.column("v").to_pylist() == [None]


def test_warehouse_register_function_reaches_every_cursor(tmp_path: Any) -> None:
    from shipyard.warehouse.duck import Warehouse

    path = tmp_path / "w.duckdb"
    first = Warehouse(path)
    try:
        first.register_function("shipyard_test_twice", lambda x: x * 2, ["BIGINT"], "BIGINT")
        first.register_function(  # again: kept, no error (a second service on the same warehouse)
            "shipyard_test_twice", lambda x: x * 2, ["BIGINT"], "BIGINT"
        )
        cur = first.cursor()
        assert cur.sql("SELECT shipyard_test_twice(21) AS v").fetchall() == [(42,)]
        cur.close()
    finally:
        first.close()
    with pytest.raises(ShipyardError, match="closed"):
        first.register_function("shipyard_test_other", lambda x: x, ["BIGINT"], "BIGINT")
