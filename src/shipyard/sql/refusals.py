"""ML functions that refuse a model type they do not apply to, by wrapping the handlers.

A model type with a few functions of its own (TRANSFORM_ONLY: ML.TRANSFORM and ML.FEATURE_INFO;
CONTRIBUTION_ANALYSIS: ML.GET_INSIGHTS) wraps every other handler so that calling it on such a
model names the function, the model's type and what to call instead, before the handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shipyard.errors import InvalidArgument

if TYPE_CHECKING:
    from shipyard.sql.service import SqlService

__all__ = ["Handler", "refusing_handlers"]

Handler = Callable[["SqlService", Any], pa.Table]


def refusing_handlers(
    existing: Mapping[str, Handler],
    *,
    model_type: str,
    applicable: Collection[str],
    advice: Callable[[str], str],
) -> dict[str, Handler]:
    """Every handler of ``existing`` but the ``applicable`` ones, refusing ``model_type``
    models with "ML.<function> does not apply to model m: it is a <model_type> model" and
    ``advice(m)`` (what to call instead)."""

    def refusing(function: str, handler: Handler) -> Handler:
        def run(service: SqlService, call: Any) -> pa.Table:
            try:
                found = service.models.get_version(call.model).model_type
            except InvalidArgument:
                found = None  # the handler reports it in its own words
            if found == model_type:
                raise InvalidArgument(
                    f"ML.{function} does not apply to model {call.model}: it is a "
                    f"{model_type} model{advice(call.model)}",
                    resource=f"models/{call.model}",
                )
            return handler(service, call)

        return run

    return {
        name: refusing(name, handler)
        for name, handler in existing.items()
        if name not in applicable
    }
