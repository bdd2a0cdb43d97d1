"""Takes validators' baselines once at run start, each guarded by a thread with a timeout."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestration.core.guarded import call_in_thread
from orchestration.core.models import ValidatorRef
from orchestration.extension import BaselineInput, ProjectEnvironment, Validator

logger = logging.getLogger(__name__)

# A baseline callable gets the timeout itself; this much more is allowed for it to stop its work.
GRACE_SECONDS = 5.0


def baseline_options(refs: Iterable[ValidatorRef]) -> dict[str, dict[str, Any]]:
    """The options of each validator name's first reference (plan defaults, then tasks)."""
    options: dict[str, dict[str, Any]] = {}
    for ref in refs:
        options.setdefault(ref.name, ref.options)
    return options


def _timeout(options: Mapping[str, Any], default: float) -> float:
    value = options.get("timeout_seconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def _plain(value: object) -> dict[str, Any]:
    """The baseline as plain JSON data, or an error saying why it is not."""
    if not isinstance(value, Mapping):
        return {"error": f"baseline returned {type(value).__name__}, not a mapping"}
    try:
        plain = json.loads(json.dumps(dict(value), allow_nan=False, default=str))
    except (TypeError, ValueError) as error:
        return {"error": f"baseline returned data that is not JSON ({error})"}
    return {str(k): v for k, v in plain.items()}


def take_baseline(validator: Validator, start: BaselineInput) -> dict[str, Any]:
    """Call one validator's baseline in a thread; a failure or a hang becomes {"error": ...}."""
    if validator.baseline is None:
        return {}
    function = validator.baseline
    call = call_in_thread(
        lambda: _plain(function(start)),
        name=f"baseline-{validator.name}",
        timeout=start.timeout_seconds + GRACE_SECONDS,
    )
    if call.timed_out:
        return {"error": f"baseline did not finish within {start.timeout_seconds:g}s"}
    if call.error is not None:  # a plugin's failure is recorded, never raised
        logger.error("baseline of validator %s raised", validator.name, exc_info=call.error)
        error = call.error
        return {"error": f"baseline raised {type(error).__name__}: {error}"}
    value: dict[str, Any] = call.value
    return value


def take_baselines(
    validators: Mapping[str, Validator],
    names: Iterable[str],
    run_id: str,
    workdir: Path,
    timeout: float,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    environment: ProjectEnvironment | None = None,
) -> dict[str, dict[str, Any]]:
    """Each named validator's baseline, one after another; names without one are left out.

    `options` gives a name's validator options (its `timeout_seconds` overrides `timeout`);
    `environment` is the project's (default: the python3 on PATH).
    """
    environment = environment or ProjectEnvironment.on_path()
    taken: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        validator = validators.get(name)
        if validator is None or validator.baseline is None:
            continue
        chosen = dict((options or {}).get(name) or {})
        start = BaselineInput(run_id, workdir, chosen, _timeout(chosen, timeout), environment)
        taken[name] = take_baseline(validator, start)
    return taken


def baseline_summary(taken: Mapping[str, Mapping[str, Any]]) -> str:
    """One line for the console: `pytest: 120 tests, 2 failing` per validator measured."""
    parts = []
    for name, data in taken.items():
        if "error" in data:
            parts.append(f"{name}: not measured ({str(data['error']).splitlines()[0][:120]})")
        elif "tests_total" in data:
            failing = data.get("baseline_tests_failed", 0)
            parts.append(f"{name}: {data['tests_total']} tests, {failing} failing")
        else:
            parts.append(f"{name}: measured")
    return "; ".join(parts)
