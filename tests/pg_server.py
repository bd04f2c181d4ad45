"""A real PostgreSQL server for the test session, and fixtures built on it.

Fixtures:

* ``postgres_url`` (session): a server on 127.0.0.1 and a free port, started from the installed
  binaries (``pg_config --bindir``, ``/usr/lib/postgresql/<newest>/bin``, or ``PATH``) and
  stopped at the end; or the server named by ``SHIPYARD_TEST_POSTGRES_URL``. Without binaries
  the tests skip, unless ``SHIPYARD_REQUIRE_POSTGRES=1`` (CI), where they fail.
* ``fresh_postgres_url`` (function): a new empty database on that server, dropped afterwards.
* ``metadata_url`` (function, parametrized ``sqlite`` / ``postgresql``): a fresh metadata URL of
  each backend. Contract suites take this fixture to run once per backend.

Load it with ``pytest_plugins = ["tests.pg_server"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import psycopg

REQUIRE_ENV = "SHIPYARD_REQUIRE_POSTGRES"
URL_ENV = "SHIPYARD_TEST_POSTGRES_URL"
_TOOLS = ("initdb", "pg_ctl")


@dataclass
class PostgresServer:
    """A server the session started; :meth:`stop` shuts it down and removes its files."""

    bindir: Path
    workdir: Path
    port: int
    as_user: str | None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> None:
        initdb = self.run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        _check(initdb, "initdb")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.workdir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        log = self.workdir / "server.log"
        started = self.run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(log), "-w", "-t", "60", "start"
        )
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            _check(started, "pg_ctl start", extra=tail)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)[::-1]
    ]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in _TOOLS):
            return folder
    return None


def start_server() -> PostgresServer:
    """Start a throw-away server (as the ``postgres`` user when running as root)."""
    bindir = find_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        raise AssertionError("unreachable")
    as_user = None
    workdir = Path(
        tempfile.mkdtemp(prefix="shipyard-pg-", dir="/tmp" if os.name == "posix" else None)
    )
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # initdb refuses to run as root: hand the folder to the postgres user.
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(workdir, ignore_errors=True)
            _unavailable("running as root and there is no 'postgres' user to run initdb as")
            raise
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_user = "postgres"
    server = PostgresServer(bindir=bindir, workdir=workdir, port=_free_port(), as_user=as_user)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def create_database(base_url: str, name: str | None = None) -> str:
    """Create an empty database on the server of ``base_url``; returns its URL."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = name or f"shipyard_{uuid.uuid4().hex[:16]}"
    url = make_url(base_url)
    with _admin_connection(base_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database of ``url``, disconnecting anything still using it."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    assert name, f"no database named in {url}"
    with _admin_connection(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a session-wide database ``shipyard_test`` on a real PostgreSQL server."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'shipyard[postgres]')")
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    server = start_server()
    try:
        base = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"
        yield create_database(base, "shipyard_test")
    finally:
        server.stop()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new empty database for one test, dropped afterwards."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty metadata database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata' / 'metadata.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


# -- helpers ---------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires PostgreSQL", pytrace=False)
    pytest.skip(f"{reason}; run .ci/install-postgres to install it")


def _check(result: subprocess.CompletedProcess[str], what: str, extra: str = "") -> None:
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({result.returncode}):\n{result.stderr}{result.stdout}{extra}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin_connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the maintenance database of the server of ``url``."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password or None,
        dbname="postgres",
        connect_timeout=10,
        autocommit=True,
    )
