"""``serve()``: run a workspace's REST API and console with uvicorn (what ``shipyard up`` calls)."""

from __future__ import annotations

import gc
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from shipyard.config import Settings, read_server_info, remove_server_info, write_server_info
from shipyard.context import Context
from shipyard.errors import Unavailable
from shipyard.server.app import create_app
from shipyard.services import Services

log = logging.getLogger("shipyard.server")


@dataclass
class RunningServer:
    """Handed to ``serve(ready=...)`` once the server accepts connections."""

    url: str
    home: str
    setup: list[str] = field(default_factory=list)
    _server: Any = field(default=None, repr=False)

    def stop(self) -> None:
        """Ask the server to finish (like Ctrl+C); ``serve`` then cleans up and returns."""
        if self._server is not None:
            self._server.should_exit = True


def serve(
    settings: Settings,
    *,
    demo: bool = True,
    ready: Callable[[RunningServer], Any] | None = None,
) -> None:
    """Serve the workspace of ``settings`` until stopped (Ctrl+C, or ``RunningServer.stop``).

    Opens the workspace, sets up the demo data when ``demo``, writes ``<home>/server.json`` so
    that ``connect()`` and the CLI find this server, and listens on ``settings.server.host`` and
    ``.port`` (127.0.0.1:8765 by default; port 0 picks a free one). On exit it removes
    ``server.json`` and closes the workspace. Refuses to start, with :class:`Unavailable`, when
    another live server owns the home or the address is taken.

    ``ready(running)`` is called once the server accepts connections, with a
    :class:`RunningServer` (its ``url``, what was set up, and ``stop()``); it runs on the
    server's event loop, so it should return quickly (e.g. append to a list, set an Event).
    ``serve`` blocks: run it in a thread to keep going, and call ``running.stop()`` to end it.
    """
    home = settings.home_path
    owner = read_server_info(home)
    if owner is not None:
        raise Unavailable(
            f"a Shipyard server (pid {owner.pid}) already serves {home} at {owner.url}; "
            f"use it (--url {owner.url}) or stop it first",
            url=owner.url,
            pid=owner.pid,
        )
    host, port = settings.server.host, settings.server.port
    sock = listen(host, port)
    try:
        ctx = Context.open(settings)
    except BaseException:
        sock.close()
        raise
    url = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
    try:
        # Claim the home before the (slow) demo set-up: clients that arrive meanwhile queue on
        # the socket instead of failing on DuckDB's lock.
        write_server_info(home, url)
        _configure_logging()
        services = Services.build(ctx)
        lines = _setup_demo(services) if demo else []
        app = create_app(
            services,
            token=settings.server_token,
            max_request_bytes=settings.server.max_request_bytes,
        )
        running = RunningServer(url=url, home=str(home), setup=lines)

        def started() -> None:
            _announce(running, token=settings.server_token is not None)
            if ready is not None:
                ready(running)

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = _Server(config, on_started=started)
        if threading.current_thread() is threading.main_thread():  # `shipyard up`, not a test
            # The services, models and imports live as long as the server: keep them out of
            # the collector's full passes, whose pauses over this heap land on some request's
            # latency (one-row :predict p99 at one connection: 7-73 ms in runs before, 3-4 ms).
            gc.freeze()
        running._server = server
        # Ctrl+C stops it gracefully (uvicorn then re-raises the KeyboardInterrupt); outside
        # the main thread, RunningServer.stop() does.
        server.run(sockets=[sock])
    finally:
        remove_server_info(home)
        sock.close()
        ctx.close()
        print("Shipyard stopped.", flush=True)


class _Server(uvicorn.Server):
    """uvicorn's server, telling us once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; Unavailable when the address is taken.

    Created with ``IPPROTO_TCP`` explicitly: asyncio turns Nagle's algorithm off
    (``TCP_NODELAY``) only on connections whose socket says so, and a socket made with
    protocol 0 does not — every small response then waited ~40 ms for the client's delayed
    ACK (measured: a one-row ``:predict`` at 44 ms p50 instead of 1.9 ms).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise Unavailable(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "choose another port with --port",
            host=host,
            port=port,
        ) from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _setup_demo(services: Services) -> list[str]:
    try:
        from shipyard import demo
    except ModuleNotFoundError as exc:
        if exc.name != "shipyard.demo":
            raise
        return ["demo data: not available in this version"]
    try:
        return list(demo.setup(services))
    except Exception as exc:  # the workspace is still worth serving without its demo
        log.exception("the demo data could not be set up")
        return [f"demo data: not set up ({exc})"]


def _announce(running: RunningServer, *, token: bool) -> None:
    lines = [f"Shipyard is serving {running.home}", f"  console and API: {running.url}"]
    lines.append(f"  OpenAPI:         {running.url}/docs")
    if token:
        lines.append("  every request needs the token (Authorization: Bearer …)")
    if running.setup:
        lines.append("  set up:")
        lines += [f"    - {line}" for line in running.setup]
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), flush=True)


def _configure_logging() -> None:
    # Tracebacks of internal errors go to the server's stderr, never to clients.
    logger = logging.getLogger("shipyard")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
