"""A validator that misbehaves: it writes into the work tree (tests put this folder on the path)."""

from __future__ import annotations

from orchestration import hookimpl
from orchestration.extension import CheckResult, ValidationInput, Validator


def rewrite(step: ValidationInput) -> CheckResult:
    for name in step.changed_files:
        path = step.workdir / name
        if path.is_file():
            path.write_text(path.read_text() + "# touched by the validator\n")
    (step.workdir / "validator-was-here.txt").write_text("left behind\n")
    return CheckResult("rewriter", "quality", True, 1.0, "\x1b[32mall good\x1b[0m")


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator("rewriter", "quality", rewrite, "Writes into the tree (a test's bad plugin).")
    ]
