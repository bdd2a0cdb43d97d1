"""What every `orch` command module shares: consoles, the --db and --json options, JSON output."""

from __future__ import annotations

import getpass
import json
import sys
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
