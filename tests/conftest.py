"""Shared fixtures: a real PostgreSQL server for the session, and a database URL per test."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

PG_URL_ENV = "ORCH_TEST_PG_URL"  # use this server instead of starting one
REQUIRE_PG_ENVS = ("CI", "ORCH_REQUIRE_POSTGRES")  # set: a missing PostgreSQL fails, not skips
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_START_TIMEOUT_S = 60  # seconds pg_ctl waits for the server to accept connections
PG_USER = "postgres"  # the OS user that owns the data dir when tests run as root

_database_numbers = itertools.count(1)


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on: `url(name)` is a SQLAlchemy URL."""

    host: str
    port: int
    user: str
    password: str | None
    admin_db: str

    def url(self, database: str) -> str:
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{database}"

    def admin_conninfo(self) -> str:
        return self.url(self.admin_db).replace("postgresql+psycopg://", "postgresql://")


def _postgres_required() -> bool:
    return any(
        os.environ.get(name, "").lower() not in ("", "0", "false") for name in REQUIRE_PG_ENVS
    )


def _unavailable(reason: str) -> NoReturn:
    if _postgres_required():
        pytest.fail(f"PostgreSQL is required here but unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def _find_pg_bin() -> Path | None:
    def version(folder: str) -> int:
        name = Path(folder).parent.name
        return int(name) if name.isdigit() else 0

    for folder in sorted(glob.glob(PG_BIN_GLOB), key=version, reverse=True):
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
            return Path(folder)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_USER, "--", *argv]
    return ["su", PG_USER, "-s", "/bin/sh", "-c", " ".join(argv)]


def _run(argv: list[str]) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr or done.stdout}")


def _start_server(bin_dir: Path, root: Path) -> int:
    if os.geteuid() == 0:
        shutil.chown(root, user=PG_USER, group=PG_USER)
    data, port = root / "data", _free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust"]
    _run([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"])
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log")]
    _run([*pg_ctl, "-o", options, "-w", "-t", str(PG_START_TIMEOUT_S), "start"])
    return port


def _stop_server(bin_dir: Path, root: Path) -> None:
    try:
        _run([str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _server_from_url(url: str) -> PostgresServer:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return PostgresServer(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or PG_USER,
        password=parsed.password,
        admin_db=parsed.database or "postgres",
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL: $ORCH_TEST_PG_URL, else a throwaway server from Debian's binaries."""
    explicit = os.environ.get(PG_URL_ENV)
    if explicit:
        yield _server_from_url(explicit)
        return
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        _unavailable(f"no initdb/pg_ctl under {PG_BIN_GLOB} or on PATH; set {PG_URL_ENV}")
    root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    try:
        port = _start_server(bin_dir, root)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(str(exc))
    try:
        yield PostgresServer("127.0.0.1", port, PG_USER, None, "postgres")
    finally:
        _stop_server(bin_dir, root)


def _admin(server: PostgresServer, statement: str) -> None:
    import psycopg

    with psycopg.connect(server.admin_conninfo(), autocommit=True) as conn:
        conn.execute(statement)  # names made by the tests, never user input


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    _admin(postgres_server, f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        _admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of its own for one test (created on first open)."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))
