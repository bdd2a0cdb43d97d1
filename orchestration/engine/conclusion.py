"""Concluding an attempt: what its decision and breakpoints mean for the task, as a value."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from orchestration.core.models import RetryPolicy
from orchestration.engine.actions import ActionOutcome
from orchestration.engine.breakpoints import BreakpointCheck, BreakpointHit
from orchestration.engine.decisions import Decision
from orchestration.resilience.retry import next_attempt_at
from orchestration.rules.rule_files import BreakpointRule

CRASH_RETRY_SECONDS = 1.0  # an engine error in an attempt is retried after this long


@dataclass(frozen=True)
class Raised:
    """A breakpoint about to be stored: from a rule that fired, or from a clarify/escalate."""

    rule: str
    at: str
    severity: str
    action: str
    message: str
    scope: str = "task"
    expires_after: float | None = None
    default: str | None = None
    digest_seconds: float | None = None

    @classmethod
    def of(cls, hit: BreakpointHit, at: str) -> Raised:
        rule = hit.rule
        return cls(
            rule.name,
            at,
            rule.severity,
            rule.action,
            hit.message,
            rule.scope,
            rule.expires_after,
            rule.default,
            rule.digest_seconds,
        )


@dataclass(frozen=True, slots=True)
class Effects:
    """What concluding an attempt asks of the loop, applied in this order:

    merge the task's work first when `accept` (a conflict blocks the task and ends there);
    update the task's `update` fields; block it at `block` (and end there), or else move it by
    `trigger` for `reason`; update `then_update` (after the move: a retry time is only woken
    for a retrying task); add the tasks its outcome grows (`grow`: whether it succeeded).
    """

    update: dict[str, Any] | None = None
    trigger: str | None = None
    reason: str = ""
    then_update: dict[str, Any] | None = None
    block: Raised | None = None
    accept: bool = False
    grow: bool | None = None
    context: dict[str, Any] | None = None  # the block's own context, else the attempt's


def may_retry(attempts: int, policy: RetryPolicy, outcome: ActionOutcome) -> bool:
    return attempts < policy.max_attempts and outcome.error_kind != "permanent"


def after_decision(
    attempts: int,
    policy: RetryPolicy,
    outcome: ActionOutcome,
    decision: Decision,
    check: BreakpointCheck,
    feedback: str,
    now: datetime,
) -> Effects:
    """The effects of an assessed attempt: its `after` breakpoints first, then its decision."""
    pause, auto = check.first("pause"), check.first("auto")
    auto_rule = auto.rule if auto is not None else None
    auto_then = auto_rule.auto.then if auto_rule is not None and auto_rule.auto else None
    if pause is not None:
        return Effects(update={"feedback": feedback}, block=Raised.of(pause, "after"))
    if auto_rule is not None and auto_then == "proceed":
        # Its merge conflicting blocks the task at `merge_conflict`: a human decides then.
        return _accepted("succeeded", f"{auto_rule.name}: resolved automatically, proceed")
    if auto_rule is not None and auto_then is not None and may_retry(attempts, policy, outcome):
        return _auto_retry(auto_rule, feedback, now)
    kept = {"feedback": feedback, "last_error_kind": outcome.error_kind}
    action = decision.action
    if action in ("proceed", "checkpoint"):
        done = "dry_run" if outcome.result.get("dry_run") is True else "succeeded"
        return _accepted(done, f"{action}: {decision.reason}")
    if action == "retry" and may_retry(attempts, policy, outcome):
        kept["next_attempt_at"] = next_attempt_at(policy, attempts, now)
        return Effects(trigger="retry", reason=f"retry: {decision.reason}", then_update=kept)
    if action in ("retry", "fail"):  # a retry with no attempt left fails too
        why = "fail" if action == "fail" else "out of attempts"
        return Effects(update=kept, trigger="fail", reason=f"{why}: {decision.reason}", grow=False)
    # clarify | escalate: a human decides
    raised = Raised(f"decision:{action}", "after", "high", "pause", decision.reason)
    return Effects(update=kept, block=raised)


def _accepted(outcome: str, reason: str) -> Effects:
    return Effects(
        update={"outcome": outcome, "feedback": ""},
        trigger="succeed",
        reason=reason,
        accept=True,
        grow=True,
    )


def _auto_retry(rule: BreakpointRule, feedback: str, now: datetime) -> Effects:
    assert rule.auto is not None
    wait_seconds = rule.auto.wait_seconds
    return Effects(
        trigger="retry",
        reason=f"{rule.name}: waiting {wait_seconds:g}s, then retry",
        then_update={
            "feedback": feedback,
            "next_attempt_at": now + timedelta(seconds=wait_seconds),
        },
    )


def after_stop(
    raised: Raised,
    rule: BreakpointRule | None,
    attempts: int,
    policy: RetryPolicy,
    context: dict[str, Any],
    now: datetime,
) -> Effects:
    """An `at: during` rule stopped the attempt: retry it (auto) or ask a human (pause)."""
    auto = rule.auto if rule is not None else None
    if raised.action == "auto" and auto is not None and attempts < policy.max_attempts:
        return Effects(
            trigger="retry",
            reason=f"{raised.rule}: attempt stopped; retry in {auto.wait_seconds:g}s",
            then_update={
                "feedback": f"The previous attempt was stopped: {raised.message}",
                "last_error_kind": "timeout",
                "next_attempt_at": now + timedelta(seconds=auto.wait_seconds),
            },
        )
    message = raised.message
    if raised.action == "auto":
        message += f" (out of attempts: {attempts} of {policy.max_attempts})"
    return Effects(block=replace(raised, action="pause", message=message), context=context)


def after_crash(
    task_id: str, attempts: int, policy: RetryPolicy, error: BaseException, now: datetime
) -> Effects:
    """An engine error during the attempt: retry it soon, or ask a human when out of attempts."""
    message = f"engine error during the attempt: {type(error).__name__}: {error}"
    if attempts < policy.max_attempts:
        wake = now + timedelta(seconds=CRASH_RETRY_SECONDS)
        return Effects(trigger="retry", reason=message, then_update={"next_attempt_at": wake})
    context = {"task_id": task_id, "attempt": attempts, "error": message}
    raised = Raised("engine_error", "after", "high", "pause", message)
    return Effects(block=raised, context=context)


def after_interrupt(now: datetime) -> Effects:
    """The engine was stopped during the attempt: it runs again at once on resume."""
    return Effects(
        trigger="retry",
        reason="interrupted: the engine was stopped during this attempt",
        then_update={"next_attempt_at": now},
    )
