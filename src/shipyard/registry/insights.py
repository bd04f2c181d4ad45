"""A ``model_type='CONTRIBUTION_ANALYSIS'`` version: its insights table, and nothing to run.

A contribution analysis model (:mod:`shipyard.sql.contribution_analysis`) computes, at CREATE
MODEL time, one row per data segment comparing a metric between test and control rows.
The package holds that table as ``insights.parquet`` (flavor ``insights``); ML.GET_INSIGHTS
returns it. :class:`InsightsPredictor` is its loaded form: it predicts nothing, and every
prediction entry point (an endpoint, a batch prediction) raises InvalidArgument naming
ML.GET_INSIGHTS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import ArtifactCorrupted, InvalidArgument

__all__ = [
    "CONTRIBUTION_ANALYSIS_TASK",
    "INSIGHTS_FLAVOR",
    "InsightsPredictor",
    "load_insights_model",
    "save_insights_model",
]

INSIGHTS_FLAVOR = "insights"
CONTRIBUTION_ANALYSIS_TASK = "contribution_analysis"
_INSIGHTS_FILE = "insights.parquet"


def save_insights_model(model: Any, folder: Path) -> dict[str, Any]:
    """Write the insights table (an Arrow table) as ``insights.parquet``."""
    if not isinstance(model, pa.Table):
        raise InvalidArgument(f"an insights model is an Arrow table, got {type(model).__name__}")
    pq.write_table(model, Path(folder) / _INSIGHTS_FILE)
    return {"files": [_INSIGHTS_FILE], "format": "parquet", "library_version": "1"}


def load_insights_model(folder: Path, meta: dict[str, Any]) -> pa.Table:
    path = Path(folder) / ((meta.get("files") or [_INSIGHTS_FILE])[0])
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ArtifactCorrupted(
            f"insights file {path.name!r} cannot be read: {exc}", path=str(path)
        ) from exc


class InsightsPredictor:
    """The loaded form of a contribution analysis version: ``model`` is its insights table."""

    task = CONTRIBUTION_ANALYSIS_TASK
    flavor = INSIGHTS_FLAVOR
    label: str | None = None
    label_info = None
    preprocessor = None

    def __init__(self, model: pa.Table, config: dict[str, Any] | None = None) -> None:
        self.model = model
        self.config = dict(config or {})

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: Any) -> InsightsPredictor:
        return cls(model, data.get("config") or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "flavor": self.flavor,
            "label": None,
            "preprocessor": {},
            "label_info": None,
            "config": self.config,
        }

    def with_threads(self, threads: int) -> InsightsPredictor:
        return self

    def _refuse(self, what: str) -> InvalidArgument:
        return InvalidArgument(
            f"{what} does not apply to a CONTRIBUTION_ANALYSIS model: it holds insights about "
            "a metric's change between test and control rows; read them with "
            "ML.GET_INSIGHTS(MODEL …)"
        )

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("prediction")

    def explain(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("explanation")

    def predict_raw(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("prediction")

    def __repr__(self) -> str:
        return f"InsightsPredictor(insights={self.model.num_rows})"
