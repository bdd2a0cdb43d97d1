"""Trends across the runs of one plan: quality, gate pass rate, attempts and breakpoints per run."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from orchestration.core.errors import NotFoundError
from orchestration.core.models import BreakpointRecord, QualityRecord, RunRecord, TaskRecord
from orchestration.views.breakpoint_stats import breakpoint_stats, total_stats

logger = logging.getLogger(__name__)

# The figures compared from run to run, and whether a higher value is the better one.
METRICS: tuple[tuple[str, bool], ...] = (
    ("mean_quality", True),
    ("gate_pass_rate", True),
    ("attempts_per_task", False),
    ("failed", False),
    ("breakpoints", False),
    ("mean_seconds_to_resolution", False),
)
FLAT_RELATIVE_CHANGE = 0.01  # a change within 1% of the larger value reads as no change
ARROWS = {"up": "↑", "down": "↓", "flat": "→"}

Direction = Literal["up", "down", "flat"]
Verdict = Literal["better", "worse", "same"]


class _Readable(Protocol):
    """The store methods this module reads (a Store, or a test double)."""

    def list_runs(self) -> list[RunRecord]: ...

    def get_run(self, run_id: str) -> RunRecord: ...

    def tasks(self, run_id: str) -> list[TaskRecord]: ...

    def quality(self, run_id: str, task_id: str | None = None) -> list[QualityRecord]: ...

    def breakpoints(
        self, run_id: str | None = None, state: str | None = None
    ) -> list[BreakpointRecord]: ...


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run's figures. Rates and means are None when there was nothing to measure."""

    run_id: str
    plan: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float  # to finished_at, or to the last update of an unfinished run
    tasks: int
    completed: int
    failed: int
    cancelled: int
    attempts: int  # attempts started, over all tasks
    attempts_per_task: float | None  # over the tasks that ran at least once
    scored_attempts: int  # attempts the validators scored
    mean_quality: float | None  # mean quality score of the scored attempts
    gate_pass_rate: float | None  # share of the scored attempts that passed the gate
    breakpoints: int  # pauses raised: times a human was asked to look
    auto_breakpoints: int  # auto and notify breakpoints, handled without a human
    mean_seconds_to_resolution: float | None  # pauses a human resolved

    def value(self, metric: str) -> float | None:
        value = getattr(self, metric)
        return None if value is None else float(value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "plan": self.plan,
            "state": self.state,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": round(self.duration_seconds, 3),
            "tasks": self.tasks,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "attempts": self.attempts,
            "attempts_per_task": _rounded(self.attempts_per_task),
            "scored_attempts": self.scored_attempts,
            "mean_quality": _rounded(self.mean_quality),
            "gate_pass_rate": _rounded(self.gate_pass_rate),
            "breakpoints": self.breakpoints,
            "auto_breakpoints": self.auto_breakpoints,
            "mean_seconds_to_resolution": _rounded(self.mean_seconds_to_resolution),
        }


@dataclass(frozen=True, slots=True)
class Change:
    """How a metric moved from one run to a later one."""

    metric: str
    before: float | None
    after: float | None
    direction: Direction | None  # None: one side had nothing to measure
    verdict: Verdict | None

    @property
    def arrow(self) -> str:
        return ARROWS[self.direction] if self.direction else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": _rounded(self.before),
            "to": _rounded(self.after),
            "direction": self.direction,
            "verdict": self.verdict,
        }


@dataclass(frozen=True, slots=True)
class PlanTrends:
    """Every run of a plan, oldest first, each with its changes since the run before."""

    plan: str
    runs: tuple[RunFigures, ...]
    changes: tuple[dict[str, Change], ...]  # per run; the first run's are all None
    overall: dict[str, Change]  # first run to last

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "runs": [
                {**run.as_dict(), "changes": {m: c.as_dict() for m, c in changes.items()}}
                for run, changes in zip(self.runs, self.changes, strict=True)
            ],
            "overall": {m: c.as_dict() for m, c in self.overall.items()},
        }


def run_figures(store: _Readable, run: RunRecord) -> RunFigures:
    """The figures of one stored run."""
    tasks = store.tasks(run.id)
    quality = store.quality(run.id)
    breakpoints = store.breakpoints(run.id)
    states = [task.state for task in tasks]
    ran = [task.attempts for task in tasks if task.attempts > 0]
    pauses = [bp for bp in breakpoints if bp.action == "pause"]
    resolved = total_stats(breakpoint_stats(pauses)).seconds_to_resolution
    end = run.finished_at or run.updated_at
    return RunFigures(
        run_id=run.id,
        plan=run.plan_name,
        state=run.state,
        started_at=run.created_at,
        finished_at=run.finished_at,
        duration_seconds=max(0.0, (end - run.created_at).total_seconds()),
        tasks=len(tasks),
        completed=states.count("completed"),
        failed=states.count("failed"),
        cancelled=states.count("cancelled"),
        attempts=sum(ran),
        attempts_per_task=sum(ran) / len(ran) if ran else None,
        scored_attempts=len(quality),
        mean_quality=statistics.fmean(q.score for q in quality) if quality else None,
        gate_pass_rate=sum(q.gate_passed for q in quality) / len(quality) if quality else None,
        breakpoints=len(pauses),
        auto_breakpoints=len(breakpoints) - len(pauses),
        mean_seconds_to_resolution=statistics.fmean(resolved) if resolved else None,
    )


def plan_trends(store: _Readable, plan: str, last: int | None = None) -> PlanTrends:
    """The runs of `plan` (the `last` ones only, when given), oldest first, and their changes."""
    runs = sorted(
        (run for run in store.list_runs() if run.plan_name == plan),
        key=lambda run: (run.created_at, run.id),
    )
    if not runs:
        raise NotFoundError(f"no runs of plan '{plan}' in this store")
    if last is not None:
        runs = runs[-last:]
    figures = tuple(run_figures(store, run) for run in runs)
    changes = tuple(
        changes_between(figures[i - 1] if i else None, run) for i, run in enumerate(figures)
    )
    return PlanTrends(plan, figures, changes, changes_between(figures[0], figures[-1]))


def changes_between(before: RunFigures | None, after: RunFigures) -> dict[str, Change]:
    """Each metric's move from `before` to `after` (no direction when either is missing)."""
    return {
        metric: change(metric, before.value(metric) if before else None, after.value(metric), up)
        for metric, up in METRICS
    }


def change(
    metric: str, before: float | None, after: float | None, higher_is_better: bool
) -> Change:
    if before is None or after is None:
        return Change(metric, before, after, None, None)
    scale = max(abs(before), abs(after))
    if abs(after - before) <= FLAT_RELATIVE_CHANGE * scale:
        return Change(metric, before, after, "flat", "same")
    direction: Direction = "up" if after > before else "down"
    better = (direction == "up") == higher_is_better
    return Change(metric, before, after, direction, "better" if better else "worse")


def latest_run_of(store: _Readable, plan: str | None) -> RunRecord:
    """The newest run (of `plan`, when given)."""
    runs: Sequence[RunRecord] = store.list_runs()  # newest first
    for run in runs:
        if plan is None or run.plan_name == plan:
            return run
    raise NotFoundError(f"no runs of plan '{plan}' in this store" if plan else "no runs stored")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
