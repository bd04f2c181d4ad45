"""KMEANS: options, training parity with scikit-learn, ML.PREDICT / EVALUATE / CENTROIDS /
DETECT_ANOMALIES output, and bad input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_iris
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score

import shipyard as sy
from shipyard.errors import InvalidArgument, Unsupported
from shipyard.sql.clustering import default_num_clusters
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options

_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _iris() -> pa.Table:
    data = load_iris()
    columns: dict[str, Any] = {name: data.data[:, i] for i, name in enumerate(_FEATURES)}
    columns["species"] = [str(data.target_names[t]) for t in data.target]
    return pa.table(columns)


def _standardized(t: pa.Table) -> np.ndarray:
    x = np.column_stack([t[c].to_numpy() for c in _FEATURES])
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("kmeans"))
    workspace.load_table("demo.iris", _iris().to_pylist())
    workspace.sql(
        "CREATE MODEL demo.km OPTIONS(model_type='KMEANS', num_clusters=3, "
        "kmeans_init_method='KMEANS++', max_iterations=50, early_stop=FALSE) "
        f"AS SELECT {', '.join(_FEATURES)} FROM demo.iris"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['petal_width']) "
        f"AS SELECT {', '.join(_FEATURES)} FROM demo.iris"
    )
    yield workspace
    workspace.close()


# -- options ----------------------------------------------------------------------------------


def test_defaults_are_bigquery_mls() -> None:
    opts = parse_options({"model_type": "kmeans"})
    assert (opts.num_clusters, opts.kmeans_init_method, opts.distance_type) == (
        None,
        "RANDOM",
        "EUCLIDEAN",
    )
    assert (opts.standardize_features, opts.max_iterations, opts.early_stop) == (True, 20, True)
    assert opts.min_rel_progress == 0.01 and opts.kmeans_init_col is None
    assert "input_label_cols" not in MODEL_TYPES["KMEANS"].option_names
    assert [default_num_clusters(n) for n in (10, 150, 5_000, 10**6)] == [2, 2, 4, 6]


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"num_clusters": 101}, InvalidArgument, "'num_clusters' for model_type KMEANS must be"),
        ({"num_clusters": "3"}, InvalidArgument, "INT64"),
        ({"distance_type": "manhattan"}, InvalidArgument, "'EUCLIDEAN', 'COSINE'"),
        ({"kmeans_init_method": "custom"}, InvalidArgument, "needs option 'kmeans_init_col'"),
        ({"data_split_method": "RANDOM"}, InvalidArgument, "unknown option 'data_split_method'"),
        ({"num_trials": 4}, Unsupported, "hyperparameter tuning"),
    ],
)
def test_bad_options(options: dict[str, Any], error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        parse_options({"model_type": "KMEANS", **options})
    assert fragment in str(info.value)


# -- training ---------------------------------------------------------------------------------


def test_parity_with_scikit_learn() -> None:
    """Same initial centroids and iterations as scikit-learn's KMeans: the same clustering."""
    t = _iris()
    trained = MODEL_TYPES["KMEANS"].train(
        t.select(_FEATURES),
        {
            "model_type": "KMEANS",
            "num_clusters": 3,
            "kmeans_init_method": "KMEANS++",
            "max_iterations": 50,
            "early_stop": False,
        },
    )
    x = _standardized(t)
    init, _ = kmeans_plusplus(x, 3, random_state=20240101)
    direct = KMeans(3, init=init, n_init=1, max_iter=50, tol=0.0).fit(x)
    ours = trained.predictor().predict(t, keep_original_columns=False)["CENTROID_ID"]
    assert adjusted_rand_score(direct.labels_, ours.to_numpy()) == 1.0
    dbi = trained.eval_metrics["davies_bouldin_index"]
    assert dbi == pytest.approx(davies_bouldin_score(x, direct.labels_), rel=1e-6)
    msd = trained.eval_metrics["mean_squared_distance"]
    assert msd == pytest.approx(direct.inertia_ / len(x), rel=1e-6)
    # a good clustering of iris: the three species are mostly recovered
    assert adjusted_rand_score(t["species"].to_pylist(), ours.to_numpy()) > 0.55


def test_early_stop_records_iterations() -> None:
    t = _iris().select(_FEATURES)
    stopped = MODEL_TYPES["KMEANS"].train(
        t, {"model_type": "KMEANS", "num_clusters": 4, "min_rel_progress": 0.5}
    )
    full = MODEL_TYPES["KMEANS"].train(
        t, {"model_type": "KMEANS", "num_clusters": 4, "max_iterations": 30, "early_stop": False}
    )
    assert len(stopped.training_info) == 2  # the second iteration improves by < 50 %
    losses = [row["loss"] for row in full.training_info]
    assert losses == sorted(losses, reverse=True)  # Lloyd never increases the loss
    assert 2 < len(losses) <= 30


