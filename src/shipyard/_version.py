"""The installed version of Shipyard (one place; the server and the CLI read it here)."""

__version__ = "0.1.0"
