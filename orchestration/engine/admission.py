"""Admission: whether a ready task may start now (guards, breakers, risk gate, approvals)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestration.core.context import jsonable
from orchestration.core.errors import OrchestrationError
from orchestration.core.models import BreakpointRecord, Plan, TaskRecord
from orchestration.engine.actions import ActionOutcome
from orchestration.engine.breakpoints import BreakpointCheck
from orchestration.engine.conclusion import Raised
from orchestration.engine.policy import Engine
from orchestration.engine.timer_wheel import BREAKER, TimerWheel
from orchestration.resilience.breakers import CircuitBreakers, attempt_ok
from orchestration.store import Store

logger = logging.getLogger(__name__)

RISK_GATE = "risk_gate"
GUARD_NOTE_SECONDS = 60.0  # how often a resource guard holding work back is reported
# Context names that change by themselves between attempts; an approval ignores them.
VOLATILE_NAMES = frozenset(
    {"attempt", "task_elapsed_seconds", "run_elapsed_seconds", "now_hour", "completed_count"}
)
# (kind, task id or None, data, now): how admission records an event through the run's writer
RecordEvent = Callable[[str, str | None, dict[str, Any], datetime], None]


class Admission:
    """Decides whether work starts; records what it notes through the run's one writer."""

    def __init__(
        self,
        plan: Plan,
        store: Store,
        engine: Engine,
        wheel: TimerWheel,
        *,
        dry_run: bool,
        record_event: RecordEvent,
        message: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.engine = engine  # the loop hands over each new Engine (rules changed)
        self.wheel = wheel
        self.dry_run = dry_run
        self.record_event = record_event
        self.message = message
        self.breakers = CircuitBreakers(store, plan.spec.breakers)
        self._agent_command = tuple(plan.spec.defaults.agent_command or ()) or None
        self._breaker_noted: set[str] = set()
        self._probes: dict[str, tuple[str, bool]] = {}  # task id -> (breaker key, is a probe)
        self._last_guard_note = -GUARD_NOTE_SECONDS
        # (task id, rule, what the rule saw) a human approved: it does not ask again for it
        self.approved_before: set[tuple[str, str, str]] = set()

    # ---- approvals ---------------------------------------------------------------------------

    def rule_inputs(self, rule_name: str, context: Mapping[str, Any]) -> str:
        """What a rule saw, minus the attempt counter: an approval holds until that changes."""
        rule = self.engine.rules_by_name.get(rule_name)
        names = sorted(rule.when.names - VOLATILE_NAMES) if rule is not None else []
        return repr([(name, jsonable(context.get(name))) for name in names])

    def remember_approval(self, bp: BreakpointRecord) -> None:
        if bp.at == "before" and bp.resolution in ("approve", "retry"):
            self.approved_before.add((bp.task_id, bp.rule, self.rule_inputs(bp.rule, bp.context)))

    def forget_approvals(self, task_id: str) -> None:
        """The task runs again (rerun, rollback): an approval given before does not hold."""
        self.approved_before = {a for a in self.approved_before if a[0] != task_id}

    def unapproved(
        self, task_id: str, check: BreakpointCheck, context: Mapping[str, Any]
    ) -> BreakpointCheck:
        """The `before` hits a human has not approved yet for what they saw."""
        if not check.hits or not self.approved_before:
            return check
        hits = tuple(
            h
            for h in check.hits
            if (task_id, h.rule.name, self.rule_inputs(h.rule.name, context))
            not in self.approved_before
        )
        return BreakpointCheck(hits, check.errors)

    def risk_gate(self, task: TaskRecord, context: Mapping[str, Any]) -> Raised | None:
        """High-risk work the planner is not confident about waits for a human (not in dry run)."""
        threshold = self.plan.spec.scheduling.risk_gate_confidence
        if self.dry_run or task.spec.risk != "high" or task.spec.confidence >= threshold:
            return None
        if (task.task_id, RISK_GATE, self.rule_inputs(RISK_GATE, context)) in self.approved_before:
            return None
        message = (
            f"{task.task_id}: high-risk task with confidence {task.spec.confidence:.2f}, below "
            f"the risk gate's {threshold:.2f}; approve to run it"
        )
        return Raised(RISK_GATE, "before", "high", "pause", message)

    # ---- resource guards ---------------------------------------------------------------------

    def machine_busy(self, now: datetime) -> bool:
        """Whether a resource guard of the plan holds new work back now (noted now and then)."""
        reason = self._busy_reason()
        if reason is None:
            return False
        if time.monotonic() - self._last_guard_note >= GUARD_NOTE_SECONDS:
            self._last_guard_note = time.monotonic()
            self.message(f"waiting to start new work: {reason}")
            self.record_event("resource_guard", None, {"reason": reason}, now)
        return True

    def _busy_reason(self) -> str | None:
        guards = self.plan.spec.concurrency.guards
        if guards.max_cpu_percent is None and guards.max_memory_percent is None:
            return None
        import psutil  # only plans with guards pay for it

        cpu = psutil.cpu_percent(interval=None)
        if guards.max_cpu_percent is not None and cpu > guards.max_cpu_percent:
            return f"CPU at {cpu:.0f}% (guard {guards.max_cpu_percent:.0f}%)"
        memory = psutil.virtual_memory().percent
        if guards.max_memory_percent is not None and memory > guards.max_memory_percent:
            return f"memory at {memory:.0f}% (guard {guards.max_memory_percent:.0f}%)"
        return None

    # ---- circuit breakers --------------------------------------------------------------------

    def breaker_allows(self, task: TaskRecord, now: datetime) -> bool:
        """Whether the task's circuit breaker lets an attempt start now; if not, it waits."""
        key = self.breakers.key_for(task.spec, self._agent_command)
        if key is None:
            return True
        try:
            admission = self.breakers.allow(key, now)
        except OrchestrationError as error:  # the breaker table is unreadable: do not block
            logger.warning("circuit breaker %s not consulted: %s", key, error)
            return True
        if admission.allowed:
            self._probes[task.task_id] = (key, admission.probe)
            self._breaker_noted.discard(key)
            return True
        retry_at = admission.retry_at or now + timedelta(seconds=1)
        self.wheel.schedule(retry_at, BREAKER, task.task_id)
        if key not in self._breaker_noted:  # once per opening, not once per waiting task
            self._breaker_noted.add(key)
            data = {"key": key, "reason": admission.reason, "until": retry_at.isoformat()}
            self.record_event("breaker_wait", task.task_id, data, now)
            self.message(f"circuit breaker {key} is open: {admission.reason}")
        return False

    def breaker_outcome(
        self, task_id: str, outcome: ActionOutcome | None, now: datetime
    ) -> Any | None:
        """The breaker update an attempt's outcome makes (to store), or None."""
        key, probe = self._probes.pop(task_id, (None, False))
        if key is None:
            return None
        ok = (
            attempt_ok(outcome.exit_code, outcome.timed_out, outcome.interrupted)
            if outcome is not None
            else None
        )
        if ok is not None:
            return self.breakers.update(key, ok, now, probe=probe)
        return self.breakers.release(key) if probe else None
