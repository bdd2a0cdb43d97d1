"""QualityController scoring and gate, validator isolation, and DecisionEngine explanations."""

from __future__ import annotations

import time
from pathlib import Path
from types import MappingProxyType

import pytest

from orchestration.core.models import TaskSpec, ValidatorRef
from orchestration.engine.decisions import DecisionEngine
from orchestration.engine.quality import QualityController, acceptance_check, run_validator
from orchestration.extension import CheckResult, ValidationInput, Validator
from orchestration.rules.expressions import compile_expression
from orchestration.rules.rule_files import DecisionRule, QualityConfig

CONFIG = QualityConfig(
    weights=MappingProxyType({"syntax": 0.2, "requirements": 0.3, "quality": 0.2, "testing": 0.3}),
    min_score=0.7,
    required=("syntax", "testing"),
)


def step(tmp_path: Path, timeout: float = 5.0) -> ValidationInput:
    spec = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]})
    return ValidationInput("r", spec, 1, tmp_path, ("a.py",), 0, "", {}, {}, {}, timeout)


def validator(name: str, stage: str, check) -> Validator:  # type: ignore[no-untyped-def]
    return Validator(name, stage, check)


def ok_requirements() -> CheckResult:
    return CheckResult("requirements", "requirements", True, 1.0)


def test_weighted_score_and_gate_pass(tmp_path: Path) -> None:
    validators = {
        "syn": validator("syn", "syntax", lambda s: CheckResult("syn", "syntax", True, 1.0)),
        "tests": validator(
            "tests", "testing", lambda s: CheckResult("tests", "testing", True, 0.9)
        ),
    }
    report = QualityController(validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="syn"), ValidatorRef(name="tests")], ok_requirements()
    )
    # quality stage unchecked: weights renormalised over syntax, requirements, testing (0.8)
    assert report.score == pytest.approx((0.2 * 1 + 0.3 * 1 + 0.3 * 0.9) / 0.8, abs=1e-4)
    assert report.gate_passed and report.stage_scores == {
        "syntax": 1.0,
        "requirements": 1.0,
        "testing": 0.9,
    }


def test_required_stage_failure_fails_the_gate_with_feedback(tmp_path: Path) -> None:
    validators = {
        "tests": validator(
            "tests",
            "testing",
            lambda s: CheckResult("tests", "testing", False, 0.0, "test_x: expected 42, got 41"),
        ),
    }
    report = QualityController(validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="tests")], ok_requirements()
    )
    assert not report.gate_passed
    assert "required stage 'testing' failed: tests" in report.feedback
    assert "expected 42, got 41" in report.feedback


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (lambda s: 1 / 0, "validator raised ZeroDivisionError"),
        (lambda s: "looks fine", "returned str, not a CheckResult"),
        (lambda s: CheckResult("x", "testing", True, 7.0), "score 7.0, not 0..1"),
        (lambda s: time.sleep(5), "did not finish within 2s"),
    ],
)
def test_a_bad_validator_is_a_failed_check_not_a_crash(tmp_path: Path, check, message: str) -> None:  # type: ignore[no-untyped-def]
    result = run_validator(validator("bad", "testing", check), step(tmp_path, timeout=2), "testing")
    assert not result.passed and result.score == 0.0
    assert message in result.message


def test_unknown_validator_is_reported(tmp_path: Path) -> None:
    controller = QualityController({}, CONFIG)
    assert controller.unknown([ValidatorRef(name="nope")]) == ["nope"]
    report = controller.assess(step(tmp_path), [ValidatorRef(name="nope")], ok_requirements())
    assert not report.gate_passed
    assert "no validator named 'nope'" in report.feedback


def test_acceptance_expressions_and_action_failure() -> None:
    expressions = [
        compile_expression("changed_files_count > 0"),
        compile_expression("exit_code == 0"),
    ]
    good = acceptance_check(expressions, {"changed_files_count": 2, "exit_code": 0}, True, 0)
    assert good.passed and good.score == 1.0
    bad = acceptance_check(expressions, {"changed_files_count": 0, "exit_code": 1}, False, 1)
    assert not bad.passed
    assert "the action exited 1" in bad.message and "changed_files_count > 0" in bad.message
    assert bad.score == 0.0


def rule(name: str, when: str | None, decide: str, reason: str = "") -> DecisionRule:
    expression = compile_expression(when) if when else None
    return DecisionRule(name, expression, decide, reason, "test.yaml")  # type: ignore[arg-type]


def test_first_matching_rule_wins_and_explains_itself() -> None:
    engine = DecisionEngine(
        [
            rule("retry", "not gate_passed and attempt < max_attempts", "retry", "try again"),
            rule("escalate", "not gate_passed", "escalate"),
            rule("proceed", None, "proceed"),
        ]
    )
    decision = engine.decide({"gate_passed": False, "attempt": 1, "max_attempts": 3})
    assert (decision.action, decision.rule, decision.reason) == ("retry", "retry", "try again")
    assert decision.figures == {"attempt": 1, "gate_passed": False, "max_attempts": 3}
    last = engine.decide({"gate_passed": False, "attempt": 3, "max_attempts": 3})
    assert (last.action, last.rule) == ("escalate", "escalate")
    assert "not gate_passed" in last.reason


def test_a_rule_that_errors_is_skipped_and_named() -> None:
    engine = DecisionEngine(
        [rule("broken", "result['missing'] > 1", "retry"), rule("ok", None, "proceed")]
    )
    decision = engine.decide({"result": {}})
    assert decision.action == "proceed" and "broken" in decision.reason


def test_no_rule_matching_never_waves_a_failed_gate_through() -> None:
    engine = DecisionEngine([rule("only-ok", "gate_passed", "proceed")])
    assert engine.decide({"gate_passed": False}).action == "escalate"


def test_plugin_override_is_applied_and_explained() -> None:
    engine = DecisionEngine([rule("p", None, "proceed")], override=lambda c, d, r: "checkpoint")
    decision = engine.decide({})
    assert decision.action == "checkpoint" and decision.rule == "plugin-override"
    ignored = DecisionEngine([rule("p", None, "proceed")], override=lambda c, d, r: "explode")
    assert ignored.decide({}).action == "proceed"


def test_validator_figures_become_plain_json_and_bad_counts_are_dropped(tmp_path: Path) -> None:
    odd = CheckResult(
        "odd",
        "testing",
        True,
        1.0,
        "ok",
        {"thing": object(), "tests_passed": "many", "tests_failed": 2, "tests_regressed": "x"},
    )
    result = run_validator(validator("odd", "testing", lambda s: odd), step(tmp_path), "testing")
    assert result.passed
    assert isinstance(result.figures["thing"], str)
    assert "tests_passed" not in result.figures and result.figures["tests_failed"] == 2
    assert result.figures["tests_regressed"] == []
    not_mapping = CheckResult("odd", "testing", True, 1.0, "ok", ["not", "a", "mapping"])  # type: ignore[arg-type]
    bad = run_validator(
        validator("odd", "testing", lambda s: not_mapping), step(tmp_path), "testing"
    )
    assert not bad.passed and "not a mapping" in bad.message


def test_a_bad_validator_timeout_option_is_a_failed_check(tmp_path: Path) -> None:
    validators = {"t": validator("t", "testing", lambda s: CheckResult("t", "testing", True, 1.0))}
    report = QualityController(validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="t", timeout_seconds="abc")], ok_requirements()
    )
    assert not report.gate_passed and "timeout_seconds" in report.feedback
