"""ML.VALIDATE_DATA_DRIFT and ML.VALIDATE_DATA_SKEW through SQL, on a real workspace, against
distances computed by hand with NumPy and SciPy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.spatial.distance import jensenshannon

import shipyard as sy
from shipyard.errors import FailedPrecondition, InvalidArgument, ShipyardError
from shipyard.registry import preprocessing
from shipyard.registry.preprocessing import FeaturePreprocessor

rng = np.random.default_rng(11)
N = 2000
COLUMNS = ["input", "metric", "threshold", "value", "is_anomaly"]
TYPES = [pa.string(), pa.string(), pa.float64(), pa.float64(), pa.bool_()]


def _jsd(p: Any, q: Any) -> float:
    """The divergence in bits: SciPy's jensenshannon is the distance, its square root."""
    return float(jensenshannon(np.asarray(p, float), np.asarray(q, float), base=2) ** 2)


def _shares(counts: dict[str, int], keys: list[str]) -> np.ndarray:
    total = sum(counts.values())
    return np.array([counts.get(k, 0) / total for k in keys])


# Base: x uniform on integers 0..10 (edges 0, 1, … 10 exactly); c with fixed counts.
X_BASE = np.arange(N) % 11
C_BASE = {"a": 1000, "b": 600, "c": 400}
C_STUDY = {"a": 500, "b": 500, "c": 700, "d": 300}


def _categories(counts: dict[str, int]) -> list[str]:
    return [k for k, n in counts.items() for _ in range(n)]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("data_validation"))
    noise = rng.normal(size=N)
    y = X_BASE * 0.5 + noise
    workspace.load_table(
        "d.base",
        pa.table(
            {
                "x": X_BASE.astype(float),
                "c": _categories(C_BASE),
                "y": y,
                "only_base": np.ones(N),
            }
        ),
    )
    workspace.load_table(
        "d.study",
        pa.table(
            {
                "x": X_BASE + 5.0,  # edges 5 … 15: half the range overlaps
                "c": _categories(C_STUDY),
                "y": y,
                "only_study": np.ones(N),
            }
        ),
    )
    workspace.load_table(
        "d.half",  # x shifted half a bucket: every bucket splits in two
        pa.table({"x": X_BASE + 0.5}),
    )
    yield workspace
    workspace.close()


def _q(ws: Any, sql: str) -> pa.Table:
    return ws.sql(sql).to_arrow()  # type: ignore[no-any-return]


def _by_input(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["input"]: row for row in table.to_pylist()}


def _hist(x: np.ndarray) -> np.ndarray:
    """x's 10 equal-width buckets from its min to its max (the max in the last bucket)."""
    return np.histogram(x, bins=10, range=(x.min(), x.max()))[0].astype(float)


# -- ML.VALIDATE_DATA_DRIFT ------------------------------------------------------------------


def test_identical_relations_have_no_drift(ws: Any) -> None:
    out = _q(ws, "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.base)")
    assert out.column_names == COLUMNS
    assert out.schema.types == TYPES
    rows = out.to_pylist()
    assert [r["input"] for r in rows] == ["x", "c", "y", "only_base"]  # the base's order
    assert all(r["value"] == 0.0 and r["is_anomaly"] is False for r in rows)
    assert {r["input"]: r["metric"] for r in rows} == {
        "x": "JENSEN_SHANNON_DIVERGENCE",
        "c": "L_INFTY",
        "y": "JENSEN_SHANNON_DIVERGENCE",
        "only_base": "JENSEN_SHANNON_DIVERGENCE",
    }
    assert all(r["threshold"] == 0.3 for r in rows)  # the default thresholds


def test_drift_compares_the_columns_of_both_relations(ws: Any) -> None:
    out = _by_input(_q(ws, "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study)"))
    assert list(out) == ["x", "c", "y"]  # only_base / only_study: one side only
    assert out["y"]["value"] == 0.0


def test_shifted_numeric_column_aligns_histograms_on_common_boundaries(ws: Any) -> None:
    # Both histograms have unit-wide buckets (0..10 and 5..15): on the union of boundaries the
    # base holds the first ten buckets, the study the last ten.
    h = _hist(X_BASE.astype(float))
    p = np.concatenate([h, np.zeros(5)])
    q = np.concatenate([np.zeros(5), h])
    out = _by_input(_q(ws, "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study)"))
    assert out["x"]["value"] == pytest.approx(_jsd(p, q), rel=1e-12)
    assert out["x"]["is_anomaly"] is True  # ~0.49 > 0.3


