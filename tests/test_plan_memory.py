"""A large plan's memory: equal actions shared, lines read only when a message needs them."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestration.core.errors import PlanErrors
from orchestration.core.yamlfile import load_yaml_text
from orchestration.engine.plan import load_plan


def write_plan(tmp_path: Path, tasks: str) -> Path:
    path = tmp_path / "plan.yaml"
    header = "version: 1\nname: demo\ntasks:\n"
    path.write_text(header + textwrap.dedent(tasks).strip("\n") + "\n", encoding="utf-8")
    return path


def test_tasks_written_alike_share_their_action_and_retry_models(tmp_path: Path) -> None:
    plan = load_plan(
        write_plan(
            tmp_path,
            """
            - {id: a, action: {kind: python, call: "os:getpid"}, retry: aggressive}
            - {id: b, action: {kind: python, call: "os:getpid"}, retry: aggressive}
            - {id: c, action: {kind: python, call: "os:getcwd"}, retry: {max_attempts: 2}}
            """,
        )
    )
    a, b, c = plan.spec.tasks
    assert a.action is b.action and a.retry is b.retry
    assert c.action is not a.action and c.action.call == "os:getcwd"  # type: ignore[union-attr]
    assert c.retry is not None and c.retry.max_attempts == 2
    assert a.retry is not None and a.retry.max_attempts == 5  # the preset, as before


def test_each_task_with_the_same_bad_action_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: a, action: {kind: python, call: "not a call"}}
        - {id: b, action: {kind: python, call: "not a call"}}
        """,
    )
    with pytest.raises(PlanErrors) as caught:
        load_plan(path)
    found = [(e.task, e.field, e.line) for e in caught.value.errors]
    assert found == [("a", "action.call", 4), ("b", "action.call", 5)]


def test_a_duplicate_key_names_both_lines_when_read_without_lines() -> None:
    text = "a: 1\nb:\n  c: 2\n  c: 3\n"
    with pytest.raises(Exception, match=r"duplicate key 'c' \(first at line 3, again at 4\)"):
        load_yaml_text(text, "x.yaml")


def test_lines_are_read_when_first_asked_for() -> None:
    data, lines = load_yaml_text("a: 1\nb:\n  - x\n  - {c: 2}\n", "x.yaml")
    assert data == {"a": 1, "b": ["x", {"c": 2}]}
    assert lines.line_of(("b", 1, "c")) == 4
    assert lines.line_of(("b", 0)) == 3
    assert lines.line_of(("missing",)) == 1


def test_a_stored_plan_reads_back_equal_with_its_tasks_stored_as_written(tmp_path: Path) -> None:
    from orchestration.core.models import RunRecord
    from orchestration.engine.plan import plan_from_stored, plan_json

    plan = load_plan(
        write_plan(
            tmp_path,
            """
            - {id: a, action: {kind: shell, run: [echo, hi]}, priority: high, tags: [x]}
            - id: b
              depends_on: [a]
              retry: conservative
              validators: [syntax, {name: pytest, run: [pytest, -q]}]
              action: {kind: python, call: "os:getpid", args: {n: 1}}
              branches:
                - on_success: true
                  spawn: [{id: c, action: {kind: shell, run: ["true"]}}]
            """,
        )
    )
    stored = plan_json(plan)
    assert stored["spec"]["tasks"][0] == {
        "id": "a",
        "action": {"kind": "shell", "run": ["echo", "hi"]},
        "priority": 8,
        "tags": ["x"],
    }
    assert stored["spec"]["defaults"]["timeout_seconds"] == 900.0  # settings stored whole
    now = datetime.now(UTC)
    run = RunRecord("r", "demo", plan.path, plan.workdir, "running", now, now, plan_json=stored)
    again = plan_from_stored(run)
    assert again.spec == plan.spec
    assert [t.model_dump() for t in again.spec.tasks] == [t.model_dump() for t in plan.spec.tasks]
