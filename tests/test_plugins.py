"""Plugins load through pluggy; a failing plugin is contained; the bundled validators work."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestration import hookimpl
from orchestration.extension import Notification, Notifier, ValidationInput, Validator
from orchestration.hooks import load_plugins
from orchestration.models import TaskSpec


def step(tmp_path: Path, files: tuple[str, ...], options: dict | None = None) -> ValidationInput:
    spec = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]})
    return ValidationInput("r", spec, 1, tmp_path, files, 0, "", {}, options or {}, {}, 30.0)


def test_bundled_plugins_register_through_the_hooks() -> None:
    plugins = load_plugins(entry_points=False)
    assert {"python_syntax", "command"} <= set(plugins.validators)
    assert "console" in {n.name for n in plugins.notifiers}
    assert any("python_syntax" in name for name, _ in plugins.sources())


def test_installed_entry_points_find_the_bundled_plugins() -> None:
    plugins = load_plugins()
    assert {"python_syntax", "command"} <= set(plugins.validators)


def test_python_syntax_validator(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text("x = 1\n")
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / "notes.txt").write_text("def broken(:\n")
    check = load_plugins(entry_points=False).validators["python_syntax"].check
    good = check(step(tmp_path, ("good.py", "notes.txt", "deleted.py")))
    assert good.passed and good.score == 1.0
    bad = check(step(tmp_path, ("good.py", "bad.py")))
    assert not bad.passed and "bad.py:1" in bad.message


def test_command_validator(tmp_path: Path) -> None:
    check = load_plugins(entry_points=False).validators["command"].check
    passed = check(step(tmp_path, (), {"run": [sys.executable, "-c", "pass"]}))
    assert passed.passed
    failed = check(
        step(tmp_path, (), {"run": ["{python}", "-c", "import sys; sys.exit('boom: 41 != 42')"]})
    )
    assert not failed.passed and "boom: 41 != 42" in failed.message and "exited 1" in failed.message
    missing = check(step(tmp_path, (), {}))
    assert not missing.passed and "option 'run'" in missing.message


class RaisingPlugin:
    @hookimpl
    def register_validators(self) -> list[Validator]:
        raise RuntimeError("plugin broke at start-up")

    @hookimpl
    def on_transition(
        self, run_id: str, task_id: str, source: str, dest: str, trigger: str
    ) -> None:
        raise RuntimeError("event hook broke")


class GarbagePlugin:
    @hookimpl
    def register_validators(self) -> object:
        return ["not a validator"]


class RecordingPlugin:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.notified: list[str] = []

    @hookimpl
    def on_transition(
        self, run_id: str, task_id: str, source: str, dest: str, trigger: str
    ) -> None:
        self.seen.append(f"{task_id}:{trigger}")

    @hookimpl
    def register_notifiers(self) -> list[Notifier]:
        return [
            Notifier("boom", lambda n: 1 / 0),
            Notifier("rec", lambda n: self.notified.append(n.title)),
        ]


def test_a_failing_plugin_does_not_stop_the_others() -> None:
    recorder = RecordingPlugin()
    plugins = load_plugins(entry_points=False, extra=[RaisingPlugin(), GarbagePlugin(), recorder])
    assert any("plugin broke at start-up" in p for p in plugins.problems)
    assert any("not a validator" in p for p in plugins.problems)
    assert "python_syntax" in plugins.validators  # bundled ones still loaded
    plugins.emit(
        "on_transition", run_id="r", task_id="a", source="ready", dest="running", trigger="start"
    )
    assert recorder.seen == ["a:start"]
    plugins.muted.add("console")
    plugins.notify(Notification("breakpoint_raised", "r", "title", "message"))
    assert recorder.notified == ["title"]


def test_every_hook_is_documented_with_its_signature() -> None:
    import inspect

    from orchestration import hookspecs

    docs = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    hooks = [
        name
        for name, value in vars(hookspecs).items()
        if inspect.isfunction(value) and hasattr(value, "orchestration_spec")
    ]
    assert len(hooks) >= 9
    for name in hooks:
        function = getattr(hookspecs, name)
        assert function.__doc__, f"hook {name} has no docstring"
        parameters = ", ".join(inspect.signature(function).parameters)
        assert f"`{name}({parameters})" in docs, f"docs/plugins.md does not document {name}"