def test_half_bucket_shift_spreads_each_count_evenly(ws: Any) -> None:
    h = _hist(X_BASE.astype(float))
    halves = np.repeat(h / 2, 2)  # boundaries 0, 0.5, 1, … 10.5
    p = np.concatenate([halves, [0.0]])
    q = np.concatenate([[0.0], halves])
    out = _by_input(
        _q(ws, "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, (SELECT x FROM d.half))")
    )
    assert out["x"]["value"] == pytest.approx(_jsd(p, q), rel=1e-12)
    assert out["x"]["is_anomaly"] is False


def test_reweighted_categorical_column(ws: Any) -> None:
    keys = ["a", "b", "c", "d"]
    p, q = _shares(C_BASE, keys), _shares(C_STUDY, keys)
    linf = _by_input(_q(ws, "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study)"))
    assert linf["c"]["metric"] == "L_INFTY"
    assert linf["c"]["value"] == pytest.approx(np.max(np.abs(p - q)), rel=1e-12)  # 0.25
    assert linf["c"]["is_anomaly"] is False
    jsd = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study, "
            "STRUCT('jensen_shannon_divergence' AS categorical_metric_type))",
        )
    )
    assert jsd["c"]["metric"] == "JENSEN_SHANNON_DIVERGENCE"
    assert jsd["c"]["value"] == pytest.approx(_jsd(p, q), rel=1e-12)


def test_rank_histogram_keeps_the_most_frequent_values(ws: Any) -> None:
    # One value per side: "a" on both (base 1000 of 2000, study: "c" leads with 700).
    out = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study, "
            "STRUCT(1 AS num_rank_histogram_buckets))",
        )
    )
    assert out["c"]["value"] == 1.0  # {a: 1.0} against {c: 1.0}
    two = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study, "
            "STRUCT(2 AS num_rank_histogram_buckets))",
        )
    )
    # base {a: 1000, b: 600} vs study {c: 700, a: 500} (b ties a at 500: a sorts first)
    keys = ["a", "b", "c"]
    p = _shares({"a": 1000, "b": 600}, keys)
    q = _shares({"c": 700, "a": 500}, keys)
    assert two["c"]["value"] == pytest.approx(np.max(np.abs(p - q)), rel=1e-12)


def test_num_histogram_buckets(ws: Any) -> None:
    out = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT((SELECT x FROM d.base), (SELECT x FROM d.half),"
            " STRUCT(2 AS num_histogram_buckets))",
        )
    )
    # base: [0, 5) holds 0..4, [5, 10] holds 5..10; study the same shifted by 0.5: on the
    # boundaries 0, 0.5, 5, 5.5, 10, 10.5 each bucket splits 1:9 by width.
    lo, hi = float(np.sum(X_BASE < 5)), float(np.sum(X_BASE >= 5))
    p = [lo * 0.1, lo * 0.9, hi * 0.1, hi * 0.9, 0.0]
    q = [0.0, lo * 0.9, lo * 0.1, hi * 0.9, hi * 0.1]
    assert out["x"]["value"] == pytest.approx(_jsd(p, q), rel=1e-12)


def test_per_feature_thresholds(ws: Any) -> None:
    out = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study, STRUCT("
            "0.1 AS categorical_default_threshold, 0.9 AS numerical_default_threshold, "
            "[('x', 0.6), ('y', 0.0)] AS thresholds))",
        )
    )
    assert out["c"]["threshold"] == 0.1 and out["c"]["is_anomaly"] is True
    assert out["x"]["threshold"] == 0.6 and out["x"]["is_anomaly"] is False
    assert out["y"]["threshold"] == 0.0 and out["y"]["is_anomaly"] is False  # 0 is not > 0


def test_nulls_are_missing_values(ws: Any) -> None:
    base = "(SELECT x, c FROM d.base)"
    with_nulls = (
        "(SELECT x, c FROM d.base UNION ALL "
        "SELECT NULL::DOUBLE AS x, NULL::VARCHAR AS c FROM range(500))"
    )
    out = _by_input(_q(ws, f"SELECT * FROM ML.VALIDATE_DATA_DRIFT({base}, {with_nulls})"))
    assert out["x"]["value"] == 0.0 and out["c"]["value"] == 0.0


