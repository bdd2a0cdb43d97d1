"""The bundled `requirements` validator: a plugin giving the engine's acceptance verdict."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.context import neutral_context
from orchestration.core.models import TaskSpec
from orchestration.engine.quality import acceptance_check, run_validator
from orchestration.extension import ValidationInput
from orchestration.pluginhost.hooks import Plugins, load_plugins
from orchestration.rules.expressions import compile_expression

requirements = importlib.import_module("orchestration.plugins.requirements")


def plugins_with_requirements() -> Plugins:
    """The bundled plugins; `requirements` added like a third-party one while it is not yet
    among them (the entry point in pyproject.toml and hooks.DEFAULT_PLUGINS)."""
    plugins = load_plugins(entry_points=False)
    if "requirements" in plugins.validators:
        return plugins
    return load_plugins(entry_points=False, extra=[requirements])


def step(
    acceptance: list[str], exit_code: int | None = 0, timeout: float = 5.0, **context: Any
) -> ValidationInput:
    task = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]}, acceptance=acceptance)
    full = {**neutral_context(), "exit_code": exit_code, **context}
    return ValidationInput("r", task, 1, Path("."), (), exit_code, "", {}, {}, full, timeout)


def test_it_registers_through_the_hooks_in_the_requirements_stage() -> None:
    validator = plugins_with_requirements().validators["requirements"]
    assert validator.stage == "requirements" and validator.baseline is None


CASES = [
    pytest.param([], 0, {}, id="no acceptance, action ok"),
    pytest.param([], 2, {}, id="no acceptance, action failed"),
    pytest.param(["changed_files_count > 0"], 0, {"changed_files_count": 2}, id="met"),
    pytest.param(["changed_files_count > 0"], 0, {"changed_files_count": 0}, id="not met"),
    pytest.param(
        ["get(result, 'coverage', 0) >= 0.8", "'docs' in tags"],
        0,
        {"result": {"coverage": 0.9}, "tags": ("code",)},
        id="one of two",
    ),
    pytest.param(["result['missing'] > 1"], 0, {"result": {}}, id="evaluation error"),
    pytest.param(["exit_code == 0"], 1, {}, id="action failed, expression false"),
]


@pytest.mark.parametrize(("acceptance", "exit_code", "context"), CASES)
def test_its_verdict_is_the_engines_acceptance_check(
    acceptance: list[str], exit_code: int, context: dict[str, Any]
) -> None:
    given = step(acceptance, exit_code, **context)
    engine = acceptance_check(
        [compile_expression(source) for source in acceptance],
        given.context,
        exit_code == 0,
        exit_code,
    )
    plugin = requirements.check_requirements(given)
    assert (plugin.passed, plugin.score, plugin.message) == (
        engine.passed,
        engine.score,
        engine.message,
    )
    assert (plugin.name, plugin.stage) == ("requirements", "requirements")


def test_a_timed_out_action_fails_even_with_exit_code_0() -> None:
    result = requirements.check_requirements(step([], 0, timed_out=True))
    assert not result.passed and "the action exited 0" in result.message


def test_an_expression_that_does_not_compile_is_a_clear_failed_check() -> None:
    result = requirements.check_requirements(
        step(["changed_files_count > 0", "open('x')", "nosuch_name == 1"])
    )
    assert not result.passed and result.score == 0.0
    assert "acceptance[1] \"open('x')\" does not compile" in result.message
    assert "acceptance[2] 'nosuch_name == 1' does not compile: unknown name" in result.message


def test_each_source_is_compiled_once() -> None:
    requirements.compiled.cache_clear()
    source = "lines_changed < 1000"
    requirements.check_requirements(step([source], lines_changed=3))
    requirements.check_requirements(step([source], lines_changed=5000))
    info = requirements.compiled.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert requirements.compiled(source) is requirements.compiled(source)


def test_through_the_engines_guard_it_keeps_its_verdict_and_time_limit() -> None:
    validator = plugins_with_requirements().validators["requirements"]
    passed = run_validator(validator, step(["attempt == 1"], timeout=2.0), "requirements")
    assert passed.passed and passed.message == "requirements met"
    failed = run_validator(validator, step(["attempt == 2"], exit_code=3), "requirements")
    assert not failed.passed
    assert failed.message == "the action exited 3; acceptance not met: attempt == 2"
