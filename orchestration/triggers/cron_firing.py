"""One scheduler tick: fire the cron occurrences that are due, by each schedule's overlap policy.

`tick_schedules(store, ctx, now)` is the whole of it, for `orch schedule tick --at`, the daemon
and tests alike: the time is an argument, never read here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from orchestration.core.errors import OrchestrationError
from orchestration.core.trigger_records import (
    QUEUED,
    SKIPPED,
    STARTING,
    FiringRecord,
    ScheduleRecord,
)
from orchestration.resilience.runs import run_id_for
from orchestration.triggers.launches import (
    LaunchContext,
    active_runs,
    holder,
    launch_firing,
    reconcile,
)
from orchestration.triggers.schedules import Occurrence, due_occurrences, firing_key, overlap_action

if TYPE_CHECKING:
    from orchestration.store import Store

logger = logging.getLogger(__name__)


def tick_schedules(store: Store, ctx: LaunchContext, now: datetime) -> list[FiringRecord]:
    """Fire what is due at `now`; the firings stored by this tick (started, queued, skipped)."""
    schedules = store.triggers.schedules()
    reconcile(store, ctx, {s.name: s.plan_path for s in schedules}, now)
    queued: dict[str, list[FiringRecord]] = {}
    for firing in store.triggers.firings(outcomes=(QUEUED,)):  # one query for every schedule
        queued.setdefault(firing.schedule, []).append(firing)
    fired: list[FiringRecord] = []
    for schedule in schedules:
        if not schedule.enabled:
            continue
        if schedule.name in queued:
            fired += _start_queued(store, schedule, queued[schedule.name], ctx, now)
        fired += _fire_due(store, schedule, ctx, now)
    return fired


def _fire_due(
    store: Store, schedule: ScheduleRecord, ctx: LaunchContext, now: datetime
) -> list[FiringRecord]:
    due = due_occurrences(schedule, now)
    taken = store.triggers.firing_keys([firing_key(schedule.name, o.at) for o in due])
    fired = []
    for occurrence in due:
        if firing_key(schedule.name, occurrence.at) in taken:
            continue
        firing = _fire_one(store, schedule, occurrence, ctx, now)
        if firing is not None:
            fired.append(firing)
    return fired


def _fire_one(
    store: Store,
    schedule: ScheduleRecord,
    occurrence: Occurrence,
    ctx: LaunchContext,
    now: datetime,
) -> FiringRecord | None:
    """Store the occurrence's firing (once across processes), then act on it."""
    active = active_runs(store, schedule.name)
    action = overlap_action(schedule.overlap, bool(active))
    outcome = {"skip": SKIPPED, "queue": QUEUED}.get(action, STARTING)
    reason = f"run {active[-1]} was still active" if active and action != "start" else ""
    firing = store.triggers.insert_firing(
        FiringRecord(
            key=firing_key(schedule.name, occurrence.at),
            schedule=schedule.name,
            kind="cron",
            occurrence=occurrence.at,
            due_at=occurrence.due_at,
            outcome=outcome,
            fired_at=now,
            updated_at=now,
            run_id=None if outcome == SKIPPED else run_id_for(schedule.name, occurrence.at),
            params=dict(schedule.params),
            holder=holder() if outcome == STARTING else None,
            reason=reason,
        )
    )
    if firing is None:
        return None  # another scheduler fired it first
    if action == "cancel_previous":
        _cancel(store, schedule, active, now)
    if outcome == STARTING:
        launch_firing(store, firing, schedule.plan_path, ctx, now)
    return firing


def _start_queued(
    store: Store,
    schedule: ScheduleRecord,
    queued: list[FiringRecord],
    ctx: LaunchContext,
    now: datetime,
) -> list[FiringRecord]:
    """Start the oldest queued firing once the schedule's previous run has finished."""
    if not queued or active_runs(store, schedule.name):
        return []
    firing = queued[0]
    assert firing.id is not None
    if not store.triggers.update_firing(
        firing.id, (QUEUED,), outcome=STARTING, holder=holder(), updated_at=now
    ):
        return []  # another scheduler took it
    launch_firing(store, firing, schedule.plan_path, ctx, now)
    return [firing]


def _cancel(store: Store, schedule: ScheduleRecord, run_ids: list[str], now: datetime) -> None:
    from orchestration.resilience.interventions import intervene

    for run_id in run_ids:
        try:
            intervene(
                store,
                run_id,
                "cancel",
                actor=f"schedule {schedule.name}",
                reason="overlap policy cancel_previous: a new occurrence is due",
                now=now,
            )
        except OrchestrationError as exc:  # not started yet, or finished meanwhile
            logger.info("schedule %s: cannot cancel run %s: %s", schedule.name, run_id, exc)
