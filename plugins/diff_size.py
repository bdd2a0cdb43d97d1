"""Validator `diff_size`: the lines and files an attempt changed stay within limits."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration import hookimpl
from orchestration.extension import CheckResult, ValidationInput, Validator, run_git

NAME = "diff_size"
STAGE = "quality"
DEFAULT_MAX_LINES = 500
DEFAULT_MAX_FILES = 20
GIT_TIMEOUT_SECONDS = 60.0


class SizeError(Exception):
    """The options are unusable: the message says which."""


@dataclass(frozen=True, slots=True)
class DiffSize:
    lines: int
    files: int
    source: str  # where the line count came from, for the message


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0  # deleted, or not a regular file


def _git(workdir: Path, timeout: float, *args: str) -> str:
    return run_git(workdir, *args, timeout=timeout, check=True).stdout


def _numstat_lines(numstat: str) -> int:
    lines = 0
    for row in numstat.splitlines():
        added, deleted, _ = row.split("\t", 2)
        if added != "-":  # binary files show '-'
            lines += int(added) + int(deleted)
    return lines


def git_lines(workdir: Path, files: tuple[str, ...], timeout: float) -> int:
    """Lines added plus removed in `files` against HEAD, untracked files counted in full."""
    tracked = _git(workdir, timeout, "diff", "--numstat", "--no-renames", "HEAD", "--", *files)
    untracked = _git(
        workdir, timeout, "ls-files", "--others", "--exclude-standard", "-z", "--", *files
    )
    new_files = [name for name in untracked.split("\0") if name]
    return _numstat_lines(tracked) + sum(_count_lines(workdir / name) for name in new_files)


def measure(step: ValidationInput) -> DiffSize:
    """The engine's own count from the rule context when it has one; else git; else estimated."""
    files = step.changed_files
    known = step.context.get("lines_changed")
    if isinstance(known, int) and not isinstance(known, bool):
        return DiffSize(known, len(files), "the step's changes")
    if not files:
        return DiffSize(0, 0, "no changed files")
    if (step.workdir / ".git").exists():
        timeout = min(GIT_TIMEOUT_SECONDS, step.timeout_seconds)
        try:
            return DiffSize(git_lines(step.workdir, files, timeout), len(files), "git diff HEAD")
        except (subprocess.SubprocessError, OSError, ValueError):
            pass  # no commit yet, or git unusable: estimate like a tree without git
    estimate = sum(_count_lines(step.workdir / f) for f in files)
    return DiffSize(estimate, len(files), "estimated: lines of the changed files")


def _limit(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SizeError(f"option '{key}' must be a whole number >= 0, not {value!r}")
    return value


def _over(size: int, limit: int) -> float:
    """How far within a limit: 1.0 when within, else limit/size."""
    return 1.0 if size <= limit else limit / size


def check_diff_size(step: ValidationInput) -> CheckResult:
    """Passes when lines changed <= `max_lines` and files changed <= `max_files`."""
    try:
        max_lines = _limit(step.options, "max_lines", DEFAULT_MAX_LINES)
        max_files = _limit(step.options, "max_files", DEFAULT_MAX_FILES)
    except SizeError as error:
        return CheckResult(NAME, STAGE, False, 0.0, str(error))
    size = measure(step)
    figures = {
        "lines_changed": size.lines,
        "files_changed": size.files,
        "max_lines": max_lines,
        "max_files": max_files,
    }
    exceeded = []
    if size.lines > max_lines:
        exceeded.append(f"{size.lines} lines changed, over max_lines {max_lines}")
    if size.files > max_files:
        exceeded.append(f"{size.files} files changed, over max_files {max_files}")
    score = min(_over(size.lines, max_lines), _over(size.files, max_files))
    if exceeded:
        message = "; ".join(exceeded) + f" ({size.source}); split the work into smaller steps"
        return CheckResult(NAME, STAGE, False, score, message, figures)
    message = f"{size.lines} lines in {size.files} files changed ({size.source}), within limits"
    return CheckResult(NAME, STAGE, True, score, message, figures)


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            NAME,
            STAGE,
            check_diff_size,
            "Lines and files the attempt changed stay within `max_lines` (default 500) and "
            "`max_files` (default 20).",
        )
    ]
