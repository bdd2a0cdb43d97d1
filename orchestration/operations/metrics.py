"""Prometheus figures read from the store at each scrape (`/metrics` of `orch serve`).

A custom collector (prometheus_client's documented way for figures kept elsewhere): nothing is
counted in memory, so every engine, worker and server of one store shows the same numbers, and a
restart loses none. Per-run series cover runs not finished, and runs finished within
`FINISHED_WINDOW_SECONDS`, so a store of many old runs does not grow the scrape without end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from orchestration.core.lifecycle import TaskState
from orchestration.core.models import RunRecord, TaskRecord
from orchestration.resilience.breakers import CLOSED, HALF_OPEN, OPEN
from orchestration.resilience.spending import compute_spending
from orchestration.store import Store
from orchestration.views.breakpoint_stats import breakpoint_stats, total_stats
from orchestration.views.run_views import ready_since

logger = logging.getLogger(__name__)

FINISHED_WINDOW_SECONDS = 3600.0  # finished runs keep their series this long after the end
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)
TASK_STATES = tuple(state.value for state in TaskState)


def reported_runs(store: Store, now: datetime) -> list[RunRecord]:
    """The runs a scrape reports: unfinished ones, and those finished within the window."""
    since = now - timedelta(seconds=FINISHED_WINDOW_SECONDS)
    return [r for r in store.list_runs() if r.finished_at is None or r.finished_at >= since]


class StoreCollector(Collector):
    """Reads the store when Prometheus scrapes; `clock` gives the time (a test's fake clock)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        runs = reported_runs(self.store, now)
        tasks = {run.id: self.store.tasks(run.id) for run in runs}  # read once per scrape
        yield from self._runs(runs)
        yield from self._spending(runs, tasks, now)
        yield from self._queues(runs, tasks, now)
        yield from self._breakpoints(runs)
        yield self._breakers()
        yield self._schedule_lag()

    def _runs(self, runs: list[RunRecord]) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "orch_run_info", "A reported run (value 1)", labels=["run", "plan", "state"]
        )
        tasks = GaugeMetricFamily("orch_tasks", "Tasks by run and state", labels=["run", "state"])
        counts = self.store.task_state_counts()
        for run in runs:
            info.add_metric([run.id, run.plan_name, run.state], 1)
            by_state = counts.get(run.id, {})
            for state in TASK_STATES:
                tasks.add_metric([run.id, state], by_state.get(state, 0))
        yield info
        yield tasks

    def _spending(
        self, runs: list[RunRecord], tasks: Mapping[str, list[TaskRecord]], now: datetime
    ) -> Iterator[Metric]:
        attempts = CounterMetricFamily("orch_attempts", "Attempts started, by run", labels=["run"])
        durations = SummaryMetricFamily(
            "orch_task_attempt_seconds",
            "Wall time of the run's attempts: count is tasks that ran, sum their seconds",
            labels=["run"],
        )
        cost = CounterMetricFamily("orch_cost", "Cost the actions reported", labels=["run"])
        tokens = CounterMetricFamily("orch_tokens", "Tokens the actions reported", labels=["run"])
        for run in runs:
            steps = self.store.events(run.id, kinds=("step",))
            settings = self.store.run_settings(run.id)
            spent = compute_spending(run, tasks[run.id], steps, settings, now)
            ran = [s for s in spent.tasks.values() if s.seconds > 0]
            attempts.add_metric([run.id], spent.run.attempts)
            durations.add_metric([run.id], len(ran), sum(s.seconds for s in ran))
            cost.add_metric([run.id], spent.run.cost)
            tokens.add_metric([run.id], spent.run.tokens)
        yield from (attempts, durations, cost, tokens)

    def _queues(
        self, runs: list[RunRecord], tasks: Mapping[str, list[TaskRecord]], now: datetime
    ) -> Iterator[Metric]:
        depth = GaugeMetricFamily("orch_queue_depth", "Tasks ready to start", labels=["run"])
        wait = GaugeMetricFamily(
            "orch_queue_wait_seconds",
            "How long the longest-waiting ready task has waited (0: none waits)",
            labels=["run"],
        )
        for run in runs:
            ready = [t.task_id for t in tasks[run.id] if t.state == TaskState.READY]
            longest = 0.0
            if ready:
                moves: dict[str, list[Any]] = {}
                for move in self.store.transitions(run.id):
                    moves.setdefault(move.task_id, []).append(move)
                for task_id in ready:
                    since = ready_since(moves.get(task_id, []), now)
                    longest = max(longest, (now - since).total_seconds())
            depth.add_metric([run.id], len(ready))
            wait.add_metric([run.id], longest)
        yield depth
        yield wait

    def _breakpoints(self, runs: list[RunRecord]) -> Iterator[Metric]:
        open_now = GaugeMetricFamily(
            "orch_breakpoints_open", "Breakpoints waiting for a human", labels=["run"]
        )
        answer = SummaryMetricFamily(
            "orch_breakpoint_answer_seconds",
            "Time from a breakpoint to a human's answer (answered ones)",
            labels=["run"],
        )
        for run in runs:
            total = total_stats(breakpoint_stats(self.store.breakpoints(run.id)))
            open_now.add_metric([run.id], total.open)
            times = total.seconds_to_resolution
            answer.add_metric([run.id], len(times), sum(times))
        yield open_now
        yield answer

    def _breakers(self) -> Metric:
        family = GaugeMetricFamily(
            "orch_breaker_state",
            "Circuit breakers: 1 for the state each is in, 0 for the others",
            labels=["key", "state"],
        )
        for breaker in self.store.breakers():
            for state in BREAKER_STATES:
                family.add_metric([breaker.key, state], 1 if breaker.state == state else 0)
        return family

    def _schedule_lag(self) -> Metric:
        family = GaugeMetricFamily(
            "orch_schedule_lag_seconds",
            "How late each schedule's newest cron occurrence fired",
            labels=["schedule"],
        )
        for name, seconds in sorted(self.store.triggers.schedule_lags().items()):
            family.add_metric([name], seconds)
        return family


def metrics_registry(
    store: Store, clock: Callable[[], datetime] | None = None
) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the store's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, clock))
    return registry
