"""Validator `command`: an argv (the option `run`) that must exit 0 in the workdir."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestration import hookimpl
from orchestration.extension import (
    OUTPUT_TAIL_CHARS,
    CheckResult,
    PreflightInput,
    ProjectEnvironment,
    ValidationInput,
    Validator,
    fill_placeholders,
    run_process,
)

DEFAULT_TIMEOUT_SECONDS = 600.0
FEEDBACK_CHARS = 2_000
BAD_RUN = "option 'run' must be a non-empty argv list of strings"


def _argv(
    options: Mapping[str, Any], environment: ProjectEnvironment, workdir: Path, task_id: str
) -> list[str] | None:
    """The option `run` with its placeholders filled (`{python}` is the project's interpreter)."""
    run = options.get("run")
    if not isinstance(run, list) or not run or not all(isinstance(a, str) for a in run):
        return None
    values = {"python": environment.python, "workdir": str(workdir), "task_id": task_id}
    return [fill_placeholders(arg, values) for arg in run]


def check_command(step: ValidationInput) -> CheckResult:
    stage = str(step.options.get("stage") or "testing")
    environment = step.environment
    argv = _argv(step.options, environment, step.workdir, step.task.id)
    if argv is None:
        return CheckResult("command", stage, False, 0.0, BAD_RUN)
    timeout = float(step.options.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    ran = run_process(
        environment.command(argv),
        cwd=step.workdir,
        env=environment.process_env(),
        timeout_seconds=timeout,
    )
    shown = " ".join(argv)
    if ran.exit_code == 0:
        return CheckResult("command", stage, True, 1.0, f"`{shown}` passed")
    why = "timed out" if ran.timed_out else f"exited {ran.exit_code}"
    tail = ran.output[-FEEDBACK_CHARS:].strip()
    return CheckResult(
        "command",
        stage,
        False,
        0.0,
        f"`{shown}` {why}:\n{tail}"[:OUTPUT_TAIL_CHARS],
        {"command_exit_code": ran.exit_code},
    )


def preflight_command(start: PreflightInput) -> str | None:
    """A problem when the program (or the command prefix's) is not in the environment."""
    environment = start.environment
    argv = _argv(start.options, environment, start.workdir, "preflight")
    if argv is None:
        return BAD_RUN
    program = environment.command(argv)[0]
    if environment.find(program, start.workdir) is not None:
        return None
    where = f" ({environment.bin_dir})" if environment.bin_dir else ""
    return (
        f"program '{program}' is not in the project's environment{where} nor on PATH; "
        "install it there, or name its path in `run` (relative to the workdir)"
    )


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            "command",
            "testing",
            check_command,
            "Runs the argv in option `run` in the workdir, in the project's environment; passes "
            "when it exits 0.",
            preflight=preflight_command,
        )
    ]
