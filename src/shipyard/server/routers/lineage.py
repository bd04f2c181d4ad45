"""``/v1/lineage/{resource}``: upstream and downstream of a table, model version or run;
``/v1/lineage/contexts``: the contexts (experiments, pipelines) that group lineage nodes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from shipyard.metadata.entities import LineageContext, LineageGraph
from shipyard.server.routers import get_services
from shipyard.services import Services
from shipyard.store import Page

router = APIRouter(prefix="/v1/lineage", tags=["lineage"])


# Declared before the catch-all below, which would take "contexts" for a resource.
@router.get(
    "/contexts",
    summary="Lineage contexts (experiments, pipelines), by type then name",
    response_model=Page[LineageContext],
)
def list_contexts(
    type: str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
    services: Services = Depends(get_services),
) -> Page[LineageContext]:
    return services.metadata.list_contexts(type=type, page_size=page_size, page_token=page_token)


@router.get(
    "/{resource:path}",
    summary="Lineage of a resource (tables/…, models/…[/versions/N], runs/…), optionally "
    "within a context (`context=experiment/churn`)",
    response_model=LineageGraph,
)
def get_lineage(
    resource: str,
    direction: str = "both",
    depth: int | None = None,
    context: str | None = None,
    services: Services = Depends(get_services),
) -> LineageGraph:
    return services.metadata.lineage(resource, direction, depth, context)
