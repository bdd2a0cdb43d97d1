"""Plugins load through pluggy; a failing plugin is contained; the bundled validators work."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestration import hookimpl
from orchestration.core.models import TaskSpec
from orchestration.extension import CheckResult, Notification, Notifier, ValidationInput, Validator
from orchestration.pluginhost.hooks import load_plugins


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

    from orchestration.pluginhost import hookspecs

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


def test_every_hook_docstring_says_whether_the_first_result_wins() -> None:
    import inspect

    from orchestration.pluginhost import hookspecs

    for name, function in vars(hookspecs).items():
        if not (inspect.isfunction(function) and hasattr(function, "orchestration_spec")):
            continue
        first = function.orchestration_spec.get("firstresult", False)
        doc = " ".join((inspect.getdoc(function) or "").split())
        expected = "Firstresult" if first else "Not firstresult"
        assert expected in doc, f"hook {name}: its docstring should say '{expected}'"


def test_docs_list_every_bundled_validator_and_notifier() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    bundled = load_plugins(entry_points=False)
    for name in [*bundled.validators, *(n.name for n in bundled.notifiers), "webhook"]:
        assert f"| `{name}` |" in docs, f"docs/plugins.md's bundled table lacks {name}"


# ---- a misbehaving validator inside a real run --------------------------------------------


class MisbehavingValidators:
    """Validators that raise, hang or return garbage; the hanging one waits on `release`."""

    def __init__(self) -> None:
        self.release = threading.Event()

    @hookimpl
    def register_validators(self) -> list[Validator]:
        def raises(step: ValidationInput) -> CheckResult:
            raise RuntimeError("the linter's config is missing")

        def hangs(step: ValidationInput) -> CheckResult:
            self.release.wait(30)
            return CheckResult("hangs", "testing", True, 1.0)

        def garbage(step: ValidationInput) -> CheckResult:
            return {"passed": True}  # type: ignore[return-value]

        return [
            Validator("raises", "testing", raises),
            Validator("hangs", "testing", hangs),
            Validator("garbage", "testing", garbage),
        ]


def test_a_validator_that_raises_hangs_or_returns_garbage_fails_its_check_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan
    from orchestration.store import Store
    from tests.helpers import shell_task, write_plan

    bad = MisbehavingValidators()
    tasks = [
        shell_task("a", "pass", validators=["raises"]),
        shell_task("b", "pass", validators=[{"name": "hangs", "timeout_seconds": 0.3}]),
        shell_task("c", "pass", validators=["garbage"]),
        shell_task("e", "pass"),
    ]
    # Three failures in a row would hold every later task for a human (a default rule).
    (tmp_path / "rules.yaml").write_text(
        "breakpoints:\n  - {name: consecutive_failures_before, enabled: false}\n"
    )
    spec = {"version": 1, "name": "bad", "rules": ["rules.yaml"], "tasks": tasks}
    plan = load_plan(write_plan(tmp_path, {**spec, "defaults": {"retry": {"max_attempts": 1}}}))
    plugins = load_plugins(entry_points=False, extra=[bad])
    plugins.muted.add("console")
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        engine = build_engine(plan, plugins)
        summary = Orchestrator.start(plan, store, run_id="r", engine=engine).run_until_stopped()
        checks = {
            q.task_id: next(c for c in q.checks if c["name"] != "requirements")
            for q in store.quality("r")
            if q.task_id != "e"
        }
        states = {t.task_id: t.state for t in store.tasks("r")}
    finally:
        bad.release.set()
        store.close()
    assert summary.state == "paused"  # the three failed tasks wait for a human
    assert states["e"] == "completed"
    assert checks["a"]["message"] == "validator raised RuntimeError: the linter's config is missing"
    assert checks["b"]["message"] == "validator did not finish within 0.3s"
    assert checks["c"]["message"] == "validator returned dict, not a CheckResult"
    assert all(not check["passed"] and check["score"] == 0.0 for check in checks.values())


# ---- orch plugins ---------------------------------------------------------------------------


class ShadowingPlugin:
    """Replaces the bundled `command` validator and adds a rule function and an event hook."""

    @hookimpl
    def register_validators(self) -> list[Validator]:
        return [
            Validator(
                "command", "quality", lambda step: CheckResult("command", "quality", True, 1.0)
            )
        ]

    @hookimpl
    def register_rule_functions(self) -> dict[str, object]:
        return {"double": lambda x: 2 * x, "not_a_function": 3}

    @hookimpl
    def on_run_finished(self, run_id: str) -> None:
        pass


def test_describe_plugins_says_what_each_provides_and_from_where() -> None:
    from orchestration.cli.plugins import describe_plugins

    listing = describe_plugins(
        load_plugins(entry_points=False, extra=[ShadowingPlugin(), GarbagePlugin()])
    )
    rows = {row["name"]: row for row in listing["plugins"]}
    bundled = rows["orchestration.plugins.command"]
    assert bundled["file"].endswith("command.py") and bundled["distribution"] is None
    assert bundled["from"] == bundled["file"]
    assert bundled["validators"][0]["active"] is False  # the later plugin's `command` wins
    shadowing = next(row for name, row in rows.items() if "ShadowingPlugin" in name)
    assert shadowing["module"].endswith("test_plugins.ShadowingPlugin")
    assert shadowing["file"].endswith("test_plugins.py")
    assert shadowing["validators"][0] == {
        "name": "command",
        "stage": "quality",
        "baseline": False,
        "description": "",
        "active": True,
    }
    assert shadowing["rule_functions"] == ["double"]
    assert shadowing["hooks"] == ["on_run_finished"]
    assert rows["orchestration.plugins.pytest_tests"]["validators"][0]["baseline"] is True
    assert rows["orchestration.plugins.console"]["notifiers"] == ["console"]
    assert any("not a validator" in problem for problem in listing["problems"])


def plugins_app() -> typer.Typer:
    from orchestration.cli import plugins as cli_plugins

    app = typer.Typer()
    app.callback()(lambda: None)
    cli_plugins.register(app)
    return app


def test_orch_plugins_prints_a_table_and_the_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.cli import plugins as cli_plugins

    monkeypatch.setattr(
        cli_plugins,
        "load_plugins",
        lambda: load_plugins(entry_points=False, extra=[GarbagePlugin()]),
    )
    shown = CliRunner().invoke(plugins_app(), ["plugins"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "validator python_syntax (syntax)" in shown.output
    assert "validator pytest (testing, baseline)" in shown.output
    assert "notifier console" in shown.output
    assert "problem:" in shown.output and "not a validator" in shown.output


def test_orch_plugins_reports_a_plugin_that_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestration.cli import plugins as cli_plugins

    def broken() -> None:
        raise ImportError("No module named 'orch_missing'")

    monkeypatch.setattr(cli_plugins, "load_plugins", broken)
    listed = CliRunner().invoke(plugins_app(), ["plugins", "--json"])
    assert listed.exit_code == 1
    assert json.loads(listed.output) == {
        "plugins": [],
        "problems": [
            "the plugins could not be loaded: ImportError: No module named 'orch_missing'"
        ],
    }
