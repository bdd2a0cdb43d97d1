"""Severities (low < medium < high < critical) and each notifier's minimum, from the environment.

`ORCH_NOTIFY_MIN_SEVERITY` sets the minimum for every notifier; `ORCH_NOTIFY_MIN_SEVERITY_<NAME>`
(the notifier's name in capitals, other characters as `_`, e.g. `..._WEBHOOK`) for one. A
notification below a notifier's minimum is not sent to it. Unset: every notification is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from orchestration.core.errors import OrchestrationError

SEVERITIES = ("low", "medium", "high", "critical")
RANK = {name: index for index, name in enumerate(SEVERITIES)}
DEFAULT_VARIABLE = "ORCH_NOTIFY_MIN_SEVERITY"


def variable_for(notifier: str) -> str:
    """The environment variable holding one notifier's minimum severity."""
    return f"{DEFAULT_VARIABLE}_{re.sub(r'[^A-Za-z0-9]', '_', notifier).upper()}"


def _checked(variable: str, value: str) -> str:
    value = value.strip().lower()
    if value not in RANK:
        raise OrchestrationError(
            f"{variable}={value!r} is not a severity; expected one of {', '.join(SEVERITIES)}"
        )
    return value


def minimums_from_env(env: Mapping[str, str], notifiers: Iterable[str]) -> dict[str, str]:
    """Each notifier's minimum severity (only those that have one); bad values raise."""
    default = env.get(DEFAULT_VARIABLE)
    found = {}
    for name in notifiers:
        own = env.get(variable_for(name))
        if own:
            found[name] = _checked(variable_for(name), own)
        elif default:
            found[name] = _checked(DEFAULT_VARIABLE, default)
    return found


def reaches(severity: str, minimum: str | None) -> bool:
    """Whether a notification of `severity` goes to a notifier with `minimum` (unknown: yes)."""
    if minimum is None:
        return True
    return RANK.get(severity, RANK["medium"]) >= RANK[minimum]
