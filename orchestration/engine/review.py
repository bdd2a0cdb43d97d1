"""A human's answer to a breakpoint (approve, reject, retry, skip), stored with who and why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.lifecycle import TaskHandle, fire
from orchestration.core.models import BreakpointRecord, EventRecord, RunSetting
from orchestration.extension import Notification
from orchestration.pluginhost.hooks import Plugins
from orchestration.resilience.overrides import apply_to_spec, split_sets
from orchestration.store import Batch, Store

RESOLUTIONS = ("approve", "reject", "retry", "skip")
# Past tenses for the history and messages ("retryd" and "rejectd" are not words).
PAST_TENSES = {"approve": "approved", "reject": "rejected", "retry": "retried", "skip": "skipped"}
EXPIRED_ACTOR = "engine (expired)"  # who resolved a breakpoint whose default applied on expiry
REJECT_AS = ("cancel", "fail")


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


def resolution_text(bp: BreakpointRecord) -> str:
    """How a resolved breakpoint ended, in words: `retried by alice`, or that it expired."""
    resolution = PAST_TENSES.get(bp.resolution or "", bp.resolution or "resolved")
    if bp.resolved_by == EXPIRED_ACTOR:
        return f"expired: {resolution} by default, no human answered"
    return f"{resolution} by {bp.resolved_by}"


def resolved_how(bp: BreakpointRecord) -> str:
    """The same, naming the breakpoint (for progress lines)."""
    return f"breakpoint {bp.id} {resolution_text(bp)}"


def failed_gate(store: Store, bp: BreakpointRecord) -> str | None:
    """What failed in the step a breakpoint after it shows (its quality gate), or None if green.

    Approving such a step accepts broken work, so it needs `--force` or a note saying why."""
    if bp.at != "after" or bp.context.get("gate_passed") is not False:
        return None
    attempt = bp.context.get("attempt")
    records = [q for q in store.quality(bp.run_id, bp.task_id) if q.attempt == attempt]
    failed = [
        str(c.get("name")) for c in (records[-1].checks if records else []) if not c.get("passed")
    ]
    return "its quality gate failed" + (f" ({', '.join(failed)} failed)" if failed else "")


def announce_resolution(
    plugins: Plugins, bp: BreakpointRecord, extra: Mapping[str, Any] | None = None
) -> None:
    """Tell the plugins a breakpoint was resolved: the `on_breakpoint_resolved` event and a
    `breakpoint_resolved` notification (each plugin guarded by the plugin manager's timeouts).

    `extra` adds to the notification's data (the dashboard says the task's state and whether an
    engine works on the run)."""
    if bp.resolution is None:
        return
    actor = bp.resolved_by or "unknown"
    plugins.emit(
        "on_breakpoint_resolved",
        run_id=bp.run_id,
        breakpoint_id=bp.id,
        resolution=bp.resolution,
        actor=actor,
    )
    message = f"breakpoint {bp.id} ({bp.rule}) {bp.resolution} by {actor}"
    plugins.notify(
        Notification(
            "breakpoint_resolved",
            bp.run_id,
            f"{bp.rule}: {bp.resolution}",
            message + (f": {bp.note}" if bp.note else ""),
            bp.severity,
            bp.task_id,
            {
                "breakpoint": bp.id,
                "resolution": bp.resolution,
                "actor": actor,
                "params": bp.params,
                **(extra or {}),
            },
        )
    )


def resolve_breakpoint(
    store: Store,
    breakpoint_id: int,
    resolution: str,
    *,
    actor: str,
    note: str = "",
    answer: str | None = None,
    sets: Mapping[str, Any] | None = None,
    reject_as: str = "cancel",
    now: datetime | None = None,
    force: bool = False,
) -> BreakpointRecord:
    """Resolve an open breakpoint and move its task accordingly, in one transaction.

    `sets` (from `--set key=value`) change the task's fields for its next attempt, or with keys
    `budget.<limit>` the run's budget; `reject_as` is `cancel` or `fail`. Approving a step whose
    quality gate failed needs `force` or a `note` saying why (it accepts the broken work).
    """
    now = now or datetime.now(UTC)
    breakpoint = _resolvable(store, breakpoint_id, resolution, reject_as, note, force)
    task = store.task(breakpoint.run_id, breakpoint.task_id)
    task_changes, budget_changes = split_sets(sets or {})
    if task_changes and resolution not in ("retry", "approve"):
        raise OrchestrationError(
            f"--set of task fields goes with --retry (or --approve of a step not run yet), "
            f"not --{resolution}"
        )
    reason = _reason(breakpoint, resolution, actor, note, sets)
    trigger = _trigger_for(breakpoint, resolution)
    if resolution == "reject" and reject_as == "fail":
        trigger = "fail"
    move = fire(TaskHandle(task.task_id, task.state), trigger, reason=reason, actor=actor)
    updates = _task_updates(breakpoint, task, resolution, answer, task_changes)
    data = {
        "breakpoint": breakpoint_id,
        "resolution": resolution,
        "actor": actor,
        "note": note,
        "sets": dict(sets or {}),
    }
    batch = Batch(
        moves=[move],
        resolutions=[(breakpoint_id, resolution, note, actor, now, dict(sets or {}))],
        task_updates=[(task.task_id, updates)] if updates else [],
        events=[EventRecord(breakpoint.run_id, "breakpoint_resolved", task.task_id, data, now)],
        settings=[
            RunSetting(breakpoint.run_id, "budget", name, value, actor, note or reason, now)
            for name, value in budget_changes.items()
        ],
    )
    store.commit(breakpoint.run_id, batch)
    return store.breakpoint(breakpoint_id)


def _resolvable(
    store: Store, breakpoint_id: int, resolution: str, reject_as: str, note: str, force: bool
) -> BreakpointRecord:
    """The open breakpoint this resolution may be applied to, or an error saying why not."""
    if resolution not in RESOLUTIONS:
        raise OrchestrationError(
            f"unknown resolution '{resolution}'; expected {', '.join(RESOLUTIONS)}"
        )
    if reject_as not in REJECT_AS:
        raise OrchestrationError(f"a rejection ends as {' or '.join(REJECT_AS)}, not {reject_as!r}")
    breakpoint = store.breakpoint(breakpoint_id)
    if breakpoint.state != "open":
        raise OrchestrationError(
            f"breakpoint {breakpoint_id} is already resolved ({breakpoint.resolution} by "
            f"{breakpoint.resolved_by})"
        )
    if resolution == "approve" and not force and not note.strip():
        failed = failed_gate(store, breakpoint)
        if failed is not None:
            raise OrchestrationError(
                f"breakpoint {breakpoint_id}: the step of task '{breakpoint.task_id}' did not "
                f"pass: {failed}; approving accepts it broken. Retry it with an answer "
                "(--retry --answer '...') or reject it (--reject); to accept it anyway, approve "
                "with --force or with --note saying why"
            )
    return breakpoint


def _reason(
    breakpoint: BreakpointRecord,
    resolution: str,
    actor: str,
    note: str,
    sets: Mapping[str, Any] | None,
) -> str:
    """The move's reason: which breakpoint, how and by whom, why, and with what changes."""
    reason = f"breakpoint {breakpoint.id} ({breakpoint.rule}) {PAST_TENSES[resolution]} by {actor}"
    if note:
        reason += f": {note}"
    if sets:
        reason += " with " + ", ".join(f"{k}={v!r}" for k, v in sets.items())
    return reason


def _task_updates(
    breakpoint: BreakpointRecord,
    task: Any,
    resolution: str,
    answer: str | None,
    task_changes: Mapping[str, Any],
) -> dict[str, object]:
    """The task's fields this resolution changes: outcome, the human's answer, its spec."""
    updates: dict[str, object] = {}
    outcome = _outcome_for(breakpoint, resolution)
    if outcome:
        updates["outcome"] = outcome
    if resolution == "reject":
        updates["outcome"] = "rejected"
    if answer is not None:
        updates["answer"] = answer
    if task_changes:
        updates["spec"] = apply_to_spec(task.spec, task_changes)
    return updates