def test_cosine_distance() -> None:
    t = _iris().select(_FEATURES)
    trained = MODEL_TYPES["KMEANS"].train(
        t, {"model_type": "KMEANS", "num_clusters": 3, "distance_type": "COSINE"}
    )
    out = trained.predictor().predict(t, keep_original_columns=False)
    distances = np.array(
        [e["DISTANCE"] for row in out["NEAREST_CENTROIDS_DISTANCE"].to_pylist() for e in row]
    )
    assert distances.min() >= 0.0 and distances.max() <= math.sqrt(2.0)
    # BigQuery ML's formula: sqrt(1 - x·c / (|x| |c|)), on the standardized features
    x = _standardized(t)
    centers = np.asarray(trained.model.cluster_centers_)
    first = out["NEAREST_CENTROIDS_DISTANCE"].to_pylist()[0]
    for entry in first:
        c = centers[entry["CENTROID_ID"] - 1]
        cos = float(x[0] @ c / (np.linalg.norm(x[0]) * np.linalg.norm(c)))
        assert entry["DISTANCE"] == pytest.approx(math.sqrt(1.0 - cos), rel=1e-6)


# -- through SQL ------------------------------------------------------------------------------


def test_predict_output(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.km, TABLE demo.iris)").to_arrow()
    assert out.column_names == ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE", *_FEATURES, "species"]
    assert out.schema.field("CENTROID_ID").type == pa.int64()
    entry = out.schema.field("NEAREST_CENTROIDS_DISTANCE").type.value_type
    assert [entry.field(i).name for i in range(2)] == ["CENTROID_ID", "DISTANCE"]
    assert entry.field(0).type == pa.int64() and entry.field(1).type == pa.float64()
    first = out.to_pylist()[0]
    nearest = first["NEAREST_CENTROIDS_DISTANCE"]
    assert len(nearest) == 3 and set(out["CENTROID_ID"].to_pylist()) == {1, 2, 3}
    assert nearest[0]["CENTROID_ID"] == first["CENTROID_ID"]
    assert [e["DISTANCE"] for e in nearest] == sorted(e["DISTANCE"] for e in nearest)
    # the serving contract: names and signature without the input columns
    predictor = ws.models.load("demo.km")
    served = predictor.predict(_iris(), keep_original_columns=False)
    assert served.column_names == predictor.output_names
    assert [o["name"] for o in predictor.signature["outputs"]] == predictor.output_names
    assert [o["type"] for o in predictor.signature["outputs"]] == [
        str(served.schema.field(n).type) for n in predictor.output_names
    ]


def test_the_package_carries_no_label_per_training_row(ws: Any) -> None:
    # scikit-learn's KMeans keeps labels_ (one per training row); the stored model must not:
    # at 300k rows it was 1.2 MB of a 1.25 MB package, and it is training data.
    predictor = ws.models.load("demo.km")
    assert not hasattr(predictor.model, "labels_")
    assert predictor.model.cluster_centers_.shape == (3, len(_FEATURES))
    served = predictor.predict(_iris(), keep_original_columns=False)
    assert served.num_rows == 150


def test_evaluate(ws: Any) -> None:
    stored = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.km)").to_arrow()
    assert stored.column_names == ["davies_bouldin_index", "mean_squared_distance"]
    assert all(f.type == pa.float64() for f in stored.schema)
    given = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.km, TABLE demo.iris)").to_pylist()[0]
    assert given == pytest.approx(stored.to_pylist()[0])  # trained on the same rows
    with pytest.raises(InvalidArgument, match="threshold"):
        ws.sql(
            "SELECT * FROM ML.EVALUATE(MODEL demo.km, TABLE demo.iris, STRUCT(0.5 AS threshold))"
        )


def test_centroids_are_cluster_means(ws: Any) -> None:
    centroids = ws.sql(
        "SELECT * FROM ML.CENTROIDS(MODEL demo.km) ORDER BY centroid_id, feature"
    ).to_arrow()
    assert centroids.column_names == [
        "centroid_id",
        "feature",
        "numerical_value",
        "categorical_value",
        "geography_value",  # BigQuery ML's; set for GEOGRAPHY features only
    ]
    assert centroids["geography_value"].null_count == centroids.num_rows
    assert centroids.num_rows == 3 * len(_FEATURES)
    means = ws.sql(
        "SELECT CENTROID_ID AS id, AVG(petal_length) AS m "
        "FROM ML.PREDICT(MODEL demo.km, TABLE demo.iris) GROUP BY 1"
    ).to_pylist()
    by_id = {r["centroid_id"]: r["numerical_value"] for r in centroids.to_pylist()
             if r["feature"] == "petal_length"}  # fmt: skip
    for row in means:  # converged Lloyd: each centroid is its members' mean, in input units
        assert by_id[row["id"]] == pytest.approx(row["m"], rel=1e-6)
    scaled = ws.sql(
        "SELECT * FROM ML.CENTROIDS(MODEL demo.km, STRUCT(TRUE AS standardize))"
    ).to_pylist()
    assert max(abs(r["numerical_value"]) for r in scaled) < 3  # z-scores, not centimetres


