"""The remote workspace: the SDK talking to a Shipyard server over HTTP.

It has exactly the methods, arguments, return types and errors of the embedded workspace
(:mod:`shipyard.client.local`); a test pins the two surfaces together. Rows travel as Arrow IPC
streams both ways, so types survive the trip. Errors come back as ``{code, message, details}`` and
are raised as the class registered for ``code`` (never a class named by the payload).
"""

from __future__ import annotations

import builtins
import getpass
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import httpx
import pyarrow as pa

from shipyard.data.entities import TableInfo, TableVersion
from shipyard.engine.jobs import Job, LogLine
from shipyard.errors import (
    ArtifactCorrupted,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ShipyardError,
    Unauthenticated,
    Unavailable,
    Unsupported,
    error_class_for_code,
)
from shipyard.metadata.entities import LineageContext, LineageGraph
from shipyard.registry.entities import Manifest, Model, ModelVersion
from shipyard.registry.predictor import Predictor, PredictorCache
from shipyard.serving.entities import Endpoint, EndpointChange
from shipyard.sql.entities import QueryResult
from shipyard.store import Page
from shipyard.tracking.artifacts import ArtifactFile, check_artifact_path
from shipyard.tracking.entities import Experiment, MetricPoint, Run, metric_tuples
from shipyard.warehouse.names import QualifiedName

if TYPE_CHECKING:
    from shipyard.serving.abtest import ABComparison

