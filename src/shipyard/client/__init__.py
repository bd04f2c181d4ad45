"""The SDK: ``connect()`` gives a workspace, embedded or over HTTP, with the same behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.config import load_settings, read_server_info


def connect(target: str | Path | None = None, *, token: str | None = None, **settings: Any) -> Any:
    """Open a workspace.

    * ``connect()``: the home from ``SHIPYARD_HOME`` (default ``~/.shipyard``), embedded;
    * ``connect("/path/to/home")``: that home, embedded;
    * ``connect("http://127.0.0.1:8765")``: a Shipyard server, over HTTP.

    When a server already owns the home, an embedded ``connect`` talks to that server (DuckDB
    allows one writing process per database file). ``token`` (or ``SHIPYARD_TOKEN``) is sent as
    a bearer token to servers that require one.

    >>> import shipyard as sy
    >>> ws = sy.connect("/tmp/shipyard-doctest")  # doctest: +SKIP
    >>> ws.sql("SELECT 1 AS x").to_pylist()        # doctest: +SKIP
    [{'x': 1}]
    """
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        from shipyard.client.remote import RemoteWorkspace

        resolved = load_settings(**settings) if settings else None
        return RemoteWorkspace(target, token=token or _env_token(resolved))

    if target is not None:
        settings["home"] = Path(target)
    resolved = load_settings(**settings)
    owner = read_server_info(resolved.home_path)
    if owner is not None:
        from shipyard.client.remote import RemoteWorkspace

        return RemoteWorkspace(owner.url, token=token or _env_token(resolved))

    from shipyard.client.local import LocalWorkspace
    from shipyard.context import Context

    return LocalWorkspace(Context.open(resolved))


def _env_token(settings: Any) -> str | None:
    import os

    if settings is not None and settings.server_token:
        return str(settings.server_token)
    return os.environ.get("SHIPYARD_TOKEN")


__all__ = ["connect"]
