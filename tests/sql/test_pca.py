"""PCA: options, parity with scikit-learn, ML.PREDICT / EVALUATE / PRINCIPAL_COMPONENTS /
PRINCIPAL_COMPONENT_INFO / DETECT_ANOMALIES output, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_wine
from sklearn.decomposition import PCA

import shipyard as sy
from shipyard.errors import InvalidArgument
from shipyard.sql.modeltypes import MODEL_TYPES, parse_options


def _wine() -> pa.Table:
    data = load_wine()
    return pa.table({f"f{i}": data.data[:, i] for i in range(data.data.shape[1])})


def _standardized(t: pa.Table) -> np.ndarray:
    x = np.column_stack([c.to_numpy() for c in t.columns])
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workspace = sy.connect(tmp_path_factory.mktemp("pca"))
    workspace.load_table("demo.wine", _wine().to_pylist())
    workspace.sql(
        "CREATE MODEL demo.pca OPTIONS(model_type='PCA', num_principal_components=3) "
        "AS SELECT * FROM demo.wine"
    )
    workspace.sql(
        "CREATE MODEL demo.lin OPTIONS(model_type='linear_reg', input_label_cols=['f0']) "
        "AS SELECT * FROM demo.wine"
    )
    yield workspace
    workspace.close()


# -- options ----------------------------------------------------------------------------------


def test_defaults_are_bigquery_mls() -> None:
    opts = parse_options({"model_type": "pca", "num_principal_components": 2})
    assert (opts.scale_features, opts.pca_solver, opts.pca_explained_variance_ratio) == (
        True,
        "AUTO",
        None,
    )
    assert MODEL_TYPES["PCA"].option_names == [
        "model_type",
        "num_principal_components",
        "pca_explained_variance_ratio",
        "pca_solver",
        "scale_features",
    ]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "exactly one of options 'num_principal_components'"),
        (
            {"num_principal_components": 2, "pca_explained_variance_ratio": 0.9},
            "exactly one of options",
        ),
        ({"num_principal_components": 0}, "'num_principal_components' for model_type PCA"),
        ({"pca_explained_variance_ratio": 1.0}, "< 1.0"),
        ({"num_principal_components": 2, "pca_solver": "lanczos"}, "'FULL', 'RANDOMIZED'"),
        ({"num_principal_components": 2, "l2_reg": 1.0}, "unknown option 'l2_reg'"),
    ],
)
def test_bad_options(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_options({"model_type": "PCA", **options})
    assert fragment in str(info.value)


# -- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["FULL", "RANDOMIZED", "AUTO"])
def test_parity_with_scikit_learn(solver: str) -> None:
    t = _wine()
    trained = MODEL_TYPES["PCA"].train(
        t, {"model_type": "PCA", "num_principal_components": 4, "pca_solver": solver}
    )
    direct = PCA(4, svd_solver="full").fit(_standardized(t))
    ratio = trained.eval_metrics["total_explained_variance_ratio"]
    assert ratio == pytest.approx(float(direct.explained_variance_ratio_.sum()), rel=1e-6)
    out = trained.predictor().predict(t, keep_original_columns=False)
    assert out.column_names == [f"principal_component_{i}" for i in range(1, 5)]
    ours = np.column_stack([c.to_numpy() for c in out.columns])
    theirs = direct.transform(_standardized(t))
    # components are defined up to sign
    assert np.allclose(np.abs(ours), np.abs(theirs), atol=1e-6)


def test_explained_variance_ratio_picks_the_fewest_components() -> None:
    t = _wine()
    trained = MODEL_TYPES["PCA"].train(
        t, {"model_type": "PCA", "pca_explained_variance_ratio": 0.8, "pca_solver": "RANDOMIZED"}
    )
    cumulative = np.cumsum(PCA().fit(_standardized(t)).explained_variance_ratio_)
    expected = int(np.searchsorted(cumulative, 0.8) + 1)
    assert trained.predictor().output_names[-1] == f"principal_component_{expected}"
    assert trained.eval_metrics["total_explained_variance_ratio"] >= 0.8


def test_scale_features_false_keeps_units() -> None:
    t = _wine()
    trained = MODEL_TYPES["PCA"].train(
        t, {"model_type": "PCA", "num_principal_components": 1, "scale_features": False}
    )
    x = np.column_stack([c.to_numpy() for c in t.columns])
    direct = PCA(1).fit(x)  # unscaled: proline (f12) dominates
    ratio = trained.eval_metrics["total_explained_variance_ratio"]
    assert ratio == pytest.approx(float(direct.explained_variance_ratio_[0]), rel=1e-6)
    assert ratio > 0.99


# -- through SQL ------------------------------------------------------------------------------


def test_predict_output(ws: Any) -> None:
    out = ws.sql("SELECT * FROM ML.PREDICT(MODEL demo.pca, TABLE demo.wine)").to_arrow()
    names = ["principal_component_1", "principal_component_2", "principal_component_3"]
    assert out.column_names == names  # BigQuery ML: PCA leaves out the input columns
    assert all(f.type == pa.float64() for f in out.schema)
    kept = ws.sql(
        "SELECT * FROM ML.PREDICT(MODEL demo.pca, TABLE demo.wine, "
        "STRUCT(TRUE AS keep_original_columns))"
    ).to_arrow()
    assert kept.column_names == names + [f"f{i}" for i in range(13)]
    predictor = ws.models.load("demo.pca")
    assert predictor.output_names == names
    assert [o["type"] for o in predictor.signature["outputs"]] == ["double"] * 3
    served = predictor.predict(_wine(), keep_original_columns=False)
    assert served.column_names == names and served.num_rows == 178


def test_principal_component_info(ws: Any) -> None:
    info = ws.sql("SELECT * FROM ML.PRINCIPAL_COMPONENT_INFO(MODEL demo.pca)").to_arrow()
    assert info.column_names == [
        "principal_component_id",
        "eigenvalue",
        "explained_variance_ratio",
        "cumulative_explained_variance_ratio",
    ]
    assert info.schema.field("principal_component_id").type == pa.int64()
    rows = info.to_pylist()
    assert [r["principal_component_id"] for r in rows] == [0, 1, 2]
    direct = PCA(3).fit(_standardized(_wine()))
    assert [r["explained_variance_ratio"] for r in rows] == pytest.approx(
        direct.explained_variance_ratio_.tolist()
    )
    assert [r["eigenvalue"] for r in rows] == pytest.approx(direct.explained_variance_.tolist())
    eigen = [r["eigenvalue"] for r in rows]
    assert eigen == sorted(eigen, reverse=True)
    total = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.pca)").to_pylist()
    assert total == [
        {
            "total_explained_variance_ratio": pytest.approx(
                rows[-1]["cumulative_explained_variance_ratio"]
            )
        }
    ]
    given = ws.sql("SELECT * FROM ML.EVALUATE(MODEL demo.pca, TABLE demo.wine)").to_pylist()
    assert given[0]["total_explained_variance_ratio"] == pytest.approx(
        total[0]["total_explained_variance_ratio"]
    )


def test_principal_components_are_unit_vectors(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.PRINCIPAL_COMPONENTS(MODEL demo.pca) "
        "ORDER BY principal_component_id, feature"
    ).to_arrow()
    assert out.column_names == [
        "principal_component_id",
        "feature",
        "numerical_value",
        "categorical_value",
    ]
    assert out.num_rows == 3 * 13
    rows = out.to_pylist()
    for pc in range(3):
        weights = np.array(
            [r["numerical_value"] for r in rows if r["principal_component_id"] == pc]
        )
        assert np.linalg.norm(weights) == pytest.approx(1.0)


def test_detect_anomalies(ws: Any) -> None:
    out = ws.sql(
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.pca, STRUCT(0.1 AS contamination), "
        "TABLE demo.wine)"
    ).to_arrow()
    assert out.column_names[:2] == ["is_anomaly", "mean_squared_error"]
    assert out.schema.field("is_anomaly").type == pa.bool_()
    assert 12 <= sum(out["is_anomaly"].to_pylist()) <= 24  # about 10 % of 178 rows
    assert out.column_names[2:] == [f"f{i}" for i in range(13)]


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT * FROM ML.PRINCIPAL_COMPONENT_INFO(MODEL demo.lin)", "applies to PCA models"),
        ("SELECT * FROM ML.CENTROIDS(MODEL demo.pca)", "a PCA model"),
        (
            "SELECT * FROM ML.PRINCIPAL_COMPONENTS(MODEL demo.pca, TABLE demo.wine)",
            "takes no input rows",
        ),
        (
            "SELECT * FROM ML.PRINCIPAL_COMPONENT_INFO(MODEL demo.pca, STRUCT(1 AS top_k))",
            "no parameter 'top_k'",
        ),
        (
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL demo.pca, STRUCT(-0.1 AS contamination), "
            "TABLE demo.wine)",
            "[0, 0.5]",
        ),
    ],
)
def test_bad_calls(ws: Any, sql: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ws.sql(sql)
    assert fragment in str(info.value)


def test_too_many_components(ws: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"at most min\(rows, encoded features\)"):
        ws.sql(
            "CREATE MODEL demo.bad OPTIONS(model_type='pca', num_principal_components=14) "
            "AS SELECT * FROM demo.wine"
        )
    assert "demo.bad" not in [m.name for m in ws.models.list().items]


def test_zero_rows_predict_with_the_output_schema(ws: Any) -> None:
    for name in ("demo.pca", "demo.lin"):
        predictor = ws.models.load(name)
        empty = _wine().slice(0, 0)
        out = predictor.predict(empty, keep_original_columns=False)
        assert out.num_rows == 0 and out.column_names == predictor.output_names
        assert [str(f.type) for f in out.schema] == [
            o["type"] for o in predictor.signature["outputs"]
        ]
