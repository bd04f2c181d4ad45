"""Storage backends: the metadata database and the artifact store.

* :class:`MetadataStore` — SQLAlchemy Core over SQLite (embedded) or PostgreSQL, migrated with
  Alembic on open; transactions, error translation and keyset paging (:class:`Page`).
* :class:`ArtifactStore` — immutable sha256-addressed blobs on any fsspec filesystem.

The tables themselves are in :mod:`shipyard.store.schema`. The backends are imported on first
use, so a remote client that only needs :class:`Page` never loads SQLAlchemy or fsspec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.store.page import Page

if TYPE_CHECKING:
    from shipyard.store.artifacts import ArtifactStore, Digest
    from shipyard.store.metadata import MAX_PAGE_SIZE, MetadataStore

_LAZY = {
    "ArtifactStore": "shipyard.store.artifacts",
    "Digest": "shipyard.store.artifacts",
    "MAX_PAGE_SIZE": "shipyard.store.metadata",
    "MetadataStore": "shipyard.store.metadata",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipyard.store' has no attribute {name!r}")


__all__ = ["MAX_PAGE_SIZE", "ArtifactStore", "Digest", "MetadataStore", "Page"]
