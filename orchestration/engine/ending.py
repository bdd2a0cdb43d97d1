"""Ending a run: whether it can go on, and its last records, announcements and summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import BreakpointRecord, TaskRecord
from orchestration.engine.tracing import trace_finished_run
from orchestration.extension import Notification

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator

EXIT_CODES = {
    "completed": 0,
    "failed": 1,
    "stalled": 1,
    "cancelled": 1,
    "paused": 3,
    "stopped": 130,
}


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    state: str  # completed | failed | paused | stalled | cancelled
    counts: dict[str, int]
    open_breakpoints: list[BreakpointRecord] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    # each task that cannot start yet -> its unfinished dependencies with their states
    waiting: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.state, 1)


def outcome(loop: Orchestrator) -> str | None:
    """The run's state if nothing more can happen without a human or time, else None."""
    counts = loop.counts
    if loop.dispatch.busy:
        return None
    if loop.run_cancelled:
        return "cancelled"
    if loop.human_paused:
        return "paused"  # a human paused the run: nothing starts until `orch runs resume`
    if loop.state.run_holds:
        return "paused"  # a breakpoint holds the whole run: nothing starts until it is answered
    if loop.scheduler.queued_count:
        return None
    if counts[TaskState.RETRYING] or counts[TaskState.READY] > loop.fleet.holding():
        return None
    if counts[TaskState.BLOCKED]:
        return "paused"
    if counts[TaskState.PENDING]:
        return "stalled"
    if counts[TaskState.FAILED] or any(
        t.state == TaskState.CANCELLED and t.outcome != "not_needed" for t in loop.tasks.values()
    ):
        return "failed"
    return "completed"


def finish(loop: Orchestrator, state: str) -> RunSummary:
    """Record and announce the end of the run (as `state`), and sum it up."""
    now, run, plugins, writer = loop.clock(), loop.run, loop.engine.plugins, loop.state
    stuck = [t.task_id for t in loop.tasks.values() if t.state == TaskState.PENDING]
    stuck = stuck if state == "stalled" else []
    stored_state = "paused" if state in ("paused", "stalled", "stopped") else state
    writer.send_due_digests(now, everything=True)
    writer.run_is(stored_state)
    loop.integration.announce(now)
    writer.event("run_finished", None, {"state": state, "stuck": stuck}, now)
    writer.flush()
    last_alerts = loop.alerts.poll(now)  # e.g. the dead letters just captured
    if stored_state != "paused":
        loop.dispatch.runner.discard_indexes()
    counts = {s.value: loop.counts[s.value] for s in TaskState if loop.counts[s.value]}
    plugins.emit("on_run_finished", run_id=run.id, state=state, counts=counts)
    shown = ", ".join(f"{n} {name}" for name, n in counts.items())
    severity = "high" if state in ("failed", "stalled") else "low"
    plugins.notify_later(
        Notification(
            "run_finished",
            run.id,
            f"run {state}",
            f"{run.plan_name}: {shown}",
            severity,
            None,
            {"state": state, "counts": counts},
        )
    )
    # Before returning (the process may exit): what is queued is sent, waiting at most one
    # notifier timeout.
    plugins.drain_notifications()
    # The run was released with its final state: what the guard noted of those last plugin
    # calls is stored without a claim (only events; no task moves after this).
    run.owner = None
    writer.events(last_alerts)
    writer.flush()
    trace_finished_run(loop.store, run.id, stored_state)
    open_bps = loop.store.breakpoints(run.id, state="open") if state == "paused" else []
    return RunSummary(run.id, state, counts, open_bps, stuck, waiting(loop.tasks))


def waiting(tasks: dict[str, TaskRecord]) -> dict[str, list[str]]:
    """What each pending task waits for: its dependencies that have not finished."""
    return {
        task.task_id: [
            f"{dep} ({tasks[dep].state})"
            for dep in task.depends_on
            if dep in tasks and tasks[dep].state not in FINAL_STATES
        ]
        for task in tasks.values()
        if task.state == TaskState.PENDING
    }
