"""The project's own environment: which interpreter and command prefix validators run with."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from orchestration.core.errors import PlanError
from orchestration.core.guarded import call_in_thread
from orchestration.core.models import EnvironmentSpec, Plan, ValidatorRef
from orchestration.extension import PreflightInput, ProjectEnvironment, Validator

logger = logging.getLogger(__name__)

# Virtual environments looked for in the workdir when the plan names none, in this order.
VENV_DIRS = (".venv", "venv")
VENV_PYTHONS = ("bin/python", "Scripts/python.exe")
PREFIX_PYTHON = "python"  # what a command prefix such as `uv run` resolves to the project's
PREFLIGHT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class EnvironmentProblem:
    """Why a plan's `environment` cannot be used: the field and what was expected."""

    field: str
    message: str


def _is_path(value: str) -> bool:
    return "/" in value or os.sep in value


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _workdir_venv(workdir: Path) -> tuple[str, str] | None:
    """The interpreter of a `.venv` or `venv` in the workdir, and which one it is."""
    for directory in VENV_DIRS:
        for python in VENV_PYTHONS:
            candidate = workdir / directory / python
            if _executable(candidate):
                return str(candidate), f"the workdir's {directory}"
    return None


def _named_python(spec: EnvironmentSpec, workdir: Path) -> tuple[str, str]:
    """The interpreter the plan names, as a path (relative to workdir) or a name on PATH."""
    raw = spec.python or ""
    source = "the plan's environment.python"
    if _is_path(raw):
        # Not resolved: a venv's python is a link to the base interpreter, and following it
        # would leave the venv.
        return os.path.abspath(workdir / Path(raw).expanduser()), source
    if spec.run:
        return raw, source  # the prefix (`uv run`) resolves the name
    return shutil.which(raw) or raw, source


def resolve_environment(spec: EnvironmentSpec | None, workdir: Path) -> ProjectEnvironment:
    """The environment a plan's validators run in; never raises (see `environment_problems`).

    The plan's `environment.python` and `environment.run` first; without them a `.venv` or
    `venv` in the workdir; else the python3 on PATH, never orchestration's own interpreter.
    """
    spec = spec or EnvironmentSpec()
    prefix = tuple(spec.run or ())
    env = dict(spec.env)
    if spec.python:
        python, source = _named_python(spec, workdir)
    elif prefix:
        python, source = PREFIX_PYTHON, f"`{' '.join(prefix)}` from the plan's environment.run"
    else:
        found = _workdir_venv(workdir)
        if found is None:
            return replace(ProjectEnvironment.on_path(), env=env)
        python, source = found
    return ProjectEnvironment(python, prefix, env, source)


def plan_environment(plan: Plan) -> ProjectEnvironment:
    """The environment of a loaded plan's validators and baseline."""
    return resolve_environment(plan.spec.environment, Path(plan.workdir))


def environment_problems(spec: EnvironmentSpec, workdir: Path) -> list[EnvironmentProblem]:
    """What is wrong with a plan's `environment`: a missing interpreter or prefix program."""
    problems = []
    if spec.run:
        program = spec.run[0]
        if ProjectEnvironment(PREFIX_PYTHON).find(program, workdir) is None:
            problems.append(
                EnvironmentProblem(
                    "environment.run",
                    f"the command prefix's program '{program}' is not on PATH; expected a "
                    "program that runs a command in the project's environment, e.g. [uv, run]",
                )
            )
    if spec.python and not spec.run:
        python, _ = _named_python(spec, workdir)
        if not _executable(Path(python)):
            state = "is not executable" if Path(python).exists() else "does not exist"
            where = f" (resolved to {python})" if _is_path(spec.python) else " on PATH"
            problems.append(
                EnvironmentProblem(
                    "environment.python",
                    f"interpreter '{spec.python}' {state}{where}; expected the project's "
                    "Python interpreter, relative to the workdir (e.g. .venv/bin/python) or a "
                    "name on PATH",
                )
            )
    return problems


def _distinct_refs(plan: Plan) -> Iterator[tuple[str, ValidatorRef]]:
    """Each validator reference with distinct options once, with the first task naming it."""
    seen: set[str] = set()
    for task in plan.spec.tasks:
        for ref in plan.validators(task):
            key = json.dumps([ref.name, ref.options], sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                yield task.id, ref


def preflight_problems(
    plan: Plan, validators: Mapping[str, Validator], environment: ProjectEnvironment
) -> list[PlanError]:
    """Validators that cannot run in the project's environment (a program missing), as errors."""
    problems = []
    for task_id, ref in _distinct_refs(plan):
        validator = validators.get(ref.name)
        if validator is None or validator.preflight is None:
            continue
        problem = _preflight(
            validator, PreflightInput(Path(plan.workdir), ref.options, environment)
        )
        if problem:
            problems.append(
                PlanError(
                    f"validator '{ref.name}' cannot run: {problem}",
                    file=plan.path,
                    task=task_id,
                    field="validators",
                )
            )
    return problems


def _preflight(validator: Validator, start: PreflightInput) -> str | None:
    function = validator.preflight
    assert function is not None
    call = call_in_thread(
        lambda: function(start),
        name=f"preflight-{validator.name}",
        timeout=PREFLIGHT_TIMEOUT_SECONDS,
    )
    if call.timed_out:
        return f"its check did not finish within {PREFLIGHT_TIMEOUT_SECONDS:g}s"
    if call.error is not None:  # a plugin's failure is reported, never raised
        logger.error("preflight of validator %s raised", validator.name, exc_info=call.error)
        return f"its check raised {type(call.error).__name__}: {call.error}"
    value = call.value
    return str(value) if value else None
