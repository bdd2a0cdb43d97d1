"""The operators and functions rule expressions may use, each bounding the size of what it makes."""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from orchestration.core.bounded_regex import PatternTimeout, compile_pattern, search
from orchestration.rules import signals

logger = logging.getLogger(__name__)

MAX_STRING_CHARS = 100_000  # longest string an operator or function may produce
MAX_SEQUENCE_ITEMS = 10_000  # most values (nested ones included) in a tuple an operator makes
MAX_INT_BITS = 4_096  # largest integer a power may produce (about 1,233 decimal digits)
MAX_ROUND_DIGITS = 100
MAX_PATTERN_CHARS = 200
MAX_MATCH_ITEMS = 1_000  # matches() on a list looks at this many items

# re's own parser, used only to inspect a pattern's structure (it is private but stable).
_sre_parser: Any = importlib.import_module("re._parser")
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}
_BACKREFS = {"GROUPREF", "GROUPREF_EXISTS"}


class FunctionLimitError(Exception):
    """An operator or function refused its arguments or would exceed a size limit."""


# ---- operators ------------------------------------------------------------------------------


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return _items(value) if isinstance(value, tuple) else 0


def _items(value: tuple[Any, ...]) -> int:
    """The values in a tuple, counted through nested tuples, sets and mappings.

    Counting nested values keeps repetition from building a small tuple of huge tuples, such as
    `((1,)*9999,)*9999`, which one comparison would then walk for minutes. The walk stops once
    past the limit, so it costs at most MAX_SEQUENCE_ITEMS steps.
    """
    if _SCALAR_TYPES.issuperset(map(type, value)):  # flat, the common case: counted in C
        return len(value)
    count = 0
    stack: list[Any] = [value]
    while stack:
        for item in stack.pop():
            count += 1
            if count > MAX_SEQUENCE_ITEMS:
                return count
            if type(item) in _SCALAR_TYPES:
                continue
            if isinstance(item, Mapping):
                stack.extend((item.keys(), item.values()))
            elif isinstance(item, tuple | frozenset):
                stack.append(item)
    return count


def _limit_for(value: Any) -> int:
    return MAX_STRING_CHARS if isinstance(value, str) else MAX_SEQUENCE_ITEMS


def bounded_add(left: Any, right: Any) -> Any:
    if isinstance(left, str | tuple) and _size(left) + _size(right) > _limit_for(left):
        raise FunctionLimitError(f"result longer than {_limit_for(left):,} items")
    return left + right


def bounded_mul(left: Any, right: Any) -> Any:
    # Check before multiplying: 'a' * 10**9 must never allocate.
    for sequence, count in ((left, right), (right, left)):
        repeated = isinstance(sequence, str | tuple) and isinstance(count, int)
        if repeated and _size(sequence) * max(count, 0) > _limit_for(sequence):
            raise FunctionLimitError(f"repetition longer than {_limit_for(sequence):,} items")
    result = left * right
    _check_int(result)
    return result


def bounded_pow(base: Any, exponent: Any) -> Any:
    # An integer result has about exponent * bits(base) bits; refuse before computing it.
    integers = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if integers and abs(base) > 1 and exponent * abs(base).bit_length() > MAX_INT_BITS:
        raise FunctionLimitError(f"power result larger than {MAX_INT_BITS} bits")
    if isinstance(exponent, int) and abs(exponent) > MAX_INT_BITS and abs(base) > 1:
        raise FunctionLimitError(f"exponent {exponent} too large")
    return operator.pow(base, exponent)


def bounded_mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):  # '%s' formatting could allocate before any check
        raise FunctionLimitError("string formatting with % is not allowed")
    return left % right


def _check_int(value: Any) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS * 4:
        raise FunctionLimitError("integer result too large")


def _contains_op(container: Any, item: Any) -> bool:
    return item in container


def _not_contains_op(container: Any, item: Any) -> bool:
    return item not in container


BINARY_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: bounded_add,
    ast.Sub: operator.sub,
    ast.Mult: bounded_mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: bounded_mod,
    ast.Pow: bounded_pow,
}
UNARY_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
COMPARE_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda left, right: _contains_op(right, left),
    ast.NotIn: lambda left, right: _not_contains_op(right, left),
}


# ---- functions ------------------------------------------------------------------------------


def _text(value: Any, function: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FunctionLimitError(f"{function}() needs a string, not {type(value).__name__}")
    return value


def fn_lower(value: Any) -> str:
    """lower(text): text in lower case; None gives ''."""
    return _text(value, "lower").lower()[:MAX_STRING_CHARS]


def fn_upper(value: Any) -> str:
    """upper(text): text in upper case; None gives ''."""
    return _text(value, "upper").upper()[:MAX_STRING_CHARS]


def fn_len(value: Any) -> int:
    """len(x): length of a string, list or mapping; None gives 0."""
    return 0 if value is None else len(value)


def fn_contains(container: Any, item: Any) -> bool:
    """contains(container, item): substring, element or key test; None or a mismatch: False."""
    if container is None or item is None:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping | tuple | frozenset):
        try:
            return item in container
        except TypeError:  # an unhashable item cannot be a key
            return False
    return False


