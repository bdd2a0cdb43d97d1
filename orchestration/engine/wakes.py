"""Wakes: what the loop does when a time on its wheel comes due, one handler per kind."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.engine.alerts import POLL_SECONDS as ALERT_SECONDS
from orchestration.engine.timer_wheel import (
    ADDED,
    ALERTS,
    BLOCKED,
    BREAKER,
    DEADLINE,
    DIGEST,
    DURING,
    EXPIRY,
    HEARTBEAT,
    INTERVENTIONS,
    RETRY,
    SETTINGS,
)
from orchestration.resilience.runs import HEARTBEAT_SECONDS

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator

# The periodic duties on the timer wheel: (period, first turn) in seconds. Blocked tasks and
# interventions are looked at often (a human waits for them); added tasks and settings less.
PERIODIC: dict[str, tuple[float, float]] = {
    HEARTBEAT: (HEARTBEAT_SECONDS, 0),
    SETTINGS: (1.0, 1),
    INTERVENTIONS: (1.0, 0),
    BLOCKED: (0.5, 0),
    ADDED: (1.0, 1),
    DURING: (1.0, 0),  # `at: during` rules on the attempts under way
    ALERTS: (ALERT_SECONDS, ALERT_SECONDS),
}


class Wakes:
    """One-off wake-ups (a retry's time, a breaker's wait, a breakpoint's expiry, a deadline,
    a digest) and the periodic duties (heartbeat, syncs, `at: during` rules, alerts), each of
    which schedules its next turn. An entry is checked against the state it wakes: stale ones
    (the task moved on) do nothing."""

    def __init__(self, loop: Orchestrator) -> None:
        self.loop = loop

    def schedule_initial(self, now: datetime) -> None:
        """Retries and deadlines of the tasks, and the first turn of each periodic duty."""
        for task in self.loop.tasks.values():
            if task.state == TaskState.RETRYING:
                due = task.next_attempt_at or self.loop.run.created_at
                self.loop.wheel.schedule(due, RETRY, task.task_id)
            if task.spec.deadline is not None and task.state not in FINAL_STATES:
                self.loop.wheel.schedule(task.spec.deadline, DEADLINE, task.task_id)
        for duty, (_, first) in PERIODIC.items():
            self.loop.wheel.schedule(now + timedelta(seconds=first), duty)

    def wake(self, kind: str, key: Any, due: datetime, now: datetime) -> int:
        """Do what came due on the timer wheel; periodic duties schedule their next turn."""
        if kind == RETRY:
            return self._retry(key, due)
        if kind == BREAKER:
            return self._breaker(key)
        if kind == EXPIRY:
            return self.loop.sync.expire(key, now)
        if kind == DEADLINE:
            self._deadline_missed(key, due, now)
            return 0
        if kind == DIGEST:
            self.loop.state.send_due_digests(now)
            return 0
        self.loop.wheel.schedule(now + timedelta(seconds=PERIODIC[kind][0]), kind)
        return self._periodic(kind, now)

    def _periodic(self, kind: str, now: datetime) -> int:
        if kind == HEARTBEAT:
            self.loop.state.run_is("running")  # also refreshes the run's updated_at
        elif kind == SETTINGS:
            self.loop.sync.settings()
        elif kind == ALERTS:
            self.loop.state.events(self.loop.alerts.poll(now))
        elif kind == DURING:
            self.loop.dispatch.check_running(now)
        elif kind == INTERVENTIONS:
            return self.loop.sync.interventions(now)
        elif kind == BLOCKED:
            return self.loop.sync.blocked()
        elif kind == ADDED:
            return self.loop.sync.added_tasks()
        return 0

    def _breaker(self, task_id: str) -> int:
        task = self.loop.tasks[task_id]
        if task.state != TaskState.READY:
            return 0
        self.loop.queue(task)
        return 1

    def _retry(self, task_id: str, when: datetime) -> int:
        task = self.loop.tasks[task_id]
        moved_on = task.next_attempt_at is not None and task.next_attempt_at != when
        if task.state != TaskState.RETRYING or moved_on:
            return 0  # a stale entry: the task moved on, or got a new retry time
        self.loop.state.move(task, "wake", "retry time reached")
        self.loop.state.update(task, next_attempt_at=None)
        self.loop.queue(task)
        return 1

    def _deadline_missed(self, task_id: str, deadline: datetime, now: datetime) -> None:
        task = self.loop.tasks[task_id]
        if task.state not in FINAL_STATES:
            data = {"deadline": deadline.isoformat(), "state": task.state}
            self.loop.state.event("deadline_missed", task_id, data, now)
            self.loop.observer.message(
                f"deadline missed: {task_id} (due {deadline:%Y-%m-%d %H:%M}Z)"
            )
