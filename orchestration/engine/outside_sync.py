"""OutsideSync: adopt what other processes changed in a run (humans' answers, interventions)."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from orchestration.core.durations import format_duration
from orchestration.core.errors import OrchestrationError
from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import RunSetting, TaskRecord
from orchestration.engine.review import EXPIRED_ACTOR, announce_resolution, resolved_how
from orchestration.engine.timer_wheel import RETRY
from orchestration.resilience.budgets import BudgetSettingError
from orchestration.resilience.interventions import apply_requested
from orchestration.rules.rule_files import load_rules

if TYPE_CHECKING:
    from datetime import datetime

    from orchestration.engine.loop import Orchestrator

logger = logging.getLogger(__name__)


class OutsideSync:
    """Brings into the loop what the store says others did: answered breakpoints, expired ones,
    requested interventions, tasks added, rules and budgets changed for the run.

    Each method is one periodic duty of the timer wheel (or asked for directly by the loop).
    """

    def __init__(self, loop: Orchestrator) -> None:
        self.loop = loop
        self.rule_switches: dict[str, bool] = {}
        self.added_rule_texts: dict[str, str] = {}  # rule files added to the run while it runs
        self._settings_seen = 0

    def expire(self, bp_id: int, now: datetime) -> int:
        """Apply the default resolution of an open breakpoint whose time is up."""
        from orchestration.engine.review_actions import resolve_and_announce

        self.loop.state.flush()  # what this engine recorded goes first
        bp = self.loop.store.breakpoint(bp_id)
        if bp.state != "open" or bp.default_resolution is None:
            return 0
        waited = format_duration((now - bp.created_at).total_seconds())
        try:
            resolve_and_announce(
                self.loop.store,
                bp_id,
                bp.default_resolution,
                actor=EXPIRED_ACTOR,
                announce=partial(announce_resolution, self.loop.engine.plugins),
                note=f"no answer within {waited}; default resolution applied",
                now=now,
            )
        except OrchestrationError as error:  # a human answered at the same moment
            logger.info("breakpoint %s did not expire: %s", bp_id, error)
            return 0
        self.loop.observer.message(
            f"breakpoint {bp_id} ({bp.rule}) expired: {bp.default_resolution} by default"
        )
        self.blocked()
        return 1

    def interventions(self, now: datetime) -> int:
        """Carry out what humans asked for this run from other processes (orch task/runs ...)."""
        self.loop.state.flush()
        try:
            applied = apply_requested(
                self.loop.store,
                self.loop.run.id,
                running=frozenset(self.loop.dispatch.running_attempts),
                now=now,
            )
        except OrchestrationError as error:
            logger.warning("requested interventions not applied: %s", error)
            return 0
        for stop in applied.stops:
            running = self.loop.dispatch.running_attempts.get(stop.task_id)
            if stop.task_id not in self.loop.dispatch.human_stops and running is not None:
                self.loop.dispatch.human_stops[stop.task_id] = stop
                running.stop.set()
        for record in applied.applied:
            self.loop.observer.message(
                f"intervention by {record.actor}: {record.action} {record.task_id or 'run'}"
                + (f" ({record.reason})" if record.reason else "")
            )
        for record in applied.refused:
            self.loop.observer.message(f"intervention refused: {record.action}: {record.note}")
        if applied.changed:
            self.resync(applied.changed, applied.reopened)
        self.loop.run_cancelled = self.loop.run_cancelled or applied.run_cancelled
        return len(applied.changed) + len(applied.stops)

    def resync(self, changed: list[str], reopened: list[str]) -> None:
        """Adopt tasks that an intervention changed in the store."""
        for task_id in changed:
            task = self.loop.tasks.get(task_id)
            if task is None:
                continue
            was = task.state
            self.take_stored(task, self.loop.store.task(self.loop.run.id, task_id))
            if was == TaskState.READY and task.state != TaskState.READY:
                self.loop.scheduler.discard(task_id)
            if was in FINAL_STATES and task.state not in FINAL_STATES:  # runs again: ask again
                self.loop.admission.forget_approvals(task_id)
        if reopened:
            self.loop.rebuild_scheduler()
        for task_id in changed:
            task = self.loop.tasks[task_id]
            if task.state == TaskState.READY:
                self.loop.queue(task)
            elif task.state == TaskState.RETRYING and task.next_attempt_at is not None:
                self.loop.wheel.schedule(task.next_attempt_at, RETRY, task_id)
            elif task.state == TaskState.PENDING:
                self.loop.evaluate_pending(task_id)
            elif task.state in FINAL_STATES and not reopened:
                self.loop.on_final(task)

    def refresh_run_holds(self) -> None:
        if self.loop.state.run_holds:
            self.loop.state.run_holds = {
                bp.id
                for bp in self.loop.store.breakpoints(self.loop.run.id, state="open")
                if bp.scope == "run"
            }
            if not self.loop.state.run_holds:
                self.loop.dispatch.held_noted = False

    def blocked(self) -> int:
        """Pick up what a human decided from another process about blocked tasks."""
        if not self.loop.counts[TaskState.BLOCKED]:
            return 0
        self.loop.state.flush()
        changed = 0
        for task in [t for t in self.loop.tasks.values() if t.state == TaskState.BLOCKED]:
            stored = self.loop.store.task(self.loop.run.id, task.task_id)
            if stored.state == TaskState.BLOCKED:
                continue
            changed += 1
            self.adopt(task, stored)
        held = len(self.loop.state.run_holds)
        self.refresh_run_holds()
        return changed + (held - len(self.loop.state.run_holds))

    def adopt(self, task: TaskRecord, stored: TaskRecord) -> None:
        how = "resolved by a human"
        for bp in self.loop.store.breakpoints(self.loop.run.id, state="resolved"):
            if bp.task_id == task.task_id:
                self.loop.admission.remember_approval(bp)
                how = resolved_how(bp)
        self.take_stored(task, stored)
        self.loop.observer.task_changed(task, task.state, how)
        if task.state == TaskState.READY:
            self.loop.integration.restart_after_conflict(task)
            self.loop.queue(task)
        elif task.state in FINAL_STATES:
            self.loop.on_final(task)

    def take_stored(self, task: TaskRecord, stored: TaskRecord) -> None:
        """Adopt what another process (a human) stored for a task: its state and fields."""
        if self.loop.state.adopt_stored(task, stored):  # changed parameters (--set)
            self.loop.expressions.forget(task.task_id)  # compile its expressions anew

    def settings(self) -> None:
        """Apply rules switched on or off and budgets changed for this run from outside."""
        for setting in self.loop.store.run_settings(self.loop.run.id, after_id=self._settings_seen):
            self._settings_seen = max(self._settings_seen, setting.id)
            self.apply_setting(setting)

    def apply_setting(self, setting: RunSetting) -> None:
        if setting.kind == "rule":
            self.rule_switches[setting.name] = bool(setting.value)
            disabled = {name for name, on in self.rule_switches.items() if not on}
            self.loop.use_engine(self.loop.engine.with_disabled(frozenset(disabled)))
            state = "enabled" if setting.value else "disabled"
            self.loop.observer.message(
                f"rule {setting.name} {state} for this run by {setting.actor}"
            )
        elif setting.kind == "run" and setting.name == "paused":
            self.loop.human_paused = bool(setting.value)
            self.loop.observer.message(
                f"run paused by {setting.actor}: running actions finish, nothing new starts"
                if setting.value
                else f"run's pause lifted by {setting.actor}"
            )
        elif setting.kind == "rules_file" and isinstance(setting.value, str):
            self.added_rule_texts[setting.name] = setting.value
            self.reload_rules()
            self.loop.observer.message(
                f"rules added to this run by {setting.actor}: {setting.name}"
            )
        elif setting.kind == "budget":
            try:
                self.loop.tally.budget.set_limit(setting.name, setting.value)
            except BudgetSettingError as error:  # checked when stored; an old row may not be
                logger.warning("ignoring budget setting %s: %s", setting.name, error)

    def reload_rules(self) -> None:
        """Rebuild the breakpoint rules with the files added to this run (checked when added)."""
        try:
            rules = load_rules(
                self.loop.plan.rule_files,
                functions=self.loop.engine.plugins.rule_functions,
                texts=list(self.added_rule_texts.items()),
            )
        except OrchestrationError as error:  # e.g. a plugin function gone since it was added
            self.loop.observer.message(f"warning: added rules not loaded: {error}")
            return
        self.loop.use_engine(self.loop.engine.with_rules(rules))

    def added_tasks(self) -> int:
        """Pick up tasks that `orch task add` stored while this engine runs."""
        if self.loop.store.task_count(self.loop.run.id) <= len(self.loop.tasks):
            return 0
        added = [
            t for t in self.loop.store.tasks(self.loop.run.id) if t.task_id not in self.loop.tasks
        ]
        self.loop.growth.adopt(added)
        return len(added)
