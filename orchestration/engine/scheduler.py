"""Which task may run now: trigger rules, effective priority with aging, pools and worker slots."""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from orchestration.core.lifecycle import TaskState
from orchestration.core.models import Scheduling, TaskRecord

logger = logging.getLogger(__name__)

SUCCESS_OUTCOMES = frozenset({"succeeded", "skipped", "approved", "dry_run", None})
NO_UPSTREAM_FAILED = "no upstream failed"
UPSTREAM_NOT_NEEDED = "upstream not needed"
NOT_NEEDED_REASONS = frozenset({NO_UPSTREAM_FAILED, UPSTREAM_NOT_NEEDED})
MAX_COUNTED_DEPENDENTS = 10_000  # the blocking boost is logarithmic; more changes nothing

# (-key, ready timestamp, plan order, version, task id): the smallest runs first.
_HeapEntry = tuple[float, float, int, int, str]


@dataclass(slots=True)
class _Node:
    """Scheduling facts of one task: counters make each release check O(1)."""

    task_id: str
    priority: int
    seq: int
    trigger: str
    pool: str | None
    deps: tuple[str, ...]
    deadline: datetime | None
    dependents: list[str] = field(default_factory=list)
    done: int = 0
    succeeded: int = 0
    failed: int = 0  # dependencies that failed or were cancelled
    not_needed: int = 0  # of those, cancelled only because nothing called for them
    downstream: int = 0  # transitive dependents (see _count_downstream)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # release | wait | cancel
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PriorityParts:
    """A task's effective priority and how it was made up (shown by `orch explain`)."""

    base: float
    deadline: float
    blocking: float
    retries: float
    aging: float
    dependents: int
    failed_attempts: int
    waited_seconds: float

    @property
    def total(self) -> float:
        return self.base + self.deadline + self.blocking - self.retries + self.aging

    def lines(self) -> list[str]:
        return [
            f"base priority           {self.base:+.2f}",
            f"deadline boost          {self.deadline:+.2f}",
            f"blocks {self.dependents:>5} tasks      {self.blocking:+.2f}",
            f"failed attempts {self.failed_attempts:>5}   {-self.retries:+.2f}",
            f"waited {self.waited_seconds / 60:>6.1f} min      {self.aging:+.2f}",
            f"effective priority      {self.total:+.2f}",
        ]


def deadline_boost(deadline: datetime | None, now: datetime, weights: Scheduling) -> float:
    if deadline is None:
        return 0.0
    remaining = (deadline - now).total_seconds()
    return weights.deadline_boost if remaining <= weights.deadline_window_seconds else 0.0


def effective_priority(
    base: int,
    *,
    deadline: datetime | None,
    dependents: int,
    failed_attempts: int,
    waited_seconds: float,
    now: datetime,
    weights: Scheduling,
) -> PriorityParts:
    """Base + deadline boost + blocking boost - retry penalty + aging (DESIGN section 2)."""
    return PriorityParts(
        base=float(base),
        deadline=deadline_boost(deadline, now, weights),
        blocking=weights.blocking_boost * math.log2(1 + dependents),
        retries=weights.retry_penalty * failed_attempts,
        aging=weights.aging_per_minute * max(0.0, waited_seconds) / 60,
        dependents=dependents,
        failed_attempts=failed_attempts,
        waited_seconds=waited_seconds,
    )


def dependency_verdict(node: _Node) -> Verdict:
    """What a task's trigger rule says given how its dependencies ended so far.

    A dependency that was not needed (a handler nothing called for) does not count as a failure:
    like a skip, it passes "not needed" on, once every dependency has ended.
    """
    total = len(node.deps)
    all_done = node.done == total
    real_failures = node.failed - node.not_needed
    if node.trigger == "all_done":
        return Verdict("release" if all_done else "wait")
    if node.trigger == "one_failed":
        if real_failures:
            return Verdict("release")
        return Verdict("cancel", NO_UPSTREAM_FAILED) if all_done else Verdict("wait")
    # all_success and none_failed
    if real_failures:
        return Verdict("cancel", "upstream failed")
    if node.not_needed:
        return Verdict("cancel", UPSTREAM_NOT_NEEDED) if all_done else Verdict("wait")
    if node.trigger == "all_success":
        return Verdict("release" if node.succeeded == total else "wait")
    return Verdict("release" if all_done else "wait")


