"""What every command module shares: the connected session, errors as exit codes, output.

Exit codes: 0 ok; 2 bad usage, invalid argument or SQL error; 3 not found; 4 already exists or
failed precondition; 5 not authenticated or not allowed; 6 server unavailable; 1 anything else.
Errors print one red ``error: …`` line on stderr, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from shipyard.client import connect
from shipyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ShipyardError,
    SQLError,
    Unauthenticated,
    Unavailable,
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DEFAULT_TABLE_ROWS = 100


@dataclass
class Target:
    home: Path | None = None
    url: str | None = None
    token: str | None = None


# -- errors and sessions -------------------------------------------------------------------------


def exit_code(error: BaseException) -> int:
    """The exit code for an error (see the module docstring)."""
    if isinstance(error, InvalidArgument):
        return 2
    if isinstance(error, NotFound):
        return 3
    if isinstance(error, AlreadyExists | FailedPrecondition):
        return 4
    if isinstance(error, Unauthenticated | PermissionDenied):
        return 5
    if isinstance(error, Unavailable):
        return 6
    return 1


def fail(error: ShipyardError, *, query: str | None = None) -> NoReturn:
    err.print(f"error: {error.message}", style="red", markup=False, soft_wrap=True)
    if isinstance(error, SQLError) and error.line is not None:
        err.print(f"  line {error.line}, column {error.column}", markup=False, soft_wrap=True)
        for line in pointer(query, error):
            err.print(line, markup=False, soft_wrap=True)
    raise typer.Exit(exit_code(error))


def pointer(query: str | None, error: SQLError) -> list[str]:
    """The offending line of the query with the highlighted text underlined."""
    lines = (query or "").splitlines()
    if not error.line or error.line > len(lines):
        return [f"  near {error.highlight!r}"] if error.highlight else []
    text = lines[error.line - 1]
    highlight = error.highlight or ""
    col = error.column or 1
    start = text.rfind(highlight, 0, col) if highlight else -1
    if start < 0:
        start = text.find(highlight) if highlight else -1
    width = len(highlight) if start >= 0 and highlight else 1
    if start < 0:
        start = max(min(col, len(text)) - 1, 0)
    return [f"  {text}", "  " + " " * start + "^" * max(width, 1)]


@contextmanager
def session(ctx: typer.Context, *, query: str | None = None) -> Iterator[Any]:
    """A connected workspace; ShipyardErrors become a red line and an exit code."""
    target: Target = ctx.find_object(Target) or Target()
    try:
        ws = connect(target.url or target.home, token=target.token)
    except ShipyardError as exc:
        fail(exc)
    try:
        yield ws
    except ShipyardError as exc:
        fail(exc, query=query)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug: say so in one line, not a traceback
        err.print(f"error: unexpected {type(exc).__name__}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    finally:
        ws.close()


# -- output helpers ------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value.tzinfo else str(value)
    if isinstance(value, list | dict):
        text = json.dumps(jsonable(value), ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def rows_table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    return table


def print_result(result: Any, *, as_json: bool, max_rows: int | None) -> None:
    limit = max_rows if max_rows is not None else (None if as_json else DEFAULT_TABLE_ROWS)
    shown = result.to_arrow() if limit is None else result.to_arrow().slice(0, limit)
    rows = shown.to_pylist()
    if as_json:
        print_json(rows)
        return
    if result.to_arrow().num_columns == 0:
        out.print(result.message or f"{result.statement_type}: done", markup=False)
        return
    total = result.num_rows
    caption = f"{total} row{'s' if total != 1 else ''}"
    if len(rows) < total:
        caption = f"showing {len(rows)} of {total} rows (--max-rows to see more)"
    out.print(rows_table(rows, result.column_names))
    out.print(caption, style="dim", markup=False, soft_wrap=True)
    if result.message:
        out.print(result.message, style="dim", markup=False, soft_wrap=True)


def when(value: dt.datetime | None) -> str:
    return cell(value) if value else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def all_pages(list_call: Any, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = list_call(page_token=token, **kwargs)
        items += page.items
        token = page.next_page_token
        if not token:
            return items


def follow(ws: Any, job: Any) -> Any:
    """Wait for a job with a progress bar on stderr; Ctrl+C cancels it."""
    if job.state.done:
        return job
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task(job.description or job.kind, total=None)
            poll = 0.05
            while not job.state.done:
                time.sleep(poll)
                poll = min(poll * 1.5, 0.5)
                job = ws.jobs.get(job.id)
                fraction = job.progress
                progress.update(
                    task,
                    total=100 if fraction is not None else None,
                    completed=(fraction or 0) * 100,
                    description=job.progress_message or job.description or job.kind,
                )
    except KeyboardInterrupt:
        ws.jobs.cancel(job.id)
        err.print(f"cancelled job {job.id}", style="yellow", markup=False)
        raise typer.Exit(130) from None
    return job
