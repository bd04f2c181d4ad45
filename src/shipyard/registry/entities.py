"""The model registry's objects: models, immutable versions, aliases and the package manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FORMAT = 1
DEFAULT_ALIAS = "default"
#: The flavor of a version whose files are an MLflow model folder (``MLmodel``, ``model.pkl``…),
#: registered through the MLflow-compatible API; MLflow's own loaders read it.
MLFLOW_FLAVOR = "mlflow"


class ColumnSpec(BaseModel):
    """One column of a signature: a name and an Arrow type string."""

    name: str
    type: str


class Signature(BaseModel):
    inputs: list[ColumnSpec]
    outputs: list[ColumnSpec]


class Lineage(BaseModel):
    """Where a version came from: the statement, the tables it read (by version) and its job."""

    statement: str | None = None
    input_tables: list[dict[str, Any]] = []
    job_id: str | None = None
    run_id: str | None = None


class Manifest(BaseModel):
    """``manifest.json`` of a model package: everything needed to serve the model faithfully."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = MANIFEST_FORMAT
    model_type: str
    task: str
    flavor: str
    flavor_meta: dict[str, Any] = {}
    label: str | None = None
    label_info: dict[str, Any] | None = None
    feature_columns: list[str] = []
    signature: Signature
    preprocessing: dict[str, Any]  # the fitted transform, applied unchanged at prediction
    predictor_config: dict[str, Any] = {}  # e.g. matrix dtype, default threshold
    feature_info: list[dict[str, Any]] = []  # training-data statistics, the baseline for skew
    options: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    training_info: list[dict[str, Any]] = []
    # ML.GLOBAL_EXPLAIN (enable_global_explain=TRUE): mean |attribution| per feature (and class)
    global_explain: dict[str, Any] | None = None
    # ML.CONFUSION_MATRIX / ML.ROC_CURVE without input rows: computed on the evaluation split
    evaluation_curves: dict[str, Any] | None = None
    # CREATE MODEL … OPTIONS(num_trials=…): the tuning settings and every trial (ML.TRIAL_INFO);
    # the version's own model is the optimal trial's (shipyard.sql.tuning)
    hparam_tuning: dict[str, Any] | None = None
    files: dict[str, str] = {}  # file name -> sha256
    lineage: Lineage = Field(default_factory=Lineage)
    created_at: datetime


class ModelVersion(BaseModel):
    """One immutable, trained version of a model."""

    model: str
    version: int
    model_type: str
    flavor: str
    task: str
    aliases: list[str] = []
    metrics: dict[str, Any] = {}
    signature: Signature
    lineage: Lineage
    manifest_digest: str
    created_at: datetime

    @property
    def resource(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


class Model(BaseModel):
    """A named model (``dataset.model``): its versions and aliases."""

    name: str
    dataset: str
    description: str | None = None
    labels: dict[str, str] = {}
    latest_version: int
    model_type: str | None = None
    aliases: dict[str, int] = {}
    created_at: datetime
    updated_at: datetime
    # OPTIONS(expiration_timestamp=…); None: never expires. An expired model is deleted.
    expiration_time: datetime | None = None

    @property
    def resource(self) -> str:
        return f"models/{self.name}"
