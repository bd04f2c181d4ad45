"""``shipyard``: the command line, through the SDK only (embedded, or a server with ``--url``).

Exit codes: 0 ok; 2 bad usage, invalid argument or SQL error; 3 not found; 4 already exists or
failed precondition; 5 not authenticated or not allowed; 6 server unavailable; 1 anything else.
Errors print one red ``error: …`` line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from shipyard.cli import artifacts as artifacts_cli
from shipyard.cli import batch as batch_cli
from shipyard.cli import serving as serving_cli
from shipyard.cli import tensorboard as tensorboard_cli
from shipyard.cli.common import (
    DEFAULT_TABLE_ROWS,
    Target,
    all_pages,
    cell,
    duration,
    fail,
    follow,
    out,
    print_json,
    print_result,
    session,
    when,
)
from shipyard.errors import (
    ShipyardError,
)

app = typer.Typer(
    name="shipyard",
    help="Shipyard: BigQuery ML's SQL, a model registry and jobs — on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
tables_app = typer.Typer(help="Warehouse tables.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs the engine runs.", no_args_is_help=True)
app.add_typer(tables_app, name="tables")
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")
experiments_app = typer.Typer(help="Experiments: namespaces of runs.", no_args_is_help=True)
runs_app = typer.Typer(help="Tracked runs: params, metrics, search, compare.", no_args_is_help=True)
app.add_typer(experiments_app, name="experiments")
app.add_typer(runs_app, name="runs")


@app.callback()
def _options(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Workspace folder (default $SHIPYARD_HOME or ~/.shipyard)."
    ),
    url: str | None = typer.Option(
        None, "--url", envvar="SHIPYARD_URL", help="A Shipyard server, e.g. http://127.0.0.1:8765."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="SHIPYARD_TOKEN", help="Bearer token for a server that needs one."
    ),
) -> None:
    ctx.obj = Target(home=home, url=url, token=token)


# -- sql -----------------------------------------------------------------------------------------


@app.command("sql")
def sql_command(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="BigQuery ML SQL; '-' reads it from stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON array."),
    max_rows: int | None = typer.Option(
        None, "--max-rows", min=0, help=f"Rows to print (table default {DEFAULT_TABLE_ROWS})."
    ),
) -> None:
    """Run SQL (CREATE MODEL shows a progress bar while it trains)."""
    if query == "-":
        query = sys.stdin.read()
    with session(ctx, query=query) as ws:
        job = follow(ws, ws.submit_sql(query))
        result = ws.jobs.result(job.id)
        print_result(result, as_json=as_json, max_rows=max_rows)


# -- tables --------------------------------------------------------------------------------------


@tables_app.command("load")
def tables_load(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="dataset.table"),
    file: Path = typer.Argument(..., help="CSV, Parquet, JSON/JSONL or Excel file."),
    mode: str = typer.Option("replace", "--mode", help="replace, append or fail."),
    format: str | None = typer.Option(None, "--format", help="When the extension does not tell."),
) -> None:
    """Load a file into a table (a new table version)."""
    with session(ctx) as ws:
        info = ws.load_table(name, file, mode=mode, format=format)
        out.print(
            f"loaded {file.name} into {info.name}: {info.num_rows} rows, version {info.version}",
            markup=False,
        )


@tables_app.command("list")
def tables_list(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List tables."""
    with session(ctx) as ws:
        items = all_pages(ws.tables.list, dataset=dataset, page_size=1000)
        if as_json:
            print_json(items)
            return
        table = Table("name", "rows", "version", "updated", header_style="bold")
        for t in items:
            table.add_row(t.name, str(t.num_rows), str(t.version or ""), when(t.updated_at))
        out.print(table if items else "no tables")


