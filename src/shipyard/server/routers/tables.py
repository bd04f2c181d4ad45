"""``/v1/tables``: warehouse tables — list, describe, versions, preview, load, delete."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shipyard.data.entities import TableInfo, TableVersion
from shipyard.errors import InvalidArgument
from shipyard.server.routers import (
    ARROW_STREAM,
    ROWS_RESPONSES,
    get_services,
    page_of,
    read_arrow,
    result_response,
)
from shipyard.services import Services
from shipyard.sql.entities import QueryResult
from shipyard.store import Page

router = APIRouter(prefix="/v1/tables", tags=["tables"])


@router.get("", summary="List tables", response_model=Page[TableInfo])
def list_tables(
    dataset: str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[TableInfo]:
    return services.tables.list(dataset=dataset, page_size=page_size, page_token=page_token)


@router.get("/{name}", summary="Describe a table", response_model=TableInfo)
def get_table(name: str, services: Services = Depends(get_services)) -> TableInfo:
    return services.tables.get(name)


@router.get(
    "/{name}/versions", summary="A table's recorded versions", response_model=Page[TableVersion]
)
def table_versions(
    name: str,
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    return page_of(services.tables.versions(name), page_size, page_token)


@router.get("/{name}/rows", summary="The first rows of a table", responses=ROWS_RESPONSES)
def preview_table(
    name: str, request: Request, limit: int = 100, services: Services = Depends(get_services)
) -> Response:
    return result_response(request, QueryResult(services.tables.preview(name, limit=limit)))


_LOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The raw bytes of a CSV, Parquet, JSON/JSONL or Excel file (name its "
        "format with `format` or `filename`), or an Arrow IPC stream.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/{name}:load",
    summary="Load a file or an Arrow stream into a table",
    response_model=TableInfo,
    openapi_extra=_LOAD_BODY,
)
async def load_table(
    name: str,
    request: Request,
    mode: str = Query("replace", description="replace, append or fail"),
    format: str | None = Query(None, description="csv, parquet, json, jsonl or excel"),
    filename: str | None = Query(
        None, description="The file's name; its extension names the format"
    ),
    services: Services = Depends(get_services),
) -> TableInfo:
    # The body goes to a temporary file as it arrives (the app's body limit applies), so a large
    # upload never sits in memory; the file is named after the user's so errors name it too.
    is_arrow = request.headers.get("content-type", "").split(";")[0].strip() == ARROW_STREAM
    if not is_arrow and format is None and filename is None:
        raise InvalidArgument(
            "cannot tell the format of the uploaded file: pass format= (csv, parquet, json, "
            "jsonl or excel) or filename="
        )
    fname = Path(filename or "").name or ("upload.arrows" if is_arrow else "upload")
    staging = services.ctx.home / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="upload-", dir=staging) as tmp:
        path = Path(tmp) / fname
        size = 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidArgument(f"nothing to load into {name}: the request body is empty")
        source: Any = path
        if is_arrow:
            source = await run_in_threadpool(_read_arrow_file, path)
        info: TableInfo = await run_in_threadpool(
            services.tables.load,
            name,
            source,
            mode=mode,
            format=format,
            source_name=None if is_arrow else f"upload:{fname}",
        )
        return info


def _read_arrow_file(path: Path) -> pa.Table:
    # Zero-copy: the table's buffers keep the mapping alive until the load has copied them.
    return read_arrow(pa.memory_map(str(path)))


@router.delete("/{name}", summary="Delete a table", status_code=204)
def delete_table(name: str, services: Services = Depends(get_services)) -> Response:
    services.tables.drop(name)
    return Response(status_code=204)
