"""The one way user-supplied regular expressions are searched: with a time limit, never a hang."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

# One search of one pattern (over every text it is given) may take this long. Rule matches() and
# the plan's error patterns share it, so a pattern costs the same wherever a user writes it.
MATCH_TIMEOUT_SECONDS = 0.02
MAX_MATCH_INPUT_CHARS = 20_000  # a search looks at this many characters of one text


class PatternTimeout(Exception):
    """A user's pattern took longer than MATCH_TIMEOUT_SECONDS; the message names the pattern."""

    def __init__(self, pattern: str, where: str = "") -> None:
        self.pattern = pattern
        self.where = where
        place = f"{where} " if where else ""
        limit = MATCH_TIMEOUT_SECONDS * 1000
        super().__init__(f"{place}pattern {pattern!r} took over {limit:g} ms")


class PatternError(ValueError):
    """A user's pattern does not compile."""


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern (cached): PatternError when it is not a valid regular expression.

    The `regex` engine is used, not `re`, because only it can stop a search after a timeout:
    `re` holds the interpreter in C code where neither a signal nor a thread can stop it.
    """
    import regex  # here, not at the top: the models import this module, most commands no regex

    try:
        return regex.compile(pattern)
    except Exception as error:  # regex.error, and recursion/overflow on hostile nesting
        raise PatternError(f"invalid pattern {pattern!r}: {error}") from None


def search(
    pattern: str, texts: str | tuple[str, ...], *, where: str = "", from_end: bool = False
) -> bool:
    """True if `pattern` is found in the text (or in any of the texts) within the time limit.

    The limit covers the whole call. `from_end` searches the last MAX_MATCH_INPUT_CHARS
    characters instead of the first (an error message is at the end of an output tail).
    PatternTimeout names the pattern and `where` it came from.
    """
    compiled = compile_pattern(pattern)
    deadline = time.monotonic() + MATCH_TIMEOUT_SECONDS
    subjects = (texts,) if isinstance(texts, str) else texts
    for text in subjects:
        cut = text[-MAX_MATCH_INPUT_CHARS:] if from_end else text[:MAX_MATCH_INPUT_CHARS]
        remaining = max(0.001, deadline - time.monotonic())
        try:
            if compiled.search(cut, timeout=remaining) is not None:
                return True
        except TimeoutError:
            raise PatternTimeout(pattern, where) from None
    return False
