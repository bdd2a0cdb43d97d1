"""Effective priority with aging, trigger rules, pools and worker slots of the TaskScheduler."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from orchestration.core.models import RetryPolicy, Scheduling, TaskRecord, TaskSpec
from orchestration.engine.scheduler import TaskScheduler, effective_priority
from orchestration.resilience.retry import backoff_seconds

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record(
    task_id: str,
    *,
    deadline: datetime | None = None,
    deps: tuple[str, ...] = (),
    priority: int = 5,
    trigger: str = "all_success",
    pool: str | None = None,
) -> TaskRecord:
    spec = TaskSpec(
        id=task_id,
        action={"kind": "shell", "run": ["true"]},
        depends_on=list(deps),
        priority=priority,
        trigger=trigger,
        pool=pool,
        deadline=deadline,
    )
    return TaskRecord("run", task_id, "pending", spec, priority=spec.priority)


def test_highest_priority_first_then_plan_order() -> None:
    tasks = [record("low", priority=3), record("high-1", priority=8), record("high-2", priority=8)]
    scheduler = TaskScheduler(tasks, max_workers=10, pools={})
    for t in tasks:
        scheduler.push_ready(t.task_id, NOW)
    order = [scheduler.next_ready(NOW) for _ in range(3)]
    assert order == ["high-1", "high-2", "low"]
    assert scheduler.next_ready(NOW) is None


def test_worker_slots_and_pools_limit_what_is_handed_out() -> None:
    tasks = [record(f"a{i}", pool="agent") for i in range(3)] + [record("b")]
    scheduler = TaskScheduler(tasks, max_workers=2, pools={"agent": 1})
    for t in tasks:
        scheduler.push_ready(t.task_id, NOW)
    first = scheduler.next_ready(NOW)
    scheduler.started(first)
    second = scheduler.next_ready(NOW)
    assert (first, second) == ("a0", "b")  # a1 waits for the agent pool
    scheduler.started(second)
    assert scheduler.next_ready(NOW) is None  # both workers busy
    scheduler.stopped("a0")
    third = scheduler.next_ready(NOW)
    assert third == "a1"


def test_discarded_tasks_are_not_handed_out() -> None:
    scheduler = TaskScheduler([record("a"), record("b")], max_workers=2, pools={})
    scheduler.push_ready("a", NOW)
    scheduler.push_ready("b", NOW)
    scheduler.discard("a")
    assert scheduler.next_ready(NOW) == "b"
    assert scheduler.next_ready(NOW) is None


@pytest.mark.parametrize(
    ("trigger", "outcomes", "verdict"),
    [
        ("all_success", [("completed", "succeeded"), ("completed", "skipped")], "release"),
        ("all_success", [("completed", "succeeded"), ("failed", None)], "cancel"),
        ("all_success", [("completed", "succeeded")], "wait"),
        ("all_done", [("failed", None), ("cancelled", None)], "release"),
        ("all_done", [("failed", None)], "wait"),
        ("one_failed", [("failed", None)], "release"),
        ("one_failed", [("completed", "succeeded"), ("completed", "succeeded")], "cancel"),
        ("none_failed", [("completed", "succeeded"), ("completed", "skipped")], "release"),
        ("none_failed", [("cancelled", None)], "cancel"),
    ],
)
def test_trigger_rules(trigger: str, outcomes: list[tuple[str, str | None]], verdict: str) -> None:
    child = record("child", deps=("p1", "p2"), trigger=trigger)
    scheduler = TaskScheduler([record("p1"), record("p2"), child], max_workers=1, pools={})
    for parent, (state, outcome) in zip(("p1", "p2"), outcomes, strict=False):
        scheduler.record_final(parent, state, outcome)
    assert scheduler.verdict("child").action == verdict


@pytest.mark.parametrize("backoff", ["exponential", "linear", "fixed"])
def test_backoff_is_capped_and_grows(backoff: str) -> None:
    policy = RetryPolicy(backoff=backoff, base_seconds=2, max_seconds=10, jitter=False)
    delays = [backoff_seconds(policy, attempt) for attempt in range(1, 8)]
    assert all(0 < d <= 10 for d in delays)
    assert delays == sorted(delays)
    if backoff == "exponential":
        assert delays[:3] == [2, 4, 8]
    if backoff == "fixed":
        assert set(delays) == {2}


def test_jitter_stays_within_the_cap() -> None:
    policy = RetryPolicy(base_seconds=1, max_seconds=5, jitter=True)
    rng = random.Random(4)
    delays = [backoff_seconds(policy, 10, rng) for _ in range(200)]
    assert all(0 <= d <= 5 for d in delays) and len(set(delays)) > 100


def test_a_background_task_is_not_starved_by_a_flood_of_high_priority_work() -> None:
    tasks = [record("background", priority=1)] + [record(f"h{i}", priority=8) for i in range(100)]
    scheduler = TaskScheduler(tasks, max_workers=1, pools={})
    now = NOW
    scheduler.push_ready("background", now)
    ran = []
    for i in range(100):  # every minute a new high-priority task arrives and one task runs
        scheduler.push_ready(f"h{i}", now)
        chosen = scheduler.next_ready(now)
        ran.append(chosen)
        if chosen == "background":
            break
        now += timedelta(minutes=1)
    assert "background" in ran
    # (8 - 1) priority points at 0.5 per minute of waiting: it overtakes after about 14 minutes
    assert 10 <= ran.index("background") <= 16


def test_without_aging_the_flood_would_starve_it() -> None:
    tasks = [record("background", priority=1)] + [record(f"h{i}", priority=8) for i in range(50)]
    scheduler = TaskScheduler(
        tasks, max_workers=1, pools={}, weights=Scheduling(aging_per_minute=0)
    )
    now = NOW
    scheduler.push_ready("background", now)
    for i in range(50):
        scheduler.push_ready(f"h{i}", now)
        assert scheduler.next_ready(now) == f"h{i}"
        now += timedelta(minutes=1)


def test_a_near_deadline_boosts_the_task_when_its_window_opens() -> None:
    tasks = [
        record("due", priority=5, deadline=NOW + timedelta(hours=2)),
        record("other", priority=6),
    ]
    scheduler = TaskScheduler(
        tasks, max_workers=1, pools={}, weights=Scheduling(aging_per_minute=0)
    )
    scheduler.push_ready("due", NOW)
    scheduler.push_ready("other", NOW)
    assert scheduler.priority_of("due", NOW).deadline == 0
    later = NOW + timedelta(hours=1, minutes=1)  # inside the one-hour window: +2
    assert scheduler.priority_of("due", later).deadline == 2
    assert scheduler.next_ready(later) == "due"


def test_tasks_that_block_many_others_come_first_and_retries_lower_priority() -> None:
    tasks = [record("leaf"), record("root")] + [record(f"c{i}", deps=("root",)) for i in range(7)]
    scheduler = TaskScheduler(
        tasks, max_workers=1, pools={}, weights=Scheduling(aging_per_minute=0)
    )
    assert scheduler.priority_of("root", NOW).blocking == 3.0  # log2(1 + 7)
    scheduler.push_ready("leaf", NOW)
    scheduler.push_ready("root", NOW, failed_attempts=0)
    assert scheduler.next_ready(NOW) == "root"
    parts = effective_priority(
        5,
        deadline=None,
        dependents=0,
        failed_attempts=2,
        waited_seconds=600,
        now=NOW,
        weights=Scheduling(),
    )
    assert (parts.retries, parts.aging, parts.total) == (2.0, 5.0, 8.0)
    assert "effective priority" in parts.lines()[-1]


def test_max_running_caps_the_run() -> None:
    tasks = [record(f"t{i}") for i in range(5)]
    scheduler = TaskScheduler(tasks, max_workers=4, pools={}, max_running=2)
    for t in tasks:
        scheduler.push_ready(t.task_id, NOW)
    scheduler.started(scheduler.next_ready(NOW))
    scheduler.started(scheduler.next_ready(NOW))
    assert scheduler.next_ready(NOW) is None
