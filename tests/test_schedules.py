"""Cron schedules as values: occurrences across DST, jitter, the catch-up window, overlap."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from orchestration.core.trigger_records import ScheduleRecord
from orchestration.triggers.schedules import (
    TICK_GRACE_SECONDS,
    ScheduleSpec,
    due_occurrences,
    firing_key,
    jitter_offset,
    next_occurrences,
    occurrences,
    overlap_action,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def schedule(cron: str = "0 2 * * *", **changes: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "name": "nightly",
        "plan_path": "/plans/plan.yaml",
        "cron": cron,
        "tz": "UTC",
        "params": {},
        "overlap": "skip",
        "catch_up_seconds": 0.0,
        "jitter_seconds": 0.0,
        "triggers": [],
        "enabled": True,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return ScheduleRecord(**values)  # type: ignore[arg-type]


def take(cron: str, tz: str, after: datetime, count: int) -> list[datetime]:
    found = []
    for at in occurrences(cron, tz, after):
        found.append(at)
        if len(found) == count:
            return found
    return found


def test_weekdays_at_two_in_berlin_follow_the_summer_time_change() -> None:
    # Friday 27 March 2026, then Monday 30 March: clocks went forward on Sunday the 29th
    found = take("0 2 * * 1-5", "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC), 3)
    assert found == [
        datetime(2026, 3, 27, 1, 0, tzinfo=UTC),  # 02:00 CET
        datetime(2026, 3, 30, 0, 0, tzinfo=UTC),  # 02:00 CEST
        datetime(2026, 3, 31, 0, 0, tzinfo=UTC),
    ]


def test_a_wall_time_skipped_by_spring_forward_fires_after_the_change_once() -> None:
    # 29 March 2026 in Berlin: 02:00-03:00 does not exist; 02:30 fires at 03:30 CEST (01:30 UTC)
    found = take("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert found == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


def test_a_wall_time_repeated_by_fall_back_fires_once() -> None:
    # 25 October 2026 in Berlin: 02:00-03:00 happens twice; 02:30 fires at its first instant
    found = take("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert found == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET
    ]


def test_every_half_hour_across_fall_back_has_no_duplicates_and_keeps_order() -> None:
    found = take("*/30 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, 0, tzinfo=UTC), 8)
    assert found == sorted(set(found))
    assert all(b - a >= timedelta(minutes=30) for a, b in itertools.pairwise(found))


def test_jitter_is_reproducible_within_range_and_differs_between_occurrences() -> None:
    at = [T0 + timedelta(days=i) for i in range(20)]
    first = [jitter_offset("nightly", a, 600) for a in at]
    again = [jitter_offset("nightly", a, 600) for a in at]
    assert first == again
    assert all(timedelta(0) <= j < timedelta(seconds=600) for j in first)
    assert len(set(first)) > 10
    assert jitter_offset("nightly", T0, 0) == timedelta(0)
    assert jitter_offset("other", T0, 600) != jitter_offset("nightly", T0, 600)


def test_next_occurrences_carry_their_jitter() -> None:
    s = schedule(jitter_seconds=300)
    found = next_occurrences(s, T0, 3)
    assert [o.at for o in found] == [T0 + timedelta(hours=2, days=i) for i in range(3)]
    assert [o.due_at - o.at for o in found] == [jitter_offset("nightly", o.at, 300) for o in found]


def test_an_occurrence_is_due_once_its_jitter_passed() -> None:
    s = schedule(jitter_seconds=300)
    at = T0 + timedelta(hours=2)
    delay = jitter_offset("nightly", at, 300)
    assert due_occurrences(s, at + delay - timedelta(seconds=1)) == []
    [due] = due_occurrences(s, at + delay)
    assert (due.at, due.due_at) == (at, at + delay)


def test_without_catch_up_a_missed_occurrence_is_dropped_after_the_grace() -> None:
    s = schedule()
    at = T0 + timedelta(hours=2)
    assert [o.at for o in due_occurrences(s, at + timedelta(seconds=TICK_GRACE_SECONDS))] == [at]
    assert due_occurrences(s, at + timedelta(seconds=TICK_GRACE_SECONDS + 1)) == []


def test_catch_up_window_returns_every_missed_occurrence_inside_it() -> None:
    s = schedule("0 * * * *", catch_up_seconds=3 * 3600)
    now = T0 + timedelta(hours=10, minutes=5)
    found = [o.at for o in due_occurrences(s, now)]
    assert found == [T0 + timedelta(hours=h) for h in (8, 9, 10)]


def test_occurrences_before_the_schedule_existed_never_fire() -> None:
    s = schedule(
        "0 * * * *", catch_up_seconds=24 * 3600, created_at=T0 + timedelta(hours=5, minutes=1)
    )
    found = [o.at for o in due_occurrences(s, T0 + timedelta(hours=8))]
    assert found == [T0 + timedelta(hours=h) for h in (6, 7, 8)]


def test_a_schedule_without_cron_has_no_occurrences() -> None:
    s = schedule(cron=None)
    assert next_occurrences(s, T0, 3) == []
    assert due_occurrences(s, T0 + timedelta(days=1)) == []


def test_firing_keys_name_the_schedule_and_the_instant_in_utc() -> None:
    local = datetime.fromisoformat("2026-03-30T02:00:00+02:00")
    assert firing_key("nightly", local) == "cron:nightly:2026-03-30T00:00:00+00:00"


@pytest.mark.parametrize(
    ("policy", "active", "expected"),
    [
        ("skip", False, "start"),
        ("queue", False, "start"),
        ("cancel_previous", False, "start"),
        ("skip", True, "skip"),
        ("queue", True, "queue"),
        ("cancel_previous", True, "cancel_previous"),
    ],
)
def test_overlap_policy_table(policy: str, active: bool, expected: str) -> None:
    assert overlap_action(policy, active) == expected


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("cron", "0 2 * *", "needs 5"),
        ("cron", "61 * * * *", "not valid"),
        ("tz", "Mars/Olympus", "unknown time zone"),
        ("overlap", "sometimes", "skip"),
        ("name", "../x", "pattern"),
        ("jitter_seconds", -1, "greater than or equal"),
    ],
)
def test_bad_schedule_fields_are_named(field: str, value: object, says: str) -> None:
    data = {"name": "n", "plan": "plan.yaml", "cron": "0 2 * * *", field: value}
    with pytest.raises(ValidationError) as caught:
        ScheduleSpec.model_validate(data)
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert says in str(error["msg"])
