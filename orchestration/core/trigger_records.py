"""The plain records of triggers: a stored schedule, one firing of it, an event received."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OVERLAP_POLICIES = ("skip", "queue", "cancel_previous")

# What a firing did. `starting`: stored, its run being launched; `launched`: its process runs;
# `started` / `added_tasks`: done;
# `adding` / `added_tasks`: an event's tasks being added / added to a running run;
# `queued`: waits for the schedule's previous run to finish; `skipped`: the previous run was still
# active; `failed_to_start`: the launch failed or the launched run never appeared.
STARTING = "starting"
LAUNCHED = "launched"  # its process runs; its run's row has not appeared yet
ADDING = "adding"  # an event trigger's tasks being added to a running run
STARTED = "started"
ADDED_TASKS = "added_tasks"
QUEUED = "queued"
SKIPPED = "skipped"
FAILED_TO_START = "failed_to_start"
FIRING_OUTCOMES = (
    STARTING,
    LAUNCHED,
    ADDING,
    STARTED,
    ADDED_TASKS,
    QUEUED,
    SKIPPED,
    FAILED_TO_START,
)


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    name: str
    plan_path: str  # absolute
    cron: str | None  # None: started by events only
    tz: str
    params: dict[str, Any]
    overlap: str
    catch_up_seconds: float
    jitter_seconds: float
    triggers: list[dict[str, Any]]  # EventTrigger dumps: {event, when, params, then}
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FiringRecord:
    key: str  # unique: `cron:NAME:OCCURRENCE` or `event:NAME:EVENT_ID:INDEX`
    schedule: str
    kind: str  # cron | event
    due_at: datetime
    outcome: str
    fired_at: datetime
    updated_at: datetime
    occurrence: datetime | None = None
    event_id: int | None = None
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)
    holder: str | None = None
    pid: int | None = None
    reason: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class TriggerEventRecord:
    name: str
    key: str
    source: str  # cli | api | webhook | run
    data: dict[str, Any]
    received_at: datetime
    run_id: str | None = None
    dispatched_at: datetime | None = None
    id: int | None = None
