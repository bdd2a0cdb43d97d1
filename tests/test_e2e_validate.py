"""`orch validate` on good and bad plans: exit 0 or 2, one clear line per problem, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import orch, shell_task, write_plan

ROOT = Path(__file__).resolve().parent.parent
BAD_PLANS = ROOT / "examples" / "bad-plans"


def test_good_plan_exits_0(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {"version": 1, "name": "ok", "tasks": [shell_task("a", "pass")]})
    done = orch("validate", str(plan))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nname: x\ntasks:\n  - id: a\n    action: {kind: shell, run: [true]\n",
            "invalid YAML",
        ),
        (
            "version: 1\nname: x\ntasks:\n"
            "  - {id: a, action: {kind: shell, run: [t]}}\n"
            "  - {id: a, action: {kind: shell, run: [t]}}\n",
            "duplicate task id 'a'",
        ),
        (
            "version: 1\nname: x\ntasks:\n  - {id: a, depends_on: [zz], action: {kind: shell, run: [t]}}\n",
            "unknown task 'zz'",
        ),
        (
            "version: 1\nname: x\ntasks:\n"
            "  - {id: a, depends_on: [c], action: {kind: shell, run: [t]}}\n"
            "  - {id: b, depends_on: [a], action: {kind: shell, run: [t]}}\n"
            "  - {id: c, depends_on: [b], action: {kind: shell, run: [t]}}\n",
            "a -> c -> b -> a",
        ),
        (
            "version: 1\nname: x\ntasks:\n  - {id: a, priority: urgent, action: {kind: shell, run: [t]}}\n",
            "unknown priority 'urgent'",
        ),
        (
            "version: 1\nname: x\ntasks:\n  - {id: a, risk: extreme, action: {kind: shell, run: [t]}}\n",
            "risk",
        ),
        (
            "version: 1\nname: x\ntasks:\n  - {id: a, confidence: 1.5, action: {kind: shell, run: [t]}}\n",
            "confidence",
        ),
        (
            "version: 1\nname: x\ntasks:\n  - {id: a, action: {kind: teleport}}\n",
            "unknown action kind",
        ),
        ("version: 1\nname: x\ntasks:\n  - {id: a, action: {kind: shell}}\n", "run"),
        (
            "version: 1\nname: x\ntasks:\n  - {id: a, validators: [nope], action: {kind: shell, run: [t]}}\n",
            "unknown validator 'nope'",
        ),
        (
            "version: 1\nname: x\ntasks:\n"
            "  - {id: a, acceptance: ['no_such_name > 1'], action: {kind: shell, run: [t]}}\n",
            "no_such_name",
        ),
        ("a: &x [1]\nb: *x\n", "anchors"),
        ("", "empty"),
    ],
)
def test_bad_plans_exit_2_with_a_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    done = orch("validate", str(plan))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert str(plan) in done.stderr
    assert expected in done.stderr


def test_problems_name_file_line_task_and_field_in_json(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: x\ntasks:\n"
        "  - id: build\n    priority: urgent\n    action: {kind: shell, run: [t]}\n"
    )
    done = orch("validate", str(plan), "--json")
    assert done.returncode == 2
    problem = json.loads(done.stdout)["problems"][0]
    assert problem["file"] == str(plan) and problem["line"] == 5
    assert problem["task"] == "build" and problem["field"] == "priority"


def test_missing_plan_file(tmp_path: Path) -> None:
    done = orch("validate", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2 and "nope.yaml" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("bad", sorted(p.name for p in BAD_PLANS.glob("*.yaml")))
def test_shipped_bad_plan_examples_fail_validation(bad: str) -> None:
    done = orch("validate", str(BAD_PLANS / bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr
