"""What every `orch` command module shares: consoles, the --db and --json options, JSON output."""

from __future__ import annotations

import gc
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestration.core.terminal_text import TerminalConsole

if TYPE_CHECKING:
    from orchestration.store import Store

# Every line the CLI prints goes through strip_control: plans, agents and tools supply the text.
console = TerminalConsole()
err_console = TerminalConsole(stderr=True)

EXIT_BAD_INPUT = 2
MAX_ID = 2**63 - 1  # ids are 64-bit integers in every store

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="ORCH_DB",
        help="Store URL (sqlite:///path or postgresql+psycopg://...). Default: "
        ".orchestration/state.db beside the plan, or found in this directory or a parent.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who does it (default: your user name).")
]


def open_store(db: str | None, plan_dir: Path | None = None) -> Store:
    # Imported here: `orch --help` and `--version` must not pay for SQLAlchemy.
    from orchestration.store import Store, resolve_db_url

    return Store.open(resolve_db_url(db, plan_dir))


@contextmanager
def read_and_exit() -> Iterator[None]:
    """Around a command that only reads, prints and exits (`orch status`): Python's cyclic
    garbage collector stays off while it runs, and what it allocated is frozen when it ends.

    Importing SQLAlchemy and pydantic creates tens of thousands of objects; the collector would
    walk them several times during the imports and once more as the interpreter exits, for
    nothing: the process ends and the system takes its memory back. That is about a fifth of
    `orch status` (docs/architecture.md, Start-up). Not for a command that runs on: it would
    keep garbage it should free.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # the interpreter's last collections skip what the command allocated
        if enabled:
            gc.enable()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_shape(shape: Any) -> None:
    """A record's shape from `orchestration.shapes.records`, printed as the API sends it."""
    from orchestration.shapes.records import as_json

    print_json(as_json(shape))


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def user() -> str:
    """The name stored as who did something from this terminal."""
    try:
        return getpass.getuser()
    except Exception:
        return "human"
