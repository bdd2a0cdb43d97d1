"""Concluding an attempt is a function: its effects come back as a value, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestration.core.models import RetryPolicy
from orchestration.engine.actions import ActionOutcome
from orchestration.engine.breakpoints import BreakpointCheck, BreakpointHit
from orchestration.engine.conclusion import (
    Effects,
    Raised,
    after_crash,
    after_decision,
    after_interrupt,
    after_stop,
)
from orchestration.engine.decisions import Decision
from orchestration.rules.expressions import compile_expression
from orchestration.rules.rule_files import AutoResolution, BreakpointRule

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
FIXED = RetryPolicy(max_attempts=3, backoff="fixed", base_seconds=10, jitter=False)
OK = ActionOutcome(0, False, 0.1, "")
PERMANENT = ActionOutcome(2, False, 0.1, "", error_kind="permanent")
NONE = BreakpointCheck()


def rule(name: str, action: str, auto: AutoResolution | None = None) -> BreakpointRule:
    return BreakpointRule(
        name, "after", compile_expression("True"), 10, "high", action, f"{name} fired", "task",
        auto, "", "rules.yaml",
    )  # fmt: skip


def fired(*rules: BreakpointRule) -> BreakpointCheck:
    return BreakpointCheck(tuple(BreakpointHit(r, r.message) for r in rules))


def decided(action: str) -> Decision:
    return Decision(action, "r", "why")


def test_proceed_accepts_the_work_and_grows_what_success_asks_for() -> None:
    effects = after_decision(1, FIXED, OK, decided("proceed"), NONE, "fb", NOW)
    assert effects == Effects(
        update={"outcome": "succeeded", "feedback": ""},
        trigger="succeed",
        reason="proceed: why",
        accept=True,
        grow=True,
    )


def test_a_dry_run_result_is_accepted_as_dry_run() -> None:
    dry = ActionOutcome(0, False, 0.0, "", result={"dry_run": True})
    effects = after_decision(1, FIXED, dry, decided("checkpoint"), NONE, "", NOW)
    assert effects.update == {"outcome": "dry_run", "feedback": ""}
    assert effects.reason == "checkpoint: why"


def test_retry_with_attempts_left_moves_first_then_sets_the_wake_time() -> None:
    # fixed backoff, 10 s, no jitter: the second attempt is due 10 s from now
    effects = after_decision(1, FIXED, OK, decided("retry"), NONE, "try harder", NOW)
    assert effects == Effects(
        trigger="retry",
        reason="retry: why",
        then_update={
            "feedback": "try harder",
            "last_error_kind": "none",
            "next_attempt_at": NOW + timedelta(seconds=10),
        },
    )


def test_retry_out_of_attempts_or_on_a_permanent_error_fails() -> None:
    out = after_decision(3, FIXED, OK, decided("retry"), NONE, "fb", NOW)
    assert (out.trigger, out.reason, out.grow) == ("fail", "out of attempts: why", False)
    assert out.update == {"feedback": "fb", "last_error_kind": "none"}
    permanent = after_decision(1, FIXED, PERMANENT, decided("retry"), NONE, "fb", NOW)
    assert permanent.trigger == "fail" and permanent.update == {
        "feedback": "fb",
        "last_error_kind": "permanent",
    }
    failed = after_decision(1, FIXED, OK, decided("fail"), NONE, "fb", NOW)
    assert failed.reason == "fail: why"


def test_clarify_blocks_the_task_for_a_human() -> None:
    effects = after_decision(1, FIXED, OK, decided("clarify"), NONE, "fb", NOW)
    assert effects.trigger is None and effects.accept is False
    assert effects.block == Raised("decision:clarify", "after", "high", "pause", "why")


def test_a_pause_rule_wins_over_the_decision() -> None:
    effects = after_decision(1, FIXED, OK, decided("proceed"), fired(rule("p", "pause")), "fb", NOW)
    assert effects.update == {"feedback": "fb"} and effects.trigger is None
    assert effects.block is not None and (effects.block.rule, effects.block.at) == ("p", "after")


def test_auto_rules_proceed_or_wait_then_retry() -> None:
    proceed = rule("a", "auto", AutoResolution(5, "proceed"))
    effects = after_decision(1, FIXED, OK, decided("fail"), fired(proceed), "fb", NOW)
    assert effects.accept and effects.reason == "a: resolved automatically, proceed"
    wait = rule("w", "auto", AutoResolution(30, "retry"))
    effects = after_decision(1, FIXED, OK, decided("proceed"), fired(wait), "fb", NOW)
    assert effects == Effects(
        trigger="retry",
        reason="w: waiting 30s, then retry",
        then_update={"feedback": "fb", "next_attempt_at": NOW + timedelta(seconds=30)},
    )
    # out of attempts, the auto rule does not apply: the decision does
    assert after_decision(3, FIXED, OK, decided("proceed"), fired(wait), "", NOW).accept


def test_an_attempt_stopped_by_a_during_rule_retries_or_asks() -> None:
    wait = rule("slow", "auto", AutoResolution(60, "retry"))
    raised = Raised("slow", "during", "high", "auto", "too slow")
    effects = after_stop(raised, wait, 1, FIXED, {"x": 1}, NOW)
    assert effects.trigger == "retry" and effects.then_update == {
        "feedback": "The previous attempt was stopped: too slow",
        "last_error_kind": "timeout",
        "next_attempt_at": NOW + timedelta(seconds=60),
    }
    spent = after_stop(raised, wait, 3, FIXED, {"x": 1}, NOW)
    assert spent.block is not None and spent.block.action == "pause"
    assert spent.block.message == "too slow (out of attempts: 3 of 3)"
    assert spent.context == {"x": 1}


def test_an_engine_error_retries_in_a_second_then_blocks() -> None:
    error = RuntimeError("disk on fire")
    soon = after_crash("a", 1, FIXED, error, NOW)
    assert soon.trigger == "retry" and soon.then_update == {
        "next_attempt_at": NOW + timedelta(seconds=1)
    }
    message = "engine error during the attempt: RuntimeError: disk on fire"
    blocked = after_crash("a", 3, FIXED, error, NOW)
    assert blocked.block == Raised("engine_error", "after", "high", "pause", message)
    assert blocked.context == {"task_id": "a", "attempt": 3, "error": message}


def test_an_interrupted_attempt_runs_again_at_once() -> None:
    effects = after_interrupt(NOW)
    assert effects.trigger == "retry" and effects.then_update == {"next_attempt_at": NOW}
