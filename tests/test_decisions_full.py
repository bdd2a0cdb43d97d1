"""Decisions in full: score rules in rule files, the weighted score, explanations and alternatives,
the quality side (task gates, suggestions, cross-validation, attempt comparison), `orch explain`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from orchestration.core.context import neutral_context
from orchestration.core.errors import PlanError, RuleError
from orchestration.core.models import (
    DecisionRecord,
    QualityRecord,
    TaskGate,
    TaskSpec,
    ValidatorRef,
    split_stored_figures,
)
from orchestration.engine.decisions import (
    DECISIONS,
    Decision,
    DecisionEngine,
    explanation_lines,
)
from orchestration.engine.plan import load_plan
from orchestration.engine.quality import QualityController, run_validator
from orchestration.engine.regressions import compare_attempts
from orchestration.extension import CheckResult, ValidationInput, Validator
from orchestration.rules.expressions import compile_expression
from orchestration.rules.rule_files import DecisionRule, QualityConfig, ScoringPolicy, load_rules
from orchestration.rules.scoring import weighted_score
from orchestration.store import Batch, Store
from tests.helpers import orch, shell_task, write_plan

CONFIG = QualityConfig(
    weights=MappingProxyType({"syntax": 0.2, "requirements": 0.3, "quality": 0.2, "testing": 0.3}),
    min_score=0.7,
    required=("syntax", "testing"),
)
POLICY = ScoringPolicy(
    MappingProxyType({"quality": 0.5, "confidence": 0.3, "history": 0.2}), 0.7, 0.4, "escalate"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def context(**values: Any) -> dict[str, Any]:
    base = neutral_context()
    base.update(values)
    return base


def rule(
    name: str, when: str | None, decide: str, scoring: ScoringPolicy | None = None
) -> DecisionRule:
    expression = compile_expression(when) if when else None
    return DecisionRule(name, expression, decide, "", "test.yaml", scoring)  # type: ignore[arg-type]


# ---- the rule file ----------------------------------------------------------------------------


def test_a_score_rule_loads_with_its_weights_thresholds_and_fallback(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "decisions:\n"
        "  - {when: 'not gate_passed', decide: escalate}\n"
        "  - name: weigh\n"
        "    decide: score\n"
        "    scoring:\n"
        "      weights: {quality: 3, history: 1}\n"
        "      thresholds: {proceed: 0.8, retry: 0.5}\n"
        "      otherwise: clarify\n",
    )
    rules = load_rules([path])
    weigh = rules.decisions[-1]
    assert weigh.decide == "score" and weigh.scoring is not None
    # criteria left out of `weights` weigh nothing; written weights are kept as written
    assert dict(weigh.scoring.weights) == {"quality": 3, "confidence": 0.0, "history": 1}
    assert (weigh.scoring.proceed, weigh.scoring.retry, weigh.scoring.otherwise) == (
        0.8,
        0.5,
        "clarify",
    )
    assert rules.decisions[0].scoring is None


def test_a_score_rule_without_scoring_takes_the_documented_defaults(tmp_path: Path) -> None:
    rules = load_rules([write(tmp_path, "decisions:\n  - {decide: score}\n")])
    policy = rules.decisions[0].scoring
    assert policy is not None
    assert dict(policy.weights) == {"quality": 0.5, "confidence": 0.3, "history": 0.2}
    assert (policy.proceed, policy.retry, policy.otherwise) == (0.7, 0.4, "escalate")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "decisions:\n  - decide: score\n    scoring:\n      weights: {quality: -1}\n",
            4,
            "must not be negative",
        ),
        (
            "decisions:\n  - decide: score\n    scoring:\n      weights: {quality: 0}\n",
            4,
            "sum to more than 0",
        ),
        (
            "decisions:\n  - decide: score\n    scoring:\n      weights: {speed: 1}\n",
            4,
            "speed",
        ),
        (
            "decisions:\n  - decide: score\n    scoring:\n"
            "      thresholds: {proceed: 0.3, retry: 0.6}\n",
            4,
            "above the proceed threshold",
        ),
        (
            "decisions:\n  - decide: score\n    scoring:\n      thresholds: {proceed: 1.5}\n",
            4,
            "proceed",
        ),
        (
            "decisions:\n  - decide: score\n    scoring: {otherwise: proceed}\n",
            3,
            "otherwise",
        ),
        (
            "decisions:\n  - decide: proceed\n    scoring: {}\n",
            3,
            "goes with `decide: score`",
        ),
        (
            "decisions:\n  - {decide: score}\n  - {decide: proceed}\n",
            3,
            "never match",
        ),
    ],
)
def test_scoring_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleError, match=message) as caught:
        load_rules([path])
    assert caught.value.file == str(path)
    assert caught.value.line == line


def test_new_context_names_compile_in_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "breakpoints:\n"
        "  - {name: split, at: after, when: 'len(stage_conflicts) > 0'}\n"
        "decisions:\n"
        "  - {when: 'score_delta < -0.2 and len(regressed_vs_previous) > 0', decide: escalate}\n"
        "  - {when: 'historical_success_rate < 0.2 and historical_attempts >= 10', "
        "decide: clarify}\n"
        "  - {when: 'calibrated_confidence < 0.3 or tests_failed_delta > 0', decide: retry}\n"
        "  - {decide: proceed}\n",
    )
    rules = load_rules([path])
    engine = DecisionEngine(rules.decisions)
    assert engine.decide(context(score_delta=-0.5, regressed_vs_previous=("testing",))).action == (
        "escalate"
    )
    assert engine.decide(context(tests_failed_delta=2)).action == "retry"
    assert engine.decide(context()).action == "proceed"


# ---- the weighted score ----------------------------------------------------------------------


def test_without_history_the_history_criterion_is_left_out_and_weights_renormalised() -> None:
    card = weighted_score(POLICY, context(quality_score=0.8, confidence=0.4))
    assert [p.criterion for p in card.parts] == ["quality", "confidence"]
    assert card.score == pytest.approx((0.5 * 0.8 + 0.3 * 0.4) / 0.8, abs=1e-4)
    assert sum(p.weight for p in card.parts) == pytest.approx(1.0)
    assert card.left_out == ("history: no earlier attempts of this kind",)


def test_with_history_the_calibrated_confidence_and_the_success_rate_count() -> None:
    card = weighted_score(
        POLICY,
        context(
            quality_score=0.9,
            confidence=0.9,
            calibrated_confidence=0.3,
            historical_success_rate=0.2,
            historical_attempts=12,
        ),
    )
    sources = {p.criterion: p.source for p in card.parts}
    assert sources == {
        "quality": "quality_score",
        "confidence": "calibrated_confidence",
        "history": "historical_success_rate",
    }
    assert card.score == pytest.approx(0.5 * 0.9 + 0.3 * 0.3 + 0.2 * 0.2, abs=1e-4)


def test_a_criterion_that_is_not_a_number_is_left_out_and_values_are_clamped() -> None:
    card = weighted_score(POLICY, context(quality_score=7.0, confidence="high"))
    assert [p.criterion for p in card.parts] == ["quality"]
    assert card.score == 1.0
    assert any("confidence is not a number" in note for note in card.left_out)
    only_history = ScoringPolicy(MappingProxyType({"history": 1.0}), 0.7, 0.4, "escalate")
    fallback = weighted_score(only_history, context(quality_score=0.6))
    assert [p.criterion for p in fallback.parts] == ["quality"] and fallback.score == 0.6


def score_engine(otherwise: str = "escalate") -> DecisionEngine:
    policy = ScoringPolicy(
        MappingProxyType({"quality": 1.0}),
        0.7,
        0.4,
        otherwise,  # type: ignore[arg-type]
    )
    return DecisionEngine([rule("weigh", None, "score", policy)])


@pytest.mark.parametrize(
    ("values", "action", "reason"),
    [
        ({"quality_score": 0.9, "gate_passed": True}, "proceed", "reached the proceed threshold"),
        ({"quality_score": 0.9, "gate_passed": False}, "retry", "but the gate failed"),
        ({"quality_score": 0.5, "gate_passed": True}, "retry", "below the proceed threshold"),
        ({"quality_score": 0.2, "gate_passed": True}, "escalate", "below the retry threshold"),
        (
            {"quality_score": 0.5, "gate_passed": True, "attempt": 3, "max_attempts": 3},
            "escalate",
            "no attempt left (3 of 3)",
        ),
        (
            {"quality_score": 0.9, "gate_passed": False, "error_kind": "permanent"},
            "escalate",
            "the error is permanent",
        ),
    ],
)
def test_the_score_bands_respect_the_gate_and_the_retry_budget(
    values: dict[str, Any], action: str, reason: str
) -> None:
    base = {"attempt": 1, "max_attempts": 3}
    decision = score_engine().decide(context(**{**base, **values}))
    assert decision.action == action
    assert reason in decision.reason
    assert decision.rule == "weigh"
    assert decision.explanation is not None and decision.explanation.score is not None


def test_otherwise_may_be_clarify() -> None:
    decision = score_engine("clarify").decide(context(quality_score=0.1))
    assert decision.action == "clarify"


# ---- explanations ----------------------------------------------------------------------------


def explained_engine() -> DecisionEngine:
    return DecisionEngine(
        [
            rule("retry_failed", "not gate_passed and attempt < max_attempts", "retry"),
            rule("broken", "result['missing'] > 1", "checkpoint"),
            rule("clarify_unsure", "confidence < 0.4", "clarify"),
            rule("weigh", "historical_attempts > 0", "score", POLICY),
            rule("escalate_failed", "not gate_passed", "escalate"),
            rule("proceed", None, "proceed"),
        ]
    )


def test_every_other_action_is_an_alternative_with_a_reason() -> None:
    decision = explained_engine().decide(
        context(gate_passed=False, attempt=1, max_attempts=3, result={})
    )
    assert decision.action == "retry"
    explanation = decision.explanation
    assert explanation is not None
    assert [a.action for a in explanation.alternatives] == [
        action for action in DECISIONS if action != "retry"
    ]
    why = {a.action: a.why_not for a in explanation.alternatives}
    # not evaluated: rules after the matching one are named as coming after it
    assert why["clarify"] == "rule 'clarify_unsure' comes after the matching rule 'retry_failed'"
    # the first later rule that could give it: the score rule may escalate too
    assert why["escalate"] == "rule 'weigh' comes after the matching rule 'retry_failed'"
    assert why["proceed"] == "rule 'weigh' comes after the matching rule 'retry_failed'"
    assert explanation.when == "not gate_passed and attempt < max_attempts"
    assert "retry by rule 'retry_failed'" in explanation.text


def test_the_explanation_names_rules_that_did_not_match_or_failed_and_the_score() -> None:
    decision = explained_engine().decide(
        context(
            gate_passed=True,
            quality_score=0.75,
            confidence=0.9,
            calibrated_confidence=0.5,
            historical_success_rate=0.4,
            historical_attempts=20,
            attempt=1,
            max_attempts=3,
            result={},
        )
    )
    # 0.5 * 0.75 + 0.3 * 0.5 + 0.2 * 0.4 = 0.605: between retry (0.4) and proceed (0.7)
    assert decision.action == "retry" and decision.rule == "weigh"
    explanation = decision.explanation
    assert explanation is not None and explanation.score is not None
    assert explanation.score.score == pytest.approx(0.605)
    assert explanation.not_matched == (
        "retry_failed (retry): not gate_passed and attempt < max_attempts",
        "clarify_unsure (clarify): confidence < 0.4",
    )
    assert len(explanation.errors) == 1 and explanation.errors[0].startswith("broken:")
    why = {a.action: a.why_not for a in explanation.alternatives}
    assert why["proceed"] == "the score 0.60 is below the proceed threshold 0.70"
    assert why["checkpoint"].startswith("rule 'broken' was skipped after an error")
    assert why["clarify"] == "rule 'clarify_unsure' did not match: confidence < 0.4"
    assert why["escalate"].startswith("the score 0.60 is at or above the retry threshold 0.40")
    # the score rule saw every name the score reads, not only its `when`
    assert decision.figures["calibrated_confidence"] == 0.5
    assert decision.figures["historical_attempts"] == 20
    assert "Weighted score 0.60 = quality 0.75 x 0.50" in explanation.text


def test_stored_figures_keep_what_the_rule_saw_and_add_the_explanation_as_json() -> None:
    decision = explained_engine().decide(
        context(gate_passed=False, attempt=3, max_attempts=3, result={})
    )
    stored = decision.stored_figures()
    round_trip = json.loads(json.dumps(stored))
    seen, explanation = split_stored_figures(round_trip)
    assert seen == dict(decision.figures)
    assert explanation is not None
    assert explanation["rule"] == "escalate_failed"
    assert {a["action"] for a in explanation["alternatives"]} == set(DECISIONS) - {"escalate"}
    lines = explanation_lines(explanation)
    assert "did not match: retry_failed (retry): not gate_passed and attempt < max_attempts" in (
        lines
    )
    assert any(line.startswith("not proceed: ") for line in lines)
    assert split_stored_figures({"attempt": 1}) == ({"attempt": 1}, None)  # an older record


def test_the_fallback_and_a_plugin_override_are_explained() -> None:
    engine = DecisionEngine([rule("only_ok", "gate_passed", "proceed")])
    fallback = engine.decide(context(gate_passed=False))
    assert fallback.action == "escalate" and fallback.explanation is not None
    assert fallback.explanation.not_matched == ("only_ok (proceed): gate_passed",)
    why = {a.action: a.why_not for a in fallback.explanation.alternatives}
    assert why["proceed"] == "rule 'only_ok' did not match: gate_passed"
    assert why["retry"] == "no decision rule gives retry here"

    overriding = DecisionEngine([rule("p", None, "proceed")], override=lambda c, d, r: "checkpoint")
    decision = overriding.decide(context())
    assert decision.explanation is not None
    assert decision.explanation.overridden == "proceed"
    first = decision.explanation.alternatives[0]
    assert first.action == "proceed" and "a plugin" in first.why_not
    assert "checkpoint" not in {a.action for a in decision.explanation.alternatives}


# ---- the default rules ------------------------------------------------------------------------


OLD_DEFAULTS = (
    "decisions:\n"
    '  - {name: r, when: "not gate_passed and attempt < max_attempts and error_kind != '
    "'permanent'\", decide: retry}\n"
    "  - {name: c, when: 'confidence < 0.4', decide: clarify}\n"
    "  - {name: e, when: 'not gate_passed', decide: escalate}\n"
    "  - {name: m, when: \"'milestone' in tags\", decide: checkpoint}\n"
    "  - {name: p, decide: proceed}\n"
)


def test_without_history_the_default_decisions_are_unchanged(tmp_path: Path) -> None:
    new = DecisionEngine(load_rules().decisions)
    old = DecisionEngine(load_rules([write(tmp_path, OLD_DEFAULTS)]).decisions)
    for gate in (True, False):
        for quality in (0.0, 0.3, 0.7, 1.0):
            for confidence in (0.1, 0.45, 0.9):
                for attempt in (1, 3):
                    for tags in ((), ("milestone",)):
                        for error_kind in ("none", "permanent"):
                            values = context(
                                gate_passed=gate,
                                quality_score=quality,
                                confidence=confidence,
                                calibrated_confidence=confidence,
                                attempt=attempt,
                                max_attempts=3,
                                tags=tags,
                                error_kind=error_kind,
                            )
                            assert new.decide(values).action == old.decide(values).action


def test_with_history_the_defaults_retry_then_escalate_a_weak_passed_attempt() -> None:
    engine = DecisionEngine(load_rules().decisions)
    weak = context(
        gate_passed=True,
        quality_score=0.7,
        confidence=0.5,
        calibrated_confidence=0.2,
        historical_success_rate=0.1,
        historical_attempts=10,
        attempt=1,
        max_attempts=3,
    )
    first = engine.decide(weak)
    assert (first.action, first.rule) == ("retry", "weigh_passed_attempt")
    assert engine.decide({**weak, "attempt": 3}).action == "escalate"
    strong = {**weak, "quality_score": 0.95, "calibrated_confidence": 0.8}
    assert engine.decide(strong).action == "proceed"


# ---- the quality side -------------------------------------------------------------------------


def step(tmp_path: Path, gate: dict[str, Any] | None = None) -> ValidationInput:
    spec = TaskSpec.model_validate(
        {"id": "t", "action": {"kind": "shell", "run": ["true"]}, "gate": gate}
    )
    return ValidationInput("r", spec, 1, tmp_path, ("a.py",), 0, "", {}, {}, {}, 5.0)


def fixed(name: str, stage: str, passed: bool, score: float, **figures: Any) -> Validator:
    return Validator(
        name, stage, lambda s: CheckResult(name, stage, passed, score, f"{name} said so", figures)
    )


def ok() -> CheckResult:
    return CheckResult("requirements", "requirements", True, 1.0)


def test_a_task_gate_raises_or_lowers_the_rule_files_gate(tmp_path: Path) -> None:
    validators = {"lint": fixed("lint", "quality", False, 0.3), "t": fixed("t", "testing", True, 1)}
    controller = QualityController(validators, CONFIG)
    refs = [ValidatorRef(name="lint"), ValidatorRef(name="t")]
    # (0.3 * 0.2 + 1 * 0.3 + 1 * 0.3) / 0.8 = 0.825: passes the files' gate (0.7, syntax+testing)
    assert controller.assess(step(tmp_path), refs, ok()).gate_passed
    strict = controller.assess(step(tmp_path, {"min_score": 0.9}), refs, ok())
    assert not strict.gate_passed
    assert strict.gate_failures == ("quality score 0.82 is below the gate's 0.90",)
    required = controller.assess(step(tmp_path, {"required": ["quality"]}), refs, ok())
    assert required.gate_failures == ("required stage 'quality' failed: lint",)
    lenient = controller.assess(
        step(tmp_path), refs, ok(), gate=TaskGate(min_score=0.0, required=[])
    )
    assert lenient.gate_passed
    explicit = controller.assess(step(tmp_path), refs, ok(), gate=TaskGate(min_score=0.95))
    assert not explicit.gate_passed  # an explicit gate wins over the task's (none here)


def test_the_plan_accepts_a_task_gate_and_rejects_a_bad_one(tmp_path: Path) -> None:
    good = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "g",
            "tasks": [shell_task("a", "pass", gate={"min_score": 0.9, "required": ["syntax"]})],
        },
    )
    gate = load_plan(good).spec.tasks[0].gate
    assert gate == TaskGate(min_score=0.9, required=["syntax"])
    bad = write_plan(
        tmp_path,
        {"version": 1, "name": "g", "tasks": [shell_task("a", "pass", gate={"min_score": 2})]},
        name="bad.yaml",
    )
    with pytest.raises(PlanError, match="min_score"):
        load_plan(bad)


def test_suggestions_reach_the_feedback_failed_checks_first(tmp_path: Path) -> None:
    validators = {
        "style": fixed("style", "quality", True, 0.9, suggestions="name the constant"),
        "tests": fixed(
            "tests", "testing", False, 0.0, suggestions=["check the boundary", "", None, 3]
        ),
    }
    report = QualityController(validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="style"), ValidatorRef(name="tests")], ok()
    )
    assert report.suggestions == (
        "[tests] check the boundary",
        "[tests] 3",
        "[style] name the constant",
    )
    lines = report.feedback.splitlines()
    assert lines.index("Suggestions:") > lines.index("[tests] tests said so")
    assert lines[-3:] == [
        "- [tests] check the boundary",
        "- [tests] 3",
        "- [style] name the constant",
    ]


def test_a_passed_attempt_still_carries_its_suggestions(tmp_path: Path) -> None:
    validators = {"style": fixed("style", "quality", True, 1.0, suggestions=["x" * 900] * 30)}
    report = QualityController(validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="style")], ok()
    )
    assert report.gate_passed
    assert len(report.suggestions) == 1  # 30 identical hints, kept once
    assert report.feedback.startswith("Suggestions:\n- [style] ")
    assert len(report.suggestions[0]) == len("[style] ") + 500
    raw = run_validator(
        fixed("many", "quality", True, 1.0, suggestions=[str(i) for i in range(50)]),
        step(tmp_path),
        "quality",
    )
    assert len(raw.figures["suggestions"]) == 20


def test_validators_of_one_stage_that_disagree_are_named(tmp_path: Path) -> None:
    validators = {
        "unit": fixed("unit", "testing", True, 1.0),
        "e2e": fixed("e2e", "testing", False, 0.0),
        "syn": fixed("syn", "syntax", True, 1.0),
        "syn2": fixed("syn2", "syntax", True, 0.8),
    }
    refs = [ValidatorRef(name=n) for n in validators]
    report = QualityController(validators, CONFIG).assess(step(tmp_path), refs, ok())
    assert report.stage_conflicts == ("testing",)
    assert "validators of the same stage disagree: testing" in report.feedback
    agreeing = QualityController(validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="syn"), ValidatorRef(name="syn2")], ok()
    )
    assert agreeing.stage_conflicts == ()


def test_an_attempt_is_compared_with_the_previous_one(tmp_path: Path) -> None:
    controller = QualityController(
        {"t": fixed("t", "testing", True, 1.0, tests_failed=0, failed_tests=[])}, CONFIG
    )
    before = controller.assess(step(tmp_path), [ValidatorRef(name="t")], ok())
    worse_validators = {
        "t": fixed("t", "testing", False, 0.5, tests_failed=2, failed_tests=["test_a", "test_b"])
    }
    after = QualityController(worse_validators, CONFIG).assess(
        step(tmp_path), [ValidatorRef(name="t")], ok()
    )
    first = compare_attempts(before, None)
    assert first.context() == {
        "score_delta": 0.0,
        "regressed_vs_previous": (),
        "tests_failed_delta": 0,
    }
    assert first.feedback() == ""
    comparison = compare_attempts(after, before)
    assert comparison.score_delta == pytest.approx(after.score - before.score)
    assert comparison.score_delta < 0
    assert comparison.regressed_vs_previous == ("testing",)
    assert comparison.tests_failed_delta == 2
    assert comparison.newly_failing_tests == ("test_a", "test_b")
    assert "tests that fail now but did not in the previous attempt: test_a, test_b" in (
        comparison.feedback()
    )
    # the previous attempt as the store gives it back: a QualityRecord with checks as dicts
    record = QualityRecord(
        "r",
        "t",
        1,
        after.score,
        after.gate_passed,
        dict(after.stage_scores),
        [c.as_dict() for c in after.checks],
        datetime.now(UTC),
    )
    better = compare_attempts(before, record)
    assert better.score_delta > 0 and better.regressed_vs_previous == ()
    assert better.tests_failed_delta == -2 and better.feedback() == ""


# ---- orch explain ------------------------------------------------------------------------------


def test_orch_explain_prints_the_score_parts_and_the_alternatives(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    plan = write_plan(tmp_path / "p", {"version": 1, "name": "ex", "tasks": [shell_task("a", "")]})
    done = orch("run", str(plan), "--run-id", "ex-1", "--db", db, "--quiet")
    assert done.returncode == 0, done.stderr
    decision = explained_engine().decide(
        context(
            gate_passed=True,
            quality_score=0.75,
            confidence=0.9,
            calibrated_confidence=0.5,
            historical_success_rate=0.4,
            historical_attempts=20,
            attempt=2,
            max_attempts=3,
            result={},
        )
    )
    store = Store.open(db)
    try:
        store.commit("ex-1", Batch(decisions=[record_of(decision, "ex-1", "a", 2)]))
    finally:
        store.close()
    shown = orch("explain", "ex-1", "a", "--db", db)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "attempt 2: retry (rule weigh)" in text
    assert "score 0.60 = quality 0.75 x 0.50 + confidence 0.50 x 0.30 + history 0.40 x 0.20" in (
        text
    )
    assert "not proceed: the score 0.60 is below the proceed threshold 0.70" in text
    assert "did not match: clarify_unsure (clarify): confidence < 0.4" in text
    data = json.loads(orch("explain", "ex-1", "a", "--db", db, "--json").stdout)
    last = data["decisions"][-1]
    assert "explanation" not in last["figures"]
    assert last["figures"]["quality_score"] == 0.75
    assert last["explanation"]["score"]["parts"][0] == {
        "criterion": "quality",
        "source": "quality_score",
        "value": 0.75,
        "weight": 0.5,
        "contribution": 0.375,
    }
    assert data["decisions"][0]["attempt"] == 1  # the run's own decision comes first


def record_of(decision: Decision, run_id: str, task_id: str, attempt: int) -> DecisionRecord:
    return DecisionRecord(
        run_id,
        task_id,
        attempt,
        decision.action,
        decision.rule,
        decision.reason,
        decision.stored_figures(),
        datetime.now(UTC),
    )
