"""calculate_p_values and ML.ADVANCED_WEIGHTS for LINEAR_REG and LOGISTIC_REG."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

import shipyard as sy
from shipyard.errors import FailedPrecondition, InvalidArgument, Unsupported


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("pvalues"))
    rng = np.random.default_rng(11)
    rows = []
    for i in range(200):
        x = float(rng.normal(5, 2))
        noise = float(rng.normal())
        y = 1.5 * x + 4.0 + float(rng.normal(0, 1.0))
        hit = bool(rng.random() < 1 / (1 + np.exp(-(2.0 * (x - 5)))))
        rows.append({"x": x, "noise": noise, "c": "abc"[i % 3], "y": y, "hit": hit})
    workspace.load_table("demo.t", rows)
    workspace.sql(
        "CREATE MODEL demo.ols OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "data_split_method='NO_SPLIT', calculate_p_values=TRUE) AS SELECT x, y FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.logit OPTIONS(model_type='logistic_reg', input_label_cols=['hit'], "
        "data_split_method='NO_SPLIT', calculate_p_values=TRUE, "
        "category_encoding_method='DUMMY_ENCODING') AS SELECT x, noise, c, hit FROM demo.t"
    )
    workspace.sql(
        "CREATE MODEL demo.plain OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
        "AS SELECT x, y FROM demo.t"
    )
    yield workspace
    workspace.close()


def test_linear_regression_matches_scipy_linregress(ws: Any) -> None:
    data = ws.sql("SELECT x, y FROM demo.t").to_arrow()
    fit = stats.linregress(data["x"].to_numpy(), data["y"].to_numpy())
    out = ws.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.ols)").to_arrow()
    assert out.column_names == [  # BigQuery ML's columns, one row per category
        "processed_input",
        "category",
        "weight",
        "standard_error",
        "p_value",
    ]
    rows = {r["processed_input"]: r for r in out.to_pylist()}
    assert rows["x"]["weight"] == pytest.approx(fit.slope)
    assert rows["x"]["standard_error"] == pytest.approx(fit.stderr, rel=1e-6)
    assert rows["x"]["p_value"] == pytest.approx(fit.pvalue, abs=1e-12)
    intercept = rows["__INTERCEPT__"]
    assert intercept["weight"] == pytest.approx(fit.intercept)
    assert intercept["standard_error"] == pytest.approx(fit.intercept_stderr, rel=1e-6)
    standardized = ws.sql(
        "SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.ols, STRUCT(TRUE AS standardize))"
    ).to_pylist()
    x_std = next(r for r in standardized if r["processed_input"] == "x")
    # the same test on rescaled features: the same p-value, a rescaled standard error
    assert x_std["p_value"] == pytest.approx(rows["x"]["p_value"], abs=1e-12)
    assert x_std["standard_error"] / x_std["weight"] == pytest.approx(
        rows["x"]["standard_error"] / rows["x"]["weight"]
    )


def test_logistic_regression_separates_signal_from_noise(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.logit)").to_pylist()
    rows = {r["processed_input"]: r for r in out}
    assert rows["x"]["p_value"] < 1e-6  # the label depends on x
    assert rows["noise"]["p_value"] > 0.01
    categories = [r for r in out if r["processed_input"] == "c"]
    # one row per category; DUMMY_ENCODING's dropped one first, with weight 0.0 and NaN
    # statistics (BigQuery ML's rule), the others with their own
    assert len(categories) == 3
    dropped, *kept = categories
    assert dropped["weight"] == 0.0
    assert math.isnan(dropped["standard_error"]) and math.isnan(dropped["p_value"])
    assert all(c["category"] is not None and c["weight"] is not None for c in categories)
    assert all(0.0 <= c["p_value"] <= 1.0 and c["standard_error"] > 0 for c in kept)
    assert rows["x"]["category"] is None
    assert all(
        r["standard_error"] is None or r["standard_error"] > 0 for r in out if r is not dropped
    )


@pytest.mark.parametrize(
    ("sql", "error", "fragment"),
    [
        (
            "SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.plain)",
            FailedPrecondition,
            "calculate_p_values=TRUE",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
            "calculate_p_values=TRUE, l1_reg=0.5) AS SELECT x, y FROM demo.t",
            InvalidArgument,
            "l1_reg",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
            "calculate_p_values=TRUE) AS SELECT x, c, y FROM demo.t",
            InvalidArgument,
            "DUMMY_ENCODING",
        ),
        (
            "CREATE MODEL demo.bad OPTIONS(model_type='logistic_reg', input_label_cols=['c'], "
            "calculate_p_values=TRUE) AS SELECT x, c FROM demo.t",
            Unsupported,
            "multiclass",
        ),
    ],
)
def test_bad_input(ws: Any, sql: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        ws.sql(sql)
    assert fragment in str(info.value)
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_advanced_weights_applies_to_linear_models_only(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.km OPTIONS(model_type='kmeans', num_clusters=2) AS SELECT x FROM demo.t"
    )
    with pytest.raises(InvalidArgument, match="applies to LINEAR_REG, LOGISTIC_REG models"):
        ws.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.km)")
    schema = ws.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL demo.ols)").to_arrow().schema
    assert schema.field("category").type == pa.string()
    assert "category_weights" not in schema.names
    assert schema.field("p_value").type == pa.float64()


def test_ml_weights_lists_the_dropped_dummy_category_with_weight_zero(ws: Any) -> None:
    # BigQuery ML: "The final set of weights from ML.WEIGHTS still includes the dropped
    # category, but its weight is always 0.0."
    rows = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.logit)").to_pylist()
    (c,) = [r for r in rows if r["processed_input"] == "c"]
    categories = {w["category"]: w["weight"] for w in c["category_weights"]}
    advanced = ws.sql(
        "SELECT category, weight FROM ML.ADVANCED_WEIGHTS(MODEL demo.logit) "
        "WHERE processed_input = 'c'"
    ).to_pylist()
    assert categories == {r["category"]: r["weight"] for r in advanced}
    assert sum(w == 0.0 for w in categories.values()) == 1 and len(categories) == 3
