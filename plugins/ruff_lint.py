"""Validator `ruff`: lint findings in the changed Python files only, under the project's config."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestration import hookimpl
from orchestration.extension import (
    CheckResult,
    PreflightInput,
    ProjectEnvironment,
    ValidationInput,
    Validator,
    run_process,
)

NAME = "ruff"
STAGE = "quality"
PYTHON_SUFFIXES = (".py", ".pyi")
PROCESS_SHARE = 0.9  # of the validator's timeout; the rest is for reading the report
MAX_LISTED_FINDINGS = 50  # findings kept in figures and messages
SCORE_HALF_AT = 5  # this many errors halve the score; more keep lowering it towards 0
FEEDBACK_CHARS = 2_000
# Findings go to a file, so warnings on stderr cannot garble them; --force-exclude keeps the
# project's own `exclude` settings for files named on the command line; no .ruff_cache is left;
# --no-fix: a project config's `fix = true` must not make the validator rewrite the agent's code.
FIXED_ARGS = (
    "check",
    "--output-format=json",
    "--exit-zero",
    "--no-cache",
    "--force-exclude",
    "--no-fix",
)


class LintError(Exception):
    """Ruff could not lint: the message says why."""


def ruff_command(environment: ProjectEnvironment, workdir: Path) -> list[str] | None:
    """How to start ruff in the project's environment: under its command prefix, else the
    venv's own ruff, else one on PATH; None when there is none."""
    if environment.command_prefix:
        return environment.command(["ruff"])
    found = environment.find("ruff", workdir)
    return [found] if found else None


def install_hint(environment: ProjectEnvironment) -> str:
    """Where ruff was looked for and how to install it there."""
    if environment.bin_dir is not None:
        how = f"`{environment.python} -m pip install ruff`"
        where = f"in the project's environment ({environment.bin_dir}) nor on PATH"
    else:
        how = "`pip install ruff` (or add it to the project's development dependencies)"
        where = "on PATH"
    return f"ruff is not installed {where}: install it with {how}"


def python_files(step: ValidationInput) -> list[str]:
    """The changed .py and .pyi files that still exist (a deleted file has nothing to lint)."""
    return sorted(
        f
        for f in step.changed_files
        if f.endswith(PYTHON_SUFFIXES) and (step.workdir / f).is_file()
    )


def _relative(filename: str, workdir: Path) -> str:
    try:
        return Path(filename).resolve().relative_to(workdir.resolve()).as_posix()
    except ValueError:
        return filename


def _finding(item: Mapping[str, Any], workdir: Path) -> str:
    location = item.get("location") or {}
    code = item.get("code") or "syntax"  # ruff reports syntax errors without a code
    where = f"{location.get('row', 0)}:{location.get('column', 0)}"
    return (
        f"{_relative(str(item.get('filename', '?')), workdir)}:{where} {code} {item.get('message')}"
    )


def read_findings(report: Path, workdir: Path) -> list[str]:
    """Ruff's JSON report as "path:line:col code message" lines; LintError when unusable."""
    try:
        items = json.loads(report.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LintError("ruff wrote no report") from None
    except (OSError, ValueError) as error:
        raise LintError(f"ruff's report is not JSON ({error})") from None
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise LintError("ruff's report is not a list of findings")
    return [_finding(item, workdir) for item in items]


def lint(
    command: list[str],
    files: list[str],
    workdir: Path,
    timeout_seconds: float,
    env: dict[str, str],
) -> list[str]:
    """Run ruff on `files` in the workdir (so its own config applies); the findings."""
    budget = max(0.5, timeout_seconds * PROCESS_SHARE)
    with tempfile.TemporaryDirectory(prefix="orch-ruff-") as tmp:
        report = Path(tmp) / "findings.json"
        argv = [*command, *FIXED_ARGS, f"--output-file={report}", "--", *files]
        ran = run_process(argv, cwd=workdir, env=env, timeout_seconds=budget)
        tail = ran.output[-FEEDBACK_CHARS:].strip()
        if ran.timed_out:
            raise LintError(f"ruff did not finish within {budget:g}s:\n{tail}")
        if ran.exit_code != 0:
            raise LintError(f"ruff exited {ran.exit_code} (a configuration error?):\n{tail}")
        return read_findings(report, workdir)


def _max_errors(options: Mapping[str, Any]) -> int:
    value = options.get("max_errors", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LintError(f"option 'max_errors' must be a whole number >= 0, not {value!r}")
    return value


def check_ruff(step: ValidationInput) -> CheckResult:
    """Passes when the changed Python files have at most `max_errors` findings."""
    try:
        allowed = _max_errors(step.options)
        files = python_files(step)
        if not files:
            return CheckResult(NAME, STAGE, True, 1.0, "no changed Python files to lint")
        environment = step.environment
        command = ruff_command(environment, step.workdir)
        if command is None:
            return CheckResult(NAME, STAGE, False, 0.0, install_hint(environment))
        env = environment.process_env()
        findings = lint(command, files, step.workdir, step.timeout_seconds, env)
    except LintError as error:
        return CheckResult(NAME, STAGE, False, 0.0, str(error))
    count = len(findings)
    figures = {"lint_errors": count, "lint_findings": findings[:MAX_LISTED_FINDINGS]}
    score = 1.0 / (1.0 + count / SCORE_HALF_AT)
    summary = f"{count} ruff findings in {len(files)} changed Python files (allowed: {allowed})"
    shown = "\n".join(findings[:MAX_LISTED_FINDINGS])
    more = f"\n(and {count - MAX_LISTED_FINDINGS} more)" if count > MAX_LISTED_FINDINGS else ""
    message = f"{summary}:\n{shown}{more}" if findings else summary
    return CheckResult(NAME, STAGE, count <= allowed, score, message, figures)


def preflight_ruff(start: PreflightInput) -> str | None:
    """A problem when ruff (or the command prefix's program) cannot be found."""
    environment = start.environment
    if environment.command_prefix:
        program = environment.command_prefix[0]
        found = environment.find(program, start.workdir)
        return None if found else f"the command prefix's program '{program}' is not on PATH"
    if ruff_command(environment, start.workdir) is None:
        return install_hint(environment)
    return None


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            NAME,
            STAGE,
            check_ruff,
            "Lints the changed .py/.pyi files with ruff under the project's own configuration; "
            "passes with at most `max_errors` findings (default 0).",
            preflight=preflight_ruff,
        )
    ]