def test_categorical_centroids_and_custom_init(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.custom OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM', "
        "kmeans_init_col='seed') AS SELECT petal_length, species, "
        "(ROW_NUMBER() OVER () IN (1, 51, 101)) AS seed FROM demo.iris"
    )
    rows = ws.sql("SELECT * FROM ML.CENTROIDS(MODEL demo.custom)").to_pylist()
    assert {r["feature"] for r in rows} == {"petal_length", "species"}  # seed is no feature
    species = [r for r in rows if r["feature"] == "species"]
    assert len(species) == 3
    for row in species:
        assert row["numerical_value"] is None
        assert {e["category"] for e in row["categorical_value"]} == {
            "setosa",
            "versicolor",
            "virginica",
        }
        assert sum(e["value"] for e in row["categorical_value"]) == pytest.approx(1.0)
    with pytest.raises(InvalidArgument, match="exactly num_clusters"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='kmeans', num_clusters=4, "
            "kmeans_init_method='CUSTOM', kmeans_init_col='seed') AS SELECT petal_length, "
            "(ROW_NUMBER() OVER () IN (1, 51)) AS seed FROM demo.iris"
        )
    with pytest.raises(InvalidArgument, match="must be BOOL"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM', "
            "kmeans_init_col='petal_width') AS SELECT petal_length, petal_width FROM demo.iris"
        )
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_detect_anomalies(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.km, STRUCT(0.1 AS contamination), "
        "TABLE demo.iris)"
    ).to_arrow()
    assert out.column_names[:3] == ["is_anomaly", "normalized_distance", "centroid_id"]
    assert out.column_names[3:] == [*_FEATURES, "species"]
    types = [out.schema.field(i).type for i in range(3)]
    assert types == [pa.bool_(), pa.float64(), pa.int64()]
    flagged = sum(out["is_anomaly"].to_pylist())
    assert 10 <= flagged <= 20  # about 10 % of the training rows
    none = ws.sql(
        "SELECT COUNTIF(is_anomaly) AS n FROM ML.DETECT_ANOMALIES(MODEL demo.km, "
        "STRUCT(0.0 AS contamination), TABLE demo.iris)"
    ).to_pylist()
    assert none == [{"n": 0}]
    far = ws.sql(
        "SELECT is_anomaly FROM ML.DETECT_ANOMALIES(MODEL demo.km, STRUCT(0.01 AS "
        "contamination), (SELECT 40.0 AS sepal_length, 3.0 AS sepal_width, 1.0 AS "
        "petal_length, 0.2 AS petal_width))"
    ).to_pylist()
    assert far == [{"is_anomaly": True}]


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.km, TABLE demo.iris)",
            "needs STRUCT(<value> AS contamination)",
        ),
        (
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.km, STRUCT(0.7 AS contamination), "
            "TABLE demo.iris)",
            "[0, 0.5]",
        ),
        ("SELECT * FROM ML.CENTROIDS(MODEL demo.lin)", "applies to KMEANS models"),
        ("SELECT * FROM ML.CENTROIDS(MODEL demo.km, STRUCT(1 AS standardize))", "TRUE or FALSE"),
        ("SELECT * FROM ML.PRINCIPAL_COMPONENTS(MODEL demo.km)", "a KMEANS model"),
        (
            "SELECT * FROM ML.PREDICT(MODEL demo.km, TABLE demo.iris, STRUCT(0.5 AS threshold))",
            "threshold",
        ),
        ("SELECT * FROM ML.PREDICT(MODEL demo.km, (SELECT 1.0 AS sepal_length))", "sepal_width"),
    ],
)
def test_bad_calls(ws: Any, sql: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ws.sql(sql)
    assert fragment in str(info.value)


def test_default_num_clusters_and_too_few_rows(ws: Any) -> None:
    ws.sql("CREATE MODEL demo.auto OPTIONS(model_type='kmeans') AS SELECT * FROM demo.iris")
    ids = ws.sql("SELECT DISTINCT centroid_id FROM ML.CENTROIDS(MODEL demo.auto)").to_pylist()
    assert len(ids) == default_num_clusters(150) == 2
    with pytest.raises(InvalidArgument, match="at least 5 training rows"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='kmeans', num_clusters=5) "
            "AS SELECT * FROM demo.iris LIMIT 3"
        )


