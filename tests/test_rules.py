"""Rule files: loading, merging over the defaults, strict YAML, errors naming file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.context import neutral_context
from orchestration.core.errors import RuleError
from orchestration.rules.rule_files import default_rule_files, evaluate_breakpoints, load_rules


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def context(**values: Any) -> dict[str, Any]:
    base = neutral_context()
    base.update(values)
    return base


def test_defaults_load_with_the_eight_breakpoint_types() -> None:
    rules = load_rules()
    names = {rule.name for rule in rules.breakpoints}
    assert {
        "architecture_decision",
        "breaking_test_failure",
        "conflicting_solutions",
        "milestone_completion",
        "rate_limit_hit",
        "time_threshold_exceeded",
        "confidence_too_low",
        "consecutive_failures",
    } <= names
    assert all(rule.doc for rule in rules.breakpoints)
    priorities = [rule.priority for rule in rules.breakpoints]
    assert priorities == sorted(priorities, reverse=True)
    assert [d.decide for d in rules.decisions] == [
        "escalate",  # a validator changed the work tree: a retry would meet the same validator
        "retry",
        "fail",  # only for when_exhausted: fail
        "clarify",
        "escalate",
        "checkpoint",
        "score",
        "proceed",
    ]
    assert dict(rules.quality.weights) == pytest.approx(
        {"syntax": 0.2, "requirements": 0.3, "quality": 0.2, "testing": 0.3}
    )
    assert (rules.quality.min_score, rules.quality.required) == (0.7, ("syntax", "testing"))
    assert [Path(f).name for f in rules.files] == [p.name for p in default_rule_files()]


def test_rate_limit_is_handled_automatically() -> None:
    rules = load_rules()
    fired = evaluate_breakpoints(rules, "after", context(exit_code=75, error_kind="transient"))
    assert [(r.name, r.action, r.auto and r.auto.then) for r, _ in fired] == [
        ("rate_limit_hit", "auto", "retry")
    ]


def test_user_file_retunes_disables_and_adds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        breakpoints:
          - {name: milestone_completion, enabled: false}
          - {name: rate_limit_hit, action: pause, priority: 5}
          - name: night_work
            at: before
            when: "now_hour < 6"
            priority: 200
            action: notify
            message: "{task_id} starts at {now_hour}h; {unknown} stays"
        quality:
          gate: {min_score: 0.8}
        """,
    )
    rules = load_rules([path])
    names = [r.name for r in rules.breakpoints]
    assert "milestone_completion" not in names
    rate = next(r for r in rules.breakpoints if r.name == "rate_limit_hit")
    assert (rate.action, rate.priority, rate.auto) == ("pause", 5, None)
    assert rate.when.source.startswith("exit_code == 75")  # kept from the default
    night = rules.breakpoints_at("before")[0]
    assert night.name == "night_work" and night.file == str(path)
    assert (
        night.message_for(context(task_id="T-1", now_hour=3)) == "T-1 starts at 3h; {unknown} stays"
    )
    assert rules.quality.min_score == 0.8 and rules.quality.required == ("syntax", "testing")
    assert len(rules.decisions) == len(
        load_rules().decisions
    )  # no decisions section: defaults stay


def test_decisions_section_replaces_the_list(tmp_path: Path) -> None:
    path = write(
        tmp_path, "decisions:\n  - {when: 'attempt > 1', decide: escalate}\n  - {decide: proceed}\n"
    )
    rules = load_rules([path])
    assert [(d.name, d.decide) for d in rules.decisions] == [
        ("escalate-1", "escalate"),
        ("proceed-2", "proceed"),
    ]


def test_without_defaults_only_the_given_files_count(tmp_path: Path) -> None:
    path = write(tmp_path, "breakpoints:\n  - {name: a, at: after, when: 'tests_failed > 0'}\n")
    rules = load_rules([path], include_defaults=False)
    assert [r.name for r in rules.breakpoints] == ["a"] and rules.decisions == ()


