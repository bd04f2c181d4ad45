"""``shipyard batch-predict``: a registered model over a table, a query or files, as a job."""

from __future__ import annotations

from typing import Any

import typer

from shipyard.cli.common import duration, err, follow, out, print_json, session

_MODES = ("truncate", "append", "empty")


def batch_predict(
    ctx: typer.Context,
    model: str | None = typer.Argument(
        None, help="The model, dataset.model (not needed with --resume)."
    ),
    source: list[str] | None = typer.Option(
        None,
        "--from",
        help="dataset.table, a SELECT query, or files: paths, globs or a folder of .csv, "
        ".json/.jsonl or .parquet (repeat for several).",
    ),
    destination: str | None = typer.Option(
        None,
        "--to",
        help="dataset.table, a .parquet/.csv/.jsonl file, or a folder (ends in '/') of "
        "Parquet parts.",
    ),
    version: int | None = typer.Option(None, "--version", help="Model version (default alias)."),
    alias: str | None = typer.Option(None, "--alias", help="Model alias, e.g. champion."),
    source_format: str | None = typer.Option(
        None, "--format", help="Source file format when the extension does not tell."
    ),
    chunk_rows: int = typer.Option(100_000, "--chunk-rows", help="Rows per chunk."),
    parallelism: int | None = typer.Option(
        None, "--parallelism", help="Chunks predicted at once (default: up to 4 cores)."
    ),
    threshold: float | None = typer.Option(None, "--threshold", help="Binary threshold."),
    mode: str = typer.Option(
        "truncate", "--mode", help="truncate (replace), append, or empty (refuse if not empty)."
    ),
    drop_columns: bool = typer.Option(
        False, "--predictions-only", help="Write only the predicted columns."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue this failed or cancelled job instead."
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Follow the job to its end (--no-wait: servers only)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Predict with MODEL over --from and write to --to, in chunks, as a resumable job."""
    if resume is None and (model is None or not source or destination is None):
        err.print("error: give MODEL, --from and --to (or --resume JOB)", style="red", markup=False)
        raise typer.Exit(2)
    if mode not in _MODES:
        err.print(
            f"error: invalid --mode {mode!r}: expected one of {', '.join(_MODES)}",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)
    with session(ctx) as ws:
        if not wait and not ws.remote:
            # An embedded engine stops its jobs when the command's process exits.
            err.print(
                "error: --no-wait needs a server (--url, or a home served by `shipyard up`): "
                "an embedded job stops when this command exits",
                style="red",
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(2)
        if resume is not None:
            job = ws.batch_predict_resume(resume)
        else:
            assert model is not None and source and destination is not None
            job = ws.batch_predict(
                model,
                source=source[0] if len(source) == 1 else list(source),
                destination=destination,
                version=version,
                alias=alias,
                source_format=source_format,
                chunk_rows=chunk_rows,
                parallelism=parallelism,
                threshold=threshold,
                keep_original_columns=not drop_columns,
                write_mode=mode,
            )
        if wait:
            job = follow(ws, job) if not as_json else ws.jobs.wait(job.id)
        _report(job, as_json=as_json)


def _report(job: Any, *, as_json: bool) -> None:
    if as_json:
        print_json(job)
    elif not job.state.done:
        out.print(f"started job {job.id} ({job.state.value})", markup=False)
    elif job.state.value == "SUCCEEDED":
        r = job.result or {}
        where = r.get("destination", "")
        if r.get("table_version"):
            where += f" (version {r['table_version']})"
        reused = f", {r['chunks_skipped']} reused" if r.get("chunks_skipped") else ""
        out.print(
            f"{r.get('rows', 0):,} rows predicted with {r.get('model')} "
            f"v{r.get('model_version')} into {where} in {_chunks(r.get('chunks', 0))}{reused}, "
            f"{duration(job.duration_s)} (job {job.id})",
            markup=False,
            soft_wrap=True,
        )
    if job.state.done and job.state.value != "SUCCEEDED":
        message = (job.error or {}).get("message", job.state.value.lower())
        err.print(f"error: job {job.id} {job.state.value}: {message}", style="red", markup=False)
        err.print(
            f"continue it with: shipyard batch-predict --resume {job.id}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def register(app: typer.Typer) -> None:
    app.command("batch-predict")(batch_predict)
