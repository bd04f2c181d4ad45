"""``shipyard endpoints …`` (online serving through the SDK) and ``shipyard serve ENDPOINT``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from shipyard.cli.common import Target, all_pages, cell, err, fail, out, print_json, session, when
from shipyard.errors import InvalidArgument, ShipyardError

endpoints_app = typer.Typer(
    help="Online endpoints: deploy models, split traffic, predict.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(endpoints_app, name="endpoints")
    app.command("serve")(serve)


def _show(endpoint: Any, stats: dict[str, dict[str, Any]] | None = None) -> None:
    out.print(f"[bold]{endpoint.name}[/bold]  revision {endpoint.revision}", highlight=False)
    if endpoint.description:
        out.print(endpoint.description, markup=False)
    if endpoint.sticky_key:
        out.print(f"sticky key: {endpoint.sticky_key}", markup=False)
    table = Table(header_style="bold")
    columns = (
        "id",
        "model",
        "version",
        "alias",
        "traffic",
        "runtime",
        "requests",
        "p50 ms",
        "p99 ms",
    )
    for column in columns:
        table.add_column(column)
    for d in endpoint.deployments:
        figures = (stats or {}).get(d.id, {})
        share = "shadow" if d.shadow else f"{endpoint.traffic.get(d.id, 0)}%"
        table.add_row(
            d.id,
            d.model,
            str(d.version),
            d.alias or "",
            share,
            figures.get("runtime", "") if figures else "",
            cell(figures.get("requests")) if figures else "",
            cell(figures.get("p50_ms")) if figures else "",
            cell(figures.get("p99_ms")) if figures else "",
        )
    if endpoint.deployments:
        out.print(table)
    else:
        out.print("no deployments", style="dim")


@endpoints_app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Lower-case letters, digits, '_' and '-'."),
    description: str | None = typer.Option(None, "--description"),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per request (30)."),
    log_sample_rate: float | None = typer.Option(
        None, "--log-sample-rate", help="Share of requests logged, 0 to 1 (1)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create an endpoint."""
    config: dict[str, Any] = {}
    if timeout is not None:
        config["timeout_s"] = timeout
    if log_sample_rate is not None:
        config["log_sample_rate"] = log_sample_rate
    with session(ctx) as ws:
        endpoint = ws.endpoints.create(name, description=description, config=config or None)
        if as_json:
            print_json(endpoint)
        else:
            out.print(f"created endpoint {endpoint.name}", markup=False)


