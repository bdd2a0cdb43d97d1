"""Figures that are not finite numbers are refused where they come in, never stored.

A `.nan` weight in a rules file used to pass `orch rules check` and `orch validate`; every attempt
then failed to store its NaN quality score and the task stayed `running`. Validators (plugins) may
return figures that are cyclic, too big or infinite: that validator's check fails with a message,
instead of the engine stopping at an `engine_error` breakpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from orchestration.core.models import TaskSpec
from orchestration.engine.quality import QualityController, run_validator
from orchestration.extension import CheckResult, ValidationInput, Validator
from orchestration.rules.rule_files import QualityConfig
from tests.helpers import orch, write_plan

NON_FINITE = [".nan", ".inf", "-.inf", ".NaN", "-.Inf"]


RULE_FIELDS = [
    ("quality:\n  weights: {syntax: VALUE, testing: 0.5}\n", "quality.weights.syntax"),
    ("quality:\n  gate: {min_score: VALUE}\n", "quality.gate.min_score"),
    ("decisions:\n  - decide: score\n    scoring: {thresholds: {proceed: VALUE}}\n", "proceed"),
    ("decisions:\n  - decide: score\n    scoring: {weights: {quality: VALUE}}\n", "quality"),
]
# Every field with NaN; every spelling of a non-finite number on the first field.
RULE_CASES = [(text, field, ".nan") for text, field in RULE_FIELDS] + [
    (*RULE_FIELDS[0], value) for value in NON_FINITE[1:]
]


@pytest.mark.parametrize(("rules_text", "field", "value"), RULE_CASES)
def test_rules_check_refuses_non_finite_figures(
    tmp_path: Path, rules_text: str, field: str, value: str
) -> None:
    rules = tmp_path / "bad-rules.yaml"
    rules.write_text(rules_text.replace("VALUE", value))
    checked = orch("rules", "check", str(rules))
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "bad-rules.yaml" in checked.stderr and field in checked.stderr, checked.stderr
    assert "finite" in checked.stderr, checked.stderr

    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "nan",
            "rules": ["./bad-rules.yaml"],
            "tasks": [{"id": "a", "action": {"kind": "shell", "run": ["true"]}}],
        },
    )
    validated = orch("validate", str(plan))
    assert validated.returncode == 2 and "bad-rules.yaml" in validated.stderr, validated.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [("confidence", ".nan"), ("confidence", "-.inf"), ("timeout_seconds", ".inf")],
)
def test_validate_refuses_non_finite_figures_in_a_plan(
    tmp_path: Path, value: str, field: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: nan\ntasks:\n"
        f"  - id: a\n    {field}: {value}\n    action: {{kind: shell, run: ['true']}}\n"
    )
    validated = orch("validate", str(plan))
    assert validated.returncode == 2, validated.stdout + validated.stderr
    assert "plan.yaml" in validated.stderr and field in validated.stderr, validated.stderr


def test_the_engine_never_scores_nan_even_with_weights_made_in_code() -> None:
    nan_weights = MappingProxyType({"syntax": math.nan, "requirements": 0.5})
    controller = QualityController({}, QualityConfig(nan_weights, 0.5, ()))
    checks = [
        CheckResult("syntax", "syntax", True, 1.0),
        CheckResult("r", "requirements", True, 1.0),
    ]
    report = controller.score(checks)
    assert math.isfinite(report.score) and report.score == 0.0
    assert not report.gate_passed
    assert any("weights" in reason for reason in report.gate_failures), report.gate_failures


def _cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"report": _cyclic()}, "cyclic"),
        ({"report": _deep(100_000)}, "deeper"),
        ({"tests_failed": math.inf}, "finite"),
        ({"coverage": math.nan}, "finite"),
        ({"count": 10**5000}, "64 bits"),
        ({"items": list(range(100_000))}, "values"),
    ],
    ids=["cyclic", "deep", "inf-count", "nan", "huge-int", "too-many"],
)
def test_unusable_validator_figures_fail_that_check_only(
    tmp_path: Path, figures: dict[str, Any], expected: str
) -> None:
    def check(_step: ValidationInput) -> CheckResult:
        return CheckResult("evil", "quality", True, 1.0, "all good", figures)

    step = ValidationInput(
        "r", TaskSpec.model_validate({"id": "a", "action": {"kind": "shell", "run": ["true"]}}),
        1, tmp_path, (), 0, "", {}, {}, {}, 30.0,
    )  # fmt: skip
    result = run_validator(Validator("evil", "quality", check), step, "quality")
    assert not result.passed and result.score == 0.0
    assert "figures" in result.message and expected in result.message, result.message
    json.dumps(result.as_dict(), allow_nan=False)  # what is stored is plain, finite JSON


def test_usable_figures_pass_unchanged(tmp_path: Path) -> None:
    figures = {"tests_failed": 2, "coverage": 0.93, "files": ["a.py"], "by_file": {"a.py": 1}}

    def check(_step: ValidationInput) -> CheckResult:
        return CheckResult("fine", "testing", False, 0.5, "2 failed", figures)

    step = ValidationInput(
        "r", TaskSpec.model_validate({"id": "a", "action": {"kind": "shell", "run": ["true"]}}),
        1, tmp_path, (), 0, "", {}, {}, {}, 30.0,
    )  # fmt: skip
    result = run_validator(Validator("fine", "testing", check), step, "testing")
    assert dict(result.figures) == figures and result.message == "2 failed"
