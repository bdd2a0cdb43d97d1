"""Plugins that hang cannot stall the loop: every hook has a timeout and a hanging one is skipped."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

from orchestration.core.errors import RuleError
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.pluginhost import hooks
from orchestration.pluginhost.hooks import load_plugins
from orchestration.rules.expressions import PLUGIN_FUNCTION_SECONDS, compile_expression
from orchestration.store import Store
from tests.helpers import shell_task, write_plan

SLEEP_SECONDS = 120.0  # far longer than any bound the engine keeps; released at the test's end

SLEEPY_PLUGIN = f'''
"""A plugin whose every hook blocks until the test releases it."""

import threading

from orchestration import hookimpl
from orchestration.extension import Notifier

RELEASE = threading.Event()


def _sleep():
    RELEASE.wait({SLEEP_SECONDS})


@hookimpl
def register_notifiers():
    return [Notifier("sleepy", lambda notification: _sleep())]


@hookimpl
def register_rule_functions():
    return {{"slow_score": lambda value: (_sleep(), value)[1]}}


@hookimpl
def on_transition(task_id):
    _sleep()


@hookimpl
def on_decision(task_id):
    _sleep()


@hookimpl
def override_decision(decision):
    _sleep()
    return "escalate"
'''
HOOKS = ("on_transition", "on_decision", "override_decision")
NOTIFY_EVERY_STEP = (
    "breakpoints:\n"
    "  - name: tell_me\n"
    "    at: after\n"
    "    when: exit_code == 0\n"
    "    action: notify\n"
    "    message: '{task_id} done'\n"
)


def plugin_module(tmp_path: Path) -> ModuleType:
    path = tmp_path / "sleepy_plugin.py"
    path.write_text(SLEEPY_PLUGIN)
    spec = importlib.util.spec_from_file_location("sleepy_plugin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bounds themselves are what is tested; shorter ones keep the test quick.
    monkeypatch.setattr(hooks, "NOTIFY_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(hooks, "EVENT_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(hooks, "OVERRIDE_TIMEOUT_SECONDS", 0.3)


@pytest.mark.usefixtures("short_timeouts")
def test_a_five_task_run_with_hanging_hooks_finishes_and_records_each_skip(tmp_path: Path) -> None:
    sleepy = plugin_module(tmp_path)
    (tmp_path / "rules.yaml").write_text(NOTIFY_EVERY_STEP)
    tasks = [shell_task(f"t{i}", "pass", depends_on=[f"t{i - 1}"] if i else []) for i in range(5)]
    plan = load_plan(
        write_plan(
            tmp_path, {"version": 1, "name": "slow", "rules": ["rules.yaml"], "tasks": tasks}
        )
    )
    plugins = load_plugins(entry_points=False, extra=[sleepy])
    plugins.muted.add("console")
    started = time.monotonic()
    try:
        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            engine = build_engine(plan, plugins)
            summary = Orchestrator.start(plan, store, run_id="r", engine=engine).run_until_stopped()
            events = store.events("r")
            decisions = store.decisions("r")
    finally:
        sleepy.RELEASE.set()
    elapsed = time.monotonic() - started

    assert summary.state == "completed"
    assert elapsed < SLEEP_SECONDS  # not one hook's sleep was waited out
    notes = {
        (e.kind, e.data["plugin"]): e.data["note"] for e in events if e.kind.startswith("plugin_")
    }
    skipped = {name for kind, name in notes if kind == "plugin_skipped"}
    timed_out = {name for kind, name in notes if kind == "plugin_timeout"}
    hanging = {"sleepy", *(f"extra-0-sleepy_plugin.{hook}" for hook in HOOKS)}
    assert skipped == hanging and timed_out == hanging
    # The override never answered: every decision is the rules' own, and the record says so.
    assert len(decisions) == 5
    assert all(d.action == "proceed" and d.rule != "plugin-override" for d in decisions)
    override = next(n for (k, name), n in notes.items() if "override_decision" in name)
    assert "the rules' decision stands" in override


def test_a_hanging_rule_function_is_a_rule_error_within_its_limit(tmp_path: Path) -> None:
    sleepy = plugin_module(tmp_path)
    plugins = load_plugins(entry_points=False, extra=[sleepy])
    try:
        expression = compile_expression(
            "slow_score(1) > 0", rule="uses_plugin", functions=plugins.rule_functions
        )
        with pytest.raises(RuleError) as raised:
            expression.evaluate({})
    finally:
        sleepy.RELEASE.set()
    limit = f"{PLUGIN_FUNCTION_SECONDS * 1000:g} ms"
    assert f"slow_score() did not return within {limit}" in str(raised.value)
