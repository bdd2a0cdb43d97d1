"""Plan parameters: `params:` with defaults, values from `--params` or a trigger, `{name}` filled.

One plan serves many triggered runs: a schedule or an event passes values, and every string in
the plan's tasks (prompts, argv, commands...) has `{name}` replaced for each declared parameter.
Braces that do not name a declared parameter are left as they are (prompts quote JSON and code).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from orchestration.core.errors import PlanError
from orchestration.core.models import PARAM_NAME
from orchestration.core.yamlfile import LineMap

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
MAX_VALUE_CHARS = 10_000  # characters in one parameter value


def parse_params_json(text: str, source: str = "--params") -> dict[str, Any]:
    """`--params '{"branch": "main"}'`: a JSON object, or a clear error naming `source`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{source} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise PlanError(f"{source} must be a JSON object of parameter names and values")
    return value


def apply_params(
    data: Any, given: Mapping[str, Any] | None, *, display: str, lines: LineMap
) -> Any:
    """The plan data with parameter values resolved into `params` and filled into its tasks.

    `given=None` (checking a plan, not starting a run) leaves required parameters unfilled.
    Raises PlanError naming the plan file and field for an unknown parameter, a value of the
    wrong type or a required parameter without a value. Data that is not a plan mapping is
    returned as is: the plan's own checks report it.
    """
    if not isinstance(data, dict) or not isinstance(data.get("params", {}), dict):
        return data
    declared: dict[str, Any] = dict(data.get("params") or {})
    if given is None:  # checking the plan, not starting a run: required ones stay unfilled
        declared = {name: value for name, value in declared.items() if value is not None}
        given = {}
    values = resolve_values(declared, dict(given), display=display, lines=lines)
    if not values:
        return data
    out = dict(data)
    out["params"] = {**data["params"], **values}
    if "tasks" in out:
        out["tasks"] = _fill(out["tasks"], values)
    return out


def resolve_values(
    declared: Mapping[str, Any], given: Mapping[str, Any], *, display: str, lines: LineMap
) -> dict[str, Any]:
    """Each declared parameter's value: given, else its default; checked against the default."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        names = ", ".join(sorted(declared)) or "none"
        raise PlanError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; the plan declares: {names}",
            file=display,
            line=lines.line_of(("params",)),
            field="params",
        )
    values: dict[str, Any] = {}
    for name, default in declared.items():
        field = f"params.{name}"
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            continue  # the plan's schema check names it
        value = given.get(name, default)
        if value is None:
            raise PlanError(
                f"parameter '{name}' has no default and no value was given "
                "(--params, or the schedule's or trigger's params)",
                file=display,
                line=lines.line_of(("params", name)),
                field=field,
            )
        problem = _type_problem(value, default)
        if problem:
            raise PlanError(
                f"parameter '{name}': {problem}",
                file=display,
                line=lines.line_of(("params", name)),
                field=field,
            )
        values[name] = value
    return values


def _type_problem(value: Any, default: Any) -> str | None:
    if not isinstance(value, str | int | float | bool):
        return f"a value must be text, a number or true/false, not {type(value).__name__}"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"the value has {len(value):,} characters; the limit is {MAX_VALUE_CHARS:,}"
    if default is None:
        return None
    if isinstance(default, bool) != isinstance(value, bool):
        return f"expected true or false like its default, got {value!r}"
    numeric = isinstance(default, int | float) and not isinstance(default, bool)
    if numeric and not isinstance(value, int | float):
        return f"expected a number like its default {default!r}, got {value!r}"
    if isinstance(default, str) and not isinstance(value, str):
        return f"expected text like its default {default!r}, got {value!r}"
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    """Every string under `node` with `{name}` replaced for the declared parameters."""
    if isinstance(node, str):
        if "{" not in node:
            return node
        return PLACEHOLDER.sub(
            lambda m: _text(values[m.group(1)]) if m.group(1) in values else m.group(0), node
        )
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _fill(item, values) for key, item in node.items()}
    return node
