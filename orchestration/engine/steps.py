"""Builds the rule context of a step (DESIGN section 5) from a task, an attempt and the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration.core.context import neutral_context
from orchestration.core.models import SignalSettings, TaskRecord, TaskSpec
from orchestration.engine.actions import ActionOutcome
from orchestration.project.workspace import Changes
from orchestration.rules.signals import before_signals, change_budget

PRIORITY_LABELS = {10: "critical", 8: "high", 5: "medium", 3: "low", 1: "background"}


@dataclass(frozen=True, slots=True)
class RunFigures:
    """Run-wide counters that rules may read."""

    consecutive_failures: int
    run_failures: int
    completed_count: int
    total_count: int
    run_elapsed_seconds: float
    run_attempts: int = 0
    run_cost: float = 0.0
    run_tokens: int = 0
    over_budget: tuple[str, ...] = ()


def priority_label(priority: int) -> str:
    """The named level a numeric priority falls in (rules compare names, plans may use 1..10)."""
    for value, name in sorted(PRIORITY_LABELS.items(), reverse=True):
        if priority >= value:
            return name
    return "background"


def action_text(spec: TaskSpec) -> tuple[str, str]:
    """The command line and the prompt of a task's action, as text the signals scan."""
    action = spec.action
    run = getattr(action, "run", None) or getattr(action, "command", None) or ()
    command = " ".join(run) if isinstance(run, list) else str(getattr(action, "call", ""))
    return command, str(getattr(action, "prompt", "") or "")


def before_context(
    task: TaskRecord,
    attempt: int,
    max_attempts: int,
    figures: RunFigures,
    task_elapsed_seconds: float,
    now: datetime,
    signals: SignalSettings | None = None,
    when_exhausted: str = "escalate",
) -> dict[str, Any]:
    """The context of a `before` check: the outcome fields keep their neutral values."""
    spec = task.spec
    settings = signals or SignalSettings()
    command, prompt = action_text(spec)
    context = neutral_context()
    context.update(before_signals(command, prompt, spec.title, settings.destructive_patterns))
    context.update(
        task_id=spec.id,
        title=spec.title,
        tags=tuple(spec.tags),
        priority=priority_label(task.priority),
        risk=spec.risk,
        confidence=spec.confidence,
        attempt=attempt,
        max_attempts=max_attempts,
        consecutive_failures=figures.consecutive_failures,
        run_failures=figures.run_failures,
        completed_count=figures.completed_count,
        total_count=figures.total_count,
        run_elapsed_seconds=round(figures.run_elapsed_seconds, 3),
        task_elapsed_seconds=round(task_elapsed_seconds, 3),
        now_hour=now.astimezone().hour,  # the local hour, as documented
        run_attempts=figures.run_attempts,
        run_cost=round(figures.run_cost, 6),
        run_tokens=figures.run_tokens,
        over_budget=figures.over_budget,
        expected_change=spec.expected_change or "",
        change_budget=change_budget(spec.expected_change, spec.line_budget),
        when_exhausted=when_exhausted,
    )
    return context


def after_context(
    before: Mapping[str, Any],
    outcome: ActionOutcome,
    changes: Changes,
    task_elapsed_seconds: float,
    signals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The context after the action ran, before validators: the requirements stage reads it.

    `signals` are the step's review signals (signals.step_signals, api_changes); the
    destructive operations the `before` check saw in the command and prompt are kept.
    """
    context = dict(before)
    found = dict(signals or {})
    if "destructive_operations" in found:
        seen = dict.fromkeys((*before["destructive_operations"], *found["destructive_operations"]))
        found["destructive_operations"] = tuple(seen)
    context.update(found)
    result = dict(outcome.result)
    reported = result.get("confidence")
    confidence = before["confidence"]
    if isinstance(reported, int | float) and not isinstance(reported, bool):
        confidence = min(1.0, max(0.0, float(reported)))
    context.update(
        confidence=confidence,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        duration_seconds=round(outcome.duration_seconds, 3),
        output_tail=outcome.output_tail,
        error_kind=outcome.error_kind,
        changed_files=tuple(changes.files),
        changed_files_count=len(changes.files),
        lines_changed=changes.lines_changed,
        task_elapsed_seconds=round(task_elapsed_seconds, 3),
        result=result,
    )
    return context


def with_quality(context: Mapping[str, Any], report: Any) -> dict[str, Any]:
    """Add the quality report's figures (score, gate, stages, test counts) to the context."""
    updated = dict(context)
    figures = dict(report.figures)
    updated.update(
        stage_scores=dict(report.stage_scores),
        quality_score=report.score,
        gate_passed=report.gate_passed,
        tests_passed=int(figures.get("tests_passed", 0) or 0),
        tests_failed=int(figures.get("tests_failed", 0) or 0),
        baseline_tests_failed=int(figures.get("baseline_tests_failed", 0) or 0),
        tests_regressed=tuple(figures.get("tests_regressed", ()) or ()),
        lint_errors=int(figures.get("lint_errors", 0) or 0),
        validator_modified_tree=tuple(figures.get("validator_modified_tree", ()) or ()),
    )
    regressed = int(figures.get("tests_regressed_count", len(updated["tests_regressed"])) or 0)
    new_failing = figures.get("tests_new_failing")
    if not isinstance(new_failing, int) or isinstance(new_failing, bool):
        # no test ids to tell new tests from old ones: what is left after the known failures
        baseline = updated["baseline_tests_failed"]
        new_failing = max(0, updated["tests_failed"] - baseline - regressed)
    updated["tests_new_failing"] = new_failing
    # the runner's collection and the diff each see removals the other can miss
    for name in ("tests_removed", "tests_skipped_new"):
        reported = figures.get(name)
        if isinstance(reported, int) and not isinstance(reported, bool):
            updated[name] = max(int(context.get(name, 0) or 0), reported)
    return updated