def test_plugin_functions_reach_rule_expressions(tmp_path: Path) -> None:
    path = write(tmp_path, "breakpoints:\n  - {name: a, at: after, when: 'is_odd(attempt)'}\n")
    rules = load_rules([path], include_defaults=False, functions={"is_odd": lambda n: n % 2 == 1})
    assert [r.name for r, _ in evaluate_breakpoints(rules, "after", context(attempt=3))] == ["a"]


def test_evaluation_errors_are_reported_not_raised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        breakpoints:
          - {name: broken, at: after, when: "result['confidence'] < 0.5", priority: 9}
          - {name: fine, at: after, when: "True", priority: 1}
        """,
    )
    fired = evaluate_breakpoints(load_rules([path], include_defaults=False), "after", context())
    assert [(r.name, e is not None) for r, e in fired] == [("broken", True), ("fine", False)]
    assert fired[0][1] is not None and fired[0][1].rule == "broken"


def test_message_for_substitutes_context_names_only() -> None:
    rule = next(r for r in load_rules().breakpoints if r.name == "breaking_test_failure")
    text = rule.message_for(context(task_id="T", tests_failed=2, tests_regressed=("a", "b")))
    assert text.startswith("T: 2 tests fail") and text.endswith("regressed: a, b")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("breakpoints:\n  - {name: a, at: after, when: 'x > 1'}\n", 2, "unknown name 'x'"),
        ("breakpoints:\n  - name: a\n    at: after\n    when: 'attempt >'\n", 4, "syntax error"),
        (
            "breakpoints:\n  - name: a\n    at: after\n    when: 'attempt'\n    colour: red\n",
            5,
            "unknown key 'colour'",
        ),
        ("breakpoints:\n  - name: a\n    at: later\n    when: 'attempt'\n", 3, "at:"),
        (
            "breakpoints:\n  - name: a\n    at: after\n    at: before\n    when: 'attempt'\n",
            4,
            "duplicate key 'at'",
        ),
        ("x: &a 1\nbreakpoints: *a\n", 1, "anchors and aliases"),
        (
            "breakpoints:\n  - {name: a, at: after, when: 'True', action: auto}\n",
            2,
            "needs an `auto",
        ),
        ("breakpoints:\n  - {name: a, at: after, when: 'True', priority: 'high'}\n", 2, "priority"),
        ("breakpoints:\n  - {name: zzz, enabled: false}\n", 2, "no earlier breakpoint"),
        (
            "breakpoints:\n  - {name: a, at: after, when: 'True'}\n"
            "  - {name: a, at: after, when: 'True'}\n",
            3,
            "defined twice",
        ),
        (
            "decisions:\n  - {decide: proceed}\n  - {when: 'True', decide: retry}\n",
            3,
            "never match",
        ),
        ("decisions:\n  - {decide: maybe}\n", 2, "decide"),
        (
            "quality:\n  weights: {syntax: 0, requirements: 0, quality: 0, testing: 0}\n",
            2,
            "sum to more than 0",
        ),
        ("quality:\n  gate: {required: [speed]}\n", 2, "required"),
        ("rules: []\n", 1, "unknown key 'rules'"),
        ("- a\n", 1, "mapping of sections"),
        ("breakpoints: [\n", 2, "invalid YAML"),
    ],
)
def test_rule_file_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleError, match=message) as caught:
        load_rules([path])
    assert caught.value.file == str(path)
    assert caught.value.line == line


def test_expression_error_column_points_into_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'breakpoints:\n  - name: a\n    at: after\n    when: "attempt > 1 and reslt"\n'
    )
    with pytest.raises(RuleError) as caught:
        load_rules([path])
    error = caught.value
    assert (error.line, error.column, error.rule) == (4, 28, "a")
    assert str(error).startswith(f"{path}:4:28: rule 'a': unknown name 'reslt'")


def test_missing_file_is_a_rule_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        load_rules([tmp_path / "nope.yaml"])


def test_yaml_1_1_surprises_are_type_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "breakpoints:\n  - {name: a, at: after, when: 'True', doc: no}\n")
    assert load_rules([path], include_defaults=False).breakpoints[0].doc == "no"
