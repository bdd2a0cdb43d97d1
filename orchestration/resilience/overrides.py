"""`--set key=value`: changed parameters for a retry (task fields) or a run's budget (budget.*)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import ACTION_KINDS, PLUGIN_TAG, PluginAction, TaskSpec
from orchestration.resilience.budgets import BudgetSettingError, budget_limit_value

# A task's identity and place in the graph stay as they are: changing them could orphan
# dependents or make a cycle.
FIXED_FIELDS = frozenset({"id", "depends_on", "branches"})
BUDGET_PREFIX = "budget."


class OverrideError(OrchestrationError):
    """A `--set` that cannot apply: bad syntax, an unknown or fixed field, or a wrong value."""


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """`["a.b=1", "c=text"]` -> `{"a.b": 1, "c": "text"}`; values are JSON when they parse."""
    sets: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OverrideError(f"--set {item!r}: expected key=value, e.g. action.prompt='...'")
        sets[key] = _value(raw)
    return sets


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # plain text: a prompt, a name


def split_sets(sets: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(task field changes, budget changes by limit name)."""
    task: dict[str, Any] = {}
    budget: dict[str, Any] = {}
    for key, value in sets.items():
        if key.startswith(BUDGET_PREFIX):
            name = key[len(BUDGET_PREFIX) :]
            try:
                budget_limit_value(name, value)
            except BudgetSettingError as error:
                raise OverrideError(f"--set {key}: {error}") from None
            budget[name] = value
        else:
            task[key] = value
    return task, budget


def apply_to_spec(spec: TaskSpec, changes: Mapping[str, Any]) -> TaskSpec:
    """The spec with dotted-path `changes` applied, validated like a plan task."""
    if not changes:
        return spec
    data = spec.model_dump(mode="json")
    for key, value in changes.items():
        path = key.split(".")
        if path[0] in FIXED_FIELDS:
            raise OverrideError(f"--set {key}: a task's {path[0]} cannot change on a retry")
        _assign(data, path, value, key)
    try:
        changed = TaskSpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in _user_path(first["loc"]))
        raise OverrideError(f"--set: task '{spec.id}' field {where}: {_said(first)}") from None
    kind = changed.action.kind
    if isinstance(changed.action, PluginAction) and kind != spec.action.kind:
        # Only a newly named plugin kind needs the plugins: most overrides never load them.
        from orchestration.pluginhost.hooks import load_plugins

        known = load_plugins().action_kinds
        if kind not in known:
            raise OverrideError(
                f"--set: task '{spec.id}' field action.kind: unknown action kind '{kind}'; "
                f"loaded kinds: {', '.join(known)}"
            )
    return changed


def _user_path(loc: tuple[str | int, ...]) -> list[str | int]:
    """A pydantic location without the action union's tags (`action.plugin.run` -> `action.run`)."""
    tags = (*ACTION_KINDS, PLUGIN_TAG)
    return [p for i, p in enumerate(loc) if not (i and loc[i - 1] == "action" and p in tags)]


def _said(error: Any) -> str:
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return f"the action's kind must be text, one of {', '.join(ACTION_KINDS)} or a plugin's"
    if error["type"] == "extra_forbidden" and PLUGIN_TAG in error["loc"]:
        return "not a field of a plugin action (its options go under action.args)"
    return str(error["msg"])


def _assign(data: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    target = data
    for part in path[:-1]:
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        if not isinstance(child, dict):
            raise OverrideError(f"--set {key}: {part} is not a mapping")
        target = child
    target[path[-1]] = value
