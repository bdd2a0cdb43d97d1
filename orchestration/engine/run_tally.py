"""RunTally: what a run counted that its rules read (failures, time, budget, attempt history)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestration.core.models import Plan, TaskRecord
from orchestration.engine.learning import OutcomeStats, outcome_stats_from_store
from orchestration.engine.steps import RunFigures
from orchestration.resilience.budgets import RunBudget
from orchestration.resilience.stuck import AttemptSignature, signature
from orchestration.store import Store


@dataclass
class RunTally:
    """The run-wide figures rules read, kept up to date as attempts end.

    A resumed run continues where the last engine left them: `count_step` and `count_gate`
    replay the stored history (`opening.load_history`) before the first new attempt.
    """

    budget: RunBudget
    outcomes: OutcomeStats  # success statistics over every stored attempt of this plan
    consecutive_failures: int = 0
    run_failures: int = 0
    task_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    attempt_history: defaultdict[str, list[AttemptSignature]] = field(
        default_factory=lambda: defaultdict(list)
    )
    previous_quality: dict[str, Any] = field(default_factory=dict)  # task -> last report
    comparison_notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store, plan: Plan, run_id: str) -> RunTally:
        # Earlier runs of the plan here; this run's own attempts are counted as its history loads.
        outcomes = outcome_stats_from_store(store, plan.name, exclude_runs=[run_id])
        return cls(RunBudget.of(plan.spec.budget), outcomes)

    def count_gate(self, passed: bool) -> None:
        self.consecutive_failures = 0 if passed else self.consecutive_failures + 1
        self.run_failures += 0 if passed else 1

    def count_step(self, task_id: str, task: TaskRecord | None, step: Mapping[str, Any]) -> None:
        """A stored `step` event of this run (on resume): its time, spending and history."""
        self.task_seconds[task_id] += float(step.get("duration_seconds") or 0)
        self.budget.spend(step.get("result") or {})
        self.attempt_history[task_id].append(signature(step))
        result = step.get("result")
        if task is None or (isinstance(result, Mapping) and result.get("dry_run") is True):
            return
        confidence = step.get("confidence", task.spec.confidence)
        usable = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        self.outcomes.update(
            task.spec.action.kind,
            task.spec.tags,
            bool(step.get("gate_passed")),
            float(confidence) if usable else None,
        )

    def figures(
        self, now: datetime, started: datetime, completed: int, total: int, *, starting: bool
    ) -> RunFigures:
        """The run-wide figures; `starting`: as seen by an attempt about to start."""
        elapsed = (now - started).total_seconds()
        return RunFigures(
            consecutive_failures=self.consecutive_failures,
            run_failures=self.run_failures,
            completed_count=completed,
            total_count=total,
            run_elapsed_seconds=elapsed,
            run_attempts=self.budget.attempts + (1 if starting else 0),
            run_cost=self.budget.cost,
            run_tokens=self.budget.tokens,
            over_budget=self.budget.over(elapsed, starting=starting),
        )
