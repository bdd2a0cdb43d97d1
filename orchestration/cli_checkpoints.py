"""The `orch checkpoints` and `orch rollback` commands: list and restore a run's git checkpoints."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
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
    table = Table(title=f"checkpoints of run {escape(run)} in {escape(str(path))}")
    for column in ("#", "task", "attempt", "commit", "created", "files", "+", "-", "message"):
        justify: Any = "right" if column in ("#", "attempt", "files", "+", "-") else "left"
        table.add_column(column, justify=justify, no_wrap=column != "message")
    for c in found:
        table.add_row(
            str(c.sequence),
            escape(c.task_id),
            "" if c.attempt is None else str(c.attempt),
            c.sha[:10],
            c.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            str(c.files_changed),
            str(c.insertions),
            str(c.deletions),
            escape(c.message.splitlines()[0] if c.message else ""),
            style="dim" if c.kind == "safety" else None,
        )
    console.print(table)


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
