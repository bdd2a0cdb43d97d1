"""A human's (or an expiry's) answer to a breakpoint carried out once for every interface.

`orch breakpoints resolve`, the API and dashboard, and the engine applying an expired
breakpoint's default all call `resolve_and_announce`: the resolution is stored, the plugins are
told, and a rejection can restore the work tree to the last approved checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.hints import shell_command
from orchestration.core.models import BreakpointRecord
from orchestration.engine.review import resolve_breakpoint
from orchestration.resilience.runs import run_is_live

if TYPE_CHECKING:
    from orchestration.store import Store

# Tells the plugins: the resolved breakpoint and what the notification adds to its data.
Announce = Callable[[BreakpointRecord, Mapping[str, Any]], None]
ACCEPTED_OUTCOMES = ("succeeded", "approved")  # a completed task whose files a human can trust


@dataclass(frozen=True, slots=True)
class Resolved:
    """What came of a resolution: the breakpoint as stored, the task's state now, whether an
    engine works on the run (it picks the answer up by itself), and what a rollback did."""

    breakpoint: BreakpointRecord
    task_state: str
    run_live: bool
    rolled_back: str | None = None


def resolve_and_announce(
    store: Store,
    breakpoint_id: int,
    resolution: str,
    *,
    actor: str,
    announce: Announce,
    note: str = "",
    answer: str | None = None,
    sets: Mapping[str, Any] | None = None,
    reject_as: str = "cancel",
    rollback: bool = False,
    force: bool = False,
    now: datetime | None = None,
) -> Resolved:
    """Resolve an open breakpoint (`review.resolve_breakpoint`), then tell the plugins.

    With `rollback` (a rejection only), the run's work tree goes back to its last checkpoint
    of an accepted task; that is refused while an engine works on the run, before anything is
    stored, because it would restore files under the engine's feet.
    """
    if rollback and resolution != "reject":
        raise OrchestrationError("a rollback goes with a rejection")
    if rollback and run_is_live(_run_of(store, breakpoint_id), datetime.now(UTC)):
        raise OrchestrationError(
            "an engine is working on this run; stop it before rejecting with --rollback"
        )
    resolved = resolve_breakpoint(
        store,
        breakpoint_id,
        resolution,
        actor=actor,
        note=note,
        answer=answer,
        sets=sets,
        reject_as=reject_as,
        now=now,
        force=force,
    )
    task = store.task(resolved.run_id, resolved.task_id)
    live = run_is_live(store.get_run(resolved.run_id), datetime.now(UTC))
    announce(
        resolved,
        {"rule": resolved.rule, "note": resolved.note, "task_state": task.state, "run_live": live},
    )
    restored = (
        roll_back_to_last_approved(store, resolved.run_id, task.task_id) if rollback else None
    )
    return Resolved(resolved, task.state, live, restored)


def _run_of(store: Store, breakpoint_id: int) -> Any:
    return store.get_run(store.breakpoint(breakpoint_id).run_id)


def roll_back_to_last_approved(store: Store, run_id: str, rejected: str) -> str:
    """Restore the run's work tree to its last checkpoint of an accepted task (not `rejected`);
    say what happened, with the command that undoes it."""
    from orchestration.project.checkpoints import (
        is_git_worktree,
        last_checkpoint,
        restore_checkpoint,
    )

    workdir = Path(store.get_run(run_id).workdir)
    if not is_git_worktree(workdir):
        return f"no rollback: {workdir} is not a git work tree, so the run has no checkpoints"
    accepted = {
        t.task_id
        for t in store.tasks(run_id)
        if t.state == "completed" and t.outcome in ACCEPTED_OUTCOMES and t.task_id != rejected
    }
    checkpoint = last_checkpoint(workdir, run_id, approved_only=accepted)
    if checkpoint is None:
        return "no rollback: the run has no checkpoint of an accepted task yet"
    result = restore_checkpoint(workdir, run_id, checkpoint.task_id)
    safety = result.safety.task_id
    return (
        f"work tree restored to the checkpoint after {checkpoint.task_id}: "
        f"{len(result.restored)} file(s) written, {len(result.removed)} removed. "
        f"Undo with: {shell_command('orch', 'rollback', run_id, '--to', safety)}"
    )
