"""Figures per schedule, from its stored firings and the runs they started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from orchestration.core.trigger_records import FAILED_TO_START, LAUNCHED, STARTED, FiringRecord
from orchestration.resilience.runs import shown_state
from orchestration.triggers.launches import run_of

if TYPE_CHECKING:
    from orchestration.store import Store

FINISHED = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class ScheduleStats:
    runs: int  # runs the schedule started (cron and event firings)
    failures: int  # runs that failed, plus firings whose run never started
    mean_duration_seconds: float | None  # of its finished runs, start to finish
    last_outcome: str | None  # the newest firing's: the run's state once it started
    last_fired_at: datetime | None


def schedule_stats(store: Store, schedule: str, now: datetime) -> ScheduleStats:
    firings = store.triggers.firings(schedule)
    runs = failures = 0
    durations: list[float] = []
    for firing in firings:
        if firing.outcome == FAILED_TO_START:
            failures += 1
            continue
        if firing.outcome not in (LAUNCHED, STARTED) or firing.run_id is None:
            continue
        runs += 1
        run = run_of(store, firing.run_id)
        if run is None:
            continue
        if run.state == "failed":
            failures += 1
        if run.state in FINISHED and run.finished_at is not None:
            durations.append((run.finished_at - run.created_at).total_seconds())
    last = firings[-1] if firings else None
    return ScheduleStats(
        runs=runs,
        failures=failures,
        mean_duration_seconds=sum(durations) / len(durations) if durations else None,
        last_outcome=_outcome(store, last, now) if last is not None else None,
        last_fired_at=last.fired_at if last is not None else None,
    )


def _outcome(store: Store, firing: FiringRecord, now: datetime) -> str:
    if firing.outcome == STARTED and firing.run_id is not None:
        run = run_of(store, firing.run_id)
        if run is not None:
            return shown_state(run, now)
    return firing.outcome
