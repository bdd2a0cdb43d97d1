"""Durations as people write them in rule files and on the command line: 90, 30s, 15m, 2h, 30d."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
MAX_SECONDS = 10 * 365 * 86_400  # ten years: beyond that a value is a typo


def parse_duration(value: str | int | float) -> float:
    """Seconds for `value` (a number of seconds or '<number><s|m|h|d|w>'); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90, 30s, 15m, 2h or 30d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"expected a duration such as 90, 30s, 15m, 2h or 30d, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"a duration must be between 0 and 10 years, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 12m, 3.5h, 2d."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"
