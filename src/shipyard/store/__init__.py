"""Storage backends: the metadata database and the artifact store.

* :class:`MetadataStore` — SQLAlchemy Core over SQLite (embedded) or PostgreSQL, migrated with
  Alembic on open; transactions, error translation and keyset paging (:class:`Page`).
* :class:`ArtifactStore` — immutable sha256-addressed blobs on any fsspec filesystem.

The tables themselves are in :mod:`shipyard.store.schema`.
"""

from shipyard.store.artifacts import ArtifactStore, Digest
from shipyard.store.metadata import MAX_PAGE_SIZE, MetadataStore, Page

__all__ = ["MAX_PAGE_SIZE", "ArtifactStore", "Digest", "MetadataStore", "Page"]
