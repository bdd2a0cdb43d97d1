"""Ready-queue order, trigger rules, pools and worker slots of the TaskScheduler."""

from __future__ import annotations

import random

import pytest

from orchestration.models import RetryPolicy, TaskRecord, TaskSpec
from orchestration.retry import backoff_seconds
from orchestration.scheduler import TaskScheduler


def record(
    task_id: str,
    *,
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
    )
    return TaskRecord("run", task_id, "pending", spec, priority=spec.priority)


def test_highest_priority_first_then_plan_order() -> None:
    tasks = [record("low", priority=3), record("high-1", priority=8), record("high-2", priority=8)]
    scheduler = TaskScheduler(tasks, max_workers=10, pools={})
    for t in tasks:
        scheduler.push_ready(t.task_id)
    order = [scheduler.next_ready() for _ in range(3)]
    assert order == ["high-1", "high-2", "low"]
    assert scheduler.next_ready() is None


def test_worker_slots_and_pools_limit_what_is_handed_out() -> None:
    tasks = [record(f"a{i}", pool="agent") for i in range(3)] + [record("b")]
    scheduler = TaskScheduler(tasks, max_workers=2, pools={"agent": 1})
    for t in tasks:
        scheduler.push_ready(t.task_id)
    first = scheduler.next_ready()
    scheduler.started(first)
    second = scheduler.next_ready()
    assert (first, second) == ("a0", "b")  # a1 waits for the agent pool
    scheduler.started(second)
    assert scheduler.next_ready() is None  # both workers busy
    scheduler.stopped("a0")
    third = scheduler.next_ready()
    assert third == "a1"


def test_discarded_tasks_are_not_handed_out() -> None:
    scheduler = TaskScheduler([record("a"), record("b")], max_workers=2, pools={})
    scheduler.push_ready("a")
    scheduler.push_ready("b")
    scheduler.discard("a")
    assert scheduler.next_ready() == "b"
    assert scheduler.next_ready() is None


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
