"""ML.PREDICT scores a linear model straight from the input columns (no model matrix); every
other path builds the matrix. Both must give the same bits, in any batch size or chunking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard
from shipyard.registry.predictor import _FROM_COLUMNS_ROWS, Predictor

ROWS = 3 * _FROM_COLUMNS_ROWS + 17


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    rng = np.random.default_rng(7)
    x = {f"x{i}": rng.normal(i, i + 1, ROWS) for i in range(5)}
    x["x1"][::97] = np.nan  # NaN is imputed
    x["x3"][5::211] = np.inf  # so is inf
    ints = rng.integers(0, 50, ROWS)
    y = sum((i + 1) * np.nan_to_num(v, posinf=0.0) for i, v in enumerate(x.values()))
    y = y + ints + rng.normal(0, 1, ROWS)
    table = pa.table(
        {
            **x,
            "xi": pa.array(ints, mask=np.arange(ROWS) % 50 == 0),  # integers with NULLs
            "y": y,
            "binary": (y > np.median(y)).astype(np.int64),
            "three": np.digitize(y, np.quantile(y, [0.3, 0.7])).astype(np.int64),
            "cat": pa.array(np.array(["a", "b", "c"])[np.arange(ROWS) % 3]),
        }
    )
    workspace = shipyard.connect(Path(tmp_path_factory.mktemp("fused")))
    workspace.load_table("d.t", table)
    for name, model_type, label in (
        ("reg", "linear_reg", "y"),
        ("bin", "logistic_reg", "binary"),
        ("multi", "logistic_reg", "three"),
    ):
        others = ", ".join(c for c in ("y", "binary", "three", "cat") if c != label)
        workspace.sql(
            f"CREATE MODEL d.{name} OPTIONS(model_type='{model_type}', "
            f"input_label_cols=['{label}'], data_split_method='no_split') "
            f"AS SELECT * EXCEPT({others}) FROM d.t"
        )
    return workspace


def _input(ws: Any) -> pa.Table:
    return ws.ctx.warehouse.cursor().sql("SELECT * FROM d.t").to_arrow_table()


def _scores(predictor: Predictor, table: pa.Table) -> np.ndarray:
    return predictor._scores(predictor.matrix(table))


@pytest.mark.parametrize("model", ["reg", "bin", "multi"])
def test_fused_scores_are_the_matrix_paths_bit_for_bit(ws: Any, model: str) -> None:
    predictor = ws.services.models.load(f"d.{model}")
    table = _input(ws)
    fused = predictor._fused_linear_scores(table)
    assert fused is not None  # all numeric, large: the fused path applies
    assert np.array_equal(fused, _scores(predictor, table))
    # chunked differently (batches of uneven size): the same bits
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=1000))
    assert np.array_equal(predictor._fused_linear_scores(rechunked), fused)
    # a row scores alike in a batch of one, of a few, or of all the rows
    for i in (0, 5, 97, ROWS - 1):
        assert np.array_equal(_scores(predictor, table.slice(i, 1))[0], fused[i])
    assert np.array_equal(_scores(predictor, table.slice(100, 300)), fused[100:400])


@pytest.mark.parametrize("model", ["reg", "bin", "multi"])
def test_fused_scores_match_scikit_learn(ws: Any, model: str) -> None:
    predictor = ws.services.models.load(f"d.{model}")
    table = _input(ws)
    fused = predictor._fused_linear_scores(table)
    matrix = predictor.matrix(table)
    expected = (
        predictor.model.predict(matrix) if model == "reg" else predictor.model.predict_proba(matrix)
    )
    np.testing.assert_allclose(fused, expected, rtol=1e-10, atol=1e-12)


def test_ml_predict_agrees_with_small_batches_and_evaluate(ws: Any) -> None:
    whole = ws.sql("SELECT * FROM ML.PREDICT(MODEL d.reg, TABLE d.t)").to_arrow()
    part = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL d.reg, (SELECT * FROM d.t WHERE x0 < 0.5))"
    ).to_arrow()
    small = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL d.reg, (SELECT * FROM d.t WHERE x0 < -2.5))"
    ).to_arrow()
    assert 0 < small.num_rows < _FROM_COLUMNS_ROWS < part.num_rows  # one matrix, one fused
    by_row = dict(zip(whole["x0"].to_pylist(), whole["predicted_y"].to_pylist(), strict=True))
    for table in (part, small):
        got = dict(zip(table["x0"].to_pylist(), table["predicted_y"].to_pylist(), strict=True))
        assert all(by_row[k] == v for k, v in got.items())
    # ML.EVALUATE on the training rows scores them through the matrix: the stored metrics
    stored = ws.sql("SELECT * FROM ML.EVALUATE(MODEL d.reg)").to_arrow().to_pylist()
    again = ws.sql("SELECT * FROM ML.EVALUATE(MODEL d.reg, TABLE d.t)").to_arrow().to_pylist()
    assert stored == again


def test_a_categorical_feature_takes_the_matrix(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL d.withcat OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
        "data_split_method='no_split') AS SELECT x0, x2, cat, y FROM d.t"
    )
    predictor = ws.services.models.load("d.withcat")
    table = _input(ws)
    assert predictor._fused_linear_scores(table) is None
    out = ws.sql("SELECT predicted_y FROM ML.PREDICT(MODEL d.withcat, TABLE d.t)").to_arrow()
    assert np.array_equal(out["predicted_y"].to_numpy(), _scores(predictor, table))


def test_a_missing_column_is_refused_by_the_fused_path(ws: Any) -> None:
    predictor = ws.services.models.load("d.reg")
    table = _input(ws).drop_columns(["x2"])
    with pytest.raises(shipyard.errors.InvalidArgument, match="x2"):
        predictor.predict(table)


@pytest.mark.parametrize("model", ["reg", "multi"])
def test_finite_inputs_take_the_pass_without_checks_and_agree(ws: Any, model: str) -> None:
    predictor = ws.services.models.load(f"d.{model}")
    table = (
        ws.ctx.warehouse.cursor()
        .sql("SELECT * FROM d.t WHERE isfinite(x1) AND isfinite(x3) AND xi IS NOT NULL")
        .to_arrow_table()
    )
    assert table.num_rows >= _FROM_COLUMNS_ROWS
    blocks = predictor.preprocessor.numeric_blocks(table, rows=1000, impute_nonfinite=False)
    assert blocks is not None
    fused = predictor._fused_linear_scores(table)
    assert np.array_equal(fused, _scores(predictor, table))
    # one row with a huge value overflows its sum: the imputing pass runs, with the same result
    huge = table.set_column(0, "x0", pa.array(np.r_[1e308, table["x0"].to_numpy()[1:]]))
    assert np.array_equal(predictor._fused_linear_scores(huge), _scores(predictor, huge))


@pytest.mark.parametrize(
    ("model_type", "output"), [("linear_reg", "predicted_y"), ("kmeans", "CENTROID_ID")]
)
def test_a_transform_clause_applies_on_the_fast_paths(
    ws: Any, model_type: str, output: str
) -> None:
    options = (
        "input_label_cols=['y'], data_split_method='no_split'"
        if model_type == "linear_reg"
        else "num_clusters=3"
    )
    label = ", y" if model_type == "linear_reg" else ""
    ws.sql(
        f"CREATE OR REPLACE MODEL d.tf OPTIONS(model_type='{model_type}', {options}) "
        f"TRANSFORM(x0 * 10 AS x0, x2{label}) "
        "AS SELECT x0, x2, y FROM d.t WHERE isfinite(x2)"
    )
    whole = ws.sql(
        f"SELECT x0, {output} FROM ML.PREDICT(MODEL d.tf, (SELECT x0, x2 FROM d.t))"
    ).to_arrow()
    few = ws.sql(
        f"SELECT x0, {output} FROM ML.PREDICT(MODEL d.tf, (SELECT x0, x2 FROM d.t LIMIT 50))"
    ).to_arrow()
    assert whole.num_rows >= _FROM_COLUMNS_ROWS > few.num_rows
    by_x0 = dict(zip(whole["x0"].to_pylist(), whole[output].to_pylist(), strict=True))
    pairs = zip(few["x0"].to_pylist(), few[output].to_pylist(), strict=True)
    assert all(by_x0[x] == v for x, v in pairs)