ARROW_STREAM = "application/vnd.apache.arrow.stream"
RESULT_HEADER = "X-Shipyard-Result"
MODEL_VERSION_HEADER = "X-Shipyard-Model-Version"
_CONNECT_TIMEOUT_S = 10.0
_PREDICTOR_CACHE_SIZE = 16
_STATUS_CLASSES: dict[int, type[ShipyardError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: FailedPrecondition,
    413: PayloadTooLarge,
    501: Unsupported,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


class _Http:
    """One HTTP connection pool to the server; turns every failure into a ShipyardError."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout: float | None,
        client: httpx.Client | None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": "shipyard-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._owns_client = client is None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT_S)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        response = self._send(method, path, params, json_body, content, headers, stream=False)
        if response.status_code not in expected:
            _raise_for(response)
        return response

    def stream_to(self, path: str, dest: Path) -> str:
        """Download ``path`` into ``dest``; returns the sha256 of what was written."""
        hasher = hashlib.sha256()
        response = self._send("GET", path, None, None, None, None, stream=True)
        try:
            if response.status_code != 200:
                response.read()
                _raise_for(response)
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
        except httpx.TransportError as exc:
            self._unreachable(exc)
        finally:
            response.close()
        return hasher.hexdigest()

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json_body: Any,
        content: Any,
        headers: dict[str, str] | None,
        *,
        stream: bool,
    ) -> httpx.Response:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        request = self.client.build_request(
            method,
            self.url + path,
            params=clean or None,
            json=json_body,
            content=content,
            headers={**self._headers, **(headers or {})},
        )
        try:
            return self.client.send(request, stream=stream)
        except httpx.TransportError as exc:
            self._unreachable(exc)

    def _unreachable(self, exc: httpx.TransportError) -> NoReturn:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            raise Unavailable(
                f"the Shipyard server at {self.url} did not answer in time ({exc!r}); "
                "the work may still be running there",
                url=self.url,
            ) from None
        raise Unavailable(
            f"cannot reach the Shipyard server at {self.url}: {exc or type(exc).__name__}; "
            "is it running (shipyard up)?",
            url=self.url,
        ) from None

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _raise_for(response: httpx.Response) -> NoReturn:
    """Raise the ShipyardError a non-2xx answer carries."""
    payload: Any = None
    try:
        payload = response.json()
    except ValueError:
        pass
    if isinstance(payload, dict) and isinstance(payload.get("code"), str):
        cls = error_class_for_code(payload["code"])
        message = str(payload.get("message") or f"HTTP {response.status_code}")
        raw = payload.get("details")
        details: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        if cls is ShipyardError:  # a code this client does not know: keep it visible
            details.setdefault("code", payload["code"])
        raise _error(cls, message, details)
    # Not a Shipyard answer (a proxy, a crashed server): classify by status.
    cls = _STATUS_CLASSES.get(response.status_code, Internal)
    snippet = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    raise cls(
        f"the server at {response.request.url} answered HTTP {response.status_code}"
        + (f": {snippet}" if snippet else ""),
        status=response.status_code,
    )


def _error(cls: type[ShipyardError], message: str, details: dict[str, Any]) -> ShipyardError:
    try:
        return cls(message, **details)
    except TypeError:  # details that clash with the constructor's own arguments
        error = cls(message)
        error.details = details
        return error


def _result(response: httpx.Response) -> QueryResult:
    """A QueryResult from an Arrow stream plus its metadata header."""
    table = pa.ipc.open_stream(response.content).read_all()
    info = json.loads(response.headers.get(RESULT_HEADER) or "{}")
    return QueryResult(
        table,
        statement_type=info.get("statement_type") or "SELECT",
        job_id=info.get("job_id"),
        message=info.get("message"),
        model=info.get("model"),
        table_name=info.get("table"),
    )


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _seg(value: str) -> str:
    """One path segment, escaped (names never contain '/', but do not trust that)."""
    return quote(str(value), safe=".-_~@")


_ARROW = {"Accept": ARROW_STREAM}


class RemoteTables:
    """``ws.tables``: warehouse tables."""

    def __init__(self, http: _Http, workspace: RemoteWorkspace) -> None:
        self._http = http
        self._ws = workspace

    def list(
        self, *, dataset: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[TableInfo]:
        params = {"dataset": dataset, "page_size": page_size, "page_token": page_token}
        return Page[TableInfo].model_validate(
            self._http.request("GET", "/v1/tables", params=params).json()
        )

    def get(self, name: str) -> TableInfo:
        return TableInfo.model_validate(
            self._http.request("GET", f"/v1/tables/{_seg(name)}").json()
        )

    def versions(self, name: str) -> builtins.list[TableVersion]:
        out: builtins.list[TableVersion] = []
        token: str | None = None
        while True:
            params = {"page_size": 1000, "page_token": token}
            page = Page[TableVersion].model_validate(
                self._http.request("GET", f"/v1/tables/{_seg(name)}/versions", params=params).json()
            )
            out += page.items
            token = page.next_page_token
            if not token:
                return out

    def preview(self, name: str, *, limit: int = 100) -> QueryResult:
        response = self._http.request(
            "GET", f"/v1/tables/{_seg(name)}/rows", params={"limit": limit}, headers=_ARROW
        )
        return _result(response)

    def load(
        self, name: str, source: Any, *, mode: str = "replace", format: str | None = None
    ) -> TableInfo:
        from shipyard.warehouse.loading import to_arrow

        params: dict[str, Any] = {"mode": mode, "format": format}
        data = to_arrow(source)
        if data is not None:
            body = _arrow_bytes(data)
            self._ws._check_size(len(body))
            response = self._http.request(
                "POST",
                f"/v1/tables/{_seg(name)}:load",
                params=params,
                content=body,
                headers={"Content-Type": ARROW_STREAM},
            )
            return TableInfo.model_validate(response.json())
        if not isinstance(source, str | Path):
            raise InvalidArgument(
                f"cannot load a {type(source).__name__}: expected a file path, a pandas DataFrame "
                "or an Arrow table"
            )
        path = Path(source).expanduser()
        if not path.is_file():
            raise NotFound(f"file {str(path)!r} not found")
        self._ws._check_size(path.stat().st_size)
        params["filename"] = path.name
        with path.open("rb") as body_file:
            response = self._http.request(
                "POST",
                f"/v1/tables/{_seg(name)}:load",
                params=params,
                content=_file_chunks(body_file),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(path.stat().st_size),
                },
            )
        return TableInfo.model_validate(response.json())

    def delete(self, name: str) -> None:
        self._http.request("DELETE", f"/v1/tables/{_seg(name)}", expected=(200, 204))


def _file_chunks(f: Any) -> Iterator[bytes]:
    while chunk := f.read(1 << 20):
        yield chunk


class RemoteModels:
    """``ws.models``: the model registry."""

    def __init__(self, http: _Http, cache_dir: Path) -> None:
        self._http = http
        self._cache_dir = cache_dir
        self._predictors = PredictorCache(_PREDICTOR_CACHE_SIZE)

    def list(
        self, *, dataset: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[Model]:
        params = {"dataset": dataset, "page_size": page_size, "page_token": page_token}
        return Page[Model].model_validate(
            self._http.request("GET", "/v1/models", params=params).json()
        )

    def get(self, name: str) -> Model:
        return Model.model_validate(self._http.request("GET", f"/v1/models/{_seg(name)}").json())

    def versions(
        self, name: str, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[ModelVersion]:
        params = {"page_size": page_size, "page_token": page_token}
        response = self._http.request("GET", f"/v1/models/{_seg(name)}/versions", params=params)
        return Page[ModelVersion].model_validate(response.json())

    def get_version(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        if version is not None and alias is not None:
            raise InvalidArgument("give a version or an alias, not both")
        if version is not None:
            path = f"/v1/models/{_seg(name)}/versions/{_version_segment(version)}"
        else:
            path = f"/v1/models/{_seg(name)}/aliases/{_seg(alias or 'default')}"
        return ModelVersion.model_validate(self._http.request("GET", path).json())

    def manifest(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> Manifest:
        mv = self.get_version(name, version, alias=alias)
        return self._manifest(mv)

    def _manifest(self, mv: ModelVersion) -> Manifest:
        response = self._http.request(
            "GET", f"/v1/models/{_seg(mv.model)}/versions/{mv.version}/manifest"
        )
        actual = hashlib.sha256(response.content).hexdigest()
        if actual != mv.manifest_digest:
            raise ArtifactCorrupted(
                f"the manifest of model {mv.model} version {mv.version} arrived corrupted: "
                f"expected sha256 {mv.manifest_digest}, got {actual}",
                resource=mv.resource,
            )
        return Manifest.model_validate_json(response.content)

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        response = self._http.request(
            "PUT", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}", json_body={"version": version}
        )
        return ModelVersion.model_validate(response.json())

    def delete_alias(self, name: str, alias: str) -> None:
        self._http.request(
            "DELETE", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}", expected=(200, 204)
        )

    def delete(self, name: str) -> None:
        # Cached predictors are keyed by manifest digest, so none can outlive its version.
        self._http.request("DELETE", f"/v1/models/{_seg(name)}", expected=(200, 204))

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
        """Register a model trained in Python as the next version of ``name``: described and
        saved in its flavor's format here, uploaded, and registered by the server."""
        from shipyard.registry.estimators import describe_estimator
        from shipyard.registry.flavors import save_model

        QualifiedName.parse(name, kind="model")  # a bad name fails before any work
        # Described here, where the object is whole (an XGBClassifier's parameters, an
        # LGBMClassifier's labels): the server only sees the file's Booster.
        found = describe_estimator(
            model,
            flavor=flavor,
            feature_names=feature_names,
            feature_types=feature_types,
            task=task,
            classes=classes,
        )
        fields = {
            "flavor": found.flavor,
            "feature_names": found.feature_names,
            "feature_types": found.feature_types,
            "task": found.task,
            "classes": found.classes,
            "label": label,
            "run_id": run_id,
            "metrics": metrics,
            "params": found.params if params is None else params,
            "description": description,
        }
        with tempfile.TemporaryDirectory(prefix="shipyard-upload-") as tmp:
            meta = save_model(found.flavor, model, Path(tmp))
            fname = str(meta["files"][0])
            data = (Path(tmp) / fname).read_bytes()
        # httpx encodes the multipart body; it goes through the one connection pool.
        encoded = httpx.Request(
            "POST",
            self._http.url,
            data={"description": json.dumps(fields, default=_json_default)},
            files={"model": (fname, data, "application/octet-stream")},
        )
        response = self._http.request(
            "POST",
            f"/v1/models/{_seg(name)}/versions:upload",
            content=encoded.read(),
            headers={"Content-Type": encoded.headers["Content-Type"]},
            expected=(200, 201),
        )
        return ModelVersion.model_validate(response.json())

    def load(self, name: str, version: int | None = None, *, alias: str | None = None) -> Predictor:
        """Download the version's package (verifying every file's sha256) and load it here."""
        mv = self.get_version(name, version, alias=alias)
        key = PredictorCache.key(mv.model, mv.version, mv.manifest_digest)
        cached = self._predictors.get(key)
        if cached is not None:
            return cached
        manifest = self._manifest(mv)
        folder = self._materialise(mv, manifest)
        from shipyard.registry.service import load_predictor

        predictor = load_predictor(mv, manifest, folder)
        self._predictors.put(key, predictor)
        return predictor

    def _materialise(self, mv: ModelVersion, manifest: Manifest) -> Path:
        """The package's files in the local cache, every one checked against the manifest."""
        folder = self._cache_dir / "packages" / mv.manifest_digest
        from shipyard.registry.service import package_is_intact

        if (folder / ".complete").exists() and package_is_intact(folder, manifest):
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            for fname, digest in manifest.files.items():
                dest = (tmp / fname).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise ArtifactCorrupted(
                        f"model {mv.model} version {mv.version} lists a file outside its "
                        f"package: {fname!r}",
                        resource=mv.resource,
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                path = f"/v1/models/{_seg(mv.model)}/versions/{mv.version}/files/" + quote(fname)
                actual = self._http.stream_to(path, dest)
                if actual != digest:
                    raise ArtifactCorrupted(
                        f"file {fname!r} of model {mv.model} version {mv.version} arrived "
                        f"corrupted: expected sha256 {digest}, got {actual}",
                        resource=mv.resource,
                    )
            (tmp / ".complete").write_text(json.dumps(manifest.files))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

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
        if version is not None and alias is not None:
            raise InvalidArgument("give a version or an alias, not both")
        from shipyard.warehouse.loading import rows_to_arrow

        rows = rows_to_arrow(data)
        params = {"version": version, "alias": alias, "threshold": threshold}
        response = self._http.request(
            "POST",
            f"/v1/models/{_seg(name)}:predict",
            params=params,
            content=_arrow_bytes(rows),
            headers={"Content-Type": ARROW_STREAM, "Accept": ARROW_STREAM},
        )
        return pa.ipc.open_stream(response.content).read_all()


def _json_default(value: Any) -> Any:
    """NumPy scalars as Python numbers (``np.float32(0.9)`` → 0.9), anything else as text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _version_segment(version: Any) -> str:
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidArgument(f"invalid version {version!r}: expected an integer >= 1")
    return str(version)


class RemoteJobs:
    """``ws.jobs``: what the server's engine runs."""

    def __init__(self, http: _Http) -> None:
        self._http = http

    def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[Job]:
        params = {"state": state, "kind": kind, "page_size": page_size, "page_token": page_token}
        return Page[Job].model_validate(self._http.request("GET", "/v1/jobs", params=params).json())

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._http.request("GET", f"/v1/jobs/{_seg(job_id)}").json())

    def logs(self, job_id: str, *, since: int = 0) -> builtins.list[LogLine]:
        out: builtins.list[LogLine] = []
        token: str | None = None
        while True:
            params = {"since": since, "page_size": 10_000, "page_token": token}
            page = Page[LogLine].model_validate(
                self._http.request("GET", f"/v1/jobs/{_seg(job_id)}/logs", params=params).json()
            )
            out += page.items
            token = page.next_page_token
            if not token:
                return out

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(
            self._http.request("POST", f"/v1/jobs/{_seg(job_id)}:cancel").json()
        )

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = 0.05
        while True:
            job = self.get(job_id)
            if job.state.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return job
            pause = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            time.sleep(pause)
            poll = min(poll * 1.5, 1.0)  # quick for short jobs, gentle on long ones

    def result(self, job_id: str) -> QueryResult:
        """The rows of a finished query job started with ``ws.submit_sql``."""
        return _result(self._http.request("GET", f"/v1/jobs/{_seg(job_id)}/result", headers=_ARROW))


class RemoteExperiments:
    """``ws.experiments``: namespaces of runs."""

    def __init__(self, http: _Http) -> None:
        self._http = http

    def create(
        self, name: str, *, description: str | None = None, tags: dict[str, Any] | None = None
    ) -> Experiment:
        body = {"name": name, "description": description, "tags": tags or {}}
        response = self._http.request("POST", "/v1/experiments", json_body=body)
        return Experiment.model_validate(response.json())

    def get(self, name: str) -> Experiment:
        return Experiment.model_validate(
            self._http.request("GET", f"/v1/experiments/{_seg(name)}").json()
        )

    def list(self, *, page_size: int = 100, page_token: str | None = None) -> Page[Experiment]:
        params = {"page_size": page_size, "page_token": page_token}
        return Page[Experiment].model_validate(
            self._http.request("GET", "/v1/experiments", params=params).json()
        )

    def delete(self, name: str) -> None:
        """Delete the experiment with all its runs (permanently)."""
        self._http.request("DELETE", f"/v1/experiments/{_seg(name)}", expected=(200, 204))


class RemoteRuns:
    """``ws.runs``: runs, their params, tags and metric series; search with a filter."""

    def __init__(self, http: _Http) -> None:
        self._http = http

    def create(
        self,
        experiment: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        created_by: str | None = None,
    ) -> Run:
        body = {
            "experiment": experiment,
            "name": name,
            "parent_run_id": parent_run_id,
            "tags": tags or {},
            "created_by": created_by,
        }
        return Run.model_validate(self._http.request("POST", "/v1/runs", json_body=body).json())

    def get(self, run_id: str) -> Run:
        return Run.model_validate(self._http.request("GET", f"/v1/runs/{_seg(run_id)}").json())

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
        params: dict[str, Any] = {
            "experiment": [experiment] if isinstance(experiment, str) else experiment,
            "filter": filter,
            "order_by": order_by,
            "page_size": page_size,
            "page_token": page_token,
        }
        return Page[Run].model_validate(self._http.request("GET", "/v1/runs", params=params).json())

    def update(self, run_id: str, *, name: str | None = None, notes: str | None = None) -> Run:
        body = {"name": name, "notes": notes}
        return Run.model_validate(
            self._http.request("PATCH", f"/v1/runs/{_seg(run_id)}", json_body=body).json()
        )

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Log ``(key, value, step, timestamp)`` points, params and tags in one transaction."""
        # Validated here too: JSON cannot carry NaN, and a bad point should not cost a trip.
        points = [[k, v, s, t] for k, s, t, v in metric_tuples(metrics)]
        body = {
            "metrics": points,
            "params": {k: str(v) for k, v in (params or {}).items()},
            "tags": {k: str(v) for k, v in (tags or {}).items()},
        }
        self._http.request(
            "POST", f"/v1/runs/{_seg(run_id)}:logBatch", json_body=body, expected=(200, 204)
        )

    def log_metric(
        self, run_id: str, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        self.log_batch(run_id, metrics=[(key, value, step, timestamp)])

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params={key: value})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags={key: value})

    def end(self, run_id: str, status: str = "FINISHED") -> Run:
        response = self._http.request(
            "POST", f"/v1/runs/{_seg(run_id)}:end", json_body={"status": status}
        )
        return Run.model_validate(response.json())

    def metric_history(
        self, run_id: str, key: str, *, page_size: int = 1000, page_token: str | None = None
    ) -> Page[MetricPoint]:
        params = {"page_size": page_size, "page_token": page_token}
        response = self._http.request(
            "GET", f"/v1/runs/{_seg(run_id)}/metrics/{_seg(key)}", params=params
        )
        return Page[MetricPoint].model_validate(response.json())

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> builtins.list[ArtifactFile]:
        """Upload a file, or a folder with everything in it, into the run's artifacts
        (under ``artifact_path``); returns the files written."""
        source = Path(local_path)
        dest = check_artifact_path(artifact_path)
        if source.is_file():
            files = [(source, source.name)]
        elif source.is_dir():
            files = [(p, p.relative_to(source).as_posix()) for p in sorted(source.rglob("*"))]
            files = [(p, rel) for p, rel in files if p.is_file()]
        else:
            raise NotFound(f"local file or folder {str(source)!r} not found")
        out = []
        for path, rel in files:
            target = f"{dest}/{rel}" if dest else rel
            with path.open("rb") as body:
                response = self._http.request(
                    "PUT",
                    self._artifact_url(run_id, target),
                    content=_file_chunks(body),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(path.stat().st_size),
                    },
                )
            out.append(ArtifactFile.model_validate(response.json()))
        return out

    def list_artifacts(self, run_id: str, path: str | None = None) -> builtins.list[ArtifactFile]:
        """The files and folders directly under ``path`` (the run's root by default)."""
        response = self._http.request(
            "GET",
            f"/v1/runs/{_seg(run_id)}/artifacts",
            params={"path": check_artifact_path(path) or None},
        )
        return [ArtifactFile.model_validate(f) for f in response.json()]

    def download_artifacts(self, run_id: str, path: str | None, dst: str | Path) -> Path:
        """Copy the artifact file or folder at ``path`` (None: all) into folder ``dst``, keeping
        its relative path; returns where it landed."""
        rel = check_artifact_path(path)
        dest = Path(dst)
        entries = self.list_artifacts(run_id, rel)
        if rel and not entries:  # a file (or nothing: the server answers 404)
            self._download(run_id, rel, dest / rel)
            return dest / rel
        while entries:
            entry = entries.pop()
            if entry.is_dir:
                entries += self.list_artifacts(run_id, entry.path)
            else:
                self._download(run_id, entry.path, dest / entry.path)
        target = dest / rel if rel else dest
        target.mkdir(parents=True, exist_ok=True)
        return target

    def _artifact_url(self, run_id: str, rel: str) -> str:
        return f"/v1/runs/{_seg(run_id)}/artifacts/{quote(rel, safe='/.-_~@')}"

    def _download(self, run_id: str, rel: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.partial-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self._http.stream_to(self._artifact_url(run_id, rel), tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def log_input(self, run_id: str, table: str, version: int | None = None) -> str:
        """Record that the run read ``table`` at ``version`` (its latest when None), for
        lineage; returns the table version's path (``tables/d.t/versions/3``)."""
        body = {"table": table, "version": version}
        response = self._http.request("POST", f"/v1/runs/{_seg(run_id)}:logInput", json_body=body)
        return str(response.json()["resource"])

    def export_tensorboard(self, run_id: str, logdir: str | Path) -> Path:
        """Write the run's metric series as a TensorBoard event file in ``logdir`` (here, on
        this machine; the server writes it, this client unpacks it); returns the file."""
        folder = Path(logdir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise InvalidArgument(f"logdir {str(folder)!r} is a file, not a folder")
        response = self._http.request("GET", f"/v1/runs/{_seg(run_id)}:exportTensorboard")
        suffix = f".shipyard.{run_id}"
        if folder.is_dir():  # an export replaces the run's earlier one
            for earlier in folder.glob(f"*tfevents*{suffix}"):
                earlier.unlink()
        written = _unzip(response.content, folder)
        return next(p for p in written if p.name.endswith(suffix))

    def import_tensorboard(self, run_id: str, logdir: str | Path) -> dict[str, int]:
        """Read the scalars of the TensorBoard event files under ``logdir`` (on this machine)
        into the run's metric series; returns the points per metric key."""
        data = _zip_event_files(Path(logdir).expanduser())
        response = self._http.request(
            "POST",
            f"/v1/runs/{_seg(run_id)}:importTensorboard",
            content=data,
            headers={"Content-Type": "application/zip"},
        )
        return {str(k): int(v) for k, v in response.json().items()}


def _actor() -> dict[str, str]:
    try:
        return {"X-Shipyard-Actor": getpass.getuser()}
    except Exception:  # no user name (e.g. a container without a passwd entry)
        return {}


class RemoteEndpoints:
    """``ws.endpoints``: online serving — endpoints, deployments, traffic, predict."""

    def __init__(self, http: _Http) -> None:
        self._http = http

    def _call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self._http.request(
            method, f"/v1/endpoints{path}", json_body=body, headers=_actor(), **kwargs
        )
        return response.json() if response.content else None

    def create(
        self, name: str, *, description: str | None = None, config: dict[str, Any] | None = None
    ) -> Endpoint:
        body = {"name": name, "description": description, "config": config}
        return Endpoint.model_validate(self._call("POST", "", body, expected=(201,)))

    def get(self, name: str) -> Endpoint:
        return Endpoint.model_validate(self._call("GET", f"/{_seg(name)}"))

    def list(self, *, page_size: int = 100, page_token: str | None = None) -> Page[Endpoint]:
        params = {"page_size": page_size, "page_token": page_token}
        return Page[Endpoint].model_validate(self._call("GET", "", params=params))

    def update(
        self,
        name: str,
        *,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        sticky_key: str | None = None,
        clear_sticky_key: bool = False,
    ) -> Endpoint:
        body = {
            "description": description,
            "config": config,
            "sticky_key": sticky_key,
            "clear_sticky_key": clear_sticky_key,
        }
        return Endpoint.model_validate(self._call("PATCH", f"/{_seg(name)}", body))

    def delete(self, name: str, *, force: bool = False) -> None:
        self._call("DELETE", f"/{_seg(name)}", params={"force": force}, expected=(204,))

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
        body = {
            "model": model,
            "version": version,
            "alias": alias,
            "traffic": traffic,
            "shadow": shadow,
            "sticky_key": sticky_key,
        }
        return Endpoint.model_validate(self._call("POST", f"/{_seg(name)}:deploy", body))

    def undeploy(self, name: str, deployment_id: str) -> Endpoint:
        body = {"deployment_id": deployment_id}
        return Endpoint.model_validate(self._call("POST", f"/{_seg(name)}:undeploy", body))

    def split(self, name: str, traffic: dict[str, int]) -> Endpoint:
        body = {"traffic": traffic}
        return Endpoint.model_validate(self._call("POST", f"/{_seg(name)}:split", body))

    def rollback(self, name: str, *, to_revision: int | None = None) -> Endpoint:
        body = {"to_revision": to_revision}
        return Endpoint.model_validate(self._call("POST", f"/{_seg(name)}:rollback", body))

    def history(
        self, name: str, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[EndpointChange]:
        params = {"page_size": page_size, "page_token": page_token}
        data = self._call("GET", f"/{_seg(name)}/history", params=params)
        return Page[EndpointChange].model_validate(data)

    def predict(
        self,
        name: str,
        instances: builtins.list[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"instances": instances}
        if parameters is not None:
            body["parameters"] = parameters
        result: dict[str, Any] = self._call("POST", f"/{_seg(name)}:predict", body)
        return result

    def explain(
        self,
        name: str,
        instances: builtins.list[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"instances": instances}
        if parameters is not None:
            body["parameters"] = parameters
        result: dict[str, Any] = self._call("POST", f"/{_seg(name)}:explain", body)
        return result

    def feedback(self, name: str, items: builtins.list[dict[str, Any]]) -> int:
        stored: int = self._call("POST", f"/{_seg(name)}:feedback", {"feedback": items})["stored"]
        return stored

    def stats(self, name: str) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self._call("GET", f"/{_seg(name)}/stats")
        return result

    def compare(
        self,
        name: str,
        *,
        metric: str,
        deployments: builtins.list[str] | None = None,
        include_shadow: bool = False,
        confidence_level: float = 0.95,
    ) -> ABComparison:
        from shipyard.serving.abtest import ABComparison

        body = {
            "metric": metric,
            "deployments": deployments,
            "include_shadow": include_shadow,
            "confidence_level": confidence_level,
        }
        return ABComparison.model_validate(self._call("POST", f"/{_seg(name)}:compare", body))


class RemoteWorkspace:
    """A workspace served by a Shipyard server, reached over HTTP.

    ``token`` is sent as a bearer token. ``timeout``: seconds to wait for an answer; None (the
    default) waits as long as the work takes, as the embedded workspace does (connecting is
    always limited to 10 s). ``client``: an ``httpx.Client`` to use instead of a new one (e.g.
    ``starlette.testclient.TestClient(app)`` for in-process tests). ``cache_dir``: where loaded
    model packages are kept (default ``$SHIPYARD_CACHE_DIR`` or ``~/.cache/shipyard``).

    >>> ws = RemoteWorkspace("http://127.0.0.1:8765")    # doctest: +SKIP
    >>> ws.sql("SELECT 1 AS x").to_pylist()              # doctest: +SKIP
    [{'x': 1}]
    """

    remote = True

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        client: httpx.Client | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"invalid server URL {url!r}: expected http://host:port")
        self._http = _Http(url, token=token, timeout=timeout, client=client)
        self._info: dict[str, Any] | None = None
        self.tables = RemoteTables(self._http, self)
        self.models = RemoteModels(self._http, _cache_dir(cache_dir))
        self.jobs = RemoteJobs(self._http)
        self.experiments = RemoteExperiments(self._http)
        self.runs = RemoteRuns(self._http)
        self.endpoints = RemoteEndpoints(self._http)

    @property
    def home(self) -> Path:
        """The server's home folder (on the server's machine)."""
        return Path(self._workspace()["home"])

    @property
    def url(self) -> str:
        return self._http.url

    def _workspace(self) -> dict[str, Any]:
        if self._info is None:
            self._info = dict(self._http.request("GET", "/v1/workspace").json())
        return self._info

    def _check_size(self, size: int) -> None:
        # Refuse before sending: a server that answers 413 mid-upload may drop the connection.
        limit = self._workspace().get("max_request_bytes")
        if isinstance(limit, int) and size > limit:
            raise PayloadTooLarge(
                f"the data to send ({size} bytes) is larger than the server's limit of "
                f"{limit} bytes (setting server.max_request_bytes)",
                max_request_bytes=limit,
            )

    def sql(self, query: str) -> QueryResult:
        """Run BigQuery ML SQL; returns the last statement's rows."""
        response = self._http.request(
            "POST", "/v1/queries", json_body={"query": query}, headers=_ARROW
        )
        return _result(response)

    def submit_sql(self, query: str) -> Job:
        """Start SQL as a background job (progress: ``ws.jobs.get``; rows: ``ws.jobs.result``)."""
        response = self._http.request(
            "POST", "/v1/queries:submit", json_body={"query": query}, expected=(200, 202)
        )
        return Job.model_validate(response.json())

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
        """Start a batch prediction job on the server; returns the job (``ws.jobs.wait``).

        The server reads and writes the paths, so give paths on the server's machine;
        ``pathlib.Path`` objects are sent as absolute paths.
        """
        body = {
            "model": model,
            "source": _path_text(source),
            "destination": _path_text(destination),
            "version": version,
            "alias": alias,
            "source_format": source_format,
            "chunk_rows": chunk_rows,
            "parallelism": parallelism,
            "threshold": threshold,
            "keep_original_columns": keep_original_columns,
            "write_mode": write_mode,
        }
        response = self._http.request(
            "POST", "/v1/batchPredictionJobs", json_body=body, expected=(200, 202)
        )
        return Job.model_validate(response.json())

    def batch_predict_resume(self, job_id: str) -> Job:
        """Continue a failed or cancelled batch prediction job; finished chunks are kept."""
        response = self._http.request(
            "POST", f"/v1/batchPredictionJobs/{_seg(job_id)}:resume", expected=(200, 202)
        )
        return Job.model_validate(response.json())

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
        params: dict[str, Any] = {"direction": direction}
        if depth is not None:
            params["depth"] = depth
        if context is not None:
            params["context"] = context
        path = "/v1/lineage/" + "/".join(_seg(part) for part in str(resource).strip("/").split("/"))
        response = self._http.request("GET", path, params=params)
        return LineageGraph.model_validate(response.json())

    def lineage_contexts(
        self, *, type: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[LineageContext]:
        """The contexts that group lineage nodes: one per experiment (``type="experiment"``),
        and pipelines'."""
        params = {"type": type, "page_size": page_size, "page_token": page_token}
        response = self._http.request("GET", "/v1/lineage/contexts", params=params)
        return Page[LineageContext].model_validate(response.json())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteWorkspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self.url} (remote)>"


def _path_text(value: Any) -> Any:
    """Paths as JSON: a ``Path`` made absolute, strings as given, lists item by item."""
    if isinstance(value, Path):
        return str(value.expanduser().resolve())
    if isinstance(value, list | tuple):
        return [_path_text(v) for v in value]
    return value


def _zip_event_files(logdir: Path) -> bytes:
    """The TensorBoard event files under ``logdir`` as a zip (paths relative to it)."""
    if not logdir.exists():
        raise NotFound(f"logdir {str(logdir)!r} does not exist")
    root = logdir if logdir.is_dir() else logdir.parent
    files = [logdir] if logdir.is_file() else sorted(logdir.rglob("*tfevents*"))
    files = [f for f in files if f.is_file() and "tfevents" in f.name]
    if not files:
        raise InvalidArgument(
            f"no TensorBoard event files (events.out.tfevents.*) under {str(logdir)!r}"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def _unzip(data: bytes, dest: Path) -> list[Path]:
    """The files of a zip from the server, written under ``dest`` (names must stay inside)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if member.is_dir():
                continue
            if name.is_absolute() or ".." in name.parts:
                raise InvalidArgument(f"unsafe path {member.filename!r} in the server's zip")
            target = dest.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
            written.append(target)
    return written


def _cache_dir(explicit: str | Path | None) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get("SHIPYARD_CACHE_DIR"):
        return Path(os.environ["SHIPYARD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shipyard"


__all__ = [
    "RemoteExperiments",
    "RemoteJobs",
    "RemoteModels",
    "RemoteRuns",
    "RemoteTables",
    "RemoteWorkspace",
]
