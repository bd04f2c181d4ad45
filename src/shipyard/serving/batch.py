"""Batch prediction: a registered model over a warehouse table, a query or files, as a job.

``BatchPredictionService.submit`` checks everything it can before a job starts (model, version or
alias, source, the model's input columns against the source's, destination and write mode), then
runs the job on the engine:

1. **read**: the source is always a DuckDB query (a table, a BigQuery-dialect query translated as
   the SQL service does, or DuckDB's own CSV/JSON/Parquet readers, the ones table loading uses),
   streamed with ``to_arrow_reader`` and cut into chunks of exactly ``chunk_rows`` rows, so chunk
   ``k`` is always rows ``[k·chunk_rows, (k+1)·chunk_rows)`` of the source;
2. **predict**: each chunk goes to a small thread pool (the model's predict releases the GIL); at
   most ``2 * parallelism`` chunks are in flight, so memory stays bounded whatever the input size,
   and reading overlaps predicting and writing;
3. **stage**: a worker writes its chunk's predictions (``Predictor.predict``: exactly
   ``ML.PREDICT``'s columns) as ``<home>/batch/<job>/part-<k>.parquet`` (written under a temporary
   name, then renamed); the job then appends ``{index, rows, bytes}`` to ``chunks.jsonl``;
4. **commit**: once every chunk is staged, the parts become the destination at once: one DuckDB
   transaction for a table (a new table version, and lineage from the model version and the
   source to it), or a file/folder renamed into place.

A job that dies (the process was killed) or was cancelled is continued by :meth:`resume`: a new job
with the same plan and staging folder, which skips every chunk whose part is listed in the manifest
and still has the recorded size and row count. Row order is the source's order throughout.
"""

from __future__ import annotations

import glob as globmod
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from sqlglot import exp

from shipyard.context import Context
from shipyard.data.service import TableService
from shipyard.engine import Job, JobContext, JobState
from shipyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ShipyardError,
)
from shipyard.metadata.service import MetadataService, model_version_uri, table_version_uri
from shipyard.registry.predictor import Predictor
from shipyard.registry.service import ModelService
from shipyard.sql.create_model import tables_read
from shipyard.sql.dialect import MLFunction, parse, to_duckdb
from shipyard.warehouse import QualifiedName, duckdb_error

JOB_KIND = "batch_predict"
WRITE_MODES = ("truncate", "append", "empty")
SOURCE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
DESTINATION_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_READERS = {
    "csv": "read_csv({files}, auto_detect = true)",
    "parquet": "read_parquet({files})",
    "json": "read_json_auto({files})",
}
_COPY_FORMATS = {"csv": "(FORMAT csv, HEADER true)", "json": "(FORMAT json)"}
_MAX_CHUNK_ROWS = 10_000_000
_MAX_PARALLELISM = 64
_MANIFEST = "chunks.jsonl"
_QUERY_START = re.compile(r"^\s*\(?\s*(select|with|from)\b", re.IGNORECASE)


class BatchSource(BaseModel):
    """Where the rows come from: a table, a query, or files of one format."""

    kind: Literal["table", "query", "files"]
    spec: str  # the table name, the query text, or the paths as given (joined by ", ")
    files: list[str] = []
    format: str | None = None
    # What the rows were when the job started, so a resume can refuse a changed source:
    # the table version's fingerprint, or the files' sizes and mtimes.
    fingerprint: str | None = None
    table_version: int | None = None


class BatchDestination(BaseModel):
    """Where the predictions go: a table, one file, or a folder of Parquet parts."""

    kind: Literal["table", "file", "folder"]
    target: str  # dataset.table, or an absolute path
    format: str = "parquet"


class BatchPlan(BaseModel):
    """Everything a batch prediction job needs; stored as the job's ``params``."""

    model: str
    version: int
    source: BatchSource
    destination: BatchDestination
    chunk_rows: int
    parallelism: int
    threshold: float | None = None
    keep_original_columns: bool = True
    write_mode: str = "truncate"
    staging: str
    resumed_from: str | None = None


