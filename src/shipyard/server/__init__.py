"""The REST server: the workspace's API and console over HTTP.

>>> from shipyard.server import create_app, serve   # doctest: +SKIP
>>> serve(load_settings(home="/tmp/ws"))             # doctest: +SKIP

``create_app(services)`` builds the FastAPI app; ``serve(settings)`` runs it with uvicorn (what
``shipyard up`` does).
"""

from shipyard.server.app import create_app
from shipyard.server.run import RunningServer, serve

__all__ = ["RunningServer", "create_app", "serve"]
