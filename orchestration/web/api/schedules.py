"""Schedules: list, add, show, enable, disable and remove them, and see their next occurrences."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, Query

from orchestration.core.errors import NotFoundError
from orchestration.triggers.schedules import SCHEDULE_NAME, ScheduleSpec, next_occurrences
from orchestration.triggers.trigger_service import add_schedule, schedule_shape
from orchestration.triggers.trigger_shapes import (
    FiringsOut,
    OccurrencesOut,
    ScheduleOut,
    SchedulesOut,
    firing_out,
    occurrence_out,
)
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import StoreDep
from orchestration.web.errors import ApiError

router = APIRouter(tags=["schedules"])

ScheduleName = Path(pattern=SCHEDULE_NAME.pattern, description="The schedule's name.")


@router.get("/schedules", response_model=SchedulesOut)
def list_schedules(store: StoreDep) -> SchedulesOut:
    """Every schedule with its next occurrence and figures: as `orch schedule list --json`."""
    now = datetime.now(UTC)
    return SchedulesOut(
        schedules=[schedule_shape(store, s, now) for s in store.triggers.schedules()]
    )


@router.post("/schedules", response_model=ScheduleOut, status_code=201)
def create_schedule(
    body: ScheduleSpec, principal: CurrentPrincipal, store: StoreDep
) -> ScheduleOut:
    """Add a schedule (as `orch schedule add`); its plan is a path on the server, checked now."""
    try:
        store.triggers.schedule(body.name)
    except NotFoundError:
        pass
    else:
        raise ApiError(409, f"schedule '{body.name}' already exists", code="conflict")
    now = datetime.now(UTC)
    return schedule_shape(store, add_schedule(store, body, now), now)


@router.get("/schedules/{name}", response_model=ScheduleOut)
def show_schedule(store: StoreDep, name: str = ScheduleName) -> ScheduleOut:
    """One schedule with its figures."""
    return schedule_shape(store, store.triggers.schedule(name), datetime.now(UTC))


@router.get("/schedules/{name}/firings", response_model=FiringsOut)
def schedule_firings(
    store: StoreDep,
    name: str = ScheduleName,
    limit: int = Query(50, ge=1, le=10_000, description="The newest firings returned."),
) -> FiringsOut:
    """The schedule's latest firings (oldest first): what each occurrence or event started."""
    store.triggers.schedule(name)
    return FiringsOut(firings=[firing_out(f) for f in store.triggers.firings(name, limit=limit)])


@router.get("/schedules/{name}/next", response_model=OccurrencesOut)
def schedule_next(
    store: StoreDep,
    name: str = ScheduleName,
    count: int = Query(5, ge=1, le=1000),
) -> OccurrencesOut:
    """The next occurrences, as `orch schedule next NAME --count N --json`."""
    schedule = store.triggers.schedule(name)
    found = next_occurrences(schedule, datetime.now(UTC), count)
    return OccurrencesOut(
        schedule=name, occurrences=[occurrence_out(o, schedule.tz) for o in found]
    )


@router.post("/schedules/{name}/enable", response_model=ScheduleOut)
def enable_schedule(
    principal: CurrentPrincipal, store: StoreDep, name: str = ScheduleName
) -> ScheduleOut:
    """Fire the schedule again."""
    return _set_enabled(store, name, True)


@router.post("/schedules/{name}/disable", response_model=ScheduleOut)
def disable_schedule(
    principal: CurrentPrincipal, store: StoreDep, name: str = ScheduleName
) -> ScheduleOut:
    """Stop firing the schedule; the runs it started go on."""
    return _set_enabled(store, name, False)


@router.delete("/schedules/{name}", status_code=204)
def delete_schedule(principal: CurrentPrincipal, store: StoreDep, name: str = ScheduleName) -> None:
    """Remove the schedule; its firings stay in the history."""
    store.triggers.remove_schedule(name)


def _set_enabled(store: Any, name: str, enabled: bool) -> ScheduleOut:
    now = datetime.now(UTC)
    store.triggers.set_enabled(name, enabled, now)
    return schedule_shape(store, store.triggers.schedule(name), now)