def test_null_only_columns(ws: Any) -> None:
    values = "(SELECT x, c FROM d.base)"
    nulls = "(SELECT NULL::DOUBLE AS x, NULL::VARCHAR AS c FROM range(10))"
    untyped = "(SELECT NULL AS x, NULL AS c FROM range(10))"
    both = _by_input(_q(ws, f"SELECT * FROM ML.VALIDATE_DATA_DRIFT({nulls}, {untyped})"))
    assert both["x"]["value"] == 0.0 and both["c"]["value"] == 0.0  # nothing against nothing
    one = _by_input(_q(ws, f"SELECT * FROM ML.VALIDATE_DATA_DRIFT({values}, {nulls})"))
    assert one["x"]["value"] == 1.0 and one["x"]["is_anomaly"] is True
    assert one["c"]["value"] == pytest.approx(0.5)  # L_INFTY: the largest share, a's
    assert one["c"]["is_anomaly"] is True
    typed = _by_input(_q(ws, f"SELECT * FROM ML.VALIDATE_DATA_DRIFT({values}, {untyped})"))
    assert typed["x"]["metric"] == "JENSEN_SHANNON_DIVERGENCE" and typed["x"]["value"] == 1.0


def test_constant_columns_are_point_masses(ws: Any) -> None:
    out = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT((SELECT 3.0 AS k, x FROM d.base), "
            "(SELECT CASE WHEN x < 5 THEN 3.0 ELSE 4.0 END AS k, x FROM d.base))",
        )
    )
    # base: all at 3; study: a point mass at 3 or a range [3, 4] with the 3s in the first bucket
    share = float(np.mean(X_BASE < 5))
    p = np.array([0.0] * 10 + [1.0])  # ten range buckets of the study, then the point at 3
    q = np.concatenate([[share], np.zeros(8), [1 - share], [0.0]])
    assert out["k"]["value"] == pytest.approx(_jsd(p, q), rel=1e-12)


