"""The example plugin's own tests: the validator and notifier alone, then through pluggy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from orch_plugin_example import jsonl_file, plugin, todo_comments

from orchestration.extension import Notification, ValidationInput
from orchestration.hooks import load_plugins
from orchestration.models import TaskSpec


def step(workdir: Path, files: tuple[str, ...], **options: Any) -> ValidationInput:
    """What the engine hands a validator after one attempt that changed `files`."""
    task = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]})
    return ValidationInput("run-1", task, 1, workdir, files, 0, "", {}, options, {}, 30.0)


def test_changed_files_without_markers_pass(tmp_path: Path) -> None:
    (tmp_path / "done.py").write_text("x = 1  # the TODOS list is a name, not a marker\n")
    result = todo_comments.check_todo_comments(step(tmp_path, ("done.py", "deleted.py")))
    assert result.passed and result.score == 1.0
    assert result.figures == {"todo_comments": 0, "todo_files": 0}


def test_markers_fail_the_check_and_are_counted(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("# TODO: handle empty input\nx = 1\ny = 2  # FIXME\n")
    (tmp_path / "b.txt").write_text("nothing to do\n")
    (tmp_path / "untouched.py").write_text("# TODO: not changed by the step\n")
    result = todo_comments.check_todo_comments(step(tmp_path, ("a.py", "b.txt")))
    assert not result.passed and result.score == 0.0
    assert result.figures == {"todo_comments": 2, "todo_files": 1}
    assert "a.py:1, a.py:3" in result.message


def test_options_allow_some_and_choose_the_markers(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("# TODO one\n# XXX two\n")
    allowed = todo_comments.check_todo_comments(step(tmp_path, ("a.py",), max_allowed=1))
    assert allowed.passed
    custom = todo_comments.check_todo_comments(step(tmp_path, ("a.py",), markers=["XXX"]))
    assert not custom.passed and "a.py:2" in custom.message
    bad = todo_comments.check_todo_comments(step(tmp_path, ("a.py",), max_allowed=-1))
    assert not bad.passed and "max_allowed" in bad.message


def test_the_notifier_appends_one_json_line_per_notification(tmp_path: Path) -> None:
    target = tmp_path / "out" / "notifications.jsonl"
    (notifier,) = jsonl_file.notifiers_from_env({jsonl_file.ENV_FILE: str(target)})
    notifier.notify(Notification("breakpoint_raised", "run-1", "title", "one", task_id="t"))
    notifier.notify(Notification("digest", "run-1", "title", "two", data={"count": 2}))
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["kind"], r["message"]) for r in lines] == [
        ("breakpoint_raised", "one"),
        ("digest", "two"),
    ]
    assert lines[0]["task_id"] == "t" and lines[1]["data"] == {"count": 2}


def test_without_the_variable_there_is_no_notifier() -> None:
    assert jsonl_file.notifiers_from_env({}) == []


def test_the_plugin_registers_through_the_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jsonl_file.ENV_FILE, str(tmp_path / "n.jsonl"))
    # entry_points=False: the bundled plugins and this one only, whatever else is installed.
    plugins = load_plugins(entry_points=False, extra=[plugin])
    assert plugins.validators["todo_comments"].stage == "quality"
    assert "jsonl_file" in [n.name for n in plugins.notifiers]
    assert not plugins.problems
