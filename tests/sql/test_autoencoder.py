"""AUTOENCODER: options, ML.PREDICT latent columns, ML.RECONSTRUCTION_LOSS, ML.DETECT_ANOMALIES,
ML.EVALUATE, ML.TRAINING_INFO, save/load and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer

import shipyard as sy
from shipyard.errors import InvalidArgument
from shipyard.sql.autoencoder import default_autoencoder_units
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options


def _rows() -> list[dict[str, Any]]:
    data = load_breast_cancer()
    return [{f"f{i}": float(v) for i, v in enumerate(row[:10])} for row in data.data]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("torch")
    workspace = sy.connect(tmp_path_factory.mktemp("autoencoder"))
    workspace.load_table("demo.cells", _rows())
    workspace.sql(
        "CREATE MODEL demo.ae OPTIONS(model_type='AUTOENCODER', hidden_units=[8, 3, 8], "
        "batch_size=32, learn_rate=0.01, max_iterations=15, early_stop=FALSE) "
        "AS SELECT * FROM demo.cells"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='LINEAR_REG', input_label_cols=['f0']) "
        "AS SELECT * FROM demo.cells"
    )
    yield workspace
    workspace.close()


def _arrow(ws: Any, sql: str) -> pa.Table:
    return ws.sql(sql).to_arrow()


# -- options ----------------------------------------------------------------------------------


def test_defaults_and_option_names() -> None:
    opts = parse_options({"model_type": "autoencoder"})
    assert (opts.activation_fn, opts.optimizer, opts.learn_rate, opts.l1_reg_activation) == (
        "RELU",
        "ADAM",
        0.001,
        0.0,
    )
    names = MODEL_TYPES["AUTOENCODER"].option_names
    assert "l1_reg_activation" in names and "hidden_units" in names
    assert "input_label_cols" not in names and "class_weights" not in names
    assert default_autoencoder_units(30) == [30, 7, 30]
    assert default_autoencoder_units(2) == [2, 1, 2]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"activation_fn": "CRELU"}, "valid values: 'RELU', 'RELU6', 'ELU', 'SELU'"),
        ({"input_label_cols": ["f0"]}, "unknown option 'input_label_cols'"),
        ({"l1_reg_activation": -1.0}, "'l1_reg_activation' for model_type AUTOENCODER"),
        ({"hidden_units": [4, -1]}, "each >= 1"),
    ],
)
def test_bad_options(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_options({"model_type": "AUTOENCODER", **options})
    assert fragment in str(info.value)


# -- ML functions ----------------------------------------------------------------------------


def test_predict_gives_the_latent_space_then_the_inputs(ws: Any) -> None:
    out = _arrow(ws, "SELECT * FROM ML.PREDICT(MODEL demo.ae, (SELECT * FROM demo.cells LIMIT 5))")
    assert out.column_names[:4] == ["latent_col_1", "latent_col_2", "latent_col_3", "f0"]
    assert out.num_rows == 5 and out.schema.field("latent_col_1").type == pa.float64()
    # RELU activations: the latent code is non-negative
    assert min(min(out[f"latent_col_{i}"].to_pylist()) for i in (1, 2, 3)) >= 0.0


def test_reconstruction_loss_is_the_row_error_of_the_stored_network(ws: Any) -> None:
    out = _arrow(
        ws, "SELECT * FROM ML.RECONSTRUCTION_LOSS(MODEL demo.ae, (SELECT * FROM demo.cells))"
    )
    assert out.column_names[:3] == [
        "mean_absolute_error",
        "mean_squared_error",
        "mean_squared_log_error",
    ]
    predictor = ws.models.load("demo.ae")
    x = predictor.preprocessor.transform(_arrow(ws, "SELECT * FROM demo.cells"), dtype=np.float64)
    restored = predictor.model.reconstruct(x)
    np.testing.assert_allclose(
        out["mean_squared_error"].to_numpy(), np.mean((restored - x) ** 2, axis=1), rtol=1e-12
    )
    # Better than predicting the mean of every (standardized) feature, whose error is ~1.
    assert float(np.mean(out["mean_squared_error"].to_numpy())) < 0.6


def test_detect_anomalies_flags_about_the_contamination(ws: Any) -> None:
    out = _arrow(
        ws,
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.ae, STRUCT(0.1 AS contamination), "
        "TABLE demo.cells)",
    )
    # BigQuery ML's columns: is_anomaly, mean_squared_error, then the input columns
    assert out.column_names[:2] == ["is_anomaly", "mean_squared_error"]
    assert "mean_absolute_error" not in out.column_names
    flags = np.asarray(out["is_anomaly"].to_pylist())
    errors = out["mean_squared_error"].to_numpy()
    assert 0.07 < flags.mean() < 0.13
    assert errors[flags].min() > errors[~flags].max()
    # A row far from the training data is an anomaly.
    odd = _arrow(
        ws,
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.ae, STRUCT(0.01 AS contamination), "
        "(SELECT f0 * 5 AS f0, * EXCLUDE (f0) FROM demo.cells LIMIT 1))",
    )
    assert odd["is_anomaly"].to_pylist() == [True]


def test_evaluate_and_training_info(ws: Any) -> None:
    stored = _arrow(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.ae)").to_pylist()[0]
    assert set(stored) == {"mean_absolute_error", "mean_squared_error", "mean_squared_log_error"}
    on_rows = _arrow(ws, "SELECT * FROM ML.EVALUATE(MODEL demo.ae, TABLE demo.cells)").to_pylist()
    losses = _arrow(
        ws,
        "SELECT AVG(mean_squared_error) AS m FROM ML.RECONSTRUCTION_LOSS(MODEL demo.ae, "
        "TABLE demo.cells)",
    ).to_pylist()[0]["m"]
    assert on_rows[0]["mean_squared_error"] == pytest.approx(losses, rel=1e-9)
    info = _arrow(ws, "SELECT * FROM ML.TRAINING_INFO(MODEL demo.ae)").to_pylist()
    assert [r["iteration"] for r in info] == list(range(15))
    assert info[-1]["loss"] < info[0]["loss"]
    assert all(r["eval_loss"] is not None for r in info)  # 569 rows: AUTO_SPLIT evaluates 20 %


def test_saved_package_predicts_the_same(ws: Any, tmp_path: Any) -> None:
    from shipyard.registry.flavors import load_model, save_model
    from shipyard.registry.predictor import Predictor

    predictor = ws.models.load("demo.ae")
    meta = save_model("torch", predictor.model, tmp_path)
    again = Predictor.from_dict(predictor.to_dict(), load_model("torch", tmp_path, meta))
    rows = _arrow(ws, "SELECT * FROM demo.cells LIMIT 50")
    assert again.predict(rows).equals(predictor.predict(rows))


def test_l1_reg_activation_makes_a_sparser_code(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.sparse OPTIONS(model_type='AUTOENCODER', hidden_units=[8, 3, 8], "
        "batch_size=32, learn_rate=0.01, max_iterations=15, early_stop=FALSE, "
        "l1_reg_activation=0.5) AS SELECT * FROM demo.cells"
    )

    def code_size(model: str) -> float:
        out = _arrow(ws, f"SELECT * FROM ML.PREDICT(MODEL {model}, TABLE demo.cells)")
        return float(np.mean([np.abs(out[f"latent_col_{i}"].to_numpy()).sum() for i in (1, 2, 3)]))

    assert code_size("demo.sparse") < code_size("demo.ae")


def test_warm_start_continues_training(ws: Any) -> None:
    create = (
        "CREATE OR REPLACE MODEL demo.ae2 OPTIONS(model_type='AUTOENCODER', {}, "
        "batch_size=32, learn_rate=0.01, early_stop=FALSE) AS SELECT * FROM demo.cells"
    )
    ws.sql(create.format("hidden_units=[8, 3, 8], max_iterations=10"))
    before = _arrow(ws, "SELECT * FROM ML.TRAINING_INFO(MODEL demo.ae2)").to_pylist()
    ws.sql(create.format("max_iterations=1, warm_start=TRUE"))  # hidden_units carried over
    after = _arrow(ws, "SELECT * FROM ML.TRAINING_INFO(MODEL demo.ae2)").to_pylist()
    assert len(after) == 1 and after[0]["loss"] < 1.2 * before[-1]["loss"]
    out = _arrow(ws, "SELECT * FROM ML.PREDICT(MODEL demo.ae2, TABLE demo.cells)")
    assert "latent_col_3" in out.column_names and "latent_col_4" not in out.column_names
    with pytest.raises(InvalidArgument, match="same input columns"):
        ws.sql(
            "CREATE OR REPLACE MODEL demo.ae2 OPTIONS(model_type='AUTOENCODER', "
            "warm_start=TRUE, max_iterations=1) AS SELECT f0, f1 FROM demo.cells"
        )


def test_bad_calls_name_the_model_type(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="a LINEAR_REG model; it applies to AUTOENCODER"):
        ws.sql("SELECT * FROM ML.RECONSTRUCTION_LOSS(MODEL demo.lin, TABLE demo.cells)")
    with pytest.raises(InvalidArgument, match="needs input rows"):
        ws.sql("SELECT * FROM ML.RECONSTRUCTION_LOSS(MODEL demo.ae)")
    with pytest.raises(InvalidArgument, match="contamination"):
        ws.sql("SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.ae, TABLE demo.cells)")
    with pytest.raises(InvalidArgument, match="already has columns"):
        ws.sql(
            "SELECT * FROM ML.RECONSTRUCTION_LOSS(MODEL demo.ae, "
            "(SELECT *, 1.0 AS mean_squared_error FROM demo.cells))"
        )
    with pytest.raises(InvalidArgument, match="threshold"):
        ws.sql(
            "SELECT * FROM ML.PREDICT(MODEL demo.ae, TABLE demo.cells, STRUCT(0.5 AS threshold))"
        )
