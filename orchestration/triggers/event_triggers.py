"""Event triggers: events are stored once by key, then matched against the schedules' `on:` rules.

An event comes from outside (`orch events emit`, `POST /api/v1/events/{name}`, a signed forge
webhook) or from the runs' own history (orchestration/triggers/run_events.py). Dispatch matches each
undispatched event against every enabled schedule's triggers; a match is a firing with a unique
key (schedule, event, trigger), stored before it acts, so each event fires each trigger once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.errors import OrchestrationError, RuleError
from orchestration.core.models import TRIGGER_EVENT_NAMES
from orchestration.core.trigger_records import (
    ADDED_TASKS,
    ADDING,
    STARTING,
    FiringRecord,
    ScheduleRecord,
    TriggerEventRecord,
)
from orchestration.resilience.runs import run_id_for
from orchestration.rules.expressions import compile_expression
from orchestration.triggers.launches import (
    LaunchContext,
    active_runs,
    fail_firing,
    holder,
    launch_firing,
    orphaned,
    reconcile,
    run_of,
    take_over,
)

if TYPE_CHECKING:
    from orchestration.core.models import EventTrigger
    from orchestration.store import Store

logger = logging.getLogger(__name__)

EVENT_NAMES = TRIGGER_EVENT_NAMES  # what `when` and trigger params may read
MAX_EVENT_NAME = 200
MAX_KEY_CHARS = 400


def check_trigger(trigger: EventTrigger, where: str) -> None:
    """Raise RuleError when the trigger's `when` or param expressions cannot be compiled."""
    if trigger.when is not None:
        compile_expression(trigger.when, file=where, rule="on.when", names=EVENT_NAMES)
    for name, source in trigger.params.items():
        compile_expression(source, file=where, rule=f"on.params.{name}", names=EVENT_NAMES)


def emit_event(
    store: Store,
    name: str,
    data: Mapping[str, Any],
    *,
    source: str,
    now: datetime,
    key: str | None = None,
    run_id: str | None = None,
) -> tuple[TriggerEventRecord, bool]:
    """Store an event; with a `key` seen before, the stored one and False (deduplicated)."""
    if not name or len(name) > MAX_EVENT_NAME:
        raise OrchestrationError(f"an event name has 1 to {MAX_EVENT_NAME} characters")
    if key is not None and not 0 < len(key) <= MAX_KEY_CHARS - len(name) - 1:
        raise OrchestrationError(f"an event key has 1 to {MAX_KEY_CHARS - 200} characters")
    full_key = f"{name}:{key}" if key is not None else f"{name}:{uuid.uuid4().hex}"
    event = TriggerEventRecord(name, full_key, source, dict(data), now, run_id=run_id)
    stored = store.triggers.add_events([event])
    if stored:
        return stored[0], True
    existing = store.triggers.event_by_key(full_key)
    assert existing is not None
    return existing, False


def dispatch_events(store: Store, ctx: LaunchContext, now: datetime) -> list[FiringRecord]:
    """Match every undispatched event against the enabled schedules' triggers and act."""
    schedules = [s for s in store.triggers.schedules() if s.enabled and s.triggers]
    reconcile(store, ctx, {s.name: s.plan_path for s in store.triggers.schedules()}, now)
    finish_adding(store, now)
    fired: list[FiringRecord] = []
    for event in store.triggers.trigger_events(undispatched=True):
        assert event.id is not None
        for schedule in schedules:
            for index, trigger in enumerate(_triggers_of(schedule)):
                if trigger.event == event.name and _matches(schedule, trigger, event):
                    firing = _fire(store, schedule, index, trigger, event, ctx, now)
                    if firing is not None:
                        fired.append(firing)
        store.triggers.mark_dispatched(event.id, now)
    return fired


def _triggers_of(schedule: ScheduleRecord) -> list[EventTrigger]:
    from orchestration.core.models import EventTrigger

    return [EventTrigger.model_validate(raw) for raw in schedule.triggers]


def _context(event: TriggerEventRecord) -> dict[str, Any]:
    return {
        "event": event.name,
        "data": event.data,
        "key": event.key,
        "source": event.source,
        "run_id": event.run_id,
    }


