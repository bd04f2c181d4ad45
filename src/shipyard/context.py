"""Context: settings plus the backends built from them, once per workspace process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.config import Settings, load_settings
from shipyard.engine import LocalEngine
from shipyard.errors import Unsupported
from shipyard.store import ArtifactStore, MetadataStore
from shipyard.warehouse import Warehouse


@dataclass
class Context:
    """Everything a service needs: metadata, artifacts, the warehouse and the engine.

    Build it with :meth:`open`; close it when the workspace closes. Services receive it and keep no
    other global state.
    """

    settings: Settings
    metadata: MetadataStore
    artifacts: ArtifactStore
    warehouse: Warehouse
    engine: LocalEngine
    # Services memoise themselves here (e.g. loaded predictors), keyed by their own names.
    cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings | None = None, **overrides: Any) -> Context:
        settings = settings or load_settings(**overrides)
        home = settings.home_path
        home.mkdir(parents=True, exist_ok=True)
        if settings.engine.kind != "local":
            raise Unsupported(
                f"engine {settings.engine.kind!r} is not available yet: expected 'local'"
            )
        metadata = MetadataStore(settings.metadata_url)
        try:
            artifacts = ArtifactStore(settings.artifacts_url)
            warehouse = Warehouse(
                settings.warehouse_path,
                threads=settings.warehouse.threads,
                memory_limit=settings.warehouse.memory_limit,
            )
        except BaseException:
            metadata.dispose()
            raise
        engine = LocalEngine(metadata, max_workers=settings.engine.max_workers)
        return cls(settings, metadata, artifacts, warehouse, engine)

    @property
    def home(self) -> Path:
        return self.settings.home_path

    def memo(self, key: str, factory: Any) -> Any:
        """A per-context singleton (services, caches) built on first use."""
        with self._lock:
            if key not in self.cache:
                self.cache[key] = factory()
            return self.cache[key]

    def close(self) -> None:
        self.engine.shutdown(wait=True)
        self.warehouse.close()
        self.metadata.dispose()
