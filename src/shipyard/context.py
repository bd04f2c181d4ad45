"""Context: settings plus the backends built from them, once per workspace process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from shipyard.config import Settings, load_settings
from shipyard.engine import LocalEngine
from shipyard.errors import Unsupported
from shipyard.store import ArtifactStore, MetadataStore
from shipyard.warehouse import Warehouse


class Context:
    """Everything a service needs: metadata, artifacts, the warehouse and the engine.

    Build it with :meth:`open`; close it when the workspace closes. Services receive it and keep no
    other global state.

    The metadata and artifact stores open at once. The warehouse and the engine open on first
    use: a process that only serves predictions (``shipyard serve`` workers) never takes the
    warehouse's single-writer lock, and never runs the engine's recovery, which fails the jobs
    that no live engine owns.
    """

    def __init__(
        self,
        settings: Settings,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        warehouse: Warehouse | None = None,
        engine: LocalEngine | None = None,
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.artifacts = artifacts
        self._warehouse = warehouse
        self._engine = engine
        # Services memoise themselves here (e.g. loaded predictors), keyed by their own names.
        self.cache: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, lazy: bool = False, **overrides: Any
    ) -> Context:
        """Open the workspace's backends; ``lazy=True`` defers the warehouse and the engine."""
        settings = settings or load_settings(**overrides)
        settings.home_path.mkdir(parents=True, exist_ok=True)
        if settings.engine.kind != "local":
            raise Unsupported(
                f"engine {settings.engine.kind!r} is not available yet: expected 'local'"
            )
        metadata = MetadataStore(settings.metadata_url)
        try:
            ctx = cls(settings, metadata, ArtifactStore(settings.artifacts_url))
            if not lazy:
                ctx.warehouse  # noqa: B018 - open it now: a locked file fails here, not later
                ctx.engine  # noqa: B018
        except BaseException:
            metadata.dispose()
            raise
        return ctx

    @property
    def warehouse(self) -> Warehouse:
        with self._lock:
            if self._warehouse is None:
                self._warehouse = Warehouse(
                    self.settings.warehouse_path,
                    threads=self.settings.warehouse.threads,
                    memory_limit=self.settings.warehouse.memory_limit,
                )
            return self._warehouse

    @property
    def engine(self) -> LocalEngine:
        with self._lock:
            if self._engine is None:
                self._engine = LocalEngine(
                    self.metadata, max_workers=self.settings.engine.max_workers
                )
            return self._engine

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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            closers = [c for c in self.cache.values() if hasattr(c, "close")]
        for closer in closers:
            closer.close()
        if self._engine is not None:
            self._engine.shutdown(wait=True)
        if self._warehouse is not None:
            self._warehouse.close()
        self.metadata.dispose()
