"""Integration: accepted work merged (worktree isolation) and checkpointed (git work trees)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import TaskRecord
from orchestration.engine.attempts import AttemptResult
from orchestration.engine.conclusion import Raised
from orchestration.project.checkpoints import create_checkpoint
from orchestration.project.worktrees import MergedCheck

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator

MERGE_CONFLICT = "merge_conflict"  # the breakpoint raised when accepted work cannot merge


class Integration:
    """Where a task's accepted work goes: merged into the run's integration branch (isolation:
    worktree), and recorded as a checkpoint of the work tree (git work trees only)."""

    def __init__(self, loop: Orchestrator) -> None:
        self.loop = loop

    def checkpoint(self, task: TaskRecord) -> None:
        """Record the work tree as it is after a completed task (git work trees only)."""
        if not self.loop.checkpointing or self.loop.dry_run:
            return
        now = self.loop.clock()
        try:
            made = create_checkpoint(
                Path(self.loop.plan.workdir),
                self.loop.run.id,
                task.task_id,
                f"{task.spec.title or task.task_id}: {task.outcome}",
                attempt=task.attempts,
                exclude=self.loop.ignored_files,
                tree=self.tree(),
            )
        except OrchestrationError as error:  # a checkpoint must never stop the run
            self.loop.observer.message(f"warning: no checkpoint for {task.task_id}: {error}")
            failure = {"error": str(error)}
            self.loop.state.event("checkpoint_failed", task.task_id, failure, now)
            return
        if made is not None:
            data: dict[str, Any] = {
                "sha": made.sha,
                "ref": made.ref,
                "files_changed": made.files_changed,
                "insertions": made.insertions,
                "deletions": made.deletions,
            }
            self.loop.state.event("checkpoint", task.task_id, data, now)

    def merged(
        self, task: TaskRecord, result: AttemptResult, context: dict[str, Any], now: datetime
    ) -> bool:
        """Merge an accepted task's worktree into the integration branch; False when it
        conflicts (the task is then blocked at a `merge_conflict` breakpoint)."""
        if self.loop.worktrees is None or not self.loop.worktrees.has_worktree(task.task_id):
            return True
        check = None
        if self.loop.plan.spec.validate_after_merge:
            check = partial(self.loop.dispatch.runner.check_merged, result)
        return self.merge(task, context, now, task_wins=False, check=check)

    def merge_approved(self, task: TaskRecord) -> None:
        """An approved task's work is merged; where it conflicts, the task's files win (the
        human resolved them in its worktree before approving)."""
        if self.loop.worktrees is not None and self.loop.worktrees.has_worktree(task.task_id):
            self.merge(task, {}, self.loop.clock(), task_wins=True)

    def merge(
        self,
        task: TaskRecord,
        context: dict[str, Any],
        now: datetime,
        *,
        task_wins: bool,
        check: MergedCheck | None = None,
    ) -> bool:
        assert self.loop.worktrees is not None
        title = task.spec.title or task.task_id
        try:
            merged = self.loop.worktrees.merge(
                task.task_id, title, task_wins=task_wins, check=check
            )
        except OrchestrationError as error:  # the work stays in the worktree, nothing lost
            self.loop.observer.message(f"warning: cannot merge {task.task_id}: {error}")
            data = {"error": str(error), "worktree": str(self.loop.worktrees.path_of(task.task_id))}
            self.loop.state.event("merge_failed", task.task_id, data, now)
            return True
        if merged.merged:
            data = {
                "branch": self.loop.worktrees.branch,
                "tip": merged.tip,
                "commit": merged.task_commit,
            }
            self.loop.state.event("merged", task.task_id, data, now)
            return True
        files = ", ".join(c.path for c in merged.conflicts)
        worktree = self.loop.worktrees.path_of(task.task_id)
        what = (
            f"conflicts with work merged meanwhile into {self.loop.worktrees.branch} in {files}"
            if merged.conflicts
            else f"fails its validators once merged into {self.loop.worktrees.branch}: "
            f"{merged.failed_check}"
        )
        message = (
            f"the task's work {what}; resolve it in {worktree} and approve, "
            f"or retry the task from the merged work"
        )
        context.update(merged.context(worktree, self.loop.worktrees.branch))
        self.loop.state.block(
            task, Raised(MERGE_CONFLICT, "after", "high", "pause", message), context, now
        )
        return False

    def restart_after_conflict(self, task: TaskRecord) -> None:
        """A task retried at a merge conflict starts again from the integration branch."""
        if self.loop.worktrees is None or not self.loop.worktrees.has_worktree(task.task_id):
            return
        latest = max(
            (
                bp
                for bp in self.loop.store.breakpoints(self.loop.run.id)
                if bp.task_id == task.task_id
            ),
            key=lambda bp: bp.id,
            default=None,
        )
        if latest is not None and latest.rule == MERGE_CONFLICT:
            self.loop.worktrees.discard(task.task_id)

    def tree(self) -> str | None:
        """In worktree isolation, checkpoints record the integration branch's files."""
        if self.loop.worktrees is None:
            return None
        tip = self.loop.worktrees.tip()
        return f"{tip}^{{tree}}" if tip else None

    def announce(self, now: datetime) -> None:
        if self.loop.worktrees is None or self.loop.worktrees.tip() is None:
            return
        command = self.loop.worktrees.merge_command()
        self.loop.observer.message(
            f"the run's work is on branch {self.loop.worktrees.branch}: {command}"
        )
        kept = self.loop.worktrees.unmerged()
        if kept:
            self.loop.observer.message(f"work not merged stays in worktrees: {', '.join(kept)}")
        data = {
            "branch": self.loop.worktrees.branch,
            "tip": self.loop.worktrees.tip(),
            "command": command,
            "unmerged": kept,
        }
        self.loop.state.event("integration_branch", None, data, now)
