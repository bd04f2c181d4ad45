"""The ``shipyard`` command line (Typer + Rich), built on the SDK only."""

from shipyard.cli.main import app, main

__all__ = ["app", "main"]
