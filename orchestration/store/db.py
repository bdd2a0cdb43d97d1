"""Where the store lives and how its engine is made: SQLite pragmas, BEGIN IMMEDIATE, migrations."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config
from sqlalchemy.engine import URL, make_url

from orchestration.core.errors import StoreError

logger = logging.getLogger(__name__)

DB_ENV = "ORCH_DB"  # a database URL; beaten only by an explicit --db
SYNCHRONOUS_ENV = "ORCH_SQLITE_SYNCHRONOUS"  # NORMAL (default) or FULL; `?synchronous=` wins
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_SYNCHRONOUS = "NORMAL"  # in WAL mode: survives a process crash, one fsync per checkpoint
SQLITE_BUSY_TIMEOUT_S = 30.0  # seconds a writer waits for the lock before "database is locked"
WAL_RETRY_SECONDS = 0.05  # pause between attempts to switch a new file to WAL
STATE_DIR = ".orchestration"
STATE_FILE = "state.db"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Execution option naming how a SQLite transaction begins: IMMEDIATE takes the write lock at
# once (every write); DEFERRED lets readers run beside the writer.
BEGIN_MODE_OPTION = "orch_sqlite_begin"
# SQLite's result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB (and their words,
# for drivers that do not carry the code).
SQLITE_DAMAGED_CODES = frozenset({11, 26})
SQLITE_DAMAGED_WORDS = ("malformed", "file is not a database")
PG_MIGRATION_LOCK_KEY = 0x6F726368  # pg_advisory_xact_lock key serialising schema upgrades


def resolve_db_url(explicit: str | None, plan_dir: Path | None) -> str:
    """The database to use: `explicit` (--db), else $ORCH_DB, else a SQLite file by the plan.

    Without a plan directory, the nearest `.orchestration/state.db` in the current directory
    or its parents is used, else a new one in the current directory.
    """
    if explicit:
        return explicit
    from_env = os.environ.get(DB_ENV)
    if from_env:
        return from_env
    path = _default_state_file(plan_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def existing_db_url(explicit: str | None) -> str | None:
    """The database `resolve_db_url` would use, or None when that is a SQLite file not made yet
    (for commands that only read a store if there is one)."""
    if explicit or os.environ.get(DB_ENV):
        return resolve_db_url(explicit, None)
    path = _default_state_file(None)
    return f"sqlite:///{path}" if path.exists() else None


def _default_state_file(plan_dir: Path | None) -> Path:
    if plan_dir is not None:
        return plan_dir.resolve() / STATE_DIR / STATE_FILE
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        candidate = folder / STATE_DIR / STATE_FILE
        if candidate.is_file():
            return candidate
    return cwd / STATE_DIR / STATE_FILE


def sqlite_file(url: str) -> Path | None:
    """The SQLite database file `url` names (None: another database, memory, or a URI)."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL create_store_engine would accept either
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of `path`, None if it does not exist: what tells a replaced file apart."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def masked_url(url: str) -> str:
    """`url` with any password replaced by ***, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no recognisable password to hide
        return url


def create_store_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed)


def _sqlite_engine(url: URL) -> Engine:
    synchronous = _synchronous_level(url)
    url = url.difference_update_query(["synchronous"])
    if url.database and url.database != ":memory:" and not url.query.get("uri"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite must not emit BEGIN itself (it skips it for SELECT and DDL); we emit our own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(cursor)
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    event.listen(engine, "handle_error", _damaged_file_error(url.database or ":memory:"))
    return engine


def _damaged_file_error(database: str) -> Any:
    """A handler turning SQLite's "damaged file" errors, wherever they come up, into one
    StoreError that names the file and says what it means (not a crash that claims nothing
    stored was lost)."""

    def handle(context: Any) -> None:
        original = context.original_exception
        if not isinstance(original, sqlite3.DatabaseError):
            return
        code = getattr(original, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        damaged = primary in SQLITE_DAMAGED_CODES or any(
            words in str(original).lower() for words in SQLITE_DAMAGED_WORDS
        )
        if damaged:
            raise StoreError(
                f"the store's SQLite database {database} is damaged ({original}): what it "
                "holds cannot be read reliably and part of it may be lost. Stop every engine "
                "using it, keep a copy of the file, and restore it from a backup (the sqlite3 "
                "shell's `.recover` may save part of it)"
            ) from original

    return handle


def _enable_wal(cursor: Any) -> None:
    # Switching a fresh file to WAL needs an exclusive lock, and SQLite reports "database is
    # locked" at once instead of waiting when another process holds one (two engines opening a
    # new store together): wait here as busy_timeout would.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_SECONDS)


def _begin_sqlite_transaction(connection: Connection) -> None:
    mode = connection.get_execution_options().get(BEGIN_MODE_OPTION, "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _synchronous_level(url: URL) -> str:
    raw = url.query.get("synchronous") or os.environ.get(SYNCHRONOUS_ENV) or DEFAULT_SYNCHRONOUS
    level = (raw if isinstance(raw, str) else raw[-1]).upper()
    if level not in SYNCHRONOUS_LEVELS:
        choices = ", ".join(SYNCHRONOUS_LEVELS)
        raise StoreError(f"unknown SQLite synchronous level '{raw}'; expected one of {choices}")
    return level


def reader(engine: Engine) -> Engine:
    """A view of `engine` whose transactions do not take SQLite's write lock."""
    return engine.execution_options(**{BEGIN_MODE_OPTION: "DEFERRED"})


# ---- migrations ------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration built in code: no alembic.ini is needed at run time."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def newest_migration() -> str:
    """The newest revision by file name (`NNNN_name.py` has revision `NNNN`), without alembic.

    Opening a store that is already up to date must not pay for importing alembic (a quarter
    of a second): resuming a run is measured in fractions of a second. A test keeps this in
    step with alembic's own idea of the head.
    """
    numbers = [p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py")]
    return max(numbers)


def _stored_revision(connection: Connection) -> str | None:
    try:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None  # no version table yet: a new store


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to head; concurrent callers wait for one another instead of failing."""
    with reader(engine).connect() as connection:
        if _stored_revision(connection) == newest_migration():
            return
    from alembic import command

    head = head_revision()
    # SQLite: BEGIN IMMEDIATE holds the write lock, so a second process waits here, then sees
    # head and does nothing. PostgreSQL: an advisory lock held until commit does the same.
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY}
            )
        current = current_revision(connection)
        if current == head:
            return
        _check_known(current)
        logger.info("upgrading the store schema from %s to %s", current or "empty", head)
        command.upgrade(alembic_config(connection), "head")


def _check_known(revision: str | None) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if revision is None:
        return
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        raise StoreError(
            f"the database is at schema revision '{revision}', which this version of "
            "orchestration does not know; upgrade orchestration"
        ) from None
