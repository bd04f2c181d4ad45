"""Logged models: a model folder that a run wrote (MLflow 3's ``LoggedModel``), before and
apart from any registration.

A logged model is a small JSON record plus a folder of run artifacts::

    <artifact root>/tracking/logged-models/<model id>.json
    <artifact root>/tracking/<experiment id>/models/<model id>/artifacts/   (MLmodel, model.pkl…)

Registering one (``ModelService.register_files``) copies its files into the immutable,
content-addressed registry; the record here only says where the folder is and which run made it.
Records are written whole (temporary file, then rename); concurrent tag updates to one logged
model may overwrite each other (the last write wins), which MLflow's clients never do.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel

from shipyard.errors import InvalidArgument, NotFound
from shipyard.tracking.artifacts import ArtifactTree
from shipyard.tracking.service import TrackingService

__all__ = ["LoggedModel", "LoggedModels"]

_INDEX = "logged-models"
_ID = re.compile(r"^m-[0-9a-f]{32}$")
LoggedModelStatus = Literal["PENDING", "READY", "FAILED"]


class LoggedModel(BaseModel):
    model_id: str
    experiment_id: str
    name: str
    source_run_id: str | None = None
    model_type: str | None = None
    status: LoggedModelStatus = "PENDING"
    status_message: str | None = None
    tags: dict[str, str] = {}
    params: dict[str, str] = {}
    created_ms: int
    updated_ms: int

    @property
    def artifact_path(self) -> str:
        """The model's folder in the run-artifact tree."""
        return f"{self.experiment_id}/models/{self.model_id}/artifacts"


class LoggedModels:
    """Create, read, tag, finalise and find logged models."""

    def __init__(self, tracking: TrackingService) -> None:
        self.tracking = tracking
        self.tree = ArtifactTree(tracking.ctx.artifacts)

    def create(
        self,
        experiment_id: str,
        name: str,
        *,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> LoggedModel:
        if not isinstance(name, str) or not name.strip() or "/" in name or len(name) > 255:
            raise InvalidArgument(
                f"invalid logged model name {name!r}: 1 to 255 characters, without '/'"
            )
        experiment = self.tracking.get_experiment_by_id(experiment_id)
        if source_run_id:
            run = self.tracking.get_run(source_run_id)
            if run.experiment_id != experiment.id:
                raise InvalidArgument(
                    f"run {source_run_id} belongs to experiment {run.experiment!r}, not to "
                    f"{experiment.name!r}"
                )
        now = _now_ms()
        model = LoggedModel(
            model_id=f"m-{uuid.uuid4().hex}",
            experiment_id=experiment.id,
            name=name,
            source_run_id=source_run_id or None,
            model_type=model_type or None,
            tags={str(k): str(v) for k, v in (tags or {}).items()},
            params={str(k): str(v) for k, v in (params or {}).items()},
            created_ms=now,
            updated_ms=now,
        )
        self._save(model)
        return model

    def get(self, model_id: str) -> LoggedModel:
        if not isinstance(model_id, str) or not _ID.match(model_id):
            raise NotFound(f"logged model {model_id!r} not found (ids look like 'm-<32 hex>')")
        try:
            with self.tree.open(f"{_INDEX}/{model_id}.json") as f:
                return LoggedModel.model_validate_json(f.read())
        except NotFound:
            raise NotFound(f"logged model {model_id!r} not found") from None

    def finalize(self, model_id: str, status: str) -> LoggedModel:
        if status not in ("PENDING", "READY", "FAILED"):
            raise InvalidArgument(
                f"invalid logged model status {status!r}: expected PENDING, READY or FAILED"
            )
        model = self.get(model_id)
        return self._save(model.model_copy(update={"status": status, "updated_ms": _now_ms()}))

    def set_tags(self, model_id: str, tags: dict[str, Any]) -> LoggedModel:
        model = self.get(model_id)
        merged = {**model.tags, **{str(k): str(v) for k, v in tags.items()}}
        return self._save(model.model_copy(update={"tags": merged, "updated_ms": _now_ms()}))

    def delete_tag(self, model_id: str, key: str) -> LoggedModel:
        model = self.get(model_id)
        if key not in model.tags:
            raise NotFound(f"logged model {model_id} has no tag {key!r}")
        tags = {k: v for k, v in model.tags.items() if k != key}
        return self._save(model.model_copy(update={"tags": tags, "updated_ms": _now_ms()}))

    def log_params(self, model_id: str, params: dict[str, Any]) -> LoggedModel:
        model = self.get(model_id)
        merged = {**model.params, **{str(k): str(v) for k, v in params.items()}}
        return self._save(model.model_copy(update={"params": merged, "updated_ms": _now_ms()}))

    def delete(self, model_id: str) -> None:
        model = self.get(model_id)
        self.tree.delete(f"{_INDEX}/{model_id}.json")
        if self.tree.is_dir(model.artifact_path):
            self.tree.delete(model.artifact_path)

    def search(
        self,
        experiment_ids: list[str],
        *,
        name: str | None = None,
        source_run_id: str | None = None,
    ) -> list[LoggedModel]:
        """Logged models of these experiments (all if empty), newest first."""
        wanted = set(experiment_ids)
        found = []
        for entry in self.tree.list(_INDEX):
            if entry.is_dir or not entry.path.endswith(".json"):
                continue
            with self.tree.open(entry.path) as f:
                model = LoggedModel.model_validate_json(f.read())
            if wanted and model.experiment_id not in wanted:
                continue
            if name is not None and model.name != name:
                continue
            if source_run_id is not None and model.source_run_id != source_run_id:
                continue
            found.append(model)
        return sorted(found, key=lambda m: (-m.created_ms, m.model_id))

    def _save(self, model: LoggedModel) -> LoggedModel:
        data = json.dumps(model.model_dump(mode="json"), indent=2).encode()
        self.tree.write_stream(f"{_INDEX}/{model.model_id}.json", iter([data]))
        return model


def _now_ms() -> int:
    return int(time.time() * 1000)
