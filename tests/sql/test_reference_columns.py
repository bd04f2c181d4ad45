"""Output columns and defaults checked against the public BigQuery ML reference (issue 3):
ML.TRAINING_INFO's per-type columns (k-means ``cluster_info`` without ``eval_loss``; time series
``training_run``, ``iteration``, ``duration_ms``), and the DNN / AUTOENCODER ``batch_size``
default. ML.ADVANCED_WEIGHTS, ML.CENTROIDS, ML.DETECT_ANOMALIES (AUTOENCODER) and ML.FEATURE_INFO
(MATRIX_FACTORIZATION) are pinned in their model types' test files."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard as sy
from shipyard.errors import InvalidArgument


def _points() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    centres = [(0.0, 0.0), (6.0, 6.0), (0.0, 8.0)]
    return [
        {"x": float(cx + rng.normal()), "y": float(cy + rng.normal())}
        for cx, cy in centres
        for _ in range(40)
    ]


def _series() -> list[dict[str, Any]]:
    start = dt.date(2024, 1, 1)
    return [
        {"day": start + dt.timedelta(days=i), "v": 10.0 + 0.3 * i + 2.0 * math.sin(i / 7 * 6.28)}
        for i in range(70)
    ]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("reference"))
    workspace.load_table("demo.points", _points())
    workspace.load_table("demo.daily", _series())
    workspace.sql(
        "CREATE MODEL demo.km OPTIONS(model_type='KMEANS', num_clusters=3, "
        "kmeans_init_method='KMEANS++') AS SELECT x, y FROM demo.points"
    )
    workspace.sql(
        "CREATE MODEL demo.km_tuned OPTIONS(model_type='KMEANS', num_trials=2, "
        "num_clusters=HPARAM_CANDIDATES([2, 3])) AS SELECT x, y FROM demo.points"
    )
    yield workspace
    workspace.close()


def test_kmeans_training_info_has_cluster_info_and_no_eval_loss(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.km) ORDER BY iteration").to_arrow()
    assert out.column_names == [
        "training_run",
        "iteration",
        "loss",
        "learning_rate",
        "duration_ms",
        "cluster_info",
    ]
    assert out.schema.field("cluster_info").type == pa.list_(
        pa.struct(
            [
                ("centroid_id", pa.int64()),
                ("cluster_radius", pa.float64()),
                ("cluster_size", pa.int64()),
            ]
        )
    )
    for row in out.to_pylist():
        info = row["cluster_info"]
        assert [c["centroid_id"] for c in info] == [1, 2, 3]
        assert sum(c["cluster_size"] for c in info) == 120
        # radius = RMS distance to the centroid, so size-weighted radius² adds up to the loss
        # (the mean squared distance of the iteration), in the standardized space
        total = sum(c["cluster_size"] * c["cluster_radius"] ** 2 for c in info)
        assert total / 120 == pytest.approx(row["loss"], rel=1e-9)
    last = out.to_pylist()[-1]["cluster_info"]
    sizes = ws.sql(
        "SELECT CENTROID_ID AS id, COUNT(*) AS n FROM ML.PREDICT(MODEL demo.km, "
        "TABLE demo.points) GROUP BY 1"
    ).to_pylist()
    assert {r["id"]: r["n"] for r in sizes} == {c["centroid_id"]: c["cluster_size"] for c in last}


def test_tuned_kmeans_training_info_keeps_the_kmeans_columns(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.km_tuned)").to_arrow()
    assert out.column_names[:2] == ["trial_id", "training_run"]
    assert "eval_loss" not in out.column_names and "cluster_info" in out.column_names
    assert sorted({r["trial_id"] for r in out.to_pylist()}) == [1, 2]


def test_tuned_models_list_every_trial_in_centroids_and_weights(ws: Any) -> None:
    # The reference: functions without input rows return every trial, trial_id first.
    out = ws.sql("SELECT * FROM ML.CENTROIDS(MODEL demo.km_tuned)").to_arrow()
    assert out.column_names[:3] == ["trial_id", "centroid_id", "feature"]
    trials = ws.sql("SELECT trial_id, hyperparameters FROM ML.TRIAL_INFO(MODEL demo.km_tuned)")
    clusters = {r["trial_id"]: r["hyperparameters"]["num_clusters"] for r in trials.to_pylist()}
    for trial_id, k in clusters.items():
        rows = [r for r in out.to_pylist() if r["trial_id"] == trial_id]
        assert len(rows) == 2 * k  # one row per centroid and feature
    one = ws.sql("SELECT * FROM ML.CENTROIDS(MODEL demo.km)").to_arrow()
    assert "trial_id" not in one.column_names  # untuned: unchanged

    ws.sql(
        "CREATE MODEL demo.lin_tuned OPTIONS(model_type='LINEAR_REG', input_label_cols=['y'], "
        "num_trials=2, l2_reg=HPARAM_CANDIDATES([0.0, 5.0])) AS SELECT x, y FROM demo.points"
    )
    weights = ws.sql("SELECT * FROM ML.WEIGHTS(MODEL demo.lin_tuned)").to_arrow()
    assert weights.column_names[:2] == ["trial_id", "processed_input"]
    by_trial = {}
    for r in weights.to_pylist():
        if r["processed_input"] == "x":
            by_trial[r["trial_id"]] = r["weight"]
    assert sorted(by_trial) == [1, 2] and by_trial[1] != by_trial[2]  # each trial's own model


def test_time_series_training_info_has_three_columns(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.ts OPTIONS(model_type='ARIMA_PLUS', time_series_timestamp_col='day', "
        "time_series_data_col='v', horizon=5) AS SELECT day, v FROM demo.daily"
    )
    out = ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.ts)").to_arrow()
    assert out.column_names == ["training_run", "iteration", "duration_ms"]
    (row,) = out.to_pylist()
    assert row["training_run"] == 0 and row["iteration"] == 0
    assert isinstance(row["duration_ms"], int) and row["duration_ms"] >= 0  # the whole fit


def test_training_info_takes_no_input_and_no_parameters(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match="takes no input rows"):
        ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.km, TABLE demo.points)")
    with pytest.raises(InvalidArgument, match="has no parameter 'standardize'"):
        ws.sql("SELECT * FROM ML.TRAINING_INFO(MODEL demo.km, STRUCT(TRUE AS standardize))")


def test_neural_batch_size_default_is_bigquery_mls() -> None:
    pytest.importorskip("torch")
    from shipyard.sql.dnn import batch_size
    from shipyard.sql.modeltypes import parse_options

    for model_type in ("DNN_REGRESSOR", "AUTOENCODER"):
        extra = {"input_label_cols": ["y"]} if model_type == "DNN_REGRESSOR" else {}
        opts = parse_options({"model_type": model_type, **extra})
        assert opts.batch_size is None
        # "32 or the number of samples, whichever is smaller"
        assert (batch_size(opts, 10), batch_size(opts, 5_000)) == (10, 32)
    explicit = parse_options({"model_type": "DNN_REGRESSOR", "batch_size": 256})
    assert batch_size(explicit, 5_000) == 256
