"""Validator `command`: an argv (the option `run`) that must exit 0 in the workdir."""

from __future__ import annotations

import os
import sys

from orchestration import hookimpl
from orchestration.actions import OUTPUT_TAIL_CHARS, fill_placeholders, run_process
from orchestration.extension import CheckResult, ValidationInput, Validator

DEFAULT_TIMEOUT_SECONDS = 600.0
FEEDBACK_CHARS = 2_000


def check_command(step: ValidationInput) -> CheckResult:
    run = step.options.get("run")
    stage = str(step.options.get("stage") or "testing")
    if not isinstance(run, list) or not run or not all(isinstance(a, str) for a in run):
        return CheckResult(
            "command", stage, False, 0.0, "option 'run' must be a non-empty argv list of strings"
        )
    values = {"python": sys.executable, "workdir": str(step.workdir), "task_id": step.task.id}
    argv = [fill_placeholders(arg, values) for arg in run]
    timeout = float(step.options.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    ran = run_process(argv, cwd=step.workdir, env=dict(os.environ), timeout_seconds=timeout)
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


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            "command",
            "testing",
            check_command,
            "Runs the argv in option `run` in the workdir; passes when it exits 0.",
        )
    ]