@tables_app.command("show")
def tables_show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="dataset.table"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a table: its columns and versions."""
    with session(ctx) as ws:
        info = ws.tables.get(name)
        versions = ws.tables.versions(name)
        if as_json:
            print_json({**info.model_dump(mode="json"), "versions": versions})
            return
        out.print(f"[bold]{info.name}[/bold]  {info.num_rows} rows, version {info.version}")
        columns = Table("column", "type", header_style="bold")
        for c in info.columns:
            columns.add_row(c.name, c.type)
        out.print(columns)
        if versions:
            history = Table("version", "rows", "fingerprint", "created", header_style="bold")
            for v in versions:
                history.add_row(
                    str(v.version), str(v.num_rows), v.fingerprint[:12], when(v.created_at)
                )
            out.print(history)


@tables_app.command("preview")
def tables_preview(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="dataset.table"),
    limit: int = typer.Option(20, "--limit", min=0, help="Rows to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON array."),
) -> None:
    """Show the first rows of a table."""
    with session(ctx) as ws:
        print_result(ws.tables.preview(name, limit=limit), as_json=as_json, max_rows=limit)


# -- models --------------------------------------------------------------------------------------


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List models."""
    with session(ctx) as ws:
        items = all_pages(ws.models.list, dataset=dataset, page_size=1000)
        if as_json:
            print_json(items)
            return
        table = Table("name", "type", "latest", "aliases", "updated", header_style="bold")
        for m in items:
            aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
            table.add_row(
                m.name, m.model_type or "", str(m.latest_version), aliases, when(m.updated_at)
            )
        out.print(table if items else "no models")


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="dataset.model"),
    version: int | None = typer.Option(None, "--version", help="This version's details."),
    alias: str | None = typer.Option(None, "--alias", help="The version this alias points at."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a model: versions, aliases and the metrics of one version (default alias)."""
    with session(ctx) as ws:
        model = ws.models.get(name)
        versions = all_pages(ws.models.versions, name=name, page_size=100)
        selected = ws.models.get_version(name, version, alias=alias)
        if as_json:
            print_json({"model": model, "versions": versions, "version": selected})
            return
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(model.aliases.items())) or "none"
        out.print(f"[bold]{model.name}[/bold]  {model.model_type or ''}", markup=True)
        out.print(f"aliases: {aliases}", markup=False)
        if model.expiration_time is not None:
            out.print(f"expires: {model.expiration_time.isoformat()}", markup=False)
        table = Table("version", "type", "aliases", "created", "metrics", header_style="bold")
        for v in versions:
            table.add_row(
                str(v.version),
                v.model_type,
                ", ".join(v.aliases),
                when(v.created_at),
                _metrics_summary(v.metrics),
            )
        out.print(table)
        out.print(
            f"version {selected.version}: {selected.flavor}, {selected.task}",
            style="bold",
            markup=False,
        )
        detail = Table("metric", "value", header_style="bold")
        for key, value in selected.metrics.items():
            detail.add_row(key, cell(value))
        out.print(detail)
        inputs = ", ".join(f"{c.name} {c.type}" for c in selected.signature.inputs)
        out.print(f"inputs: {inputs}", markup=False)


def _metrics_summary(metrics: dict[str, Any], limit: int = 3) -> str:
    numbers = [(k, v) for k, v in metrics.items() if isinstance(v, int | float)]
    return ", ".join(f"{k}={v:.4g}" for k, v in numbers[:limit])


@models_app.command("alias")
def models_alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="dataset.model"),
    alias: str = typer.Argument(..., help="e.g. champion"),
    version: int = typer.Argument(..., help="The version it points at."),
) -> None:
    """Point an alias at a version."""
    with session(ctx) as ws:
        mv = ws.models.set_alias(name, alias, version)
        out.print(f"{mv.model}: alias {alias} → version {mv.version}", markup=False)


# -- jobs ----------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help="QUEUED, RUNNING, SUCCEEDED, …"),
    kind: str | None = typer.Option(None, "--kind", help="e.g. query"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Newest N jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List jobs, newest first."""
    with session(ctx) as ws:
        items = ws.jobs.list(state=state, kind=kind, page_size=limit).items
        if as_json:
            print_json(items)
            return
        table = Table(header_style="bold")
        table.add_column("id", no_wrap=True, min_width=32)  # users copy it: never cut it
        for column in ("state", "kind", "duration"):
            table.add_column(column, no_wrap=True)
        table.add_column("description", overflow="fold")
        for j in items:
            running = not j.state.done and j.progress is not None
            state = _state(j.state) + (f" {_percent(j.progress)}" if running else "")
            text = j.description or ""
            text = text if len(text) <= 60 else text[:57] + "..."
            table.add_row(j.id, state, j.kind, duration(j.duration_s), text)
        out.print(table if items else "no jobs")


def _state(state: Any) -> str:
    value = str(getattr(state, "value", state))
    color = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "RUNNING": "cyan"}
    return f"[{color.get(value, 'white')}]{value}[/]"