def _matches(schedule: ScheduleRecord, trigger: EventTrigger, event: TriggerEventRecord) -> bool:
    if trigger.when is None:
        return True
    try:
        expression = compile_expression(
            trigger.when, file=f"schedule {schedule.name}", rule="on.when", names=EVENT_NAMES
        )
        return bool(expression.evaluate(_context(event)))
    except RuleError as exc:  # a rule that fails on this event's data does not fire
        logger.warning("schedule %s: event %s: %s", schedule.name, event.id, exc)
        return False


def _params(
    schedule: ScheduleRecord, trigger: EventTrigger, event: TriggerEventRecord
) -> dict[str, Any]:
    """The schedule's params, then the trigger's expressions evaluated on the event."""
    values = dict(schedule.params)
    for name, source in trigger.params.items():
        expression = compile_expression(
            source, file=f"schedule {schedule.name}", rule=f"on.params.{name}", names=EVENT_NAMES
        )
        values[name] = expression.evaluate(_context(event))
    return values


def _fire(
    store: Store,
    schedule: ScheduleRecord,
    index: int,
    trigger: EventTrigger,
    event: TriggerEventRecord,
    ctx: LaunchContext,
    now: datetime,
) -> FiringRecord | None:
    running = (
        [r for r in active_runs(store, schedule.name) if run_of(store, r) is not None]
        if trigger.then == "add_tasks"
        else []
    )
    try:
        params = _params(schedule, trigger, event)
        reason = ""
    except RuleError as exc:
        params, reason = dict(schedule.params), str(exc)
    firing = store.triggers.insert_firing(
        FiringRecord(
            key=f"event:{schedule.name}:{event.id}:{index}",
            schedule=schedule.name,
            kind="event",
            event_id=event.id,
            due_at=event.received_at,
            outcome=ADDING if running else STARTING,
            fired_at=now,
            updated_at=now,
            run_id=running[-1] if running else run_id_for(schedule.name, now),
            params=params,
            holder=holder(),
        )
    )
    if firing is None:
        return None  # fired already (by another dispatcher, or before a restart)
    if reason:
        fail_firing(store, firing, f"cannot compute the params: {reason}", now, (firing.outcome,))
    elif running:
        _add_tasks(store, schedule, firing, now)
    else:
        launch_firing(store, firing, schedule.plan_path, ctx, now)
    return firing


def _add_tasks(store: Store, schedule: ScheduleRecord, firing: FiringRecord, now: datetime) -> None:
    """Add the plan's tasks (with the firing's params) to the schedule's running run.

    The run's `tasks_added` event names the firing: a dispatcher that died between adding the
    tasks and recording it finds them there (`finish_adding`) instead of adding them twice.
    """
    from orchestration.engine.plan import load_plan
    from orchestration.engine.task_adding import store_tasks
    from orchestration.pluginhost.hooks import load_plugins

    assert firing.id is not None and firing.run_id is not None
    run_id = firing.run_id
    try:
        kinds = load_plugins().action_kinds
        plan = load_plan(Path(schedule.plan_path), action_kinds=kinds, params=firing.params)
        source = f"schedule {schedule.name}, event {firing.event_id}"
        records = store_tasks(
            store,
            run_id,
            plan.spec.tasks,
            source=source,
            action_kinds=kinds,
            now=now,
            event_data={"firing": firing.id},
        )
    except OrchestrationError as exc:
        fail_firing(store, firing, f"cannot add tasks to run {run_id}: {exc}", now, (ADDING,))
        return
    _added(store, firing, [r.task_id for r in records], now)


def _added(store: Store, firing: FiringRecord, tasks: list[str], now: datetime) -> None:
    assert firing.id is not None
    store.triggers.update_firing(
        firing.id, (ADDING,), outcome=ADDED_TASKS, tasks=tasks, updated_at=now
    )


def finish_adding(store: Store, now: datetime) -> None:
    """Complete `adding` firings whose dispatcher died: record the tasks it added, else add them."""
    for firing in store.triggers.firings(outcomes=(ADDING,)):
        if firing.run_id is None or not orphaned(firing, now):
            continue
        if not take_over(store, firing, now):
            continue
        added = [
            e.data.get("tasks", [])
            for e in store.events(firing.run_id, kinds=["tasks_added"])
            if e.data.get("firing") == firing.id
        ]
        if added:
            _added(store, firing, list(added[0]), now)
            continue
        try:
            schedule = store.triggers.schedule(firing.schedule)
        except OrchestrationError as exc:
            fail_firing(store, firing, str(exc), now, (ADDING,))
            continue
        _add_tasks(store, schedule, firing, now)
