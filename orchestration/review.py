"""A human's answer to a breakpoint (approve, reject, retry, skip), stored with who and why."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestration.errors import OrchestrationError
from orchestration.lifecycle import TaskHandle, fire
from orchestration.models import BreakpointRecord, EventRecord
from orchestration.store import Batch, Store

RESOLUTIONS = ("approve", "reject", "retry", "skip")


def _trigger_for(breakpoint: BreakpointRecord, resolution: str) -> str:
    if resolution == "approve":
        # Before a step, approval means "go ahead and run it"; after a step, "accept it as it is".
        return "unblock" if breakpoint.at == "before" else "approve"
    return {"retry": "unblock", "reject": "cancel", "skip": "skip"}[resolution]


def _outcome_for(breakpoint: BreakpointRecord, resolution: str) -> str | None:
    if resolution == "approve" and breakpoint.at == "after":
        return "approved"
    if resolution == "skip":
        return "skipped"
    return None


def resolve_breakpoint(
    store: Store,
    breakpoint_id: int,
    resolution: str,
    *,
    actor: str,
    note: str = "",
    answer: str | None = None,
    now: datetime | None = None,
) -> BreakpointRecord:
    """Resolve an open breakpoint and move its task accordingly, in one transaction."""
    if resolution not in RESOLUTIONS:
        raise OrchestrationError(
            f"unknown resolution '{resolution}'; expected {', '.join(RESOLUTIONS)}"
        )
    now = now or datetime.now(UTC)
    breakpoint = store.breakpoint(breakpoint_id)
    if breakpoint.state != "open":
        raise OrchestrationError(
            f"breakpoint {breakpoint_id} is already resolved ({breakpoint.resolution} by "
            f"{breakpoint.resolved_by})"
        )
    task = store.task(breakpoint.run_id, breakpoint.task_id)
    reason = f"breakpoint {breakpoint_id} ({breakpoint.rule}) {resolution}d by {actor}"
    if note:
        reason += f": {note}"
    move = fire(
        TaskHandle(task.task_id, task.state),
        _trigger_for(breakpoint, resolution),
        reason=reason,
        actor=actor,
    )
    updates: dict[str, object] = {}
    outcome = _outcome_for(breakpoint, resolution)
    if outcome:
        updates["outcome"] = outcome
    if answer is not None:
        updates["answer"] = answer
    batch = Batch(
        moves=[move],
        resolutions=[(breakpoint_id, resolution, note, actor, now)],
        task_updates=[(task.task_id, updates)] if updates else [],
        events=[
            EventRecord(
                breakpoint.run_id,
                "breakpoint_resolved",
                task.task_id,
                {
                    "breakpoint": breakpoint_id,
                    "resolution": resolution,
                    "actor": actor,
                    "note": note,
                },
                now,
            )
        ],
    )
    store.commit(breakpoint.run_id, batch)
    return store.breakpoint(breakpoint_id)