@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_sdk_predicts_unsupervised_models(mode: str, tmp_path: Any) -> None:
    """KMEANS and PCA versions load and predict through the SDK, embedded and over HTTP."""
    local = sy.connect(tmp_path / "home")
    try:
        local.load_table("demo.iris", _iris().to_pylist())
        local.sql(
            "CREATE MODEL demo.km OPTIONS(model_type='kmeans', num_clusters=3) "
            "AS SELECT * FROM demo.iris"
        )
        local.sql(
            "CREATE MODEL demo.pca OPTIONS(model_type='pca', num_principal_components=2) "
            "AS SELECT * FROM demo.iris"
        )
        rows = _iris().slice(0, 5)
        if mode == "embedded":
            _check_sdk(local, rows)
            return
        from starlette.testclient import TestClient

        from shipyard.client.remote import RemoteWorkspace
        from shipyard.server import create_app

        with TestClient(create_app(local.services), base_url="http://127.0.0.1:8765") as client:
            _check_sdk(RemoteWorkspace("http://127.0.0.1:8765", client=client), rows)
    finally:
        local.close()


def _check_sdk(ws: Any, rows: pa.Table) -> None:
    clusters = ws.models.predict("demo.km", rows)
    assert clusters.column_names[:2] == ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE"]
    assert ws.models.get_version("demo.km").task == "clustering"
    reduced = ws.models.load("demo.pca").predict(rows, keep_original_columns=False)
    assert reduced.column_names == ["principal_component_1", "principal_component_2"]
    assert ws.models.get_version("demo.pca").task == "dimensionality_reduction"


def test_warm_start_continues_from_the_current_centroids(ws: Any) -> None:
    ws.sql(
        "CREATE MODEL demo.warm OPTIONS(model_type='kmeans', num_clusters=3, max_iterations=50, "
        "early_stop=FALSE) "
        f"AS SELECT {', '.join(_FEATURES)} FROM demo.iris WHERE species <> 'virginica'"
    )
    before = ws.sql("SELECT * FROM ML.CENTROIDS(MODEL demo.warm)").to_pylist()
    ws.sql(
        "CREATE OR REPLACE MODEL demo.warm OPTIONS(model_type='kmeans', warm_start=TRUE, "
        f"max_iterations=1) AS SELECT {', '.join(_FEATURES)} FROM demo.iris "
        "WHERE species <> 'virginica'"
    )
    after = ws.sql("SELECT * FROM ML.CENTROIDS(MODEL demo.warm)").to_pylist()
    assert len(after) == len(before)  # num_clusters carried over
    # one more Lloyd step on the same data from the converged centroids changes nothing (a
    # fresh RANDOM start with one iteration would land elsewhere)
    for old, new in zip(before, after, strict=True):
        assert (old["centroid_id"], old["feature"]) == (new["centroid_id"], new["feature"])
        assert new["numerical_value"] == pytest.approx(old["numerical_value"], rel=1e-9)
    losses = ws.sql("SELECT loss FROM ML.TRAINING_INFO(MODEL demo.warm)").to_pylist()
    assert losses
    with pytest.raises(InvalidArgument, match="num_clusters 4 differs"):
        ws.sql(
            "CREATE OR REPLACE MODEL demo.warm OPTIONS(model_type='kmeans', warm_start=TRUE, "
            f"num_clusters=4) AS SELECT {', '.join(_FEATURES)} FROM demo.iris"
        )
    with pytest.raises(InvalidArgument, match="same input columns"):
        ws.sql(
            "CREATE OR REPLACE MODEL demo.warm OPTIONS(model_type='kmeans', warm_start=TRUE) "
            "AS SELECT sepal_length FROM demo.iris"
        )
    assert (
        ws.models.get(  # the failed retrains added no version
            "demo.warm"
        ).latest_version
        == 2
    )


def test_zero_rows(ws: Any) -> None:
    predictor = ws.models.load("demo.km")
    out = predictor.predict(_iris().slice(0, 0), keep_original_columns=False)
    assert out.num_rows == 0 and out.column_names == predictor.output_names
    assert [str(f.type) for f in out.schema] == [o["type"] for o in predictor.signature["outputs"]]
    empty = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.km, STRUCT(0.1 AS contamination), "
        "(SELECT * FROM demo.iris WHERE FALSE))"
    ).to_arrow()
    assert empty.num_rows == 0 and empty.column_names[0] == "is_anomaly"


def test_detect_anomalies_on_a_linear_model_names_every_type_it_applies_to(ws: Any) -> None:
    with pytest.raises(InvalidArgument) as error:
        ws.sql(
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.lin, STRUCT(0.1 AS contamination), "
            "TABLE demo.iris)"
        )
    message = str(error.value)
    for model_type in ("ARIMA_PLUS", "AUTOENCODER", "KMEANS", "PCA"):
        assert model_type in message
