"""The `orch checkpoints` and `orch rollback` commands: list and restore a run's git checkpoints."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from orchestration.cli_common import DbOption, JsonOption, console, open_store
from orchestration.errors import OrchestrationError

MAX_LISTED_PATHS = 20  # a rollback names the files it touched up to this many, then counts

RunArgument = Annotated[str, typer.Argument(help="The run.")]
WorkdirOption = Annotated[
    Path | None,
    typer.Option(
        "--workdir",
        help="The run's working directory (default: the one stored with the run).",
        file_okay=False,
    ),
]


def _run_workdir(run: str, workdir: Path | None, db: str | None, *, for_rollback: bool) -> Path:
    """The directory to work on: --workdir, else the run's stored workdir.

    A rollback refuses while an engine works on the run: it would restore under its feet.
    """
    if workdir is not None:
        return workdir
    from orchestration.runs import run_is_live

    store = open_store(db)
    try:
        record = store.get_run(run)
    finally:
        store.close()
    if for_rollback and run_is_live(record, datetime.now(UTC)):
        raise OrchestrationError(
            f"run '{run}' is being worked on by an engine; stop it (Ctrl-C) before rolling back"
        )
    return Path(record.workdir)


def _git_workdir(run: str, workdir: Path | None, db: str | None, *, for_rollback: bool) -> Path:
    from orchestration.checkpoints import is_git_worktree

    path = _run_workdir(run, workdir, db, for_rollback=for_rollback)
    if not path.is_dir():
        raise OrchestrationError(f"workdir {path} of run '{run}' does not exist")
    if not is_git_worktree(path):
        raise OrchestrationError(
            f"workdir {path} of run '{run}' is not inside a git work tree, so it has no checkpoints"
        )
    return path


def checkpoints(
    run: RunArgument,
    workdir: WorkdirOption = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """List a run's git checkpoints in order, with what each changed since the one before."""
    from orchestration.checkpoints import list_checkpoints

    path = _git_workdir(run, workdir, db, for_rollback=False)
    found = list_checkpoints(path, run)
    if json_output:
        data = {"run": run, "workdir": str(path), "checkpoints": [c.to_json() for c in found]}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    if not found:
        console.print(
            f"no checkpoints of run {run} in {path}", markup=False, highlight=False, soft_wrap=True
        )
        return
    narrow = console.width < WIDE_COLUMNS  # short commit and time, so the message still fits
    rows = [
        (
            str(c.sequence),
            c.task_id,
            "" if c.attempt is None else str(c.attempt),
            c.sha[:8] if narrow else c.sha[:10],
            c.created_at.astimezone().strftime("%m-%d %H:%M" if narrow else "%Y-%m-%d %H:%M:%S"),
            str(c.files_changed),
            str(c.insertions),
            str(c.deletions),
            c.message.splitlines()[0] if c.message else "",
        )
        for c in found
    ]
    title = f"checkpoints of run {run} in {path}"
    console.print(title, markup=False, highlight=False)
    console.print(_checkpoint_table(rows, found))


CHECKPOINT_COLUMNS = ("#", "task", "attempt", "commit", "created", "files", "+", "-", "message")
NUMERIC_COLUMNS = frozenset({"#", "attempt", "files", "+", "-"})
WIDE_COLUMNS = 110  # below this many columns the listing shortens the commit and the time


def _checkpoint_table(rows: list[tuple[str, ...]], found: list[Any]) -> Table:
    """The listing fits any width: figures are never shrunk away (at 80 columns rich would
    blank a column it squeezed); the task and the message wrap instead."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for index, column in enumerate(CHECKPOINT_COLUMNS):
        widest = max([len(column), *(len(row[index]) for row in rows)])
        wraps = column in ("task", "message")
        table.add_column(
            column,
            justify="right" if column in NUMERIC_COLUMNS else "left",
            no_wrap=not wraps,
            min_width=None if wraps else widest,
            overflow="fold",
        )
    for row, c in zip(rows, found, strict=True):
        table.add_row(*(escape(cell) for cell in row), style="dim" if c.kind == "safety" else None)
    return table


def _paths_line(verb: str, paths: tuple[str, ...]) -> str:
    shown = ", ".join(paths[:MAX_LISTED_PATHS])
    more = f" and {len(paths) - MAX_LISTED_PATHS} more" if len(paths) > MAX_LISTED_PATHS else ""
    return f"  {verb} {len(paths)}: {shown}{more}"


def rollback(
    run: RunArgument,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The task whose checkpoint to restore (or a _before_rollback_<n> to undo one).",
        ),
    ],
    workdir: WorkdirOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
) -> None:
    """Restore the run's working tree to a task's checkpoint; HEAD, branch and index stay.

    The current files are saved first as a safety checkpoint, so the rollback can be undone.
    Ignored files and .orchestration/ are never touched; task states in the store do not change.
    """
    from orchestration.checkpoints import CheckpointNotFound, list_checkpoints, restore_checkpoint

    path = _git_workdir(run, workdir, db, for_rollback=True)
    known = list_checkpoints(path, run)
    target = next((c for c in reversed(known) if c.task_id == to), None)
    if target is None:
        raise CheckpointNotFound(run, to, [c.task_id for c in known])
    if not yes:
        typer.confirm(
            f"Restore the files of {path} to checkpoint '{to}' ({target.sha[:10]}, "
            f"{target.created_at.astimezone():%Y-%m-%d %H:%M:%S})? The current files are saved "
            "first",
            abort=True,
        )
    result = restore_checkpoint(path, run, to)
    lines = [
        f"restored {path} to checkpoint '{to}' ({target.sha[:10]})",
        _paths_line("written", result.restored) if result.restored else "  no files written",
    ]
    if result.removed:
        lines.append(_paths_line("removed", result.removed))
    if result.skipped:
        lines.append(_paths_line("left alone (protected)", result.skipped))
    undo = result.safety.task_id
    lines.append(
        f"the previous files are saved as checkpoint '{undo}'; undo with: "
        f"orch rollback {shlex.quote(run)} --to {undo}"
    )
    lines.append("HEAD, the branch and the index did not move; task states are unchanged.")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `checkpoints` and `rollback` to the `orch` application."""
    app.command("checkpoints")(checkpoints)
    app.command("rollback")(rollback)
