"""The demo workspace: real datasets that ship inside installed packages, and models on them.

``shipyard up`` runs :func:`setup` unless ``--no-demo``. It is idempotent: tables already present
are kept, models are created with ``CREATE MODEL IF NOT EXISTS``. Nothing is downloaded: the data
comes from scikit-learn's bundled datasets.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pyarrow as pa

from shipyard.errors import NotFound
from shipyard.services import Services
from shipyard.warehouse import QualifiedName

DATASET = "demo"


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _sklearn_table(loader: Callable[..., object], target: str, classes: bool) -> pa.Table:
    bunch = loader(as_frame=True)
    frame = bunch.frame.rename(columns=_snake)  # type: ignore[attr-defined]
    frame = frame.rename(columns={"target": target})
    if classes:
        names = list(bunch.target_names)  # type: ignore[attr-defined]
        frame[target] = [str(names[i]) for i in frame[target]]
    return pa.Table.from_pandas(frame, preserve_index=False)


def _tables() -> dict[str, tuple[Callable[[], pa.Table], str]]:
    from sklearn import datasets

    return {
        "iris": (
            lambda: _sklearn_table(datasets.load_iris, "species", classes=True),
            "150 iris flowers, 4 measurements, 3 species (scikit-learn)",
        ),
        "breast_cancer": (
            lambda: _sklearn_table(datasets.load_breast_cancer, "diagnosis", classes=True),
            "569 tumours, 30 features, malignant or benign (scikit-learn)",
        ),
        "diabetes": (
            lambda: _sklearn_table(datasets.load_diabetes, "progression", classes=False),
            "442 patients, 10 features, disease progression after a year (scikit-learn)",
        ),
        "wine": (
            lambda: _sklearn_table(datasets.load_wine, "cultivar", classes=True),
            "178 wines, 13 chemical measurements, 3 cultivars (scikit-learn)",
        ),
    }


MODELS = {
    "iris_species": (
        "CREATE MODEL IF NOT EXISTS demo.iris_species "
        "OPTIONS(model_type='logistic_reg', input_label_cols=['species']) "
        "AS SELECT * FROM demo.iris",
        "multiclass logistic regression on demo.iris",
    ),
    "cancer_diagnosis": (
        "CREATE MODEL IF NOT EXISTS demo.cancer_diagnosis "
        "OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['diagnosis'], "
        "data_split_method='random', data_split_eval_fraction=0.2) "
        "AS SELECT * FROM demo.breast_cancer",
        "XGBoost classifier on demo.breast_cancer",
    ),
    "diabetes_progression": (
        "CREATE MODEL IF NOT EXISTS demo.diabetes_progression "
        "OPTIONS(model_type='linear_reg', input_label_cols=['progression']) "
        "AS SELECT * FROM demo.diabetes",
        "linear regression on demo.diabetes",
    ),
}


def setup(services: Services) -> list[str]:
    """Load the demo tables and train the demo models; returns what was set up, line by line."""
    lines: list[str] = []
    for name, (build, about) in _tables().items():
        qname = QualifiedName(DATASET, name)
        if not services.ctx.warehouse.exists(qname):
            services.tables.load(str(qname), build())
        info = services.tables.get(str(qname))
        lines.append(f"table {qname} ({info.num_rows} rows): {about}")
    for name, (statement, about) in MODELS.items():
        services.sql.execute(statement)
        model = services.models.get(f"{DATASET}.{name}")
        version = services.models.get_version(model.name)
        headline = ("r2_score", "mean_absolute_error", "accuracy", "roc_auc", "f1_score")
        metrics = ", ".join(
            f"{k}={version.metrics[k]:.3f}"
            for k in headline
            if isinstance(version.metrics.get(k), float)
        )
        lines.append(f"model {model.name} v{version.version}: {about} ({metrics})")
    lines.append(_endpoint(services))
    return lines


ENDPOINT = "cancer"


def _endpoint(services: Services) -> str:
    """An online endpoint serving the XGBoost model, ready for ``:predict``."""
    try:
        endpoint = services.endpoints.get(ENDPOINT)
    except NotFound:
        services.endpoints.create(ENDPOINT, description="demo: breast cancer diagnosis, online")
        endpoint = services.endpoints.deploy(ENDPOINT, f"{DATASET}.cancer_diagnosis")
    split = ", ".join(f"{k}={v}%" for k, v in endpoint.traffic.items())
    return (
        f"endpoint {ENDPOINT} ({split}): POST /v1/endpoints/{ENDPOINT}:predict, or "
        f"shipyard endpoints predict {ENDPOINT} rows.jsonl"
    )
