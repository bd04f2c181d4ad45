"""The embedded workspace: the SDK calling services in this process."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from shipyard.context import Context
from shipyard.data.entities import TableInfo, TableVersion
from shipyard.data.service import TableService
from shipyard.engine import Job, LogLine
from shipyard.metadata.entities import LineageContext, LineageGraph
from shipyard.registry.entities import Manifest, Model, ModelVersion
from shipyard.registry.predictor import Predictor
from shipyard.registry.service import ModelService
from shipyard.services import Services
from shipyard.serving.abtest import ABComparison
from shipyard.serving.entities import Endpoint, EndpointChange
from shipyard.serving.service import EndpointService
from shipyard.sql.entities import QueryResult
from shipyard.sql.service import SqlService
from shipyard.store import Page
from shipyard.tracking.artifacts import ArtifactFile
from shipyard.tracking.entities import Experiment, MetricPoint, Run
from shipyard.tracking.service import TrackingService
from shipyard.warehouse.loading import rows_to_arrow


class LocalTables:
    """``ws.tables``: warehouse tables."""

    def __init__(self, service: TableService) -> None:
        self._s = service

    def list(
        self, *, dataset: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[TableInfo]:
        return self._s.list(dataset=dataset, page_size=page_size, page_token=page_token)

    def get(self, name: str) -> TableInfo:
        return self._s.get(name)

    def versions(self, name: str) -> builtins.list[TableVersion]:
        return self._s.versions(name)

    def preview(self, name: str, *, limit: int = 100) -> QueryResult:
        return QueryResult(self._s.preview(name, limit=limit))

    def load(
        self, name: str, source: Any, *, mode: str = "replace", format: str | None = None
    ) -> TableInfo:
        return self._s.load(name, source, mode=mode, format=format)

    def delete(self, name: str) -> None:
        self._s.drop(name)


class LocalModels:
    """``ws.models``: the model registry."""

    def __init__(self, service: ModelService) -> None:
        self._s = service

    def list(
        self, *, dataset: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[Model]:
        return self._s.list(dataset=dataset, page_size=page_size, page_token=page_token)

    def get(self, name: str) -> Model:
        return self._s.get(name)

    def versions(
        self, name: str, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[ModelVersion]:
        return self._s.versions(name, page_size=page_size, page_token=page_token)

    def get_version(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        return self._s.get_version(name, version, alias=alias)

    def manifest(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> Manifest:
        return self._s.manifest(name, version, alias=alias)

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        return self._s.set_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        self._s.delete_alias(name, alias)

    def delete(self, name: str) -> None:
        self._s.delete(name)

    def register_object(
        self,
        name: str,
        model: Any,
        *,
        flavor: str | None = None,
        feature_names: Sequence[str] | None = None,
        feature_types: Sequence[str] | None = None,
        task: str | None = None,
        classes: Sequence[Any] | None = None,
        label: str | None = None,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register a model trained in Python (scikit-learn, XGBoost, LightGBM) as the next
        version of ``name``; see :meth:`ModelService.register_model_object`."""
        return self._s.register_model_object(
            name,
            model,
            flavor=flavor,
            feature_names=feature_names,
            feature_types=feature_types,
            task=task,
            classes=classes,
            label=label,
            run_id=run_id,
            metrics=metrics,
            params=params,
            description=description,
        )

    def load(self, name: str, version: int | None = None, *, alias: str | None = None) -> Predictor:
        return self._s.load(name, version, alias=alias)

    def predict(
        self,
        name: str,
        data: Any,
        *,
        version: int | None = None,
        alias: str | None = None,
        threshold: float | None = None,
    ) -> pa.Table:
        """Predict on rows (Arrow, pandas or a list of dicts) with a registered version."""
        return self.load(name, version, alias=alias).predict(
            rows_to_arrow(data), threshold=threshold
        )


class LocalJobs:
    """``ws.jobs``: what the engine runs."""

    def __init__(self, ctx: Context, sql: SqlService) -> None:
        self._engine = ctx.engine
        self._sql = sql

    def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[Job]:
        return self._engine.list(state=state, kind=kind, page_size=page_size, page_token=page_token)

    def get(self, job_id: str) -> Job:
        return self._engine.get(job_id)

    def logs(self, job_id: str, *, since: int = 0) -> builtins.list[LogLine]:
        return self._engine.logs(job_id, since=since)

    def cancel(self, job_id: str) -> Job:
        return self._engine.cancel(job_id)

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        return self._engine.wait(job_id, timeout=timeout)

    def result(self, job_id: str) -> QueryResult:
        """The rows of a finished query job started with ``ws.submit_sql``."""
        return self._sql.result(job_id)


