"""Reading files a user names: regular files only, never more than a size cap, JSON bounded."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from orchestration.core.errors import OrchestrationError

MAX_JSON_DEPTH = 100  # nesting levels of a JSON input; rules and contexts need a handful
MAX_CONTEXT_FILE_BYTES = 10 * 1024 * 1024  # one rule context (`orch rules eval --context`)


def open_regular(
    path: Path, error: type[OrchestrationError] = OrchestrationError, what: str = "a regular file"
) -> BinaryIO:
    """`path` opened for binary reading, or `error` naming it if it is not a regular file:
    a FIFO would block forever and /dev/zero never ends."""
    display = str(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait; it is refused just below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error("no such file", file=display) from None
    except OSError as exc:
        raise error(f"cannot read the file: {exc.strerror or exc}", file=display) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a pipe, device or socket"
        raise error(f"is {kind}, not {what}", file=display)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_capped(
    path: Path,
    limit: int,
    error: type[OrchestrationError] = OrchestrationError,
    what: str = "a regular file",
) -> bytes:
    """The bytes of the regular file `path`; `error` naming it if it is larger than `limit`."""
    with open_regular(path, error, what) as handle:
        try:
            data = handle.read(limit + 1)  # the file may grow after it was opened: capped read
        except OSError as exc:
            raise error(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    if len(data) > limit:
        raise error(f"the file is too large: the limit is {limit:,} bytes", file=str(path))
    return data


def load_json(
    text: str | bytes,
    *,
    file: str,
    line: int | None = None,
    error: type[OrchestrationError] = OrchestrationError,
) -> Any:
    """Parse JSON; too deep, a number too long, NaN or Infinity or malformed text is `error`
    naming the file."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg}", file=file, line=line or exc.lineno) from None
    except RecursionError:
        raise error(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels", file=file, line=line
        ) from None
    except ValueError as exc:  # an integer beyond Python's digit limit, bad UTF-8
        raise error(f"not usable JSON: {exc}", file=file, line=line) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", file=file, line=line)
    return value


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, though Python's parser takes them: no figure may be one.
    raise ValueError(f"{name} is not a finite number")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit` (iterative: deep input must not recurse)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