def _percent(progress: float | None) -> str:
    return "" if progress is None else f"{progress * 100:.0f}%"


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one job."""
    with session(ctx) as ws:
        job = ws.jobs.get(job_id)
        if as_json:
            print_json(job)
            return
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("id", job.id)
        table.add_row("state", _state(job.state))
        table.add_row("kind", job.kind)
        table.add_row("description", job.description or "")
        table.add_row("progress", f"{_percent(job.progress)} {job.progress_message or ''}".strip())
        table.add_row("created", when(job.created_at))
        table.add_row("duration", duration(job.duration_s))
        if job.error:
            table.add_row("error", f"[red]{job.error.get('code')}: {job.error.get('message')}[/]")
        out.print(table)


@jobs_app.command("logs")
def jobs_logs(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., metavar="ID"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
) -> None:
    """Print a job's log."""
    with session(ctx) as ws:
        since = 0
        while True:
            for line in ws.jobs.logs(job_id, since=since):
                typer.echo(f"{when(line.at)}  {line.line}")
                since = line.seq
            if not follow or ws.jobs.get(job_id).state.done:
                break
            time.sleep(0.5)


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Ask a job to stop."""
    with session(ctx) as ws:
        job = ws.jobs.cancel(job_id)
        out.print(f"job {job.id}: {_state(job.state)}")


# -- experiments and runs -----------------------------------------------------------------------


@experiments_app.command("list")
def experiments_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List experiments."""
    with session(ctx) as ws:
        items = all_pages(ws.experiments.list, page_size=1000)
        if as_json:
            print_json(items)
            return
        table = Table("name", "description", "created", header_style="bold")
        for e in items:
            table.add_row(escape(e.name), escape(e.description or ""), when(e.created_at))
        out.print(table if items else "no experiments")


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    experiment: list[str] | None = typer.Option(
        None, "--experiment", "-e", help="Only this experiment (repeat for more)."
    ),
    filter: str | None = typer.Option(
        None, "--filter", "-f", help="e.g. \"metrics.auc > 0.9 and params.depth = '6'\""
    ),
    order_by: list[str] | None = typer.Option(
        None, "--order-by", help="e.g. 'metrics.auc DESC' (repeat for more)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="At most N runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List runs of every experiment (or those named), newest first unless --order-by."""
    with session(ctx) as ws:
        page = ws.runs.list(
            experiment=experiment or None, filter=filter, order_by=order_by, page_size=limit
        )
        if as_json:
            print_json(page.items)
            return
        table = Table(header_style="bold")
        table.add_column("id", no_wrap=True, min_width=32)
        for column in ("experiment", "name", "status", "started", "metrics"):
            table.add_column(column, overflow="fold")
        for r in page.items:
            table.add_row(
                r.id,
                escape(r.experiment),
                escape(r.name),
                _run_status(r.status),
                when(r.start_time),
                _metrics_summary(r.metrics),
            )
        out.print(table if page.items else "no runs")
        if page.next_page_token:
            out.print(f"showing the first {limit} runs (--limit)", style="dim", markup=False)


def _run_status(status: Any) -> str:
    value = str(getattr(status, "value", status))
    color = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}
    return f"[{color.get(value, 'white')}]{value}[/]"


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one run: attributes, params, tags and latest metrics."""
    with session(ctx) as ws:
        run = ws.runs.get(run_id)
        if as_json:
            print_json(run)
            return
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("id", run.id)
        table.add_row("name", escape(run.name))
        table.add_row("experiment", escape(run.experiment))
        table.add_row("status", _run_status(run.status))
        table.add_row("parent", run.parent_run_id or "")
        table.add_row("started", when(run.start_time))
        table.add_row("ended", when(run.end_time))
        if run.notes:
            table.add_row("notes", escape(run.notes))
        out.print(table)
        for title, values in (("param", run.params), ("metric", run.metrics), ("tag", run.tags)):
            if values:
                detail = Table(title, "value", header_style="bold")
                for key, value in sorted(values.items()):
                    detail.add_row(escape(key), escape(cell(value)))
                out.print(detail)


@runs_app.command("compare")
def runs_compare(
    ctx: typer.Context,
    run_ids: list[str] = typer.Argument(..., metavar="RUN RUN…"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Params and latest metrics of runs side by side (a row per key, a column per run)."""
    with session(ctx) as ws:
        runs = [ws.runs.get(r) for r in run_ids]
        rows = [("name", "", [r.name for r in runs])]
        for kind, attr in (("param", "params"), ("metric", "metrics")):
            keys = sorted({k for r in runs for k in getattr(r, attr)})
            rows += [(kind, k, [getattr(r, attr).get(k) for r in runs]) for k in keys]
        if as_json:
            print_json(
                {
                    "runs": [r.id for r in runs],
                    "params": {k: v for kind, k, v in rows if kind == "param"},
                    "metrics": {k: v for kind, k, v in rows if kind == "metric"},
                }
            )
            return
        table = Table("", "key", header_style="bold")
        for r in runs:
            table.add_column(r.id[:8], overflow="fold")
        for kind, key, values in rows:
            differ = len({str(v) for v in values}) > 1
            cells = [escape(cell(v)) for v in values]
            table.add_row(kind, escape(key), *(f"[yellow]{c}[/]" if differ else c for c in cells))
        out.print(table)


@runs_app.command("import-tensorboard")
def runs_import_tensorboard(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN"),
    logdir: Path = typer.Argument(..., metavar="LOGDIR", help="Folder of TensorBoard event files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Read the scalars of TensorBoard event files (any depth under LOGDIR) into a run."""
    with session(ctx) as ws:
        counts = ws.runs.import_tensorboard(run_id, logdir)
        if as_json:
            print_json(counts)
            return
        table = Table("metric", "points", header_style="bold")
        for key, count in counts.items():
            table.add_row(escape(key), str(count))
        out.print(table)
        out.print(f"{sum(counts.values())} points imported into run {run_id}", markup=False)


# -- up ------------------------------------------------------------------------------------------


@app.command("up")
def up(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home", help="Workspace folder to serve."),
    host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8765)."),
    no_demo: bool = typer.Option(False, "--no-demo", help="Do not set up the demo data."),
) -> None:
    """Serve a workspace: REST API and console (Ctrl+C stops it)."""
    from shipyard.config import load_settings

    target: Target = ctx.find_object(Target) or Target()
    server = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    try:
        settings = load_settings(
            home=home or target.home, token=target.token, server=server or None
        )
        from shipyard.server import serve  # only `up` needs the server

        serve(settings, demo=not no_demo)
    except ShipyardError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


# -- command modules -----------------------------------------------------------------------------
# Capabilities keep their commands in their own module (shipyard/cli/<capability>.py), each with a
# ``register(app)`` that adds its commands or sub-apps; list them here.
for _module in (artifacts_cli, batch_cli, serving_cli, tensorboard_cli):
    _module.register(app)


def main() -> None:
    """The ``shipyard`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


# -- lineage -------------------------------------------------------------------------------------


@app.command("lineage")
def lineage_command(
    ctx: typer.Context,
    resource: str = typer.Argument(
        ..., metavar="RESOURCE", help="tables/d.t, models/d.m[/versions/N] or runs/ID."
    ),
    direction: str = typer.Option(
        "both", "--direction", "-d", help="upstream, downstream or both."
    ),
    depth: int | None = typer.Option(None, "--depth", help="Executions away (default: all)."),
    context: str | None = typer.Option(
        None, "--context", help="Only through this context's executions, e.g. experiment/churn."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show where a table, model version or run came from, and what came of it."""
    with session(ctx) as ws:
        graph = ws.lineage(resource, direction=direction, depth=depth, context=context)
        if as_json:
            print_json(graph)
            return
        out.print(_lineage_tree(graph))


def _lineage_tree(graph: Any) -> Tree:
    """The graph as trees from the root: upstream through producing executions, downstream
    through consuming ones (a node seen before on a branch is marked, not repeated)."""
    artifacts = {a.id: a for a in graph.artifacts}
    executions = {e.id: e for e in graph.executions}
    root = next(a for a in graph.artifacts if a.uri == graph.root)
    label = f"[bold]{escape(root.uri)}[/bold] ({root.kind})"
    contexts = [c for c in graph.contexts if any(
        m.context_id == c.id and m.artifact_id == root.id for m in graph.memberships
    )]  # fmt: skip
    if contexts:
        label += " [dim]in " + ", ".join(escape(f"{c.type}/{c.name}") for c in contexts) + "[/dim]"
    tree = Tree(label)
    # A run's artifact stands for the run: downstream of it is what the run's execution wrote.
    run_id = root.uri.split("/", 1)[1] if root.kind == "run" else None
    ways = [("upstream", "OUTPUT", "INPUT", "⬆"), ("downstream", "INPUT", "OUTPUT", "⬇")]
    for way, near, far, arrow in ways:
        if graph.direction not in (way, "both"):
            continue
        branch = tree.add(f"[dim]{way}[/dim]")
        entry = run_id if way == "downstream" and run_id in executions else None
        _lineage_branch(
            branch, graph, root.id, near, far, arrow, artifacts, executions, set(), entry
        )
    return tree


def _lineage_branch(
    node: Tree,
    graph: Any,
    artifact_id: str,
    near: str,
    far: str,
    arrow: str,
    artifacts: dict[str, Any],
    executions: dict[str, Any],
    seen: set[str],
    entry: str | None = None,
) -> None:
    for edge in graph.edges:
        if edge.artifact_id != artifact_id:
            continue
        if edge.type != near and edge.execution_id != entry:
            continue
        execution = executions.get(edge.execution_id)
        if execution is None or execution.id in seen:
            continue
        statement = execution.properties.get("statement") or ""
        summary = " ".join(str(statement).split())
        summary = summary if len(summary) <= 80 else summary[:77] + "..."
        label = f"{arrow} [cyan]{escape(execution.name)}[/cyan] ({execution.kind})"
        if summary:
            label += f" [dim]{escape(summary)}[/dim]"
        child = node.add(label)
        for other in graph.edges:
            if other.execution_id != execution.id or other.type != far:
                continue
            if other.artifact_id == artifact_id:  # a run's own artifact, under the run
                continue
            artifact = artifacts.get(other.artifact_id)
            if artifact is None:
                continue
            grandchild = child.add(f"{escape(artifact.uri)} ({artifact.kind})")
            _lineage_branch(
                grandchild,
                graph,
                artifact.id,
                near,
                far,
                arrow,
                artifacts,
                executions,
                seen | {execution.id},
            )
