"""``shipyard tensorboard RUN [RUN…]``: export runs' metric series and open them in TensorBoard.

Each run is exported to its own folder under the log directory (``<name>-<id8>``), so
TensorBoard shows the runs side by side; then TensorBoard serves that directory on 127.0.0.1
until Ctrl+C. With a server (``--url``) the server writes the event files and this machine
unpacks them: TensorBoard runs here.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from shipyard.cli.common import err, fail, out, session
from shipyard.errors import InvalidArgument, Unsupported

INSTALL_HINT = "pip install 'shipyard[tensorboard]'"
DEFAULT_PORT = 6006
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_folder(name: str, run_id: str) -> str:
    """A folder name for a run: its name made file-system safe, and the start of its id."""
    safe = _UNSAFE.sub("_", name).strip("._") or "run"
    return f"{safe[:60]}-{run_id[:8]}"


def tensorboard_command(
    ctx: typer.Context,
    run_ids: list[str] = typer.Argument(..., metavar="RUN", help="Run ids (one or more)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="Port on 127.0.0.1."),
    logdir: Path | None = typer.Option(
        None,
        "--logdir",
        help="Write the event files here and keep them (default: a temporary folder).",
    ),
    export_only: bool = typer.Option(
        False, "--export-only", help="Write the event files, print the folder, do not launch."
    ),
) -> None:
    """Export runs' metrics as TensorBoard event files and launch TensorBoard on them."""
    if not 1 <= port <= 65535:
        fail(InvalidArgument(f"invalid port {port}: expected 1 to 65535"))
    if not export_only and importlib.util.find_spec("tensorboard") is None:
        fail(Unsupported(f"TensorBoard is not installed here: {INSTALL_HINT}"))
    folder = logdir.expanduser() if logdir else Path(tempfile.mkdtemp(prefix="shipyard-tb-"))
    try:
        with session(ctx) as ws:
            for run_id in dict.fromkeys(run_ids):
                run = ws.runs.get(run_id)
                written = ws.runs.export_tensorboard(run.id, folder / run_folder(run.name, run.id))
                err.print(f"exported run {run.id} ({run.name}) to {written.parent}", markup=False)
        if export_only:
            out.print(str(folder), markup=False)
            return
        _launch(folder, port)
    finally:
        if logdir is None and not export_only:
            shutil.rmtree(folder, ignore_errors=True)


def _launch(folder: Path, port: int) -> None:
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    err.print(f"TensorBoard on http://127.0.0.1:{port}/ (Ctrl+C stops it)", markup=False)
    process = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stopping us stops TensorBoard too
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        err.print(f"error: TensorBoard exited with status {code}", style="red", markup=False)
        raise typer.Exit(1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.command("tensorboard")(tensorboard_command)
