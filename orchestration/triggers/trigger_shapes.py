"""The JSON shapes of schedules, firings and trigger events: the API's and every `--json`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from orchestration.core.trigger_records import FiringRecord, ScheduleRecord, TriggerEventRecord
from orchestration.shapes.records import _Out
from orchestration.triggers.schedule_stats import ScheduleStats
from orchestration.triggers.schedules import Occurrence


class ScheduleStatsOut(_Out):
    runs: int = Field(description="Runs the schedule started.")
    failures: int = Field(description="Runs that failed plus firings whose run never started.")
    mean_duration_seconds: float | None = Field(description="Mean of its finished runs.")
    last_outcome: str | None = Field(description="The newest firing's outcome or run state.")
    last_fired_at: datetime | None


class OccurrenceOut(_Out):
    at: datetime = Field(description="The occurrence (UTC).")
    due_at: datetime = Field(description="When it fires: the occurrence plus its jitter.")
    local: str = Field(description="The occurrence in the schedule's time zone.")


class ScheduleOut(_Out):
    name: str
    plan: str
    cron: str | None
    tz: str
    params: dict[str, Any]
    overlap: str
    catch_up_seconds: float
    jitter_seconds: float
    on: list[dict[str, Any]] = Field(description="Event triggers: {event, when, params, then}.")
    enabled: bool
    created_at: datetime
    updated_at: datetime
    next: OccurrenceOut | None = Field(description="The next occurrence, if any.")
    stats: ScheduleStatsOut


class SchedulesOut(_Out):
    schedules: list[ScheduleOut]


class OccurrencesOut(_Out):
    schedule: str
    occurrences: list[OccurrenceOut]


class FiringOut(_Out):
    id: int
    schedule: str
    kind: str = Field(description="cron | event")
    occurrence: datetime | None
    event_id: int | None
    due_at: datetime
    fired_at: datetime
    outcome: str = Field(
        description="starting | launched | started | added_tasks | queued | skipped | "
        "failed_to_start"
    )
    run_id: str | None
    params: dict[str, Any]
    tasks: list[str]
    reason: str


class FiringsOut(_Out):
    firings: list[FiringOut]


class TriggerEventOut(_Out):
    id: int
    name: str
    key: str
    source: str = Field(description="cli | api | webhook | run")
    run_id: str | None
    data: dict[str, Any]
    received_at: datetime
    dispatched_at: datetime | None
    firings: list[FiringOut] = Field(description="What the event started.")


class TriggerEventsOut(_Out):
    events: list[TriggerEventOut]


class EmittedOut(_Out):
    event: TriggerEventOut
    duplicate: bool = Field(description="True when an event with this key was received before.")


def occurrence_out(occurrence: Occurrence, tz: str) -> OccurrenceOut:
    from orchestration.triggers.schedules import zone

    local = occurrence.at.astimezone(zone(tz)).isoformat()
    return OccurrenceOut(at=occurrence.at, due_at=occurrence.due_at, local=local)


def schedule_out(
    schedule: ScheduleRecord, stats: ScheduleStats, next_occurrence: Occurrence | None
) -> ScheduleOut:
    return ScheduleOut(
        name=schedule.name,
        plan=schedule.plan_path,
        cron=schedule.cron,
        tz=schedule.tz,
        params=schedule.params,
        overlap=schedule.overlap,
        catch_up_seconds=schedule.catch_up_seconds,
        jitter_seconds=schedule.jitter_seconds,
        on=schedule.triggers,
        enabled=schedule.enabled,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        next=occurrence_out(next_occurrence, schedule.tz) if next_occurrence else None,
        stats=ScheduleStatsOut(
            runs=stats.runs,
            failures=stats.failures,
            mean_duration_seconds=stats.mean_duration_seconds,
            last_outcome=stats.last_outcome,
            last_fired_at=stats.last_fired_at,
        ),
    )


def firing_out(firing: FiringRecord) -> FiringOut:
    assert firing.id is not None
    return FiringOut(
        id=firing.id,
        schedule=firing.schedule,
        kind=firing.kind,
        occurrence=firing.occurrence,
        event_id=firing.event_id,
        due_at=firing.due_at,
        fired_at=firing.fired_at,
        outcome=firing.outcome,
        run_id=firing.run_id,
        params=firing.params,
        tasks=firing.tasks,
        reason=firing.reason,
    )


def trigger_event_out(event: TriggerEventRecord, firings: list[FiringRecord]) -> TriggerEventOut:
    assert event.id is not None
    return TriggerEventOut(
        id=event.id,
        name=event.name,
        key=event.key,
        source=event.source,
        run_id=event.run_id,
        data=event.data,
        received_at=event.received_at,
        dispatched_at=event.dispatched_at,
        firings=[firing_out(f) for f in firings if f.event_id == event.id],
    )
