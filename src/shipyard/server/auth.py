"""Bearer-token authentication for the whole app.

When the server has a token, every request needs ``Authorization: Bearer <token>`` except the
health probes and the console's static shell (its HTML, script and style hold no data; the page
asks for the token when the API refuses it). Missing → 401 UNAUTHENTICATED, wrong → 403
PERMISSION_DENIED. Being ASGI middleware, it guards every route, including ones added later and
the OpenAPI document, and answers before a request body is read.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.errors import PermissionDenied, ShipyardError, Unauthenticated

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/favicon.ico", "/docs"})
OPEN_PREFIXES = ("/console/", "/docs/assets/")


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class BearerAuth:
    """ASGI middleware: checks the bearer token of every non-open HTTP request."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        error = self._check(_header(scope, b"authorization"))
        if error is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error.to_dict()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if isinstance(error, Unauthenticated):
            headers.append((b"www-authenticate", b'Bearer realm="shipyard"'))
        await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _check(self, header: bytes | None) -> ShipyardError | None:
        if not header:
            return Unauthenticated(
                "this server needs a token: send 'Authorization: Bearer <token>' "
                "(SHIPYARD_TOKEN or --token for the SDK and the CLI)"
            )
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return Unauthenticated("the Authorization header must be 'Bearer <token>'")
        if not hmac.compare_digest(given.strip(), self._token):
            return PermissionDenied("the token is not valid for this server")
        return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None
