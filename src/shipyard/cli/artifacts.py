"""``shipyard runs artifacts RUN [PATH]`` and ``shipyard runs log-artifact RUN LOCAL_PATH``: a
run's artifact files — list them, download them (``--download DIR``), upload a file or folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.common import out, print_json, session


def artifacts_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id."),
    path: str | None = typer.Argument(None, help="A folder or file inside the run's artifacts."),
    download: Path | None = typer.Option(
        None, "--download", "-d", help="Copy PATH (default: everything) into this folder."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a run's artifacts under PATH, or download them with --download."""
    with session(ctx) as ws:
        if download is not None:
            local = ws.runs.download_artifacts(run_id, path, download.expanduser())
            out.print(str(local), markup=False)
            return
        files = ws.runs.list_artifacts(run_id, path)
        if as_json:
            print_json(files)
            return
        table = Table(header_style="bold")
        table.add_column("path", overflow="fold")
        table.add_column("size", justify="right")
        for f in files:
            name = f"{escape(f.path)}/" if f.is_dir else escape(f.path)
            table.add_row(name, "" if f.size is None else f"{f.size:,}")
        out.print(table if files else "no artifacts")


def log_artifact_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id."),
    local_path: Path = typer.Argument(..., help="A file, or a folder to upload whole."),
    artifact_path: str | None = typer.Option(
        None, "--artifact-path", "-a", help="Folder inside the run's artifacts."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Upload a file or a folder into a run's artifacts."""
    with session(ctx) as ws:
        files = ws.runs.log_artifact(run_id, local_path.expanduser(), artifact_path)
        if as_json:
            print_json(files)
            return
        total = sum(f.size or 0 for f in files)
        out.print(f"{len(files)} file(s), {total:,} bytes logged to run {run_id}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the commands to the ``runs`` group of ``app``."""
    for group in app.registered_groups:
        if group.name == "runs" and group.typer_instance is not None:
            group.typer_instance.command("artifacts")(artifacts_command)
            group.typer_instance.command("log-artifact")(log_artifact_command)
            return
    raise RuntimeError("the CLI has no 'runs' group to add the artifact commands to")
