"""Use cases of schedules and events, below both the CLI and the API: add, list, tick, emit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.errors import OrchestrationError, PlanError
from orchestration.core.trigger_records import FiringRecord, ScheduleRecord
from orchestration.triggers.event_triggers import check_trigger, dispatch_events, emit_event
from orchestration.triggers.launches import LaunchContext
from orchestration.triggers.schedule_stats import schedule_stats
from orchestration.triggers.schedules import ScheduleSpec, next_occurrences, spec_problem

if TYPE_CHECKING:
    from orchestration.store import Store
    from orchestration.triggers.trigger_shapes import ScheduleOut, TriggerEventsOut

LOG_DIR_NAME = "trigger-logs"


def launch_context(store: Store, log_dir: Path | None = None) -> LaunchContext:
    """Runs go into `store`; their launch output beside a SQLite file, else under the cwd."""
    from orchestration.store.db import sqlite_file

    if log_dir is None:
        database = sqlite_file(store.url)
        base = database.parent if database is not None else Path.cwd() / ".orchestration"
        log_dir = base / LOG_DIR_NAME
    return LaunchContext(store.url, log_dir)


def parse_spec(data: dict[str, Any], source: str) -> ScheduleSpec:
    """A schedule from user data, or one error naming `source` and each bad field."""
    from pydantic import ValidationError

    try:
        return ScheduleSpec.model_validate(data)
    except ValidationError as exc:
        raise spec_problem(exc, source) from None


def add_schedule(
    store: Store, spec: ScheduleSpec, now: datetime, *, replace_existing: bool = False
) -> ScheduleRecord:
    """Check the schedule against its plan and store it (the plan's own `on:` included)."""
    from orchestration.engine.plan import load_plan
    from orchestration.pluginhost.hooks import load_plugins

    plan_path = Path(spec.plan).expanduser().resolve()
    plan = load_plan(plan_path, action_kinds=load_plugins().action_kinds)
    triggers = list(spec.on) + list(plan.spec.on)
    if spec.cron is None and not triggers:
        raise OrchestrationError(
            f"schedule '{spec.name}' has no --cron and no event trigger (--on), and its plan "
            f"{plan_path} declares no `on:`; give one of them"
        )
    for trigger in triggers:
        check_trigger(trigger, f"schedule {spec.name}")
    _check_params(spec, plan_path, plan.spec.params, triggers)
    record = ScheduleRecord(
        name=spec.name,
        plan_path=str(plan_path),
        cron=spec.cron,
        tz=spec.tz,
        params=dict(spec.params),
        overlap=spec.overlap,
        catch_up_seconds=spec.catch_up_seconds,
        jitter_seconds=spec.jitter_seconds,
        triggers=[t.model_dump(mode="json") for t in triggers],
        enabled=spec.enabled,
        created_at=now,
        updated_at=now,
    )
    store.triggers.add_schedule(record, replace_existing=replace_existing)
    return record


def _check_params(
    spec: ScheduleSpec, plan_path: Path, declared: dict[str, Any], triggers: list[Any]
) -> None:
    given = set(spec.params) | {name for t in triggers for name in t.params}
    unknown = sorted(given - set(declared))
    if unknown:
        raise PlanError(
            f"schedule '{spec.name}' gives unknown parameter(s) {', '.join(unknown)}; the plan "
            f"declares: {', '.join(sorted(declared)) or 'none'}",
            file=str(plan_path),
            field="params",
        )
    required = sorted(n for n, v in declared.items() if v is None and n not in spec.params)
    if spec.cron is not None and required:
        raise PlanError(
            f"schedule '{spec.name}' fires by cron, but the plan's parameter(s) "
            f"{', '.join(required)} have no default: give them with --params",
            file=str(plan_path),
            field=f"params.{required[0]}",
        )
    from orchestration.core.yamlfile import LineMap
    from orchestration.engine.plan_params import resolve_values

    typed = {n: v for n, v in declared.items() if n in spec.params or v is not None}
    resolve_values(typed, spec.params, display=str(plan_path), lines=LineMap())


def schedule_shape(store: Store, record: ScheduleRecord, now: datetime) -> ScheduleOut:
    from orchestration.triggers.trigger_shapes import schedule_out

    upcoming = next_occurrences(record, now, 1)
    return schedule_out(record, schedule_stats(store, record.name, now), next(iter(upcoming), None))


@dataclass(frozen=True, slots=True)
class TickResult:
    events: int  # events read from the runs' history
    firings: list[FiringRecord]


def tick(store: Store, ctx: LaunchContext, now: datetime) -> TickResult:
    """One scheduler pass: run events collected, events dispatched, cron occurrences fired."""
    from orchestration.triggers.cron_firing import tick_schedules
    from orchestration.triggers.run_events import collect_run_events

    collected = collect_run_events(store, now)
    firings = dispatch_events(store, ctx, now)
    firings += tick_schedules(store, ctx, now)
    return TickResult(len(collected), firings)


def emit_and_dispatch(
    store: Store,
    ctx: LaunchContext,
    name: str,
    data: dict[str, Any],
    *,
    source: str,
    now: datetime,
    key: str | None = None,
    dispatch: bool = True,
) -> tuple[Any, bool]:
    """Store an event and (unless `dispatch=False`) fire the triggers it matches now."""
    event, created = emit_event(store, name, data, source=source, now=now, key=key)
    if created and dispatch:
        dispatch_events(store, ctx, now)
    return event, created


def events_shape(store: Store, limit: int, name: str | None = None) -> TriggerEventsOut:
    from orchestration.triggers.trigger_shapes import TriggerEventsOut, trigger_event_out

    events = store.triggers.trigger_events(name=name, limit=limit)
    ids = {e.id for e in events}
    firings = [f for f in store.triggers.firings() if f.event_id in ids]
    return TriggerEventsOut(events=[trigger_event_out(e, firings) for e in events])
