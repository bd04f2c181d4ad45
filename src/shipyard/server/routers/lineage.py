"""``/v1/lineage/{resource}``: upstream and downstream of a table, model version or run."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from shipyard.metadata.entities import LineageGraph
from shipyard.server.routers import get_services
from shipyard.services import Services

router = APIRouter(prefix="/v1/lineage", tags=["lineage"])


@router.get(
    "/{resource:path}",
    summary="Lineage of a resource (tables/…, models/…[/versions/N], runs/…)",
    response_model=LineageGraph,
)
def get_lineage(
    resource: str,
    direction: str = "both",
    depth: int | None = None,
    services: Services = Depends(get_services),
) -> LineageGraph:
    return services.metadata.lineage(resource, direction, depth)