def test_drift_on_other_column_types(ws: Any) -> None:
    out = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT("
            "(SELECT x > 4 AS b, DATE '2026-01-01' + x::INT AS d, x::INT AS i, [c] AS arr, "
            "{'s': c, 'v': x} AS st FROM d.base), "
            "(SELECT x > 4 AS b, DATE '2026-01-01' + x::INT AS d, x::INT AS i, [c] AS arr, "
            "{'s': c, 'v': x} AS st FROM d.base))",
        )
    )
    assert {k: v["metric"] for k, v in out.items()} == {
        "b": "L_INFTY",
        "d": "L_INFTY",
        "i": "JENSEN_SHANNON_DIVERGENCE",
        "arr": "L_INFTY",
        "st_s": "L_INFTY",  # a STRUCT's fields, named as ML.FEATURE_INFO names them
        "st_v": "JENSEN_SHANNON_DIVERGENCE",
    }
    assert all(v["value"] == 0.0 for v in out.values())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("STRUCT(0.1 AS threshold)", "no parameter 'threshold'"),
        ("STRUCT('high' AS numerical_default_threshold)", "must be an integer or a number"),
        ("STRUCT(1.0 AS categorical_default_threshold)", r"must be in \[0, 1\)"),
        ("STRUCT(-0.1 AS numerical_default_threshold)", r"must be in \[0, 1\)"),
        ("STRUCT('L2' AS categorical_metric_type)", "valid values: L_INFTY, JENSEN_SHANNON"),
        ("STRUCT('L_INFTY' AS numerical_metric_type)", "valid values: JENSEN_SHANNON_DIVERGENCE"),
        ("STRUCT([('x', 1.5)] AS thresholds)", r"threshold of 'x' must be in \[0, 1\)"),
        ("STRUCT([('nope', 0.1)] AS thresholds)", "column 'nope', which it does not compare"),
        ("STRUCT([0.1] AS thresholds)", r"ARRAY<STRUCT<STRING, FLOAT64>>"),
        ("STRUCT(0 AS num_histogram_buckets)", "between 1 and 1000"),
        ("STRUCT(2.5 AS num_rank_histogram_buckets)", "must be an integer"),
    ],
)
def test_drift_refuses_bad_parameters(ws: Any, params: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ws.sql(f"SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study, {params})")


def test_drift_refuses_wrong_relations(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="takes 2 relations, got 1"):
        ws.sql("SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base)")
    with pytest.raises(InvalidArgument, match="cannot compare column 'x'.*double.*string.*cast"):
        ws.sql(
            "SELECT * FROM ML.VALIDATE_DATA_DRIFT((SELECT x FROM d.base), "
            "(SELECT c AS x FROM d.base))"
        )
    with pytest.raises(ShipyardError, match=r"d\.nope"):
        ws.sql("SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.nope)")


# -- ML.VALIDATE_DATA_SKEW -------------------------------------------------------------------

_TRAIN = "SELECT x, c, y FROM d.base"
_MODELS = {
    "lin": "model_type='linear_reg', input_label_cols=['y']",
    "bt": "model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=3",
    "km": "model_type='kmeans', num_clusters=2",
}


@pytest.fixture(scope="module")
def models(ws: Any) -> list[str]:
    for name, options in _MODELS.items():
        query = _TRAIN if name != "km" else "SELECT x, c FROM d.base"
        ws.sql(f"CREATE MODEL d.{name} OPTIONS({options}) AS {query}")
    ws.sql(
        "CREATE MODEL d.tr TRANSFORM(ML.STANDARD_SCALER(x) OVER () AS xs, c, y) "
        f"OPTIONS({_MODELS['lin']}) AS {_TRAIN}"
    )
    return [*_MODELS, "tr"]


@pytest.mark.parametrize("name", ["lin", "bt", "km", "tr"])
def test_skew_of_the_training_data_is_zero(ws: Any, models: list[str], name: str) -> None:
    out = _q(ws, f"SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.{name}, TABLE d.base)")
    assert out.column_names == COLUMNS and out.schema.types == TYPES
    rows = _by_input(out)
    # the raw input features (a TRANSFORM model's too: x, not xs), never the label
    assert list(rows) == ["x", "c"]
    assert all(r["value"] == 0.0 and r["is_anomaly"] is False for r in rows.values())


@pytest.mark.parametrize("name", ["lin", "bt", "km", "tr"])
def test_skew_against_shifted_serving_data(ws: Any, models: list[str], name: str) -> None:
    rows = _by_input(_q(ws, f"SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.{name}, TABLE d.study)"))
    drift = _by_input(_q(ws, "SELECT * FROM ML.VALIDATE_DATA_DRIFT(TABLE d.base, TABLE d.study)"))
    # the training statistics are the whole base table (2,000 rows): the same as drift
    assert rows["x"]["value"] == pytest.approx(drift["x"]["value"], rel=1e-12)
    assert rows["c"]["value"] == pytest.approx(drift["c"]["value"], rel=1e-12)
    assert rows["x"]["is_anomaly"] is True and rows["c"]["is_anomaly"] is False


def test_skew_compares_only_the_features_in_the_serving_data(ws: Any, models: list[str]) -> None:
    rows = _q(ws, "SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.lin, (SELECT c FROM d.study))")
    assert rows.column("input").to_pylist() == ["c"]
    with pytest.raises(InvalidArgument, match=r"none of model d\.lin's feature columns \(x, c\)"):
        ws.sql("SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.lin, (SELECT y FROM d.study))")


def test_skew_thresholds_and_parameters(ws: Any, models: list[str]) -> None:
    rows = _by_input(
        _q(
            ws,
            "SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.lin, TABLE d.study, STRUCT("
            "0.2 AS categorical_default_threshold, [('x', 0.95)] AS thresholds, "
            "FALSE AS enable_visualization_link))",
        )
    )
    assert rows["c"]["threshold"] == 0.2 and rows["c"]["is_anomaly"] is True
    assert rows["x"]["threshold"] == 0.95 and rows["x"]["is_anomaly"] is False
    bad = {
        "STRUCT(TRUE AS enable_visualization_link)": "Vertex AI",
        "STRUCT(10 AS num_histogram_buckets)": "no parameter 'num_histogram_buckets'",
        "STRUCT([('y', 0.1)] AS thresholds)": "column 'y', which it does not compare",
        "STRUCT('x' AS categorical_metric_type)": "valid values",
    }
    for params, message in bad.items():
        with pytest.raises(InvalidArgument, match=message):
            ws.sql(f"SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.lin, TABLE d.study, {params})")


def test_skew_refuses_a_serving_column_of_another_type(ws: Any, models: list[str]) -> None:
    with pytest.raises(InvalidArgument, match="serving column 'x' has type string"):
        ws.sql("SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.lin, (SELECT c AS x FROM d.base))")


def test_skew_refuses_models_without_served_features(ws: Any) -> None:
    ws.load_table(
        "d.ratings", [{"u": u, "i": i, "r": float(u * i % 5)} for u in range(6) for i in range(6)]
    )
    ws.sql(
        "CREATE MODEL d.mf OPTIONS(model_type='matrix_factorization', user_col='u', "
        "item_col='i', rating_col='r', num_factors=2) AS SELECT * FROM d.ratings"
    )
    with pytest.raises(InvalidArgument, match=r"d\.mf of type MATRIX_FACTORIZATION.*LINEAR_REG"):
        ws.sql("SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.mf, TABLE d.ratings)")


def test_model_trained_before_distributions_asks_to_retrain(
    ws: Any, models: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package written before this change: ML.FEATURE_INFO rows without "distribution".
    monkeypatch.setattr(preprocessing, "training_distribution", lambda spec: None)
    ws.sql(f"CREATE MODEL d.old OPTIONS({_MODELS['lin']}) AS {_TRAIN}")
    monkeypatch.undo()
    assert "distribution" not in ws.models.manifest("d.old").feature_info[0]
    with pytest.raises(FailedPrecondition, match=r"trained before.*retrain it"):
        ws.sql("SELECT * FROM ML.VALIDATE_DATA_SKEW(MODEL d.old, TABLE d.study)")
    # everything else still works on it
    assert _q(ws, "SELECT * FROM ML.FEATURE_INFO(MODEL d.old)").num_rows == 2
    assert _q(ws, "SELECT * FROM ML.PREDICT(MODEL d.old, TABLE d.study)").num_rows == N


def test_old_preprocessor_descriptions_still_load() -> None:
    t = pa.table({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", None, "a"]})
    described = FeaturePreprocessor.fit(t, ["x", "c"], standardize=True).to_dict()
    # 1, 2 and 4 in ten buckets of width 0.3 from 1 to 4: buckets 0, 3 and 9 (the max)
    assert described["columns"][0]["stats"]["histogram"] == [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert described["columns"][1]["stats"]["top_values"] == {
        "values": ["a", "b"],
        "counts": [2, 1],
    }
    for column in described["columns"]:  # as stored before: no histogram, no counts
        column["stats"].pop("histogram", None)
        column["stats"].pop("top_values", None)
    old = FeaturePreprocessor.from_dict(described)
    assert all("distribution" not in row for row in old.feature_info())
    np.testing.assert_array_equal(
        old.transform(t), FeaturePreprocessor.fit(t, ["x", "c"], standardize=True).transform(t)
    )


def test_training_distribution_keeps_the_most_frequent_values() -> None:
    values = [f"v{i:03d}" for i in range(120) for _ in range(1 + i % 7)]
    t = pa.table({"c": [*values, None, None]})
    for encoding in ("one_hot", "dummy"):
        p = FeaturePreprocessor.fit(t, ["c"], standardize=False, categorical_encoding=encoding)
        got = p.feature_info()[0]["distribution"]
        counted = sorted((-values.count(v), v) for v in set(values))[:50]
        assert got == {
            "kind": "string",
            "values": [v for _, v in counted],  # by count, ties in sort order
            "counts": [-n for n, _ in counted],
        }


def _drift(base: pa.Table, study: pa.Table) -> pa.Table:
    """The handler on Arrow tables as they are (chunks kept)."""
    from shipyard.sql.data_validation import ml_validate_data_drift
    from shipyard.sql.functions import DataCall

    call = DataCall("VALIDATE_DATA_DRIFT", ["base", "study"], cursor=None, _inputs=[base, study])
    return ml_validate_data_drift(None, call)  # type: ignore[arg-type]


def test_chunked_columns_with_nan_and_infinity_give_the_same_distances() -> None:
    x = rng.normal(size=3000)
    x[[5, 1500, 2999]] = [np.nan, np.inf, -np.inf]
    base = pa.table({"x": pa.array(x), "c": pa.array(rng.choice(["a", "b", None], 3000))})
    study = pa.table({"x": pa.array(x[::-1] * 1.5), "c": pa.array(rng.choice(["a", "c"], 3000))})
    whole = _drift(base, study)
    chunked = [pa.Table.from_batches(t.to_batches(max_chunksize=700)) for t in (base, study)]
    assert chunked[0].column("x").num_chunks == 5
    assert _drift(*chunked).equals(whole)
    # NaN and ±inf are missing: the same as the finite values alone
    finite = base.filter(pc.is_finite(base.column("x")))
    assert _drift(finite, study).column("value")[0] == whole.column("value")[0]