def fn_get(container: Any, key: Any, default: Any = None) -> Any:
    """get(mapping, key, default=None): the value under key, else default (also for None)."""
    if isinstance(container, Mapping):
        try:
            return container.get(key, default)
        except TypeError:
            return default
    if (
        isinstance(container, tuple)
        and isinstance(key, int)
        and -len(container) <= key < len(container)
    ):
        return container[key]
    return default


def fn_round(value: Any, digits: Any = None) -> Any:
    """round(number, digits=None): Python's rounding; |digits| is at most 100."""
    if digits is None:
        return round(value)
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        raise FunctionLimitError(f"round() digits must be an integer within ±{MAX_ROUND_DIGITS}")
    return round(value, digits)


def fn_matches(text: Any, pattern: Any) -> bool:
    """matches(text, pattern): bounded regular-expression search; None text gives False.

    `text` may also be a list of strings (such as changed_files): true if any item matches.
    The search goes through bounded_regex.search, the time limit every user pattern shares.
    """
    if not isinstance(pattern, str):
        raise FunctionLimitError("matches() needs a pattern string")
    if text is None:
        return False
    if isinstance(text, str):
        subjects: str | tuple[str, ...] = text
    elif isinstance(text, tuple | frozenset):
        subjects = tuple(item for item in tuple(text)[:MAX_MATCH_ITEMS] if isinstance(item, str))
    else:
        raise FunctionLimitError(f"matches() needs a text or a list, not {type(text).__name__}")
    _checked(pattern)
    try:
        return search(pattern, subjects, where="matches()")
    except PatternTimeout as error:
        raise FunctionLimitError(str(error)) from None


@functools.lru_cache(maxsize=512)
def _checked(pattern: str) -> None:
    try:
        check_pattern(pattern)
        compile_pattern(pattern)
    except ValueError as error:  # PatternError is one
        raise FunctionLimitError(f"matches(): {error}") from None


def check_pattern(pattern: str) -> None:
    """Refuse patterns known to backtrack catastrophically: ValueError says why."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        parsed = _sre_parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise ValueError(f"invalid pattern: {error}") from None
    _scan_pattern(parsed, inside_repeat=False)


def _scan_pattern(items: Any, *, inside_repeat: bool) -> None:
    for op, arg in items:
        name = str(op)
        if name in _BACKREFS:
            raise ValueError("backreferences are not allowed")
        if name in _REPEATS:
            _low, high, body = arg
            repeats = high > 1
            if repeats and inside_repeat:
                raise ValueError("nested quantifiers (such as (a+)+) are not allowed")
            _scan_pattern(body, inside_repeat=inside_repeat or repeats)
        elif name == "BRANCH":
            if inside_repeat:
                raise ValueError("alternation inside a repeated group is not allowed")
            for branch in arg[1]:
                _scan_pattern(branch, inside_repeat=inside_repeat)
        elif name == "SUBPATTERN":
            _scan_pattern(arg[3], inside_repeat=inside_repeat)
        elif name in {"ASSERT", "ASSERT_NOT"}:
            _scan_pattern(arg[1], inside_repeat=inside_repeat)
        elif name == "ATOMIC_GROUP":
            _scan_pattern(arg, inside_repeat=inside_repeat)


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Python's own errors of a built-in into one clear FunctionLimitError."""

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        try:
            return function(*args)
        except FunctionLimitError:
            raise
        except (TypeError, ValueError, OverflowError) as error:
            raise FunctionLimitError(f"{name}(): {error}") from None

    return call


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def fn_secrets_in(text: Any) -> tuple[str, ...]:
    """The kinds of credentials detect-secrets finds in `text` (a string or list of strings)."""
    lines = [line for item in _texts(text) for line in item.splitlines()]
    return signals.secrets_in({"": lines})


def fn_destructive_in(text: Any) -> tuple[str, ...]:
    """The names of the built-in destructive operations `text` mentions."""
    return signals.destructive_operations(_texts(text))


def fn_auth_failure_in(text: Any) -> bool:
    """Whether `text` shows an authentication or authorisation failure."""
    return any(signals.is_auth_failure(item) for item in _texts(text))


_PLAIN_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "secrets_in": fn_secrets_in,
    "destructive_in": fn_destructive_in,
    "auth_failure_in": fn_auth_failure_in,
    "lower": fn_lower,
    "upper": fn_upper,
    "len": fn_len,
    "contains": fn_contains,
    "matches": fn_matches,
    "get": fn_get,
    "any": any,
    "all": all,
    "min": min,
    "max": max,
    "abs": abs,
    "round": fn_round,
}
BUILTIN_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: _guarded(name, function) for name, function in _PLAIN_FUNCTIONS.items()
}