class LocalExperiments:
    """``ws.experiments``: namespaces of runs."""

    def __init__(self, service: TrackingService) -> None:
        self._s = service

    def create(
        self, name: str, *, description: str | None = None, tags: dict[str, Any] | None = None
    ) -> Experiment:
        return self._s.create_experiment(name, description=description, tags=tags)

    def get(self, name: str) -> Experiment:
        return self._s.get_experiment(name)

    def list(self, *, page_size: int = 100, page_token: str | None = None) -> Page[Experiment]:
        return self._s.list_experiments(page_size=page_size, page_token=page_token)

    def delete(self, name: str) -> None:
        """Delete the experiment with all its runs (permanently)."""
        self._s.delete_experiment(name)


class LocalRuns:
    """``ws.runs``: runs, their params, tags and metric series; search with a filter."""

    def __init__(self, service: TrackingService) -> None:
        self._s = service

    def create(
        self,
        experiment: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        created_by: str | None = None,
    ) -> Run:
        return self._s.create_run(
            experiment, name=name, parent_run_id=parent_run_id, tags=tags, created_by=created_by
        )

    def get(self, run_id: str) -> Run:
        return self._s.get_run(run_id)

    def list(
        self,
        *,
        experiment: str | builtins.list[str] | None = None,
        filter: str | None = None,
        order_by: builtins.list[str] | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Run]:
        """Runs matching ``filter`` (e.g. ``"metrics.auc > 0.9 and params.depth = '6'"``)."""
        return self._s.search_runs(
            experiment, filter, order_by, page_size=page_size, page_token=page_token
        )

    def update(self, run_id: str, *, name: str | None = None, notes: str | None = None) -> Run:
        return self._s.update_run(run_id, name=name, notes=notes)

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Log ``(key, value, step, timestamp)`` points, params and tags in one transaction."""
        self._s.log_batch(run_id, metrics, params, tags)

    def log_metric(
        self, run_id: str, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        self._s.log_metric(run_id, key, value, step, timestamp)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self._s.log_param(run_id, key, value)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self._s.set_tag(run_id, key, value)

    def end(self, run_id: str, status: str = "FINISHED") -> Run:
        return self._s.end_run(run_id, status)

    def metric_history(
        self, run_id: str, key: str, *, page_size: int = 1000, page_token: str | None = None
    ) -> Page[MetricPoint]:
        return self._s.metric_history(run_id, key, page_size=page_size, page_token=page_token)

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> builtins.list[ArtifactFile]:
        """Upload a file, or a folder with everything in it, into the run's artifacts
        (under ``artifact_path``); returns the files written."""
        return self._s.artifacts.log_artifact(run_id, local_path, artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> builtins.list[ArtifactFile]:
        """The files and folders directly under ``path`` (the run's root by default)."""
        return self._s.artifacts.list_artifacts(run_id, path)

    def download_artifacts(self, run_id: str, path: str | None, dst: str | Path) -> Path:
        """Copy the artifact file or folder at ``path`` (None: all) into folder ``dst``, keeping
        its relative path; returns where it landed."""
        return self._s.artifacts.download_artifacts(run_id, path, dst)

    def log_input(self, run_id: str, table: str, version: int | None = None) -> str:
        """Record that the run read ``table`` at ``version`` (its latest when None), for
        lineage; returns the table version's path (``tables/d.t/versions/3``)."""
        return self._s.log_input(run_id, table, version)

    def export_tensorboard(self, run_id: str, logdir: str | Path) -> Path:
        """Write the run's metric series as a TensorBoard event file in ``logdir`` (one tag per
        metric); returns the file. Needs ``pip install 'shipyard[tensorboard]'``."""
        return self._s.export_tensorboard(run_id, logdir)

    def import_tensorboard(self, run_id: str, logdir: str | Path) -> dict[str, int]:
        """Read the scalars of the TensorBoard event files under ``logdir`` into the run's
        metric series; returns the points per metric key."""
        return self._s.import_tensorboard(run_id, logdir)


class LocalEndpoints:
    """``ws.endpoints``: online serving — endpoints, deployments, traffic, predict."""

    def __init__(self, service: EndpointService) -> None:
        self._s = service

    def create(
        self, name: str, *, description: str | None = None, config: dict[str, Any] | None = None
    ) -> Endpoint:
        return self._s.create(name, description=description, config=config)

    def get(self, name: str) -> Endpoint:
        return self._s.get(name)

    def list(self, *, page_size: int = 100, page_token: str | None = None) -> Page[Endpoint]:
        return self._s.list(page_size=page_size, page_token=page_token)

    def update(
        self,
        name: str,
        *,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        sticky_key: str | None = None,
        clear_sticky_key: bool = False,
    ) -> Endpoint:
        return self._s.update(
            name,
            description=description,
            config=config,
            sticky_key=sticky_key,
            clear_sticky_key=clear_sticky_key,
        )

    def delete(self, name: str, *, force: bool = False) -> None:
        self._s.delete(name, force=force)

    def deploy(
        self,
        name: str,
        model: str,
        *,
        version: int | None = None,
        alias: str | None = None,
        traffic: int | None = None,
        shadow: bool = False,
        sticky_key: str | None = None,
    ) -> Endpoint:
        return self._s.deploy(
            name,
            model,
            version=version,
            alias=alias,
            traffic=traffic,
            shadow=shadow,
            sticky_key=sticky_key,
        )

    def undeploy(self, name: str, deployment_id: str) -> Endpoint:
        return self._s.undeploy(name, deployment_id)

    def split(self, name: str, traffic: dict[str, int]) -> Endpoint:
        return self._s.split(name, traffic)

    def rollback(self, name: str, *, to_revision: int | None = None) -> Endpoint:
        return self._s.rollback(name, to_revision=to_revision)

    def history(
        self, name: str, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[EndpointChange]:
        return self._s.history(name, page_size=page_size, page_token=page_token)

    def predict(
        self,
        name: str,
        instances: builtins.list[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._s.predict(name, instances, parameters)

    def explain(
        self,
        name: str,
        instances: builtins.list[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._s.predict(name, instances, parameters, explain=True)

    def feedback(self, name: str, items: builtins.list[dict[str, Any]]) -> int:
        return self._s.feedback(name, items)

    def stats(self, name: str) -> dict[str, dict[str, Any]]:
        return self._s.stats(name)

    def compare(
        self,
        name: str,
        *,
        metric: str,
        deployments: builtins.list[str] | None = None,
        include_shadow: bool = False,
        confidence_level: float = 0.95,
    ) -> ABComparison:
        return self._s.compare(
            name,
            metric=metric,
            deployments=deployments,
            include_shadow=include_shadow,
            confidence_level=confidence_level,
        )


class LocalWorkspace:
    """A workspace opened in this process (DuckDB + SQLite + local files by default)."""

    remote = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.services = Services.build(ctx)
        self._sql = self.services.sql
        self.tables = LocalTables(self.services.tables)
        self.models = LocalModels(self.services.models)
        self.jobs = LocalJobs(ctx, self._sql)
        self.experiments = LocalExperiments(self.services.tracking)
        self.runs = LocalRuns(self.services.tracking)
        self.endpoints = LocalEndpoints(self.services.endpoints)

    @property
    def home(self) -> Path:
        return self.ctx.home

    @property
    def url(self) -> str:
        return str(self.ctx.home)

    def sql(self, query: str) -> QueryResult:
        """Run BigQuery ML SQL; returns the last statement's rows."""
        return self._sql.execute(query)

    def submit_sql(self, query: str) -> Job:
        """Start SQL as a background job; progress in ``jobs.get``, rows in ``jobs.result``."""
        return self._sql.submit(query)

    def load_table(
        self, name: str, source: Any, *, mode: str = "replace", format: str | None = None
    ) -> TableInfo:
        """Load a file (CSV, Parquet, JSON/JSONL, Excel), a DataFrame or an Arrow table."""
        return self.tables.load(name, source, mode=mode, format=format)

    def batch_predict(
        self,
        model: str,
        *,
        source: str | Path | list[str | Path],
        destination: str | Path,
        version: int | None = None,
        alias: str | None = None,
        source_format: str | None = None,
        chunk_rows: int = 100_000,
        parallelism: int | None = None,
        threshold: float | None = None,
        keep_original_columns: bool = True,
        write_mode: str = "truncate",
    ) -> Job:
        """Start a batch prediction job: ``model`` over a table, a query or files, into a table
        or files, in chunks; returns the job (wait with ``ws.jobs.wait``). Paths are the
        workspace process's. See docs/batch-prediction.md."""
        return self.services.batch.submit(
            model,
            source=source,
            destination=destination,
            version=version,
            alias=alias,
            source_format=source_format,
            chunk_rows=chunk_rows,
            parallelism=parallelism,
            threshold=threshold,
            keep_original_columns=keep_original_columns,
            write_mode=write_mode,
        )

    def batch_predict_resume(self, job_id: str) -> Job:
        """Continue a failed or cancelled batch prediction job; finished chunks are kept."""
        return self.services.batch.resume(job_id)

    def lineage(
        self,
        resource: str,
        *,
        direction: str = "both",
        depth: int | None = None,
        context: str | None = None,
    ) -> LineageGraph:
        """Where ``resource`` came from and what came of it: ``models/d.m`` (its default
        version), ``models/d.m/versions/2``, ``tables/d.t`` (its latest version), ``runs/<id>``.
        ``direction``: upstream, downstream or both; ``depth``: executions away (None: all);
        ``context``: only through that context's executions (``experiment/<name>``)."""
        return self.services.metadata.lineage(resource, direction, depth, context)

    def lineage_contexts(
        self, *, type: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[LineageContext]:
        """The contexts that group lineage nodes: one per experiment (``type="experiment"``),
        and pipelines'."""
        return self.services.metadata.list_contexts(
            type=type, page_size=page_size, page_token=page_token
        )

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> LocalWorkspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self.home} (embedded)>"