class BatchPredictionService:
    """Runs registered models over large inputs as resumable engine jobs.

    >>> job = services.batch.submit(  # doctest: +SKIP
    ...     "demo.cancer_diagnosis", source="demo.breast_cancer", destination="demo.scored"
    ... )
    >>> services.engine.wait(job.id).result["rows"]  # doctest: +SKIP
    569
    """

    def __init__(
        self,
        ctx: Context,
        tables: TableService,
        models: ModelService,
        metadata: MetadataService | None = None,
    ) -> None:
        self.ctx = ctx
        self.tables = tables
        self.models = models
        self.metadata = metadata
        self._resume_lock = threading.Lock()

    # -- entry points ---------------------------------------------------------------------

    def submit(
        self,
        model: str,
        *,
        source: str | Path | Sequence[str | Path],
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
        """Start a batch prediction job; returns it QUEUED (wait with ``engine.wait``).

        ``source``: ``"dataset.table"``; a query (``SELECT …``/``WITH …``, BigQuery names
        allowed); or file paths, globs or a folder of ``.csv``, ``.json``/``.jsonl`` or
        ``.parquet`` files (``source_format`` when the extension does not tell).
        ``destination``: ``"dataset.table"``; a ``.parquet``/``.csv``/``.jsonl`` file; or a folder
        (a path ending in ``/`` or without an extension), which receives Parquet parts.
        ``write_mode``: ``truncate`` replaces the destination, ``append`` adds to a table or a
        folder, ``empty`` refuses a destination that already holds rows or files.
        """
        mv = self.models.get_version(model, version, alias=alias)
        predictor = self.models.load(mv.model, mv.version)
        chunk_rows = _check_int("chunk_rows", chunk_rows, 1, _MAX_CHUNK_ROWS)
        if parallelism is None:
            parallelism = max(1, min(4, os.cpu_count() or 1))
        parallelism = _check_int("parallelism", parallelism, 1, _MAX_PARALLELISM)
        if write_mode not in WRITE_MODES:
            raise InvalidArgument(
                f"invalid write_mode {write_mode!r}: expected one of {', '.join(WRITE_MODES)}"
            )
        if not isinstance(keep_original_columns, bool):
            raise InvalidArgument(
                f"keep_original_columns must be true or false, got {keep_original_columns!r}"
            )
        src = self._source(source, source_format)
        dest = _destination(destination)
        self._check_destination(dest, write_mode)
        self._check_columns(predictor, src, threshold, keep_original_columns)
        plan = BatchPlan(
            model=mv.model,
            version=mv.version,
            source=src,
            destination=dest,
            chunk_rows=chunk_rows,
            parallelism=parallelism,
            threshold=threshold,
            keep_original_columns=keep_original_columns,
            write_mode=write_mode,
            staging="",
        )
        return self._start(plan)

    def resume(self, job_id: str) -> Job:
        """Continue a FAILED or CANCELLED batch prediction job in a new job.

        Chunks the old job already wrote (and that are still intact) are not predicted again.
        The new job uses the same model version, source and destination; it refuses a source
        table or files that changed since.
        """
        old = self.ctx.engine.get(job_id)
        if old.kind != JOB_KIND:
            raise InvalidArgument(
                f"job {job_id} is a {old.kind!r} job; only {JOB_KIND!r} jobs can be resumed"
            )
        if old.state is JobState.SUCCEEDED:
            raise FailedPrecondition(f"job {job_id} already succeeded: there is nothing to resume")
        if not old.state.done:
            raise FailedPrecondition(
                f"job {job_id} is still {old.state.value}; cancel it or wait for it first"
            )
        plan = BatchPlan.model_validate(old.params)
        if not Path(plan.staging).is_dir():
            raise FailedPrecondition(
                f"the staging folder of job {job_id} ({plan.staging}) is gone; submit the job "
                "again instead",
                staging=plan.staging,
            )
        with self._resume_lock:
            for other in self.ctx.engine.list(kind=JOB_KIND, page_size=1000).items:
                if not other.state.done and other.params.get("staging") == plan.staging:
                    raise FailedPrecondition(
                        f"job {other.id} is already continuing job {job_id}",
                        job_id=other.id,
                    )
            self.models.get_version(plan.model, plan.version)  # still registered?
            self._check_unchanged(plan.source)
            plan = plan.model_copy(update={"resumed_from": job_id})
            return self._start(plan)

    # -- validation -----------------------------------------------------------------------

    def _source(self, source: Any, source_format: str | None) -> BatchSource:
        if source_format is not None:
            fmt = source_format.lower()
            fmt = "json" if fmt in ("jsonl", "ndjson") else fmt
            if fmt not in _READERS:
                raise InvalidArgument(
                    f"unknown source_format {source_format!r}: expected csv, json, jsonl or parquet"
                )
            source_format = fmt
        if isinstance(source, str) and _QUERY_START.match(source):
            return self._query_source(source)
        if isinstance(source, str) and not _looks_like_path(source):
            qname = QualifiedName.parse(source)
            self.ctx.warehouse.require(qname)
            version = self.tables.observed_version(qname)
            return BatchSource(
                kind="table",
                spec=str(qname),
                fingerprint=version.fingerprint,
                table_version=version.version,
            )
        paths = [source] if isinstance(source, str | Path) else list(source)
        if not paths or not all(isinstance(p, str | Path) for p in paths):
            raise InvalidArgument(
                f"invalid source {source!r}: expected 'dataset.table', a query, or file paths"
            )
        files = _expand(paths)
        fmt = source_format or _format_of(files, SOURCE_FORMATS, "source_format")
        spec = ", ".join(str(p) for p in paths)
        return BatchSource(
            kind="files", spec=spec, files=files, format=fmt, fingerprint=_files_signature(files)
        )

    def _query_source(self, query: str) -> BatchSource:
        statements = parse(query)
        if len(statements) != 1 or not isinstance(statements[0], exp.Query):
            raise InvalidArgument(
                "a source query must be one SELECT (or WITH … SELECT) statement", query=query
            )
        if any(True for _ in statements[0].find_all(exp.Predict, MLFunction)):
            raise InvalidArgument(
                "a source query cannot call ML functions; predict from a table or a plain query"
            )
        return BatchSource(kind="query", spec=query)

    def _check_columns(
        self,
        predictor: Predictor,
        source: BatchSource,
        threshold: float | None,
        keep_original_columns: bool,
    ) -> None:
        """Run the model on zero rows of the source: missing or mistyped columns, a clash with
        the output columns and a bad threshold all surface now, not in the job."""
        cur = self.ctx.warehouse.cursor()
        try:
            empty = _relation(cur, source).limit(0).to_arrow_table()
        except duckdb.Error as exc:
            raise _read_error(exc, source) from exc
        finally:
            cur.close()
        names = set(empty.column_names)
        missing = [c["name"] for c in predictor.signature["inputs"] if c["name"] not in names]
        if missing:
            raise InvalidArgument(
                f"the source {_describe_source(source)} lacks the model's input columns "
                f"{missing}; it has {empty.column_names}",
                missing=missing,
                columns=empty.column_names,
            )
        predictor.predict(empty, threshold=threshold, keep_original_columns=keep_original_columns)

    def _check_destination(self, dest: BatchDestination, write_mode: str) -> None:
        if dest.kind == "table":
            qname = QualifiedName.parse(dest.target)
            if write_mode == "empty" and self._table_has_rows(qname):
                raise AlreadyExists(
                    f"table {qname} already holds rows and write_mode is 'empty'; use "
                    "'truncate' to replace them or 'append' to add to them",
                    resource=f"tables/{qname}",
                )
            return
        path = Path(dest.target)
        if dest.kind == "file":
            if write_mode == "append":
                raise InvalidArgument(
                    f"write_mode 'append' needs a table or a folder destination, not the file "
                    f"{path}; write to a folder (a path ending in '/') to add parts"
                )
            if path.is_dir():
                raise InvalidArgument(f"destination {path} is a folder, not a file")
            if write_mode == "empty" and path.exists():
                raise AlreadyExists(
                    f"file {path} already exists and write_mode is 'empty'; use 'truncate' "
                    "to replace it",
                    path=str(path),
                )
            if not path.parent.is_dir():
                raise NotFound(f"the folder of destination {path} does not exist")
        else:
            if path.exists() and not path.is_dir():
                raise InvalidArgument(f"destination {path} is a file, not a folder")
            if write_mode == "empty" and path.is_dir() and any(path.iterdir()):
                raise AlreadyExists(
                    f"folder {path} is not empty and write_mode is 'empty'; use 'truncate' to "
                    "replace its content or 'append' to add parts",
                    path=str(path),
                )

    def _table_has_rows(self, qname: QualifiedName) -> bool:
        if not self.ctx.warehouse.exists(qname):
            return False
        rows = self.ctx.warehouse.query(f"SELECT 1 AS x FROM {qname.sql} LIMIT 1")
        return rows.num_rows > 0

    def _check_unchanged(self, source: BatchSource) -> None:
        if source.kind == "files":
            missing = [f for f in source.files if not Path(f).is_file()]
            if missing:
                raise FailedPrecondition(f"source files are gone: {missing[:5]}", missing=missing)
            if _files_signature(source.files) != source.fingerprint:
                raise FailedPrecondition(
                    f"the source files changed since the job started ({source.spec}); submit "
                    "a new job instead"
                )
        elif source.kind == "table":
            qname = QualifiedName.parse(source.spec)
            self.ctx.warehouse.require(qname)
            if self.tables.observed_version(qname).fingerprint != source.fingerprint:
                raise FailedPrecondition(
                    f"table {qname} changed since the job started (it was version "
                    f"{source.table_version}); submit a new job instead",
                    resource=f"tables/{qname}",
                )

    # -- the job --------------------------------------------------------------------------

    def _start(self, plan: BatchPlan) -> Job:
        if not plan.staging:
            # Its own id, not the job's: a resumed job keeps the folder of the first one.
            plan = plan.model_copy(
                update={"staging": str(self.ctx.home / "batch" / uuid.uuid4().hex)}
            )
        Path(plan.staging).mkdir(parents=True, exist_ok=True)
        description = (
            f"batch predict {plan.model} v{plan.version}: {_describe_source(plan.source)} -> "
            f"{plan.destination.target}"
        )
        if plan.resumed_from:
            description = f"resume {plan.resumed_from[:8]}: {description}"
        return self.ctx.engine.submit(
            JOB_KIND,
            lambda job: self._run(job, plan),
            description=description[:200],
            params=plan.model_dump(mode="json"),
        )

    def _run(self, job: JobContext, plan: BatchPlan) -> dict[str, Any]:
        started = time.monotonic()
        # Chunks run side by side: each model call gets its share of the cores, not all of
        # them (XGBoost's pool per call would otherwise oversubscribe the machine).
        threads = max(1, (os.cpu_count() or 1) // plan.parallelism)
        predictor = self.models.load(plan.model, plan.version).with_threads(threads)
        staging = Path(plan.staging)
        staging.mkdir(parents=True, exist_ok=True)
        manifest = _Manifest(staging)
        done = manifest.verified()
        if plan.resumed_from:
            job.log(
                f"resuming job {plan.resumed_from}: {len(done)} chunks "
                f"({sum(done.values())} rows) already written; skipping them"
            )
        total = self._total_rows(plan.source)
        log_every = max(1, -(-total // plan.chunk_rows) // 10) if total else 10
        counts = {"rows": 0, "written": 0, "skipped": 0, "written_rows": 0}
        schema: pa.Schema | None = None
        max_in_flight = 2 * plan.parallelism
        in_flight: deque[tuple[int, Future[tuple[int, int]]]] = deque()

        def settle(index: int, future: Future[tuple[int, int]]) -> None:
            rows, size = future.result()
            manifest.add(index, rows, size)
            counts["written"] += 1
            counts["written_rows"] += rows
            if counts["written"] % log_every == 0:
                job.log(f"chunk {index}: {counts['rows']} rows read, {counts['written']} written")

        cur = self.ctx.warehouse.cursor()
        pool = ThreadPoolExecutor(plan.parallelism, thread_name_prefix=f"batch-{job.job_id[:8]}")
        try:
            try:
                reader = _relation(cur, plan.source).to_arrow_reader(
                    min(plan.chunk_rows, 1_000_000)
                )
            except duckdb.Error as exc:
                raise _read_error(exc, plan.source) from exc
            schema = reader.schema
            index = -1
            for index, chunk in enumerate(_rechunk(reader, plan.chunk_rows, plan.source)):
                job.check_cancelled()
                counts["rows"] += chunk.num_rows
                if done.get(index) == chunk.num_rows:
                    counts["skipped"] += 1
                else:
                    future = pool.submit(
                        self._predict_chunk, predictor, plan, staging, index, chunk
                    )
                    in_flight.append((index, future))
                while len(in_flight) >= max_in_flight or (in_flight and in_flight[0][1].done()):
                    settle(*in_flight.popleft())
                fraction = min(counts["rows"] / total, 0.99) if total else None
                job.progress(fraction, f"{counts['rows']:,} rows")
            while in_flight:
                settle(*in_flight.popleft())
            chunks = index + 1
            if chunks == 0:  # an empty source still makes a destination with the right columns
                empty = schema.empty_table()
                self._predict_chunk(predictor, plan, staging, 0, empty)
                manifest.add(0, 0, (staging / _part(0)).stat().st_size)
                chunks = 1
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            cur.close()
        job.check_cancelled()
        job.progress(0.99, f"{counts['rows']:,} rows predicted; writing {plan.destination.target}")
        parts = [staging / _part(i) for i in range(chunks)]
        output = self._commit(job, plan, parts)
        shutil.rmtree(staging, ignore_errors=True)
        elapsed = time.monotonic() - started
        job.log(
            f"done: {counts['rows']} rows in {chunks} chunks ({counts['written']} predicted, "
            f"{counts['skipped']} reused from an earlier run) in {elapsed:.1f}s"
        )
        return {
            "rows": counts["rows"],
            "chunks": chunks,
            "chunks_written": counts["written"],
            "chunks_skipped": counts["skipped"],
            "destination": plan.destination.target,
            "destination_kind": plan.destination.kind,
            "model": plan.model,
            "model_version": plan.version,
            **output,
        }

    @staticmethod
    def _predict_chunk(
        predictor: Predictor, plan: BatchPlan, staging: Path, index: int, chunk: pa.Table
    ) -> tuple[int, int]:
        out = predictor.predict(
            chunk, threshold=plan.threshold, keep_original_columns=plan.keep_original_columns
        )
        final = staging / _part(index)
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(out, tmp, compression="lz4")
        os.replace(tmp, final)
        return out.num_rows, final.stat().st_size

    def _total_rows(self, source: BatchSource) -> int | None:
        """Rows to predict when cheap to know (tables and Parquet); None otherwise."""
        if source.kind == "query" or (source.kind == "files" and source.format != "parquet"):
            return None
        cur = self.ctx.warehouse.cursor()
        try:
            row = cur.execute(f"SELECT count(*) FROM ({_source_sql(source)})").fetchone()
        except duckdb.Error:
            return None
        finally:
            cur.close()
        return int(row[0]) if row else None

    # -- committing -----------------------------------------------------------------------

    def _commit(self, job: JobContext, plan: BatchPlan, parts: list[Path]) -> dict[str, Any]:
        dest = plan.destination
        if dest.kind == "table":
            return self._commit_table(job, plan, parts)
        path = Path(dest.target)
        if dest.kind == "file":
            tmp = path.with_name(f".{path.name}.{job.job_id[:12]}.tmp")
            try:
                if dest.format == "parquet":
                    _concat_parquet(parts, tmp)
                else:
                    self._copy_parts(parts, tmp, dest.format)
                if plan.write_mode == "empty" and path.exists():
                    raise AlreadyExists(
                        f"file {path} appeared while the job ran and write_mode is 'empty'",
                        path=str(path),
                    )
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            outputs = [path.resolve().as_uri()]
        else:
            outputs = [_commit_folder(job.job_id, plan.write_mode, parts, path)]
        self._record_lineage(job, plan, outputs, {})
        return {}

    def _copy_parts(self, parts: list[Path], tmp: Path, fmt: str) -> None:
        cur = self.ctx.warehouse.cursor()
        try:
            cur.execute(
                f"COPY (SELECT * FROM read_parquet({_sql_list(parts)})) TO {_sql_str(tmp)} "
                f"{_COPY_FORMATS[fmt]}"
            )
        except duckdb.Error as exc:
            raise duckdb_error(exc) from exc
        finally:
            cur.close()

    def _commit_table(self, job: JobContext, plan: BatchPlan, parts: list[Path]) -> dict[str, Any]:
        qname = QualifiedName.parse(plan.destination.target)
        warehouse = self.ctx.warehouse
        self.tables.forget(qname)
        rows = f"SELECT * FROM read_parquet({_sql_list(parts)})"
        try:
            with warehouse.transaction() as cur:
                warehouse.ensure_dataset(cur, qname.dataset)
                exists = bool(
                    cur.execute(
                        "SELECT count(*) FROM duckdb_tables() "
                        "WHERE schema_name = ? AND table_name = ?",
                        [qname.dataset, qname.name],
                    ).fetchone()[0]  # type: ignore[index]
                )
                if (
                    exists
                    and plan.write_mode == "empty"
                    and cur.execute(f"SELECT 1 FROM {qname.sql} LIMIT 1").fetchone()
                ):
                    raise AlreadyExists(
                        f"table {qname} received rows while the job ran and write_mode is 'empty'",
                        resource=f"tables/{qname}",
                    )
                if exists and plan.write_mode == "append":
                    cur.execute(f"INSERT INTO {qname.sql} BY NAME {rows}")
                else:
                    cur.execute(f"CREATE OR REPLACE TABLE {qname.sql} AS {rows}")
        except duckdb.Error as exc:
            raise duckdb_error(exc) from exc
        finally:
            self.tables.forget(qname)
        version = self.tables.record_version(
            qname, {"kind": JOB_KIND, "job_id": job.job_id, "mode": plan.write_mode}
        )
        output = table_version_uri(str(qname), version.version)
        self._record_lineage(job, plan, [output], {output: {"fingerprint": version.fingerprint}})
        return {"table_version": version.version}

    def _record_lineage(
        self,
        job: JobContext,
        plan: BatchPlan,
        outputs: list[str],
        artifact_properties: dict[str, dict[str, Any]],
    ) -> None:
        if self.metadata is None:
            return
        inputs = [model_version_uri(plan.model, plan.version), *self._source_uris(plan.source)]
        self.metadata.record_execution(
            "batch_prediction",
            f"batch predict {plan.model} v{plan.version}",
            {
                "job_id": job.job_id,
                "resumed_from": plan.resumed_from,
                "source": plan.source.spec,
                "destination": plan.destination.target,
                "write_mode": plan.write_mode,
                "chunk_rows": plan.chunk_rows,
            },
            inputs=[u for u in inputs if u not in outputs],
            outputs=outputs,
            artifact_properties=artifact_properties,
        )

    def _source_uris(self, source: BatchSource) -> list[str]:
        if source.kind == "table" and source.table_version is not None:
            return [table_version_uri(source.spec, source.table_version)]
        if source.kind == "files":
            return [Path(f).resolve().as_uri() for f in source.files]
        uris = []
        for name in tables_read(parse(source.spec)[0]):
            latest = self.tables.latest_version(QualifiedName.parse(name))
            if latest is not None:
                uris.append(table_version_uri(name, latest.version))
        return uris


# -- reading ---------------------------------------------------------------------------------


def _source_sql(source: BatchSource) -> str:
    """The DuckDB query that yields the source's rows, in order."""
    if source.kind == "table":
        return f"SELECT * FROM {QualifiedName.parse(source.spec).sql}"
    if source.kind == "query":
        return to_duckdb(parse(source.spec)[0])
    reader = _READERS[source.format or "parquet"]
    return "SELECT * FROM " + reader.format(files=_sql_list(source.files))


def _relation(cur: duckdb.DuckDBPyConnection, source: BatchSource) -> duckdb.DuckDBPyRelation:
    relation = cur.sql(_source_sql(source))
    if relation is None:  # pragma: no cover - a SELECT always gives a relation
        raise InvalidArgument(f"the source {source.spec!r} returns no rows")
    return relation


def _rechunk(
    reader: pa.RecordBatchReader, chunk_rows: int, source: BatchSource
) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows (the last may be shorter), in source order.

    DuckDB's batches follow its row groups, not ``chunk_rows``; fixed boundaries make chunk
    ``k`` the same rows on every run, which is what resuming relies on.
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    try:
        for batch in reader:
            while batch.num_rows:
                take = min(batch.num_rows, chunk_rows - held)
                pending.append(batch.slice(0, take))
                held += take
                batch = batch.slice(take)
                if held == chunk_rows:
                    yield pa.Table.from_batches(pending, schema=reader.schema)
                    pending, held = [], 0
    except (duckdb.Error, pa.ArrowException) as exc:
        raise _read_error(exc, source) from exc
    if held:
        yield pa.Table.from_batches(pending, schema=reader.schema)


def _read_error(exc: Exception, source: BatchSource) -> ShipyardError:
    if isinstance(exc, duckdb.Error) and source.kind in ("table", "query"):
        return duckdb_error(exc, source.spec if source.kind == "query" else None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidArgument(f"could not read {_describe_source(source)}: {first}")


def _describe_source(source: BatchSource) -> str:
    if source.kind == "table":
        return f"table {source.spec}"
    if source.kind == "query":
        text = " ".join(source.spec.split())
        return f"query {text[:60] + '...' if len(text) > 60 else text!r}"
    return f"{source.format} files {source.spec}"


# -- sources and destinations ----------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    if any(ch in text for ch in "/\\*?[") or text.startswith(("~", ".")):
        return True
    return Path(text).suffix.lower() in SOURCE_FORMATS or Path(text).exists()


def _expand(paths: list[str | Path]) -> list[str]:
    """Files named by paths, globs and folders: sorted within each, deduplicated, absolute."""
    files: list[str] = []
    for raw in paths:
        text = os.path.expanduser(str(raw))
        if any(ch in text for ch in "*?["):
            found = sorted(p for p in globmod.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise NotFound(f"no files match {str(raw)!r}")
        elif Path(text).is_dir():
            found = sorted(
                str(p)
                for p in Path(text).iterdir()
                if p.is_file() and not p.name.startswith((".", "_"))
            )
            if not found:
                raise NotFound(f"folder {str(raw)!r} holds no files")
        elif Path(text).is_file():
            found = [text]
        else:
            raise NotFound(f"source file {str(raw)!r} not found")
        files += [str(Path(f).resolve()) for f in found]
    return list(dict.fromkeys(files))


def _format_of(files: list[str], formats: dict[str, str], argument: str) -> str:
    found = {formats.get(Path(f).suffix.lower()) for f in files}
    if None in found:
        odd = next(f for f in files if Path(f).suffix.lower() not in formats)
        raise InvalidArgument(
            f"cannot tell the format of {Path(odd).name!r} from its extension "
            f"(known: {', '.join(sorted(formats))}); pass {argument}= (csv, json or parquet)",
            file=odd,
        )
    if len(found) > 1:
        raise InvalidArgument(
            f"the source files mix formats ({', '.join(sorted(str(f) for f in found))}); "
            "predict from one format at a time"
        )
    return str(found.pop())


def _files_signature(files: list[str]) -> str:
    parts = []
    for f in files:
        st = Path(f).stat()
        parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _destination(destination: Any) -> BatchDestination:
    if isinstance(destination, Path) or (
        isinstance(destination, str) and _looks_like_destination_path(destination)
    ):
        text = os.path.expanduser(str(destination))
        path = Path(text).resolve()
        folder = text.endswith(("/", os.sep)) or path.is_dir() or not path.suffix
        if folder:
            return BatchDestination(kind="folder", target=str(path), format="parquet")
        fmt = DESTINATION_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InvalidArgument(
                f"cannot write {path.name!r}: unknown extension {path.suffix!r}; expected one of "
                f"{', '.join(sorted(DESTINATION_FORMATS))}, or a folder (a path ending in '/')"
            )
        return BatchDestination(kind="file", target=str(path), format=fmt)
    if not isinstance(destination, str):
        raise InvalidArgument(
            f"invalid destination {destination!r}: expected 'dataset.table' or a file path"
        )
    return BatchDestination(kind="table", target=str(QualifiedName.parse(destination)))


def _looks_like_destination_path(text: str) -> bool:
    if any(ch in text for ch in "/\\") or text.startswith(("~", ".")):
        return True
    suffix = Path(text).suffix.lower()
    return suffix in DESTINATION_FORMATS or suffix in (".txt", ".xlsx", ".arrow", ".feather")


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be an integer from {low} to {high:,}, got {value!r}")
    return value


# -- staging ---------------------------------------------------------------------------------


def _part(index: int) -> str:
    return f"part-{index:06d}.parquet"


class _Manifest:
    """``chunks.jsonl``: one line per staged chunk, appended after its part file is in place."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / _MANIFEST

    def verified(self) -> dict[int, int]:
        """Chunk index -> rows, for the listed parts that still have their size and rows."""
        done: dict[int, int] = {}
        if not self.path.exists():
            return done
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
                index, rows, size = int(entry["index"]), int(entry["rows"]), int(entry["bytes"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            part = self.folder / _part(index)
            try:
                if part.stat().st_size == size and pq.read_metadata(part).num_rows == rows:
                    done[index] = rows
            except (OSError, pa.ArrowException):
                continue
        return done

    def add(self, index: int, rows: int, size: int) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"index": index, "rows": rows, "bytes": size}) + "\n")


def _concat_parquet(parts: list[Path], target: Path) -> None:
    """One Parquet file from the parts, a row group at a time (memory: one row group)."""
    writer: pq.ParquetWriter | None = None
    try:
        for part in parts:
            f = pq.ParquetFile(part)
            if writer is None:
                writer = pq.ParquetWriter(target, f.schema_arrow)
            for i in range(f.num_row_groups):
                writer.write_table(f.read_row_group(i))
    finally:
        if writer is not None:
            writer.close()


def _commit_folder(job_id: str, write_mode: str, parts: list[Path], folder: Path) -> str:
    """Move the parts into ``folder``: replacing its content (truncate/empty) or beside it
    (append, with the job id in the names). Replacing swaps a fully built folder in."""
    if write_mode == "append" and folder.is_dir():
        for i, part in enumerate(parts):
            shutil.move(part, folder / f"part-{job_id[:8]}-{i:06d}.parquet")
        return folder.resolve().as_uri()
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = folder.with_name(f".{folder.name}.{job_id[:12]}.tmp")
    old = folder.with_name(f".{folder.name}.{job_id[:12]}.old")
    building.mkdir(exist_ok=True)
    try:
        for i, part in enumerate(parts):
            shutil.move(part, building / f"part-{i:06d}.parquet")
        if folder.exists():
            if write_mode == "empty" and any(folder.iterdir()):
                raise AlreadyExists(
                    f"folder {folder} received files while the job ran and write_mode is 'empty'",
                    path=str(folder),
                )
            folder.rename(old)
        building.rename(folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder.resolve().as_uri()


def _sql_str(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _sql_list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_sql_str(v) for v in values) + "]"
