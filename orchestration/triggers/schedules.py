"""Cron schedules as values: the spec a user writes, its occurrences in a time zone, what is due.

Pure functions of the time they are given (no clock is read here), so `orch schedule tick --at`
and tests drive them exactly. Occurrences come from croniter over local wall-clock time, turned
into instants with the time zone database (zoneinfo): a wall time repeated when clocks go back
fires once (its first instant); a wall time skipped when clocks go forward fires at the same
offset after the change (02:30 on a spring-forward night fires at 03:30). Jitter is a fixed
offset per occurrence (a hash of the schedule's name and the occurrence), so it is reproducible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import EventTrigger, ParamValue

if TYPE_CHECKING:
    from orchestration.core.trigger_records import ScheduleRecord

SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TICK_GRACE_SECONDS = 60.0  # an occurrence stays fireable this long even without a catch-up window
MAX_FIRINGS_PER_TICK = 100  # occurrences of one schedule fired by one tick (a long catch-up)
MAX_JITTER_SECONDS = 86_400.0
MAX_CATCH_UP_SECONDS = 30 * 86_400.0


class ScheduleSpec(BaseModel):
    """A schedule as `orch schedule add`, a schedule file or the API give it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=SCHEDULE_NAME.pattern)
    plan: str = Field(min_length=1)
    cron: str | None = None
    tz: str = "UTC"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    overlap: Literal["skip", "queue", "cancel_previous"] = "skip"
    catch_up_seconds: float = Field(0.0, ge=0, le=MAX_CATCH_UP_SECONDS)
    jitter_seconds: float = Field(0.0, ge=0, le=MAX_JITTER_SECONDS)
    on: list[EventTrigger] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        zone(tz)
        return tz

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is not None:
            check_cron(cron)
        return cron


def zone(name: str) -> ZoneInfo:
    """The time zone called `name` (e.g. Europe/Berlin), or a clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use a name from the tz database such as "
            "'UTC' or 'Europe/Berlin'"
        ) from None


def check_cron(cron: str) -> None:
    """Raise ValueError naming what is wrong with a five-field cron expression."""
    from croniter import croniter

    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {cron!r} has {len(fields)} fields; it needs 5: minute hour "
            "day-of-month month day-of-week (e.g. '0 2 * * 1-5')"
        )
    try:
        croniter(cron)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"cron expression {cron!r} is not valid: {exc}") from None


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One time a schedule fires: its nominal instant and when it is due (with jitter)."""

    at: datetime  # UTC
    due_at: datetime  # UTC, `at` plus the jitter


def occurrences(cron: str, tz: str, after: datetime) -> Iterator[datetime]:
    """The schedule's instants (UTC) strictly after `after`, in order, without end."""
    from croniter import croniter

    local = zone(tz)
    start = after.astimezone(local).replace(tzinfo=None)
    # one minute back: a wall time whose instant lies after `after` may read earlier (DST)
    walls = croniter(cron, start - timedelta(hours=3))
    last = after
    while True:
        wall: datetime = walls.get_next(datetime)
        instant = wall.replace(tzinfo=local, fold=0).astimezone(UTC)
        if instant > last:
            last = instant
            yield instant


def jitter_offset(name: str, at: datetime, jitter_seconds: float) -> timedelta:
    """A fixed delay in [0, jitter) for this schedule and occurrence: spread, yet reproducible."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{name}|{at.astimezone(UTC).isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=round(fraction * jitter_seconds, 3))


def next_occurrences(schedule: ScheduleRecord, after: datetime, count: int) -> list[Occurrence]:
    """The next `count` occurrences after `after` (none for a schedule without cron)."""
    if schedule.cron is None:
        return []
    out = []
    for at in occurrences(schedule.cron, schedule.tz, after):
        out.append(Occurrence(at, at + jitter_offset(schedule.name, at, schedule.jitter_seconds)))
        if len(out) >= count:
            break
    return out


def due_occurrences(schedule: ScheduleRecord, now: datetime) -> list[Occurrence]:
    """Occurrences due at `now` and still inside the catch-up window, oldest first.

    Due: its time plus jitter has come. Inside the window: it became due at most
    `catch_up_seconds` (at least TICK_GRACE_SECONDS) ago, and not before the schedule existed.
    Which of them already fired is the store's business (their firing keys).
    """
    if schedule.cron is None:
        return []
    window = timedelta(seconds=max(schedule.catch_up_seconds, TICK_GRACE_SECONDS))
    jitter = timedelta(seconds=schedule.jitter_seconds)
    earliest = max(now - window - jitter, schedule.created_at)
    due = []
    for at in occurrences(schedule.cron, schedule.tz, earliest - timedelta(microseconds=1)):
        if at > now:
            break
        due_at = at + jitter_offset(schedule.name, at, schedule.jitter_seconds)
        if due_at <= now and now - due_at <= window:
            due.append(Occurrence(at, due_at))
    return due[-MAX_FIRINGS_PER_TICK:]


def firing_key(schedule: str, at: datetime) -> str:
    """The unique key of a cron occurrence's firing: one firing per schedule and instant."""
    return f"cron:{schedule}:{at.astimezone(UTC).isoformat()}"


OverlapAction = Literal["start", "skip", "queue", "cancel_previous"]


def overlap_action(policy: str, previous_active: bool) -> OverlapAction:
    """What to do with a due occurrence, given whether the schedule's previous run is active."""
    if not previous_active:
        return "start"
    if policy == "queue":
        return "queue"
    if policy == "cancel_previous":
        return "cancel_previous"
    return "skip"


def spec_problem(error: Exception, source: str) -> OrchestrationError:
    """A pydantic error on a schedule turned into one clear message naming `source` and field."""
    from pydantic import ValidationError

    if not isinstance(error, ValidationError):
        return OrchestrationError(f"{source}: {error}")
    lines = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "schedule"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{source}: field '{field}': {message}")
    return OrchestrationError("\n".join(lines))
