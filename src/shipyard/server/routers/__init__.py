"""One thin router per capability, plus what they share: services, rows on the wire, paging.

Rows travel two ways. A client that sends ``Accept: application/vnd.apache.arrow.stream`` (the
SDK) gets the Arrow IPC stream of the rows, with the statement's metadata (``QueryResult.info()``)
as JSON in the ``X-Shipyard-Result`` header: exact types, no conversion. Anyone else gets JSON:
``{...info, "schema": [{name, type}], "rows": [{...}]}`` with values made JSON-safe.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import pyarrow as pa
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from shipyard.errors import InvalidArgument
from shipyard.services import Services
from shipyard.sql.entities import QueryResult

ARROW_STREAM = "application/vnd.apache.arrow.stream"
RESULT_HEADER = "X-Shipyard-Result"
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def get_services(request: Request) -> Services:
    """The workspace's services (a FastAPI dependency)."""
    services: Services = request.app.state.services
    return services


def wants_arrow(request: Request) -> bool:
    return ARROW_STREAM in request.headers.get("accept", "")


# -- Arrow ---------------------------------------------------------------------------------------


def arrow_bytes(table: pa.Table) -> bytes:
    """The Arrow IPC stream of ``table``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_arrow(data: bytes | pa.Buffer | pa.NativeFile) -> pa.Table:
    """An Arrow IPC stream back into a table; anything else is an InvalidArgument."""
    try:
        return pa.ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"the request body is not an Arrow IPC stream: {exc}") from None


# -- JSON ----------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A value from ``Table.to_pylist()`` made JSON-safe.

    Dates and times become ISO strings, NaN and infinities null, decimals strings (no precision
    is lost), bytes base64, durations seconds; lists and structs are converted recursively.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def json_rows(table: pa.Table) -> list[dict[str, Any]]:
    return [jsonable(row) for row in table.to_pylist()]


def schema_json(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def result_info_header(info: dict[str, Any]) -> str:
    # ASCII-only JSON: header values must be latin-1, and the message may hold any text.
    return json.dumps(jsonable(info), ensure_ascii=True, separators=(",", ":"))


def result_response(request: Request, result: QueryResult, *, status_code: int = 200) -> Response:
    """A query's rows as Arrow (SDK) or JSON (everyone else), with its metadata."""
    info = result.info()
    if wants_arrow(request):
        return Response(
            arrow_bytes(result.to_arrow()),
            status_code=status_code,
            media_type=ARROW_STREAM,
            headers={RESULT_HEADER: result_info_header(info)},
        )
    body = {
        **jsonable(info),
        "schema": schema_json(result.schema),
        "rows": json_rows(result.to_arrow()),
    }
    return JSONResponse(body, status_code=status_code)


# OpenAPI description of a response that is rows, shared by every route returning them.
ROWS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The rows: JSON by default; an Arrow IPC stream (metadata in the "
        f"`{RESULT_HEADER}` header) when the request accepts `{ARROW_STREAM}`.",
        "content": {
            "application/json": {
                "example": {
                    "statement_type": "SELECT",
                    "job_id": "5f0c…",
                    "message": None,
                    "model": None,
                    "table": None,
                    "num_rows": 1,
                    "schema": [{"name": "x", "type": "int32"}],
                    "rows": [{"x": 1}],
                }
            },
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# -- paging a list the service returns whole -----------------------------------------------------


def page_of(items: Sequence[T], page_size: int, page_token: str | None) -> dict[str, Any]:
    """``{"items", "next_page_token"}`` over an in-memory list (an opaque offset token)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode())
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise InvalidArgument("invalid page token") from None
        if start < 0:
            raise InvalidArgument("invalid page token")
    end = start + page_size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return {"items": list(items[start:end]), "next_page_token": token}
