"""Settings: one pydantic-settings model, one section per backend.

Precedence, highest first: explicit arguments, ``SHIPYARD_*`` environment variables (nested with
``__``, e.g. ``SHIPYARD_SERVER__PORT=9000``), the config file ``<home>/shipyard.toml``, defaults.
Every default is embedded: SQLite, local files and DuckDB under the home folder.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shipyard.errors import InvalidArgument

DEFAULT_HOME = Path("~/.shipyard")
DEFAULT_PORT = 8765


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetadataSettings(_Section):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<home>/metadata.db. "
        "postgresql+psycopg://user:pw@host/db for teams.",
    )


class ArtifactSettings(_Section):
    url: str | None = Field(
        default=None, description="fsspec URL of the artifact root; default <home>/artifacts."
    )


class WarehouseSettings(_Section):
    path: str | None = Field(
        default=None, description="DuckDB database file; default <home>/warehouse.duckdb."
    )
    threads: int | None = Field(default=None, ge=1, description="DuckDB worker threads.")
    memory_limit: str | None = Field(default=None, description="DuckDB memory_limit, e.g. '4GB'.")


class EngineSettings(_Section):
    kind: str = Field(default="local", description="'local' (threads) for now.")
    max_workers: int = Field(default=2, ge=1, description="Jobs that run at once.")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    token: str | None = Field(
        default=None, description="When set, every route but health needs 'Bearer <token>'."
    )
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)


class Settings(BaseSettings):
    """Everything a workspace is built from."""

    model_config = SettingsConfigDict(
        env_prefix="SHIPYARD_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = DEFAULT_HOME
    metadata: MetadataSettings = MetadataSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    engine: EngineSettings = EngineSettings()
    server: ServerSettings = ServerSettings()
    # SHIPYARD_TOKEN is the documented name for the server token.
    token: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    # Resolved locations -------------------------------------------------------------------

    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(self.home)).resolve()

    @property
    def metadata_url(self) -> str:
        return self.metadata.url or f"sqlite:///{self.home_path / 'metadata.db'}"

    @property
    def artifacts_url(self) -> str:
        return self.artifacts.url or str(self.home_path / "artifacts")

    @property
    def warehouse_path(self) -> Path:
        return (
            Path(self.warehouse.path)
            if self.warehouse.path
            else self.home_path / "warehouse.duckdb"
        )

    @property
    def server_token(self) -> str | None:
        return self.server.token or self.token


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads ``<home>/shipyard.toml``; the home itself comes from arguments or the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        home = self.current_state.get("home") or os.environ.get("SHIPYARD_HOME") or DEFAULT_HOME
        path = Path(os.path.expanduser(str(home))) / "shipyard.toml"
        if not path.is_file():
            return {}
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation problems into :class:`InvalidArgument`."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidArgument(f"invalid settings: {problems}") from exc


# -- the server that owns a home ---------------------------------------------------------------
# A running server writes <home>/server.json; connect() and the CLI read it to talk to that
# server instead of failing on DuckDB's single-writer lock.

SERVER_FILE = "server.json"


class ServerInfo(BaseModel):
    pid: int
    url: str
    home: str
    started_at: str


def read_server_info(home: Path) -> ServerInfo | None:
    """The server that owns ``home``, if its file exists and its process is alive."""
    path = Path(home) / SERVER_FILE
    try:
        info = ServerInfo.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return info


def write_server_info(home: Path, url: str) -> Path:
    from datetime import UTC, datetime

    path = Path(home) / SERVER_FILE
    info = ServerInfo(
        pid=os.getpid(), url=url, home=str(home), started_at=datetime.now(UTC).isoformat()
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(info.model_dump_json())
    os.replace(tmp, path)
    return path


def remove_server_info(home: Path) -> None:
    path = Path(home) / SERVER_FILE
    try:
        info = ServerInfo.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return
    if info.pid == os.getpid():
        path.unlink(missing_ok=True)
