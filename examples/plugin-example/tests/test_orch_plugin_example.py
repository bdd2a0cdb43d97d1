"""The example plugin's own tests: the validator and notifier alone, then through pluggy."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from orch_plugin_example import jsonl_file, plugin, replace_text, todo_comments

from orchestration.core.models import TaskSpec
from orchestration.extension import ActionInput, Notification, ValidationInput
from orchestration.pluginhost.hooks import load_plugins


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
    assert plugins.actions["replace_text"].run is replace_text.replace_text
    assert "replace_text" in plugins.action_kinds
    assert not plugins.problems


def edit(workdir: Path, **args: Any) -> ActionInput:
    """What the engine hands the action kind for one attempt."""
    task = TaskSpec(id="t", action={"kind": "replace_text", "args": args})
    return ActionInput("run-1", task, 1, workdir, args, 30.0, threading.Event())


def test_replace_text_edits_the_file_and_counts(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = old()\ny = old()\n")
    done = replace_text.replace_text(edit(tmp_path, path="app.py", old="old(", new="new(", count=1))
    assert done.succeeded and dict(done.result) == {"replacements": 1}
    assert (tmp_path / "app.py").read_text() == "x = new()\ny = old()\n"
    every = replace_text.replace_text(edit(tmp_path, path="app.py", old="old(", new="new("))
    assert every.succeeded and dict(every.result) == {"replacements": 1}
    assert (tmp_path / "app.py").read_text() == "x = new()\ny = new()\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"path": "app.py", "old": "absent", "new": "x"}, "'absent' not found"),
        ({"path": "../outside.py", "old": "x", "new": "y"}, "leaves the workdir"),
        ({"path": "missing.py", "old": "x", "new": "y"}, "no such file"),
        ({"path": "app.py", "new": "y"}, "args.old"),
        ({"path": "app.py", "old": "x", "new": "y", "count": 0}, "args.count"),
    ],
)
def test_replace_text_refuses_bad_arguments_for_good(
    tmp_path: Path, args: dict[str, Any], message: str
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "app.py").write_text("x = 1\n")
    (tmp_path / "outside.py").write_text("x = 1\n")
    failed = replace_text.replace_text(edit(workdir, **args))
    assert not failed.succeeded and failed.error_kind == "permanent"
    assert message in failed.output
    assert (workdir / "app.py").read_text() == "x = 1\n"
    assert (tmp_path / "outside.py").read_text() == "x = 1\n"


def test_replace_text_refuses_a_file_that_is_not_utf8_for_good(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe old")
    failed = replace_text.replace_text(edit(tmp_path, path="blob.bin", old="old", new="new"))
    assert not failed.succeeded and failed.error_kind == "permanent"
    assert "not UTF-8" in failed.output
