"""Validator `todo_comments`: the files a step changed contain no TODO or FIXME comment."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestration.extension import CheckResult, ValidationInput, Validator

NAME = "todo_comments"
STAGE = "quality"
DEFAULT_MARKERS = ("TODO", "FIXME")
MAX_FILE_BYTES = 1_000_000  # larger files are generated or vendored: not read
MAX_LISTED = 20  # places named in the message


class OptionError(Exception):
    """An option of the plan's validator entry is unusable: the message says which."""


def _markers(options: Mapping[str, Any]) -> tuple[str, ...]:
    value = options.get("markers", DEFAULT_MARKERS)
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(m, str) and m for m in value)
    ):
        raise OptionError(f"option 'markers' must be a non-empty list of words, not {value!r}")
    return tuple(value)


def _max_allowed(options: Mapping[str, Any]) -> int:
    value = options.get("max_allowed", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(f"option 'max_allowed' must be a whole number >= 0, not {value!r}")
    return value


def find_markers(path: Path, pattern: re.Pattern[str]) -> list[int]:
    """Line numbers of `path` that hold a marker; none for a missing, binary or huge file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return []
        data = path.read_bytes()
    except OSError:  # deleted by the step, or not a regular file
        return []
    if b"\0" in data:
        return []
    text = data.decode("utf-8", errors="replace")
    return [number for number, line in enumerate(text.splitlines(), 1) if pattern.search(line)]


def _listed(places: Sequence[str]) -> str:
    more = len(places) - MAX_LISTED
    return ", ".join(places[:MAX_LISTED]) + (f" (and {more} more)" if more > 0 else "")


def check_todo_comments(step: ValidationInput) -> CheckResult:
    """Passes when the changed files hold at most `max_allowed` (default 0) marker comments."""
    try:
        markers, allowed = _markers(step.options), _max_allowed(step.options)
    except OptionError as error:
        return CheckResult(NAME, STAGE, False, 0.0, str(error))
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(m) for m in markers) + r")\b")
    places = []
    files = 0
    for name in step.changed_files:
        lines = find_markers(step.workdir / name, pattern)
        files += bool(lines)
        places += [f"{name}:{line}" for line in lines]
    figures = {"todo_comments": len(places), "todo_files": files}
    found = f"{len(places)} {'/'.join(markers)} comment{'' if len(places) == 1 else 's'}"
    if len(places) <= allowed:
        message = f"{found} in the changed files (allowed {allowed})"
        return CheckResult(NAME, STAGE, True, 1.0, message, figures)
    message = (
        f"{found} in the changed files, allowed {allowed}: {_listed(places)}; "
        "finish the work or leave the comment out"
    )
    # Score 0: with the default weights a failed quality stage alone fails the gate (min 0.7).
    return CheckResult(NAME, STAGE, False, 0.0, message, figures)


VALIDATOR = Validator(
    NAME,
    STAGE,
    check_todo_comments,
    "The changed files hold no TODO or FIXME comment (options `markers`, `max_allowed`).",
)
