"""Concluder: assess an ended attempt, decide on it, and apply what the conclusion asks for."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.core.context import frozen_or_plain
from orchestration.core.models import TaskRecord
from orchestration.engine.actions import ActionOutcome
from orchestration.engine.attempts import AttemptResult
from orchestration.engine.breakpoints import BreakpointCheck
from orchestration.engine.conclusion import (
    Effects,
    Raised,
    after_crash,
    after_decision,
    after_interrupt,
    after_stop,
)
from orchestration.engine.decisions import Decision
from orchestration.engine.regressions import compare_attempts
from orchestration.resilience.interventions import stop_concluded
from orchestration.resilience.stuck import repeat_figures, signature

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator


@dataclass(frozen=True)
class Assessment:
    """What the engine made of an attempt: the rule context, the decision, the `after` rules."""

    context: dict[str, Any]
    decision: Decision
    check: BreakpointCheck


class Concluder:
    """Concludes attempts back in the loop's thread, one at a time.

    `assess` builds the context the rules read and asks the decision rules and `after`
    breakpoints; `conclusion` turns that into `Effects` (a value); `apply` records them through
    the run state. Crashes, interruptions and stops by a rule or a human take the short ways.
    """

    def __init__(self, loop: Orchestrator) -> None:
        self.loop = loop

    def conclude(self, task: TaskRecord, result: AttemptResult, now: datetime) -> None:
        dispatch, tally = self.loop.dispatch, self.loop.tally
        dispatch.running_attempts.pop(task.task_id, None)
        self.record_breaker(task.task_id, result.outcome, now)
        stopped_by = dispatch.stopped_by_rule.pop(task.task_id, None)
        if result.outcome.interrupted and stopped_by is not None:
            self._stopped_by_rule(task, result, stopped_by, now)
            return
        if result.outcome.interrupted:
            self.apply(task, after_interrupt(now), result, {}, now)
            return
        tally.task_seconds[task.task_id] += result.outcome.duration_seconds
        tally.count_gate(result.report.gate_passed)
        tally.budget.spend(result.outcome.result)
        tally.attempt_history[task.task_id].append(signature(result.context))
        assessed = self.assess(task, result, now)
        state = self.loop.state
        state.record_attempt(task, result, assessed.decision, assessed.context, now)
        self.loop.fleet.concluded(task, result, now)
        state.record_rule_errors(task, assessed.check, now)
        state.record_notices(task, assessed.check, assessed.context, "after", now)
        note = tally.comparison_notes.pop(task.task_id, "")
        feedback = "\n".join(part for part in (result.report.feedback, note) if part)
        policy = self.loop.plan.retry_policy(task.spec)
        effects = after_decision(
            task.attempts, policy, result.outcome, assessed.decision, assessed.check, feedback, now
        )
        self.apply(task, effects, result, assessed.context, now)

    def assess(self, task: TaskRecord, result: AttemptResult, now: datetime) -> Assessment:
        """The `after` context of an attempt, the decision on it, and the `after` rules' hits."""
        loop, tally, spec = self.loop, self.loop.tally, task.spec
        context = {**result.context, **self._run_figures(task.task_id)}
        previous = self._previous_quality(task.task_id, result.attempt)
        comparison = compare_attempts(result.report, previous)
        context.update(comparison.context())
        context["stage_conflicts"] = result.report.stage_conflicts
        learned = tally.outcomes.learned(spec.action.kind, spec.tags, context["confidence"])
        context.update(learned.context())
        dry_run = result.outcome.result.get("dry_run") is True
        if not dry_run:
            tally.outcomes.update(
                spec.action.kind, spec.tags, result.report.gate_passed, context["confidence"]
            )
        tally.previous_quality[task.task_id] = result.report
        tally.comparison_notes[task.task_id] = comparison.feedback()
        frozen = frozen_or_plain(context)  # once for the decision rules and the breakpoints
        decision = loop.engine.decisions.decide(frozen)
        if result.report.gate_failures:
            gate = "; ".join(result.report.gate_failures)
            decision = replace(decision, reason=f"{decision.reason} ({gate})")
        context["decision"] = decision.action
        if dry_run and loop.dry_run:
            check = BreakpointCheck()  # nothing ran, so there is nothing to review
        else:
            check = loop.engine.breakpoints.check("after", frozen_or_plain(context, frozen))
        return Assessment(context, decision, check)

    def _run_figures(self, task_id: str) -> dict[str, Any]:
        """The run-wide figures and the task's repeat figures, as the `after` rules read them."""
        figures = self.loop.figures()
        return {
            **repeat_figures(self.loop.tally.attempt_history[task_id]),
            "consecutive_failures": figures.consecutive_failures,
            "run_failures": figures.run_failures,
            "completed_count": figures.completed_count,
            "run_elapsed_seconds": round(figures.run_elapsed_seconds, 3),
            "run_attempts": figures.run_attempts,
            "run_cost": round(figures.run_cost, 6),
            "run_tokens": figures.run_tokens,
            "over_budget": figures.over_budget,
        }

    def _previous_quality(self, task_id: str, attempt: int) -> Any:
        """The task's last assessed attempt: from memory, or from the store after a resume."""
        if attempt <= 1:
            return None
        previous = self.loop.tally.previous_quality
        if task_id not in previous:
            stored = self.loop.store.quality(self.loop.run.id, task_id)
            previous[task_id] = stored[-1] if stored else None
        return previous[task_id]

    # ---- the short ways -------------------------------------------------------------------

    def crashed(self, task: TaskRecord, error: BaseException, now: datetime) -> None:
        policy = self.loop.plan.retry_policy(task.spec)
        effects = after_crash(task.task_id, task.attempts, policy, error, now)
        self.apply(task, effects, None, {}, now)

    def stopped_by_human(self, task: TaskRecord, result: AttemptResult, now: datetime) -> None:
        """A human paused or cancelled the task while its attempt ran: do as they asked."""
        dispatch, state = self.loop.dispatch, self.loop.state
        stop = dispatch.human_stops.pop(task.task_id)
        dispatch.running_attempts.pop(task.task_id, None)
        dispatch.stopped_by_rule.pop(task.task_id, None)
        self.record_breaker(task.task_id, result.outcome, now)
        self.loop.tally.task_seconds[task.task_id] += result.outcome.duration_seconds
        state.move(task, stop.trigger, stop.reason, actor=stop.actor)
        if stop.trigger == "cancel":
            state.update(task, outcome="cancelled")
        state.intervention_done(stop_concluded(stop, now))

    def _stopped_by_rule(
        self, task: TaskRecord, result: AttemptResult, raised: Raised, now: datetime
    ) -> None:
        """An `at: during` rule stopped the attempt: retry it (auto) or ask a human (pause)."""
        self.loop.tally.task_seconds[task.task_id] += result.outcome.duration_seconds
        data = {
            "rule": raised.rule,
            "message": raised.message,
            "attempt": result.attempt,
            "duration_seconds": round(result.outcome.duration_seconds, 3),
            "output_tail": result.outcome.output_tail,
        }
        self.loop.state.event("attempt_stopped", task.task_id, data, now)
        rule = self.loop.engine.rules_by_name.get(raised.rule)
        policy = self.loop.plan.retry_policy(task.spec)
        context = {**result.context, "duration_seconds": data["duration_seconds"]}
        effects = after_stop(raised, rule, task.attempts, policy, context, now)
        self.apply(task, effects, result, context, now)

    def record_breaker(self, task_id: str, outcome: ActionOutcome | None, now: datetime) -> None:
        self.loop.state.breaker_changed(self.loop.admission.breaker_outcome(task_id, outcome, now))

    # ---- applying ---------------------------------------------------------------------------

    def apply(
        self,
        task: TaskRecord,
        effects: Effects,
        result: AttemptResult | None,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        """Record what a conclusion (a value, see `conclusion`) asks for."""
        loop, state = self.loop, self.loop.state
        if (
            effects.accept
            and result is not None
            and not loop.integration.merged(task, result, context, now)
        ):
            return  # a merge conflict: the task is blocked at a `merge_conflict` breakpoint
        if effects.update:
            state.update(task, **effects.update)
        if effects.block is not None:
            state.block(task, effects.block, effects.context or context, now)
            return
        assert effects.trigger is not None
        state.move(task, effects.trigger, effects.reason)
        if effects.then_update:
            state.update(task, **effects.then_update)
        if effects.grow is not None:
            loop.growth.grow(task, effects.grow, context, now)
