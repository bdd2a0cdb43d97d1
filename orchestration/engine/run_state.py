"""RunState: the one writer of a run's state; each change goes into a batch `flush` commits."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestration.core.context import jsonable
from orchestration.core.errors import OrchestrationError
from orchestration.core.lifecycle import FINAL_STATES, Move, TaskHandle, TaskState, fire
from orchestration.core.models import (
    BreakpointRecord,
    DecisionRecord,
    EventRecord,
    QualityRecord,
    RunRecord,
    TaskRecord,
)
from orchestration.engine.conclusion import Raised
from orchestration.engine.decisions import EXPLANATION_KEY, Decision
from orchestration.engine.observer import Observer
from orchestration.engine.timer_wheel import DIGEST, EXPIRY, RETRY, TimerWheel
from orchestration.extension import Notification
from orchestration.pluginhost.digests import DigestBuffer
from orchestration.resilience.dead_letters import capture_dead_letter
from orchestration.store import Batch, Store

if TYPE_CHECKING:
    from orchestration.engine.attempts import AttemptResult
    from orchestration.engine.breakpoints import BreakpointCheck
    from orchestration.pluginhost.hooks import Plugins

logger = logging.getLogger(__name__)


class RunState:
    """The run's tasks and their counts as this engine recorded them, and the batch of changes
    the next `flush` commits in one transaction and then announces (plugins, the observer,
    notifiers). Every other part of the engine asks this writer to move a task, update it, raise
    a breakpoint or record an event; none writes the batch or a task's state itself.

    `on_final(task)` (the loop's) runs when a move reaches a final state; `on_commit_failed()`
    when a commit fails (nothing of the batch is stored: the actions under way must stop).
    """

    def __init__(
        self,
        store: Store,
        run: RunRecord,
        tasks: Iterable[TaskRecord],
        *,
        plugins: Plugins,
        wheel: TimerWheel,
        observer: Observer,
        actor: str,
        clock: Callable[[], datetime],
        on_breakpoint: Callable[[BreakpointRecord], None] | None,
    ) -> None:
        self.store, self.run, self.plugins, self.wheel = store, run, plugins, wheel
        self.observer, self.actor, self.clock = observer, actor, clock
        self.on_breakpoint = on_breakpoint
        self.tasks: dict[str, TaskRecord] = {t.task_id: t for t in tasks}
        self.counts: Counter[str] = Counter(t.state for t in self.tasks.values())
        self.batch = Batch()
        self.pending_breakpoints: list[BreakpointRecord] = []
        self.pending_notifications: list[Notification] = []
        self.digests = DigestBuffer()
        self.run_holds: set[int] = set()  # open breakpoints with `scope: run`
        self.on_final: Callable[[TaskRecord], None] = lambda task: None
        self.on_commit_failed: Callable[[], None] = lambda: None

    # ---- tasks ------------------------------------------------------------------------------

    def move(
        self, task: TaskRecord, trigger: str, reason: str = "", actor: str | None = None
    ) -> Move:
        """Fire `trigger` on the task's lifecycle machine and record the move."""
        move = fire(
            TaskHandle(task.task_id, task.state), trigger, reason=reason, actor=actor or self.actor
        )
        self.counts[move.source] -= 1
        self.counts[move.dest] += 1
        task.state = move.dest
        self.batch.moves.append(move)
        if move.dest in FINAL_STATES:
            self.on_final(task)
        return move

    def update(self, task: TaskRecord, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(task, name, value)
        self.batch.task_updates.append((task.task_id, fields))
        wake_at = task.next_attempt_at
        if "next_attempt_at" in fields and wake_at is not None and task.state == "retrying":
            self.wheel.schedule(wake_at, RETRY, task.task_id)

    def adopt_stored(self, task: TaskRecord, stored: TaskRecord) -> bool:
        """Take what another process (a human) stored for a task; True if its spec changed."""
        self.counts[task.state] -= 1
        self.counts[stored.state] += 1
        task.state, task.outcome, task.answer = stored.state, stored.outcome, stored.answer
        task.attempts, task.feedback = stored.attempts, stored.feedback
        task.next_attempt_at = stored.next_attempt_at
        if stored.spec == task.spec:
            return False
        task.spec = stored.spec
        return True

    def add_tasks(self, records: Iterable[TaskRecord], *, store_them: bool) -> None:
        """Tasks that joined the run: stored by this engine (`store_them`) or by another process."""
        for record in records:
            self.tasks[record.task_id] = record
            self.counts[record.state] += 1
            if store_them:  # a copy: stored as it is now (pending), not as it is at commit time
                self.batch.new_tasks.append(replace(record))

    # ---- events, attempts and breakpoints ---------------------------------------------------

    def event(self, kind: str, task_id: str | None, data: dict[str, Any], now: datetime) -> None:
        self.batch.events.append(EventRecord(self.run.id, kind, task_id, data, now))

    def events(self, events: Iterable[EventRecord]) -> None:
        self.batch.events.extend(events)

    def run_is(self, state: str) -> None:
        """The run's stored state at the next commit (`running` also refreshes its heartbeat)."""
        self.batch.run_state = state

    def breaker_changed(self, update: Any) -> None:
        if update is not None:
            self.batch.breaker_updates.append(update)

    def intervention_done(self, update: Any) -> None:
        if update is not None:
            self.batch.intervention_updates.append(update)

    def record_attempt(
        self,
        task: TaskRecord,
        result: AttemptResult,
        decision: Decision,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        """An assessed attempt: its quality, the decision on it and the `step` event."""
        report, run_id = result.report, self.run.id
        stages = dict(report.stage_scores)
        checks = [c.as_dict() for c in report.checks]
        self.batch.quality.append(
            QualityRecord(
                run_id,
                task.task_id,
                result.attempt,
                report.score,
                report.gate_passed,
                stages,
                checks,
                now,
            )
        )
        figures = _stored_figures(decision)
        self.batch.decisions.append(
            DecisionRecord(
                run_id,
                task.task_id,
                result.attempt,
                decision.action,
                decision.rule,
                decision.reason,
                figures,
                now,
            )
        )
        step = {**jsonable(context), "diff_stat": result.changes.diff_stat, "at": "after"}
        self.event("step", task.task_id, step, now)
        self.plugins.emit(
            "on_decision",
            run_id=run_id,
            task_id=task.task_id,
            decision=decision.action,
            reason=decision.reason,
        )

    def record_rule_errors(self, task: TaskRecord, check: BreakpointCheck, now: datetime) -> None:
        for error in check.errors:
            self.observer.message(f"warning: {error}")
            self.event("rule_error", task.task_id, {"error": error}, now)

    def record_notices(
        self,
        task: TaskRecord,
        check: BreakpointCheck,
        context: dict[str, Any],
        at: str,
        now: datetime,
    ) -> None:
        """Rules that hit with `notify` or `auto`: recorded as breakpoints resolved at once."""
        for hit in [*check.of_action("notify"), *check.of_action("auto")]:
            self.add_breakpoint(task, Raised.of(hit, at), context, now, state="resolved")

    def block(
        self, task: TaskRecord, raised: Raised, context: dict[str, Any], now: datetime
    ) -> None:
        self.move(task, "block", f"breakpoint {raised.rule}: {raised.message}")
        self.add_breakpoint(task, raised, context, now, state="open")

    def add_breakpoint(
        self,
        task: TaskRecord,
        raised: Raised,
        context: dict[str, Any],
        now: datetime,
        *,
        state: str,
    ) -> None:
        bp = _breakpoint(self.run.id, task.task_id, raised, context, now, state, self.actor)
        self.batch.breakpoints.append(bp)
        self.pending_breakpoints.append(bp)
        notification = Notification(
            "breakpoint_raised",
            self.run.id,
            f"{raised.rule} ({raised.severity})",
            raised.message,
            raised.severity,
            task.task_id,
            {"rule": raised.rule, "at": raised.at, "action": raised.action, "scope": bp.scope},
        )
        if raised.digest_seconds:
            self.digests.add(raised.rule, notification, raised.digest_seconds, now)
            self.wheel.schedule(now + timedelta(seconds=raised.digest_seconds), DIGEST)
        else:
            self.pending_notifications.append(notification)

    def watch_open_breakpoint(self, bp: BreakpointRecord) -> None:
        if bp.scope == "run":
            self.run_holds.add(bp.id)
        if bp.expires_at is not None:
            self.wheel.schedule(bp.expires_at, EXPIRY, bp.id)

    def run_held(self) -> bool:
        """An open breakpoint with `scope: run` (stored, or raised and not yet committed)."""
        return bool(self.run_holds) or any(
            bp.scope == "run" and bp.state == "open" for bp in self.pending_breakpoints
        )

    def send_due_digests(self, now: datetime, *, everything: bool = False) -> None:
        if len(self.digests):
            self.pending_notifications.extend(self.digests.due(now, everything=everything))

    # ---- committing -------------------------------------------------------------------------

    def flush(self) -> None:
        """Commit everything recorded since the last flush in one transaction, then announce it."""
        for note in self.plugins.take_notes():  # plugin calls that overran or were skipped
            self.event(note["kind"], None, note, self.clock())
        if not self.batch:
            return
        batch, self.batch = self.batch, Batch()
        try:
            ids = self.store.commit(self.run.id, batch, owner=self.run.owner)
        except BaseException:
            # Nothing of the batch is stored: announce nothing (the tasks stay `running` in the
            # store and are retried on resume).
            self.on_commit_failed()
            self.pending_breakpoints, self.pending_notifications = [], []
            raise
        self._capture_failures(batch)
        self._announce(batch, ids)

    def _announce(self, batch: Batch, ids: list[int]) -> None:
        for move in batch.moves:
            self.plugins.emit(
                "on_transition",
                run_id=self.run.id,
                task_id=move.task_id,
                source=move.source,
                dest=move.dest,
                trigger=move.trigger,
            )
            self.observer.task_changed(self.tasks[move.task_id], move.dest, move.reason)
        for bp_id, bp in zip(ids, self.pending_breakpoints, strict=False):
            bp.id = bp_id
            if bp.state == "open":
                self.watch_open_breakpoint(bp)
            self._announce_breakpoint(bp)
        self.pending_breakpoints = []
        for notification in self.pending_notifications:  # sent in the background, in order
            self.plugins.notify_later(notification)
        self.pending_notifications = []

    def _capture_failures(self, batch: Batch) -> None:
        """Tasks that just failed for good go to the dead letter queue with their story."""
        for move in batch.moves:
            if move.dest == TaskState.FAILED:
                self.capture_dead_letter(move.task_id)

    def capture_dead_letter(self, task_id: str) -> None:
        try:
            capture_dead_letter(self.store, self.run.id, task_id)
        except OrchestrationError as error:  # the queue must never stop a run
            logger.warning("dead letter for %s not captured: %s", task_id, error)

    def _announce_breakpoint(self, bp: BreakpointRecord) -> None:
        self.plugins.emit(
            "on_breakpoint_raised",
            run_id=bp.run_id,
            task_id=bp.task_id,
            rule=bp.rule,
            message=bp.message,
        )
        if bp.state == "open":
            self.observer.breakpoint_raised(bp)
            if self.on_breakpoint is not None:
                self.on_breakpoint(bp)


def _breakpoint(
    run_id: str,
    task_id: str,
    raised: Raised,
    context: dict[str, Any],
    now: datetime,
    state: str,
    actor: str,
) -> BreakpointRecord:
    """The record of a raised breakpoint: open for a human, or resolved at once (notify, auto)."""
    resolved = state != "open"
    expires = raised.expires_after is not None and not resolved
    return BreakpointRecord(
        id=0,
        run_id=run_id,
        task_id=task_id,
        rule=raised.rule,
        at=raised.at,
        severity=raised.severity,
        action=raised.action,
        message=raised.message,
        state=state,
        created_at=now,
        context=jsonable(context),
        resolution=raised.action if resolved else None,
        resolved_by=actor if resolved else None,
        resolved_at=now if resolved else None,
        scope=raised.scope if not resolved else "task",
        expires_at=now + timedelta(seconds=raised.expires_after or 0) if expires else None,
        default_resolution=raised.default if not resolved else None,
    )


def _stored_figures(decision: Decision) -> dict[str, Any]:
    """`jsonable(decision.stored_figures())` without walking the explanation: it is built as
    plain JSON data already (Explanation.as_dict), and it is most of what is stored."""
    stored: dict[str, Any] = jsonable(dict(decision.figures))
    if decision.explanation is not None:
        stored[EXPLANATION_KEY] = decision.explanation.as_dict()
    return stored
