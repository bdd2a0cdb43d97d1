"""Stuck detection: attempts of a task that repeat themselves (same output or error, no change)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Numbers, hex ids and addresses change between identical failures (timestamps, pids, object ids).
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-f]{7,40}\b|\d+(?:\.\d+)?")
_ERROR_LINE = re.compile(r"(?i)error|exception|failed|fatal|traceback|denied|not found")


@dataclass(frozen=True, slots=True)
class AttemptSignature:
    """What makes two attempts "the same": their output, their error, whether they changed files."""

    output: str
    error: str | None  # None when the attempt did not fail
    changed_files: int


def signature(context: Mapping[str, Any]) -> AttemptSignature:
    """The signature of an attempt from its step context."""
    output = str(context.get("output_tail") or "")
    failed = not context.get("gate_passed", False)
    error = None
    if failed:
        error = f"{context.get('exit_code')}|{_normalise(_last_error_line(output))}"
    digest = hashlib.sha1(_normalise(output).encode(), usedforsecurity=False).hexdigest()
    return AttemptSignature(digest, error, int(context.get("changed_files_count") or 0))


def _normalise(text: str) -> str:
    return _VOLATILE.sub("#", text).strip()


def _last_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else ""


def repeat_figures(history: list[AttemptSignature]) -> dict[str, int]:
    """The stuck figures of the last attempt in `history` (oldest first)."""
    if not history:
        return {"repeated_output_count": 0, "repeated_error_count": 0, "unchanged_attempts": 0}
    last = history[-1]
    return {
        "repeated_output_count": _run_length(history, lambda s: s.output == last.output),
        "repeated_error_count": (
            0 if last.error is None else _run_length(history, lambda s: s.error == last.error)
        ),
        "unchanged_attempts": _run_length(history, lambda s: s.changed_files == 0),
    }


def _run_length(history: list[AttemptSignature], same: Any) -> int:
    count = 0
    for item in reversed(history):
        if not same(item):
            break
        count += 1
    return count
