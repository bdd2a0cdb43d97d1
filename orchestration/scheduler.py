"""Which task may run now: trigger rules on dependencies, priority order, pools, worker slots."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from orchestration.lifecycle import FINAL_STATES, TaskState
from orchestration.models import TaskRecord

logger = logging.getLogger(__name__)

SUCCESS_OUTCOMES = frozenset({"succeeded", "skipped", "approved", None})


@dataclass(slots=True)
class _Node:
    """Scheduling facts of one task: counters make each release check O(1)."""

    task_id: str
    priority: int
    seq: int
    trigger: str
    pool: str | None
    deps: tuple[str, ...]
    dependents: list[str] = field(default_factory=list)
    done: int = 0
    succeeded: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # release | wait | cancel
    reason: str = ""


def dependency_verdict(node: _Node) -> Verdict:
    """What a task's trigger rule says given how its dependencies ended so far."""
    total = len(node.deps)
    all_done = node.done == total
    if node.trigger == "all_success":
        if node.failed:
            return Verdict("cancel", "upstream failed")
        return Verdict("release" if node.succeeded == total else "wait")
    if node.trigger == "all_done":
        return Verdict("release" if all_done else "wait")
    if node.trigger == "one_failed":
        if node.failed:
            return Verdict("release")
        return Verdict("cancel", "no upstream failed") if all_done else Verdict("wait")
    # none_failed
    if node.failed:
        return Verdict("cancel", "upstream failed")
    return Verdict("release" if all_done else "wait")


class TaskScheduler:
    """Holds the ready queue (a heap) and dependency counters of one run, in memory.

    The store stays the source of truth; the scheduler is rebuilt from it on resume.
    """

    def __init__(self, tasks: Iterable[TaskRecord], *, max_workers: int, pools: dict[str, int]):
        self.max_workers = max_workers
        self.pool_slots = dict(pools)
        self.pool_busy: dict[str, int] = dict.fromkeys(pools, 0)
        self.running: set[str] = set()
        self.nodes: dict[str, _Node] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._queued: set[str] = set()
        for seq, task in enumerate(tasks):
            self._add_node(task, seq)

    def _add_node(self, task: TaskRecord, seq: int) -> None:
        spec = task.spec
        node = _Node(
            task.task_id, task.priority, seq, spec.trigger, spec.pool, tuple(spec.depends_on)
        )
        self.nodes[task.task_id] = node
        for dep in node.deps:
            parent = self.nodes.get(dep)
            if parent is not None:
                parent.dependents.append(task.task_id)

    def link_dependents(self) -> None:
        """Rebuild dependents lists (needed when tasks were added in any order)."""
        for node in self.nodes.values():
            node.dependents.clear()
        for node in self.nodes.values():
            for dep in node.deps:
                self.nodes[dep].dependents.append(node.task_id)

    def record_final(self, task_id: str, state: str, outcome: str | None) -> None:
        """Count a finished task against its dependents (once per task reaching a final state)."""
        succeeded = state == TaskState.COMPLETED and outcome in SUCCESS_OUTCOMES
        for child_id in self.nodes[task_id].dependents:
            child = self.nodes[child_id]
            child.done += 1
            if succeeded:
                child.succeeded += 1
            else:
                child.failed += 1

    def verdict(self, task_id: str) -> Verdict:
        return dependency_verdict(self.nodes[task_id])

    def dependents(self, task_id: str) -> list[str]:
        return self.nodes[task_id].dependents

    def push_ready(self, task_id: str) -> None:
        if task_id in self._queued:
            return
        node = self.nodes[task_id]
        # Highest priority first; ties go to the task that came first in the plan.
        heapq.heappush(self._heap, (-node.priority, node.seq, task_id))
        self._queued.add(task_id)

    def discard(self, task_id: str) -> None:
        """Forget a queued task (paused, cancelled or skipped by a human); removed lazily."""
        self._queued.discard(task_id)

    def has_capacity(self) -> bool:
        return len(self.running) < self.max_workers

    def next_ready(self) -> str | None:
        """Pop the highest-priority ready task that a worker and its pool can take now."""
        skipped: list[tuple[int, int, str]] = []
        chosen = None
        while self._heap and self.has_capacity():
            entry = heapq.heappop(self._heap)
            task_id = entry[2]
            if task_id not in self._queued:
                continue  # discarded while queued
            pool = self.nodes[task_id].pool
            if pool and self.pool_busy.get(pool, 0) >= self.pool_slots.get(pool, 1):
                skipped.append(entry)
                continue
            chosen = task_id
            break
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        if chosen is not None:
            self._queued.discard(chosen)
        return chosen

    def started(self, task_id: str) -> None:
        self.running.add(task_id)
        pool = self.nodes[task_id].pool
        if pool:
            self.pool_busy[pool] = self.pool_busy.get(pool, 0) + 1

    def stopped(self, task_id: str) -> None:
        if task_id not in self.running:
            return
        self.running.discard(task_id)
        pool = self.nodes[task_id].pool
        if pool:
            self.pool_busy[pool] -= 1

    @property
    def queued_count(self) -> int:
        return len(self._queued)


def due_retries(tasks: Iterable[TaskRecord], now: datetime) -> list[str]:
    """Retrying tasks whose stored retry time has come."""
    return [
        t.task_id
        for t in tasks
        if t.state == TaskState.RETRYING and (t.next_attempt_at is None or t.next_attempt_at <= now)
    ]


def is_final(state: str) -> bool:
    return state in FINAL_STATES
