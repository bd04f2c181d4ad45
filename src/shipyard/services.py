"""Services: every capability's service, built once over one Context.

The SDK's embedded workspace and the REST server both hold one of these, so a rule lives in a
service once and every face calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.context import Context
from shipyard.data.service import TableService
from shipyard.engine import LocalEngine
from shipyard.metadata.service import MetadataService
from shipyard.registry.service import ModelService
from shipyard.serving.batch import BatchPredictionService
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.service import EndpointService, RequestLogs
from shipyard.sql.service import SqlService
from shipyard.tracking.service import TrackingService


@dataclass
class Services:
    ctx: Context
    tables: TableService
    models: ModelService
    sql: SqlService
    tracking: TrackingService
    metadata: MetadataService
    batch: BatchPredictionService
    endpoints: EndpointService

    @classmethod
    def build(cls, ctx: Context) -> Services:
        metadata = MetadataService(ctx)
        tables = TableService(ctx, metadata)
        models = ModelService(ctx)
        return cls(
            ctx=ctx,
            tables=tables,
            models=models,
            sql=SqlService(ctx, tables, models, metadata),
            tracking=TrackingService(ctx),
            metadata=metadata,
            batch=BatchPredictionService(ctx, tables, models, metadata),
            endpoints=EndpointService(
                ctx,
                models,
                request_logs=RequestLogs(ctx.home),
                metrics=ServingMetrics(),
                metadata=metadata,
            ),
        )

    @property
    def engine(self) -> LocalEngine:
        return self.ctx.engine

    def close(self) -> None:
        self.endpoints.close()
        self.ctx.close()