class TaskScheduler:
    """The ready queue (a heap) and dependency counters of one run, in memory.

    Aging raises every waiting task's priority at the same rate, so the order of two waiting
    tasks depends only on when each became ready: the heap key stays fixed
    (`static priority - rate * ready time`) and choosing the next task stays O(log n). Deadline
    boosts start at a known time; a timer heap re-queues the task with its boost then. The store
    stays the source of truth; the scheduler is rebuilt from it on resume.
    """

    def __init__(
        self,
        tasks: Iterable[TaskRecord],
        *,
        max_workers: int,
        pools: dict[str, int],
        weights: Scheduling | None = None,
        max_running: int | None = None,
    ) -> None:
        self.max_workers = max_workers if max_running is None else min(max_workers, max_running)
        self.weights = weights or Scheduling()
        self.pool_slots = dict(pools)
        self.pool_busy: dict[str, int] = dict.fromkeys(pools, 0)
        self.running: set[str] = set()
        self.nodes: dict[str, _Node] = {}
        self._heap: list[_HeapEntry] = []
        self._queued: dict[str, int] = {}  # task id -> version of its live heap entry
        self._ready_since: dict[str, datetime] = {}
        self._failed_attempts: dict[str, int] = {}
        self._boost_timers: list[tuple[datetime, str]] = []
        for seq, task in enumerate(tasks):
            self.add(task, seq)
        self.link_dependents()

    # ---- the graph ------------------------------------------------------------------------

    def add(self, task: TaskRecord, seq: int | None = None) -> None:
        spec = task.spec
        self.nodes[task.task_id] = _Node(
            task.task_id,
            task.priority,
            len(self.nodes) if seq is None else seq,
            spec.trigger,
            spec.pool,
            tuple(spec.depends_on),
            spec.deadline,
        )

    def link_dependents(self) -> None:
        """Rebuild dependents lists and downstream counts (after tasks were added)."""
        for node in self.nodes.values():
            node.dependents.clear()
        for node in self.nodes.values():
            for dep in node.deps:
                parent = self.nodes.get(dep)
                if parent is not None:
                    parent.dependents.append(node.task_id)
        self._count_downstream()

    def _count_downstream(self) -> None:
        # Dependents along every path, children before parents (exact for trees; a diamond
        # counts its join twice), capped: the boost is logarithmic, so that is plenty.
        pending = {task_id: len(node.dependents) for task_id, node in self.nodes.items()}
        ready = [task_id for task_id, count in pending.items() if count == 0]
        while ready:
            node = self.nodes[ready.pop()]
            node.downstream = min(
                MAX_COUNTED_DEPENDENTS,
                sum(1 + self.nodes[c].downstream for c in node.dependents),
            )
            for dep in node.deps:
                if dep in pending:
                    pending[dep] -= 1
                    if pending[dep] == 0:
                        ready.append(dep)

    def record_final(self, task_id: str, state: str, outcome: str | None) -> None:
        """Count a finished task against its dependents (once per task reaching a final state)."""
        for child_id in self.nodes[task_id].dependents:
            _count(self.nodes[child_id], state, outcome)

    def count_finished_dependencies(
        self, task_id: str, finals: dict[str, tuple[str, str | None]]
    ) -> None:
        """For a task added to a running run: count the dependencies that already ended."""
        node = self.nodes[task_id]
        for dep in node.deps:
            if dep not in finals:
                continue
            state, outcome = finals[dep]
            _count(node, state, outcome)

    def verdict(self, task_id: str) -> Verdict:
        return dependency_verdict(self.nodes[task_id])

    def dependents(self, task_id: str) -> list[str]:
        return self.nodes[task_id].dependents

    def distinct_downstream(self, task_id: str) -> int:
        """How many tasks wait on this one, directly or not, each counted once (for display:
        the priority boost counts along every path, so a diamond's join counts twice there)."""
        seen: set[str] = set()
        stack = list(self.nodes[task_id].dependents)
        while stack:
            child = stack.pop()
            if child not in seen:
                seen.add(child)
                stack.extend(self.nodes[child].dependents)
        return len(seen)

    # ---- priority ---------------------------------------------------------------------------

    def priority_of(self, task_id: str, now: datetime) -> PriorityParts:
        node = self.nodes[task_id]
        since = self._ready_since.get(task_id, now)
        return effective_priority(
            node.priority,
            deadline=node.deadline,
            dependents=node.downstream,
            failed_attempts=self._failed_attempts.get(task_id, 0),
            waited_seconds=(now - since).total_seconds(),
            now=now,
            weights=self.weights,
        )

    def _entry(
        self, task_id: str, now: datetime, version: int
    ) -> tuple[float, float, int, int, str]:
        # total(now) = static + rate * (now - ready time): subtracting rate * now leaves a key
        # that no longer changes while the task waits.
        since = self._ready_since[task_id]
        key = self.priority_of(task_id, now).total - self.weights.aging_per_minute * (
            now.timestamp() / 60
        )
        # Highest key first; ties go to the task that became ready first, then plan order.
        return (-key, since.timestamp(), self.nodes[task_id].seq, version, task_id)

    def push_ready(self, task_id: str, now: datetime, failed_attempts: int = 0) -> None:
        """Queue a task that became ready at `now` (or re-queue it, e.g. when a boost starts)."""
        version = self._queued.get(task_id, 0) + 1
        self._queued[task_id] = version
        self._ready_since.setdefault(task_id, now)
        self._failed_attempts[task_id] = failed_attempts
        heapq.heappush(self._heap, self._entry(task_id, now, version))
        node = self.nodes[task_id]
        if node.deadline is not None:
            boost_at = node.deadline.timestamp() - self.weights.deadline_window_seconds
            if now.timestamp() < boost_at:
                heapq.heappush(
                    self._boost_timers, (datetime.fromtimestamp(boost_at, now.tzinfo), task_id)
                )

    def discard(self, task_id: str) -> None:
        """Forget a queued task (paused, cancelled or skipped by a human); removed lazily."""
        self._queued.pop(task_id, None)
        self._ready_since.pop(task_id, None)

    def _apply_boost_timers(self, now: datetime) -> None:
        while self._boost_timers and self._boost_timers[0][0] <= now:
            _, task_id = heapq.heappop(self._boost_timers)
            if task_id in self._queued:
                self.push_ready(task_id, now, self._failed_attempts.get(task_id, 0))

    def has_capacity(self) -> bool:
        return len(self.running) < self.max_workers

    def next_ready(self, now: datetime) -> str | None:
        """Pop the highest-priority ready task that a worker and its pool can take now."""
        self._apply_boost_timers(now)
        skipped: list[_HeapEntry] = []
        chosen = None
        while self._heap and self.has_capacity():
            entry = heapq.heappop(self._heap)
            task_id, version = entry[4], entry[3]
            if self._queued.get(task_id) != version:
                continue  # discarded, or superseded by a newer entry
            pool = self.nodes[task_id].pool
            if pool and self.pool_busy.get(pool, 0) >= self.pool_slots.get(pool, 1):
                skipped.append(entry)
                continue
            chosen = task_id
            break
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        if chosen is not None:
            self.discard(chosen)
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


def _count(node: _Node, state: str, outcome: str | None) -> None:
    """Count one ended dependency of `node`."""
    node.done += 1
    if state == TaskState.COMPLETED and outcome in SUCCESS_OUTCOMES:
        node.succeeded += 1
        return
    node.failed += 1
    if outcome == "not_needed":
        node.not_needed += 1
