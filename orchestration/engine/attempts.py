"""One attempt of a task: its request, the action run, what it changed, and its assessment."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestration.core.attempt_logs import AttemptLog, log_path
from orchestration.core.lifecycle import FINAL_STATES
from orchestration.core.models import Plan, PythonAction, TaskRecord, TaskSpec
from orchestration.engine.actions import (
    OUTPUT_TAIL_CHARS,
    ActionOutcome,
    ActionRequest,
    StopSignal,
    classify_error_noting,
    run_action,
)
from orchestration.engine.policy import Engine
from orchestration.engine.quality import QualityReport, acceptance_check
from orchestration.engine.steps import action_text, after_context, with_quality
from orchestration.engine.task_expressions import TaskExpressions
from orchestration.engine.tree_guard import TreeGuard, modified_tree_check, with_modified_tree
from orchestration.extension import CheckResult, ValidationInput
from orchestration.project.api_changes import breaking_changes
from orchestration.project.environment import plan_environment
from orchestration.project.orphans import AttemptRegistry
from orchestration.project.tree_watch import TreeWatch, start_watch
from orchestration.project.workspace import (
    Changes,
    Snapshot,
    changes_between,
    discard_snapshot_index,
    snapshot,
    snapshot_index,
)
from orchestration.project.worktrees import RunWorktrees
from orchestration.rules.expressions import Expression
from orchestration.rules.signals import StepText, is_auth_failure, step_diff, step_signals

logger = logging.getLogger(__name__)


@dataclass
class RunningAttempt:
    """An attempt under way in a worker: what `at: during` rules look at, and how to stop it."""

    context: dict[str, Any]
    started: float  # time.monotonic()
    stop: StopSignal


@dataclass
class AttemptResult:
    """What a worker thread hands back to the loop after running and assessing one attempt."""

    task_id: str
    attempt: int
    outcome: ActionOutcome
    changes: Changes
    report: QualityReport
    context: dict[str, Any]


MILESTONE_TAG = "milestone"  # a task with this tag asks validators for a full check


class AttemptRunner:
    """Builds attempts' requests and runs them, on a worker thread or inline in the loop's.

    It records nothing: the loop owns the store and the task states. The mappings it is given are
    the loop's own, read (never changed) while the attempt runs.
    """

    def __init__(
        self,
        plan: Plan,
        engine: Engine,
        *,
        run_id: str,
        dry_run: bool,
        registry: AttemptRegistry,
        running: Mapping[str, RunningAttempt],
        kill_event: threading.Event,
        ignored_files: frozenset[str],
        task_seconds: Mapping[str, float],
        tasks: Mapping[str, TaskRecord],
        expressions: TaskExpressions,
        worktrees: RunWorktrees | None = None,
    ) -> None:
        """`running`, `task_seconds`, `tasks`: the loop's, as they are when each attempt reads.

        `worktrees`: each attempt runs in its task's own worktree (isolation: worktree)."""
        self.plan = plan
        self.engine = engine
        self.run_id = run_id
        self.dry_run = dry_run
        self.registry = registry
        self.running = running
        self.kill_event = kill_event
        self.ignored_files = ignored_files
        self.task_seconds = task_seconds
        self.tasks = tasks
        self.expressions = expressions
        self.worktrees = worktrees
        self.workdir = Path(plan.workdir)  # built once: every attempt's request names it
        self._agent_command = tuple(plan.spec.defaults.agent_command or ()) or None
        # Each task's last agent session (a preset's session id), continued by its retries.
        self.agent_sessions: dict[str, str] = {}
        self.environment = plan_environment(plan)  # where validators run the project's commands

        self._indexes: dict[Path, Path | None] = {}  # each work tree's kept snapshot index
        self._watches: dict[Path, TreeWatch | None] = {}  # and its watch of changed files
        self._indexes_lock = threading.Lock()
        self._last_after: dict[str, Snapshot] = {}  # task id -> its worktree after its attempt
        self._open_task: str | None = None  # a task last seen unfinished (see is_milestone)

    def snapshot_index(self, workdir: Path) -> Path | None:
        """The private index this run's snapshots of `workdir` keep (found once per tree)."""
        with self._indexes_lock:
            if workdir not in self._indexes:
                self._indexes[workdir] = snapshot_index(workdir, self.run_id)
            return self._indexes[workdir]

    def _watch(self, workdir: Path, index: Path | None) -> TreeWatch | None:
        """The OS watch of `workdir`'s files (started once per tree; None: full snapshots)."""
        with self._indexes_lock:
            if workdir not in self._watches:
                git_dir = index.parent.parent if index is not None else None  # .git/orchestration
                self._watches[workdir] = start_watch(workdir, git_dir) if git_dir else None
            return self._watches[workdir]

    def stop_watches(self) -> None:
        """Stop the file watches: this engine takes no more snapshots."""
        with self._indexes_lock:
            for watch in self._watches.values():
                if watch is not None:
                    watch.stop()
            self._watches.clear()

    def discard_indexes(self) -> None:
        """Remove the kept snapshot indexes: the run is over (a paused run keeps them)."""
        self.stop_watches()
        with self._indexes_lock:
            for index in self._indexes.values():
                discard_snapshot_index(index)
            self._indexes.clear()

    def _snapshot(self, workdir: Path) -> Snapshot:
        if self.worktrees is not None:  # worktrees come and go: their git dirs are looked up
            return snapshot(workdir, self.ignored_files, index=snapshot_index(workdir, "snapshot"))
        index = self.snapshot_index(workdir)
        watch = self._watch(workdir, index) if index is not None else None
        return snapshot(workdir, self.ignored_files, index=index, watch=watch)

    def request(self, task: TaskRecord, attempt: int) -> ActionRequest:
        """What the action of the task's `attempt` is given."""
        return ActionRequest(
            run_id=self.run_id,
            task=task.spec,
            attempt=attempt,
            workdir=self.workdir,
            timeout_seconds=self.plan.timeout(task.spec),
            feedback=task.feedback,
            answer=task.answer,
            agent_command=self._agent_command,
            agent_session=self.agent_sessions.get(task.task_id),
            plugin_kind=self.engine.plugins.actions.get(task.spec.action.kind),
            inline=self.plan.spec.concurrency.inline_python
            and isinstance(task.spec.action, PythonAction),
        )

    def remember_session(self, task_id: str, result: Any) -> None:
        """Keep the agent session an attempt's result names, for the task's next attempt.

        A preset's turn that named no session (its CLI refused to resume it, or died first)
        forgets the old one: the next attempt starts afresh rather than fail the same way.
        """
        if not isinstance(result, Mapping) or "agent" not in result:
            return
        session = result.get("session_id")
        if isinstance(session, str) and session:
            self.agent_sessions[task_id] = session
        else:
            self.agent_sessions.pop(task_id, None)

    def execute(self, request: ActionRequest, before: dict[str, Any]) -> AttemptResult:
        """Run one attempt and assess it (on a worker thread)."""
        return self._execute_step(request, before)[0]

    def execute_inline(
        self,
        batch: list[tuple[ActionRequest, dict[str, Any]]],
        done: list[tuple[str, AttemptResult | Exception]],
    ) -> None:
        """Run a batch of in-process attempts one after the other, in this thread.

        Each outcome is appended to `done` as soon as it is known; the loop concludes them on its
        next tick, so they are committed together with the next batch's starts. One attempt's
        "after" snapshot is the next one's "before".
        """
        base: Snapshot | None = None
        for request, context in batch:
            try:
                result, base = self._execute_step(request, context, base)
            except Exception as error:  # an engine bug: never lose the task
                logger.exception("attempt of %s crashed in the engine", request.task.id)
                done.append((request.task.id, error))
                base = None
                continue
            done.append((request.task.id, result))

    def _execute_step(
        self, request: ActionRequest, before: dict[str, Any], base: Snapshot | None = None
    ) -> tuple[AttemptResult, Snapshot | None]:
        """Run one attempt and assess it; also returns the workdir's snapshot after it."""
        if self.worktrees is not None:
            request, base = self._in_worktree(request)
        workdir = request.workdir
        if base is None:
            base = self._snapshot(workdir)
        outcome = self._run(request)
        self.remember_session(request.task.id, outcome.result)
        after: Snapshot | None = None
        try:
            after = self._snapshot(workdir)
            if self.worktrees is not None:
                self._last_after[request.task.id] = after
            changes = changes_between(workdir, base, after)
        except Exception as error:  # a broken work tree must not lose the attempt's result
            logger.warning("could not compute changes in %s: %s", workdir, error)
            changes = Changes((), 0)
        elapsed = self.task_seconds[request.task.id] + outcome.duration_seconds
        signals = self._signals(request, outcome, base, after, changes)
        context = after_context(before, outcome, changes, elapsed, signals)
        requirements = acceptance_check(
            self._acceptance_for(request.task.id), context, outcome.succeeded, outcome.exit_code
        )
        step = ValidationInput(
            run_id=request.run_id,
            task=request.task,
            attempt=request.attempt,
            workdir=workdir,
            changed_files=changes.files,
            exit_code=outcome.exit_code,
            output_tail=outcome.output_tail,
            result=outcome.result,
            options={},
            context=context,
            timeout_seconds=request.timeout_seconds,
            environment=self.environment,
            milestone=self.is_milestone(request.task),
        )
        refs = self.plan.validators(request.task)
        guard = None
        if after is not None and refs:
            guard = TreeGuard.arm(workdir, after, changes.files, self.ignored_files)
        report = self.engine.quality.assess(step, refs, requirements)
        if guard is not None:
            report, after = self._keep_tree(guard, report, [r.name for r in refs], request)
        result = AttemptResult(
            request.task.id,
            request.attempt,
            outcome,
            changes,
            report,
            with_quality(context, report),
        )
        return result, after

    def _in_worktree(self, request: ActionRequest) -> tuple[ActionRequest, Snapshot | None]:
        """The request moved into the task's own worktree, and that tree's "before" snapshot."""
        assert self.worktrees is not None
        # Made here, in the worker thread: checking out a large tree takes a while.
        workdir, made = self.worktrees.prepare_fresh(request.task.id)
        # Only the task writes its worktree: its "before" is the tree it was made at, or what
        # the task's previous attempt left, and costs no snapshot.
        known = self._last_after.pop(request.task.id, None)
        return replace(request, workdir=workdir), Snapshot(tree=made) if made else known

    def _signals(
        self,
        request: ActionRequest,
        outcome: ActionOutcome,
        base: Snapshot,
        after: Snapshot | None,
        changes: Changes,
    ) -> dict[str, Any]:
        """The step's review signals: from its diff where git recorded both trees."""
        settings = self.plan.spec.signals
        trees = (base.tree, after.tree) if after is not None else (None, None)
        diff = StepText()
        if changes.files and trees[0] and trees[1]:
            diff = step_diff(request.workdir, trees[0], trees[1])
        command, prompt = action_text(request.task)
        step = replace(diff, command=command, prompt=prompt, output=outcome.output_tail)
        found = step_signals(step, extra_destructive=settings.destructive_patterns)
        found["auth_failure"] = found["auth_failure"] and outcome.exit_code not in (0, None)
        if settings.public_api and changes.files and trees[0] and trees[1]:
            found["api_breaking_changes"] = breaking_changes(
                request.workdir, trees[0], trees[1], changes.files
            )
        return found

    def _keep_tree(
        self, guard: TreeGuard, report: QualityReport, names: list[str], request: ActionRequest
    ) -> tuple[QualityReport, Snapshot | None]:
        """Fail the attempt and restore the agent's version when the validators changed files."""
        try:
            changed, lost, now = guard.check()
        except Exception as error:  # a broken work tree must not lose the attempt's result
            logger.warning("could not check the work tree after the validators: %s", error)
            return report, None
        if not changed:
            return report, now
        logger.error("validators of %s changed the work tree: %s", request.task.id, changed)
        check = modified_tree_check(changed, lost, names)
        return with_modified_tree(self.engine.quality, report, check, request.task.gate), now

    def is_milestone(self, spec: TaskSpec) -> bool:
        """Whether validators check everything at this step: the task is tagged `milestone`,
        or it is the run's last task still to finish (the full suite before the run ends)."""
        if MILESTONE_TAG in spec.tags:
            return True
        # One other unfinished task is enough to answer no. The one found last time usually
        # still is, so a step costs a lookup, not a walk of every task (which made each step
        # of a long chain slower than the one before). The walk starts from the plan's end,
        # where tasks finish last.
        hint = self.tasks.get(self._open_task) if self._open_task is not None else None
        if hint is not None and hint.task_id != spec.id and hint.state not in FINAL_STATES:
            return False
        for task in reversed(list(self.tasks.values())):
            if task.task_id != spec.id and task.state not in FINAL_STATES:
                self._open_task = task.task_id
                return False
        return True

    def check_merged(self, result: AttemptResult, workdir: Path) -> str | None:
        """The task's validators on the merged result in `workdir` (validate_after_merge):
        None when its gate passes, else why not."""
        task = self.tasks[result.task_id]
        step = ValidationInput(
            run_id=self.run_id,
            task=task.spec,
            attempt=result.attempt,
            workdir=workdir,
            changed_files=result.changes.files,
            exit_code=result.outcome.exit_code,
            output_tail=result.outcome.output_tail,
            result=result.outcome.result,
            options={},
            context=result.context,
            timeout_seconds=self.plan.timeout(task.spec),
            environment=self.environment,
            milestone=self.is_milestone(task.spec),
        )
        requirements = next(
            (c for c in result.report.checks if c.stage == "requirements"),
            CheckResult("requirements", "requirements", True, 1.0, "requirements met"),
        )
        report = self.engine.quality.assess(step, self.plan.validators(task.spec), requirements)
        if report.gate_passed:
            return None
        return "; ".join(report.gate_failures) or report.feedback or "the quality gate failed"

    def _run(self, request: ActionRequest) -> ActionOutcome:
        if self.dry_run and request.task.risk == "high":
            # Recorded, not executed: the dependents of a dry-run task still run.
            note = "[orchestration] dry run: high-risk task recorded, not executed"
            return ActionOutcome(0, False, 0.0, note, {"dry_run": True}, "none")
        task_id = request.task.id
        running = self.running.get(task_id)
        stop = running.stop if running is not None else self.kill_event
        # A python action's output is the text it returns, kept with the attempt as before; a
        # file per call would cost more than the call (measured: milliseconds against µs).
        in_process = isinstance(request.task.action, PythonAction)
        log = None if in_process else self._open_log(task_id, request.attempt)
        try:
            outcome = run_action(request, stop, lambda pid: self.registry.record(task_id, pid), log)
            if log is not None and not log.written and outcome.output_tail:
                log.write(outcome.output_tail)  # nothing was streamed: keep what is known
        finally:
            self.registry.forget(task_id)
            if log is not None:
                log.close()
        kind, notes = classify_error_noting(outcome, self.plan.spec.defaults.errors)
        if notes:  # a stopped error pattern is said where the reviewer reads the attempt's output
            tail = "\n".join((outcome.output_tail, *notes))[-OUTPUT_TAIL_CHARS:]
            outcome = replace(outcome, output_tail=tail)
        if kind == "transient" and is_auth_failure(outcome.output_tail):
            kind = "permanent"  # a revoked or missing credential: no retry can fix it
        return outcome if kind == outcome.error_kind else replace(outcome, error_kind=kind)

    def _open_log(self, task_id: str, attempt: int) -> AttemptLog | None:
        """The attempt's live log; None (and a warning) when it cannot be written: a full disk
        or a read-only directory must not fail the attempt."""
        try:
            return AttemptLog(log_path(self.plan.path, self.run_id, task_id, attempt))
        except OSError as error:
            logger.warning("no log for %s attempt %s: %s", task_id, attempt, error)
            return None

    def _acceptance_for(self, task_id: str) -> list[Expression]:
        # The task's spec as the loop holds it now, not the request's: a human may have changed
        # it (--set) while the attempt ran, and the compiled checks are kept for later attempts.
        return self.expressions.acceptance(task_id, self.tasks[task_id].spec)
