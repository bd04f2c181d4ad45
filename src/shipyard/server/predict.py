"""The prediction hot path: ``POST /v1/endpoints/{name}:predict`` answered beneath FastAPI.

A one-row prediction takes tens of microseconds of model time; routing, dependency injection,
exception middleware and a thread-pool hop per request took several times that. So this plain
ASGI layer answers ``:predict`` itself — read the body, parse it with orjson, hand it to
``EndpointService.predict_async`` (which batches concurrent requests on the event loop), write
the answer with orjson — and passes every other request on to the app unchanged.

It sits inside the app's outer layers, so the bearer token, the body limit and the catch-all
for bugs apply to it as to every route. The FastAPI route for ``:predict`` stays: it documents
the request in the OpenAPI schema and answers through the same functions when an app is built
without this layer.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.errors import InvalidArgument, ShipyardError
from shipyard.server.errors import error_response
from shipyard.server.routers import jsonable
from shipyard.serving.service import EndpointService

__all__ = ["PREDICT_FIELDS", "PredictFastPath", "dump", "parse_body"]

PREFIX = "/v1/endpoints/"
SUFFIX = ":predict"
PREDICT_FIELDS = ("instances", "parameters")
REQUEST_ID_HEADER = b"x-request-id"
_JSON_HEADERS = [(b"content-type", b"application/json")]


def parse_body(raw: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A request body that must be a JSON object with ``allowed[0]`` and only ``allowed``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument(
            f"the request body must be a JSON object with {allowed[0]!r}, got {type(body).__name__}"
        )
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise InvalidArgument(
            f"unknown field {unknown[0]!r} in the request body; expected {', '.join(allowed)}"
        )
    if allowed[0] not in body:
        raise InvalidArgument(f"the request body lacks {allowed[0]!r}", field=allowed[0])
    return body


def dump(value: Any) -> bytes:
    """A response body: orjson (NaN and infinities become null); the routers' ``jsonable`` for
    what orjson does not know (decimals, bytes, durations)."""
    try:
        return orjson.dumps(value, default=jsonable)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, a non-string key
        return orjson.dumps(jsonable(value))


async def predict(service: EndpointService, name: str, raw: bytes, request_id: str | None) -> bytes:
    """The whole ``:predict`` exchange, body in, body out."""
    body = parse_body(raw, PREDICT_FIELDS)
    result = await service.predict_async(
        name, body["instances"], body.get("parameters"), request_id=request_id
    )
    return dump(result)


class PredictFastPath:
    """ASGI layer that answers ``POST /v1/endpoints/{name}:predict`` (see the module docstring).

    The endpoint service is the app's ``state.endpoints``, looked up per request so that the
    layer can be added before the app's state is filled in.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(PREFIX) and path.endswith(SUFFIX):
                name = path[len(PREFIX) : -len(SUFFIX)]
                if name and "/" not in name:
                    await self._predict(scope, receive, send, name)
                    return
        await self.app(scope, receive, send)

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        request_id = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                request_id = value.decode("latin-1")
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        service: EndpointService = scope["app"].state.endpoints
        try:
            body = await predict(service, name, b"".join(chunks), request_id)
        except ShipyardError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
