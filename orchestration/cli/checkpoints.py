"""The `orch checkpoints` and `orch rollback` commands: list and restore a run's git checkpoints."""

import json
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from orchestration.cli.common import DbOption, JsonOption, console, open_store
from orchestration.core.errors import OrchestrationError

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
    from orchestration.resilience.runs import run_is_live

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
    from orchestration.project.checkpoints import is_git_worktree

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
    from orchestration.project.checkpoints import list_checkpoints

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


def _checkpoint_table(rows: Sequence[tuple[str, ...]], found: list[Any]) -> Table:
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
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask for confirmation (needed without a terminal)."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Restore the run's working tree to a task's checkpoint; HEAD, branch and index stay.

    Every completed task whose change the rollback removes (its checkpoint came later) runs
    again, with the tasks that depend on it, so the store and the files agree; they are listed
    before anything happens. The current files are saved first as a safety checkpoint, so the
    rollback can be undone. Ignored files and .orchestration/ are never touched.
    """
    from orchestration.project.checkpoints import (
        CheckpointNotFound,
        list_checkpoints,
        restore_checkpoint,
    )

    path = _git_workdir(run, workdir, db, for_rollback=True)
    known = list_checkpoints(path, run)
    target = next((c for c in reversed(known) if c.task_id == to), None)
    if target is None:
        raise CheckpointNotFound(run, to, [c.task_id for c in known])
    store = _existing_store(db)
    try:
        plan = _reruns_after(store, run, known, target) if store is not None else None
        summary = _rollback_question(path, target, plan)
        if not yes:
            if not sys.stdin.isatty():
                raise OrchestrationError(
                    "orch rollback asks before it restores files and resets tasks, and there is "
                    "no terminal to ask on: read what it does above and pass --yes"
                    f"\n{summary}"
                )
            console.print(summary, markup=False, highlight=False, soft_wrap=True)
            typer.confirm("Go ahead?", abort=True)
        result = restore_checkpoint(path, run, to)
        reset = _run_again(store, run, to, plan) if store is not None and plan else []
    finally:
        if store is not None:
            store.close()
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
    lines.append("HEAD, the branch and the index did not move.")
    if reset:
        lines.append(
            f"{len(reset)} task(s) will run again: {', '.join(reset)}; continue with: "
            f"orch resume {shlex.quote(run)}"
        )
    elif target.kind == "safety":
        lines.append("task states are unchanged: tasks a rollback sent back still run again.")
    elif store is None:
        lines.append("task states are unchanged: the run is not in this store (--db).")
    else:
        lines.append("task states are unchanged: no completed task's change was removed.")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _existing_store(db: str | None) -> Any:
    """The store holding the run, if there is one (a rollback by --workdir may have none)."""
    from orchestration.store import Store
    from orchestration.store.db import existing_db_url

    url = existing_db_url(db)
    return Store.open(url) if url is not None else None


def _reruns_after(
    store: Any, run: str, known: list[Any], target: Any
) -> dict[str, list[str]] | None:
    """The completed tasks whose changes a rollback to `target` removes (their last checkpoint
    came after it), each with the finished tasks that depend on it: all of them run again.

    None when the run is not in the store or the target is a safety checkpoint (undoing a
    rollback gives back files; the tasks it reset still run again)."""
    from orchestration.core.errors import NotFoundError
    from orchestration.resilience.interventions import load_snapshot
    from orchestration.resilience.runs import run_is_live

    if target.kind != "task":
        return None
    try:
        snap = load_snapshot(store, run)
    except NotFoundError:
        return None
    if run_is_live(snap.run, datetime.now(UTC)):
        raise OrchestrationError(
            f"run '{run}' is being worked on by an engine; stop it (Ctrl-C) before rolling back"
        )
    last_sequence = {c.task_id: c.sequence for c in known if c.kind == "task"}
    removed = sorted(
        (t for t, seq in last_sequence.items() if seq > target.sequence and t in snap.tasks),
        key=last_sequence.__getitem__,
    )
    plan: dict[str, list[str]] = {}
    covered: set[str] = set()
    for task_id in removed:
        task = snap.tasks[task_id]
        if task_id in covered or task.state != "completed":
            continue
        below = [d for d in snap.downstream(task_id) if snap.tasks[d].state != "pending"]
        busy = [d for d in [task_id, *below] if snap.tasks[d].state in ("running", "blocked")]
        if busy:
            listed = ", ".join(f"{d} ({snap.tasks[d].state})" for d in busy)
            raise OrchestrationError(
                f"rolling back to '{target.task_id}' removes the change of '{task_id}', which "
                f"must run again with its dependents, but {listed}: resolve or cancel it first"
            )
        plan[task_id] = below
        covered.update([task_id, *below])
    return plan


def _rollback_question(path: Path, target: Any, plan: dict[str, list[str]] | None) -> str:
    lines = [
        f"Restore the files of {path} to checkpoint '{target.task_id}' ({target.sha[:10]}, "
        f"{target.created_at.astimezone():%Y-%m-%d %H:%M:%S}); the current files are saved first."
    ]
    if plan:
        lines.append("These completed tasks lose their change and will run again:")
        for task_id, below in plan.items():
            with_them = f" (with {', '.join(below)}, which depend on it)" if below else ""
            lines.append(f"  {task_id}{with_them}")
    elif plan is not None:
        lines.append("No completed task loses its change; task states stay as they are.")
    return "\n".join(lines)


def _run_again(store: Any, run: str, to: str, plan: dict[str, list[str]]) -> list[str]:
    """Send each task the rollback undid back to run again, its dependents with it."""
    from orchestration.cli.common import user
    from orchestration.resilience.interventions import intervene

    reason = f"its change was removed by the rollback to '{to}'"
    for task_id in plan:
        if store.task(run, task_id).state == "completed":
            intervene(
                store, run, "rerun", task_id=task_id, actor=user(), reason=reason, downstream=True
            )
    return [t for task_id, below in plan.items() for t in (task_id, *below)]


def register(app: typer.Typer) -> None:
    """Add `checkpoints` and `rollback` to the `orch` application."""
    app.command("checkpoints")(checkpoints)
    app.command("rollback")(rollback)