@endpoints_app.command("list")
def list_endpoints(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List endpoints."""
    with session(ctx) as ws:
        items = all_pages(ws.endpoints.list, page_size=1000)
        if as_json:
            print_json(items)
            return
        table = Table(header_style="bold")
        for column in ("name", "deployments", "traffic", "updated"):
            table.add_column(column)
        for e in items:
            split = ", ".join(f"{k}={v}%" for k, v in e.traffic.items())
            table.add_row(e.name, str(len(e.deployments)), split, when(e.updated_at))
        out.print(table)


@endpoints_app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """An endpoint's deployments, traffic split and request figures."""
    with session(ctx) as ws:
        endpoint = ws.endpoints.get(name)
        stats = ws.endpoints.stats(name)
        if as_json:
            print_json({**endpoint.model_dump(mode="json"), "stats": stats})
        else:
            _show(endpoint, stats)


@endpoints_app.command("deploy")
def deploy(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The endpoint."),
    model: str = typer.Argument(..., help="dataset.model"),
    version: int | None = typer.Option(None, "--version", help="Model version."),
    alias: str | None = typer.Option(None, "--alias", help="Resolve this alias now (default)."),
    traffic: int | None = typer.Option(
        None, "--traffic", help="Percent for the new deployment (100); the others share the rest."
    ),
    shadow: bool = typer.Option(False, "--shadow", help="Receive a copy of the traffic only."),
    sticky_key: str | None = typer.Option(
        None, "--sticky-key", help="Route requests with the same value of this field together."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Deploy a model version to an endpoint."""
    with session(ctx) as ws:
        endpoint = ws.endpoints.deploy(
            name,
            model,
            version=version,
            alias=alias,
            traffic=traffic,
            shadow=shadow,
            sticky_key=sticky_key,
        )
        if as_json:
            print_json(endpoint)
        else:
            _show(endpoint)


@endpoints_app.command("split")
def split(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    shares: list[str] = typer.Argument(..., metavar="ID=PCT...", help="e.g. d1=90 d2=10"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Set the traffic split (whole percents summing to 100)."""
    traffic: dict[str, int] = {}
    for share in shares:
        key, sep, value = share.partition("=")
        try:
            traffic[key] = int(value)
            if not sep or not key:
                raise ValueError
        except ValueError:
            fail(InvalidArgument(f"invalid share {share!r}: expected ID=PERCENT, e.g. d1=90"))
    with session(ctx) as ws:
        endpoint = ws.endpoints.split(name, traffic)
        if as_json:
            print_json(endpoint)
        else:
            _show(endpoint)


@endpoints_app.command("undeploy")
def undeploy(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    deployment_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove a deployment; the others take over its share."""
    with session(ctx) as ws:
        endpoint = ws.endpoints.undeploy(name, deployment_id)
        if as_json:
            print_json(endpoint)
        else:
            _show(endpoint)


@endpoints_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    to_revision: int | None = typer.Option(None, "--to-revision", help="Any earlier revision."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Undo the latest change (twice goes back and forth), or restore --to-revision."""
    with session(ctx) as ws:
        endpoint = ws.endpoints.rollback(name, to_revision=to_revision)
        if as_json:
            print_json(endpoint)
        else:
            _show(endpoint)


@endpoints_app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every change to an endpoint: who, when, what, and the traffic after."""
    with session(ctx) as ws:
        changes = all_pages(ws.endpoints.history, name=name, page_size=1000)
        if as_json:
            print_json(changes)
            return
        table = Table(header_style="bold")
        for column in ("revision", "when", "who", "action", "traffic after"):
            table.add_column(column)
        for c in changes:
            split = ", ".join(f"{k}={v}%" for k, v in c.after.get("traffic", {}).items())
            table.add_row(str(c.revision), when(c.created_at), c.actor, c.action, split)
        out.print(table)


@endpoints_app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    force: bool = typer.Option(False, "--force", help="Even with deployments."),
) -> None:
    """Delete an endpoint."""
    with session(ctx) as ws:
        ws.endpoints.delete(name, force=force)
        out.print(f"deleted endpoint {name}", markup=False)


def _instances(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text() if str(path) != "-" else typer.get_text_stream("stdin").read()
    except OSError as exc:
        fail(InvalidArgument(f"cannot read {path}: {exc.strerror or exc}"))
    instances: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            instances.append(json.loads(line))
        except json.JSONDecodeError as exc:
            fail(InvalidArgument(f"{path}, line {number}: not valid JSON ({exc.msg})"))
    return instances


@endpoints_app.command("predict")
def predict(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    file: Path = typer.Argument(..., help="JSON Lines, one instance per line ('-': stdin)."),
    explain: bool = typer.Option(False, "--explain", help="With feature attributions."),
    threshold: float | None = typer.Option(None, "--threshold", help="Binary threshold."),
) -> None:
    """Predict the instances of a JSON Lines file; prints the response as JSON."""
    instances = _instances(file)
    parameters = {"threshold": threshold} if threshold is not None else None
    with session(ctx) as ws:
        call = ws.endpoints.explain if explain else ws.endpoints.predict
        print_json(call(name, instances, parameters))


@endpoints_app.command("compare")
def compare(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    metric: str = typer.Option(..., "--metric", help="e.g. accuracy, mean_absolute_error."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A/B comparison of the deployments on logged predictions with ground truth."""
    with session(ctx) as ws:
        result = ws.endpoints.compare(name, metric=metric)
        if as_json:
            print_json(result)
            return
        table = Table(header_style="bold")
        for column in ("deployment", "model", "requests", "labelled", metric, "95% CI", "p99 ms"):
            table.add_column(column)
        for f in result.deployments:
            table.add_row(
                f.deployment_id,
                f"{f.model}@{f.model_version}",
                str(f.requests),
                str(f.labelled),
                cell(f.metric_value),
                f"[{cell(f.ci_low)}, {cell(f.ci_high)}]",
                cell(f.latency_p99_ms),
            )
        out.print(table)
        out.print(result.verdict, markup=False)


def serve(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="The endpoint to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    refresh: float = typer.Option(
        1.0, "--refresh", help="Seconds between checks for endpoint changes."
    ),
) -> None:
    """Serve one endpoint with its own worker processes (production serving)."""
    from shipyard.server.standalone import serve_endpoint

    target: Target = ctx.find_object(Target) or Target()
    if target.url:
        err.print("error: shipyard serve reads the workspace itself: use --home, not --url")
        raise typer.Exit(2)
    try:
        serve_endpoint(
            endpoint,
            home=target.home,
            host=host,
            port=port,
            workers=workers,
            token=target.token,
            refresh_s=refresh,
        )
    except ShipyardError as exc:
        fail(exc)
