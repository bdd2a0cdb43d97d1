"""Loads a plan file and checks it whole: every problem at once, with file, line, task, field."""

from __future__ import annotations

import difflib
import graphlib
import heapq
import logging
import os
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from orchestration.agents import missing_program, settings_problem
from orchestration.core.agent_specs import agent_problems, resolve_agents_file
from orchestration.core.errors import PlanError, PlanErrors, RuleError
from orchestration.core.models import (
    ACTION_KINDS,
    PLUGIN_TAG,
    SHARED_CONTEXT,
    TRIGGER_EVENT_NAMES,
    AgentAction,
    Plan,
    PlanSpec,
    RunRecord,
    TaskSpec,
)
from orchestration.core.yamlfile import LineMap, collection_paused, load_yaml_file
from orchestration.engine.plan_params import apply_params
from orchestration.engine.waves import gate_problem
from orchestration.project.environment import environment_problems
from orchestration.rules.expressions import compile_expression

logger = logging.getLogger(__name__)

MAX_TASKS = 200_000  # tasks in one plan file, branch tasks not counted
MAX_REPORTED = 200  # problems listed before the rest are summarised in one line
SUPPORTED_VERSION = 1

TaskPath = tuple[str | int, ...]


class _TaskNode(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def depends_on(self) -> Sequence[str]: ...


def load_plan(
    path: str | Path,
    *,
    action_kinds: Collection[str] = ACTION_KINDS,
    check_programs: bool = False,
    params: Mapping[str, Any] | None = None,
) -> Plan:
    """Read, validate and resolve a plan file; raise PlanError / PlanErrors naming every problem.

    `action_kinds` are the kinds of work a task may name: the built-in ones unless the caller
    loaded plugins (`Plugins.action_kinds`), so that an unknown kind is placed on its line.
    `check_programs`: an agent preset's program must be on PATH here (`orch validate`; a run
    may start where it is missing, and its attempts then fail with the same message).
    `params`: the values of the plan's parameters for a run (orchestration/engine/plan_params.py);
    None checks the plan without them.
    """
    path = Path(path)
    data, lines = load_yaml_file(path)
    data = apply_params(data, params, display=str(path), lines=lines)
    with collection_paused():
        return _build_plan(
            data,
            lines,
            display=str(path),
            plan_path=path,
            check_paths=True,
            action_kinds=action_kinds,
            check_programs=check_programs,
        )


def plan_from_dict(
    data: Any,
    *,
    path: str | Path,
    check_paths: bool = True,
    action_kinds: Collection[str] | None = ACTION_KINDS,
) -> Plan:
    """Validate plan data that did not come from a file (a stored run), with the same checks.

    `action_kinds=None` accepts any well-formed kind; the engine checks them against its
    plugins when it is built (a stored run's plan names the kinds it was started with).
    """
    path = Path(path)
    with collection_paused():
        return _build_plan(
            data,
            LineMap(),
            display=str(path),
            plan_path=path,
            check_paths=check_paths,
            action_kinds=action_kinds,
        )


def topological_order(tasks: Iterable[_TaskNode]) -> list[str]:
    """Task ids with every task after its dependencies; ties keep plan order.

    graphlib orders the graph; of the tasks it releases at once, the earliest in the plan comes
    first. Dependencies on ids that are not among `tasks` are ignored (they are done, or outside
    this subset); a cycle raises PlanError naming the tasks on it.
    """
    nodes = list(tasks)
    index = {task.id: i for i, task in enumerate(nodes)}
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, task in enumerate(nodes):
        sorter.add(i, *(index[dep] for dep in task.depends_on if dep in index))
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        on_cycle = sorted(set(error.args[1]))
        shown = ", ".join(nodes[i].id for i in on_cycle[:10]) + (
            ", ..." if len(on_cycle) > 10 else ""
        )
        raise PlanError(f"dependency cycle among tasks: {shown}") from None
    ready = list(sorter.get_ready())
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i].id)
        sorter.done(i)
        for j in sorter.get_ready():
            heapq.heappush(ready, j)
    return order


# ---- building ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RawTask:
    """One task as written (plan task or branch task), read leniently for the graph checks."""

    path: TaskPath  # ('tasks', 3) or ('tasks', 3, 'branches', 0, 'spawn', 1)
    data: dict[str, Any]
    scope: int  # tasks sharing a scope may depend on each other: the plan's list, or one spawn

    @property
    def id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None

    @property
    def depends_on(self) -> list[tuple[int, str]]:
        deps = self.data.get("depends_on")
        if not isinstance(deps, list):
            return []
        return [(i, dep) for i, dep in enumerate(deps) if isinstance(dep, str)]


class _Problems:
    """Collects the problems of one plan, each placed on its line."""

    def __init__(self, display: str, lines: LineMap) -> None:
        self.display = display
        self.lines = lines
        self.found: list[PlanError] = []

    def add(self, message: str, at: TaskPath, *, task: str | None, field: str | None) -> None:
        line = self.lines.line_of(at)
        self.found.append(PlanError(message, file=self.display, line=line, task=task, field=field))

    def where(self, at: TaskPath) -> str:
        """How another message refers to a place: its line, or its path when there are no lines."""
        line = self.lines.line_of(at)
        return f"line {line}" if line is not None else _format_path(at)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        ordered = sorted(self.found, key=lambda e: e.line if e.line is not None else 0)
        if len(ordered) > MAX_REPORTED:
            rest = len(ordered) - MAX_REPORTED
            ordered = ordered[:MAX_REPORTED]
            ordered.append(PlanError(f"{rest} more problems not shown", file=self.display))
        raise PlanErrors(ordered)


def _build_plan(
    data: Any,
    lines: LineMap,
    *,
    display: str,
    plan_path: Path,
    check_paths: bool,
    action_kinds: Collection[str] | None,
    check_programs: bool = False,
) -> Plan:
    _check_shape(data, lines, display)
    problems = _Problems(display, lines)
    data, agent_file_problems = resolve_agents_file(data, plan_path.parent, display)
    problems.found.extend(agent_file_problems)
    spec: PlanSpec | None = None
    try:
        spec = PlanSpec.model_validate(data, context={SHARED_CONTEXT: {}})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if action_kinds is not None and _under_unknown_kind(error["loc"], data, action_kinds):
                continue  # the kind itself is reported below; its fields' errors are noise
            message, at, task, field = _explain(error, data)
            problems.add(message, at, task=task, field=field)
    tasks = list(_raw_tasks(data))
    if action_kinds is not None:
        _check_action_kinds(problems, tasks, action_kinds)
    _check_ids(problems, tasks)
    _check_dependencies(problems, tasks)
    _check_cycles(problems, tasks)
    _check_pools(problems, data, tasks)
    _check_agent_commands(problems, data, tasks)
    for message, at, task_id, field in agent_problems(data, [(t.path, t.data) for t in tasks]):
        problems.add(message, at, task=task_id, field=field)
    if (wave_gate := gate_problem(data)) is not None:
        problems.add(wave_gate, ("waves", "gate"), task=None, field="waves.gate")
    _check_expressions(problems, tasks)
    if spec is not None:
        _check_triggers(problems, spec)
    plan_file = plan_path.expanduser().resolve()
    workdir = _resolve_workdir(problems, data, plan_file.parent, check_paths)
    rule_files = _resolve_rule_files(problems, data, plan_file.parent, check_paths)
    if check_programs and spec is not None:
        _check_agent_programs(problems, tasks, Path(workdir))
    if check_paths and spec is not None and Path(workdir).is_dir():
        _check_environment(problems, spec, Path(workdir))
    problems.raise_if_any()
    assert spec is not None  # pydantic raised otherwise, and that was reported above
    return Plan(spec=spec, path=str(plan_file), workdir=workdir, rule_files=rule_files)


def _check_shape(data: Any, lines: LineMap, display: str) -> None:
    """Problems that make every other message noise: not a mapping, a foreign version, too big."""
    if not isinstance(data, dict):
        raise PlanError(
            f"a plan must be a mapping with version, name and tasks; this file holds {_kind(data)}",
            file=display,
            line=lines.line_of(()),
        )
    version = data.get("version", SUPPORTED_VERSION)
    if isinstance(version, bool) or version != SUPPORTED_VERSION:
        raise PlanError(
            f"unsupported plan version {version!r}; this orchestration reads version "
            f"{SUPPORTED_VERSION}",
            file=display,
            line=lines.line_of(("version",)),
            field="version",
        )
    tasks = data.get("tasks")
    if isinstance(tasks, list) and len(tasks) > MAX_TASKS:
        raise PlanError(
            f"the plan has {len(tasks):,} tasks; the limit is {MAX_TASKS:,} per plan",
            file=display,
            line=lines.line_of(("tasks",)),
            field="tasks",
        )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a single text value"
    return f"a single {type(value).__name__} value"


# ---- pydantic errors as user messages ------------------------------------------------------

_ACTION_FIELD_HINTS = {
    "run": "an argv list such as [python, script.py]",
    "prompt": "the text sent to the agent",
    "call": "a function named as 'package.module:function'",
}
_COMMAND_FIELDS = ("run", "command", "agent_command")
_DATETIME_EXAMPLE = "a date and time such as 2026-12-01T12:00:00Z"
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "datetime_type": _DATETIME_EXAMPLE,
    "datetime_parsing": _DATETIME_EXAMPLE,
    "datetime_from_date_parsing": _DATETIME_EXAMPLE,
}
_BOUND_KINDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


@dataclass(slots=True)
class _Where:
    """Where a pydantic error location points, in the user's terms."""

    data_path: list[str | int]  # the location in the data (union tags removed), for the line
    task: str | None = None  # the innermost task with a usable id
    field_start: int = 0  # where the field path inside that task starts in data_path
    model: type[BaseModel] | None = None  # the model owning the last field named
    info: FieldInfo | None = None
    action_kind: str | None = None
    expected: Any = None  # the type the value at data_path should have had

    @property
    def name(self) -> str:
        return str(self.data_path[-1]) if self.data_path else ""

    def field(self, *, parent: bool = False) -> str | None:
        end = len(self.data_path) - 1 if parent else len(self.data_path)
        return _format_path(tuple(self.data_path[self.field_start : end])) or None


def _explain(error: Any, data: dict[str, Any]) -> tuple[str, TaskPath, str | None, str | None]:
    """One pydantic error as (message, data path, task id, field)."""
    where = _locate(error["loc"], data)
    kind = error["type"]
    field = where.field()
    if kind in ("extra_forbidden", "missing"):
        field = where.field(parent=True)
    message = _message(kind, error, where)
    return message, tuple(where.data_path), where.task, field


def _locate(loc: tuple[str | int, ...], data: dict[str, Any]) -> _Where:
    where = _Where(data_path=[])
    annotation: Any = PlanSpec
    node: Any = data
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            where.data_path.append(part)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            args = get_args(annotation)
            annotation = args[0] if get_origin(annotation) is list and args else None
            task_id = node.get("id") if isinstance(node, dict) else None
            if annotation is TaskSpec and isinstance(task_id, str) and task_id:
                where.task, where.field_start = task_id, len(where.data_path)
            continue
        member = _union_member(annotation, part)
        if member is not None:
            annotation, where.action_kind = member, part
            continue
        where.data_path.append(part)
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            where.model, where.info = annotation, annotation.model_fields.get(part)
            annotation = where.info.annotation if where.info else None
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            annotation = None
    where.expected = _unwrap(annotation)
    return where


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` as X; a real union stays a union."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _union_member(annotation: Any, tag: str | int) -> type[BaseModel] | None:
    """The member of a discriminated union (the action kinds) that `tag` selects."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    for member in get_args(annotation):
        if get_origin(member) is Annotated:
            model, *metadata = get_args(member)
            if any(isinstance(m, Tag) and m.tag == tag for m in metadata):
                return model
            continue
        kind = getattr(member, "model_fields", {}).get("kind")
        if kind is not None and tag in get_args(kind.annotation):
            return member
    return None


def _message(kind: str, error: Any, where: _Where) -> str:
    value, ctx, name = error.get("input"), error.get("ctx") or {}, where.name
    if kind == "extra_forbidden":
        fields = list(where.model.model_fields) if where.model else []
        hint = _did_you_mean(name, fields) or (f"; expected one of: {', '.join(fields)}")
        return f"unknown field '{name}'{hint if fields else ''}"
    if kind == "missing":
        if where.action_kind is not None:
            hint = _ACTION_FIELD_HINTS.get(name, "")
            return f"action kind '{where.action_kind}' needs field '{name}'" + (
                f" ({hint})" if hint else ""
            )
        return f"missing required field '{name}'"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(ACTION_KINDS)
        if kind == "union_tag_not_found" and not isinstance(error.get("input"), dict):
            example = "{kind: shell, run: [...]}"
            return f"expected an action: a mapping such as {example}, got {_shown(value)}"
        if kind == "union_tag_not_found" and value.get("kind") is not None:
            return f"the action's kind must be text, one of {kinds}; got {_shown(value['kind'])}"
        if kind == "union_tag_not_found":
            return f"the action has no 'kind'; expected one of {kinds}"
        return f"unknown action kind {_shown_text(ctx.get('tag'))}; expected one of {kinds}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return _literal_message(name, value, where, ctx)
    if kind in _BOUND_KINDS:
        return f"{name} {_shown_number(value)} is out of range; expected {_range(where, ctx)}"
    if kind == "string_pattern_mismatch":
        return _pattern_message(name, value)
    if kind in ("too_short", "string_too_short", "string_too_long"):
        return _length_message(kind, name, ctx)
    if kind in _EXPECTED:
        return _type_message(kind, name, value, where)
    return str(error["msg"])


def _literal_message(name: str, value: Any, where: _Where, ctx: dict[str, Any]) -> str:
    annotation = _unwrap(where.info.annotation) if where.info else None
    choices = [str(c) for c in get_args(annotation)] if get_origin(annotation) is Literal else []
    expected = " | ".join(choices) or str(ctx.get("expected", ""))
    if isinstance(value, str):
        return f"unknown {name} '{value}'; expected {expected}"
    return f"expected one of {expected}, got {_shown(value)}"


def _range(where: _Where, ctx: dict[str, Any]) -> str:
    bounds = dict(ctx)
    for constraint in where.info.metadata if where.info else ():
        for key in ("gt", "ge", "lt", "le"):
            if getattr(constraint, key, None) is not None:
                bounds[key] = getattr(constraint, key)
    if "ge" in bounds and "le" in bounds:
        return f"a number from {_shown_number(bounds['ge'])} to {_shown_number(bounds['le'])}"
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[k]} {_shown_number(v)}" for k, v in bounds.items() if k in words)


def _pattern_message(name: str, value: Any) -> str:
    if name == "id":
        return (
            f"invalid task id {_shown_text(value)}: use letters, digits, '_', '.' and '-', "
            "starting with a letter or a digit"
        )
    if name == "call":
        return f"'call' must name a function as 'package.module:function', got {value!r}"
    return f"{_shown_text(value)} is not a valid {name}"


def _length_message(kind: str, name: str, ctx: dict[str, Any]) -> str:
    if kind == "string_too_long":
        return f"{name} is too long: at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"{name} must not be empty"
    if name == "tasks":
        return "a plan needs at least one task"
    if name == "spawn":
        return "a branch needs at least one task to spawn"
    if name in _COMMAND_FIELDS:
        return f"'{name}' needs at least the program to run"
    return f"{name} needs at least {ctx.get('min_length', 1)} item(s)"


def _type_message(kind: str, name: str, value: Any, where: _Where) -> str:
    expected = _EXPECTED[kind]
    if kind == "list_type" and isinstance(value, str):
        words = ", ".join(value.split()) or "..."
        if name in _COMMAND_FIELDS:
            return (
                f"'{name}' must be an argv list such as [{words}], not a string: "
                "commands never run through a shell"
            )
        return f"expected a list such as [{words}], got the text {value!r}"
    if kind in ("model_type", "model_attributes_type"):
        if where.expected is TaskSpec:
            expected = "a task: a mapping with id, action and other fields"
        elif name == "action":
            expected = "an action: a mapping such as {kind: shell, run: [...]}"
    return f"expected {expected}, got {_shown(value)}{_quote_hint(kind, value)}"


def _quote_hint(kind: str, value: Any) -> str:
    if kind != "string_type":
        return ""
    if isinstance(value, bool):
        return "; YAML reads unquoted yes/no/on/off/true/false as booleans: put it in quotes"
    if isinstance(value, int | float):
        return "; YAML reads unquoted values such as 12:30 or 1.10 as numbers: put it in quotes"
    if isinstance(value, date):
        return "; YAML reads unquoted dates as dates: put it in quotes"
    return ""


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {_shown_number(value)}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"the text {_shown_text(value)}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _shown_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _raw_tasks(data: dict[str, Any]) -> Iterator[_RawTask]:
    """Every task dict of the plan, branch tasks included."""
    top = data.get("tasks")
    if not isinstance(top, list):
        return
    scopes = 0
    # Breadth first: all plan tasks come before any branch task, so an id clash is reported
    # on the branch task.
    pending: deque[tuple[TaskPath, list[Any], int]] = deque([(("tasks",), top, 0)])
    while pending:
        prefix, items, scope = pending.popleft()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            path = (*prefix, i)
            yield _RawTask(path, item, scope)
            branches = item.get("branches")
            if not isinstance(branches, list):
                continue
            for b, branch in enumerate(branches):
                if isinstance(branch, dict) and isinstance(branch.get("spawn"), list):
                    scopes += 1
                    pending.append(((*path, "branches", b, "spawn"), branch["spawn"], scopes))


def _check_action_kinds(problems: _Problems, tasks: list[_RawTask], known: Collection[str]) -> None:
    for task in tasks:
        action = task.data.get("action")
        kind = action.get("kind") if isinstance(action, dict) else None
        if isinstance(kind, str) and kind not in ACTION_KINDS and kind not in known:
            problems.add(
                f"unknown action kind {_shown_text(kind)}; expected one of "
                f"{', '.join(_ordered_kinds(known))}" + (_did_you_mean(kind, list(known)) or ""),
                (*task.path, "action", "kind"),
                task=task.id,
                field="action.kind",
            )


def _ordered_kinds(known: Collection[str]) -> list[str]:
    """The built-in kinds first, in their usual order, then the plugins' kinds by name."""
    return [*ACTION_KINDS, *sorted(set(known) - set(ACTION_KINDS))]


def _under_unknown_kind(loc: tuple[str | int, ...], data: Any, known: Collection[str]) -> bool:
    """Whether a pydantic error lies in a plugin action whose kind no plugin provides."""
    if PLUGIN_TAG not in loc:
        return False
    node: Any = data
    for part in loc[: loc.index(PLUGIN_TAG)]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    kind = node.get("kind") if isinstance(node, dict) else None
    return kind not in known


def _check_ids(problems: _Problems, tasks: list[_RawTask]) -> None:
    first: dict[str, _RawTask] = {}
    for task in tasks:
        task_id = task.id
        if task_id is None:
            continue
        earlier = first.get(task_id)
        if earlier is None:
            first[task_id] = task
            continue
        if earlier.scope == 0 and task.scope == 0:
            message = f"duplicate task id '{task_id}'; first at {_id_place(problems, earlier)}"
        elif earlier.scope == 0:
            message = (
                f"branch task id '{task_id}' is already the id of a plan task "
                f"({_id_place(problems, earlier)})"
            )
        else:
            message = (
                f"branch task id '{task_id}' is also spawned at {_id_place(problems, earlier)}; "
                "spawned ids must be unique in the plan"
            )
        problems.add(message, (*task.path, "id"), task=task_id, field="id")


def _id_place(problems: _Problems, task: _RawTask) -> str:
    return problems.where((*task.path, "id"))


def _check_dependencies(problems: _Problems, tasks: list[_RawTask]) -> None:
    known = {t.id: None for t in tasks if t.id is not None}  # a dict keeps plan order
    suggestions_left = 50  # difflib is linear in the number of ids: bound its total cost
    for task in tasks:
        task_id = task.id
        for i, dep in task.depends_on:
            at = (*task.path, "depends_on", i)
            if dep == task_id:
                message = f"task '{dep}' depends on itself (dependency cycle: {dep} -> {dep})"
                problems.add(message, at, task=task_id, field="depends_on")
            elif dep not in known:
                message = f"task '{task_id}' depends on unknown task '{dep}'"
                if suggestions_left > 0:
                    suggestions_left -= 1
                    message += _did_you_mean(dep, list(known))
                problems.add(message, at, task=task_id, field="depends_on")


def _check_cycles(problems: _Problems, tasks: list[_RawTask]) -> None:
    by_scope: dict[int, list[_RawTask]] = {}
    for task in tasks:
        by_scope.setdefault(task.scope, []).append(task)
    for scope_tasks in by_scope.values():
        for cycle in _find_cycles(scope_tasks):
            first = cycle[0]
            text = " -> ".join(t.id or "?" for t in (*cycle, first))
            problems.add(
                f"dependency cycle: {text} ('->' reads 'depends on')",
                (*first.path, "depends_on"),
                task=first.id,
                field="depends_on",
            )


def _find_cycles(tasks: list[_RawTask]) -> list[tuple[_RawTask, ...]]:
    """One cycle per back edge of an iterative depth-first search, each reported once."""
    index: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if task.id is not None:
            index.setdefault(task.id, i)
    edges = [
        [index[dep] for _, dep in task.depends_on if dep in index and dep != task.id]
        for task in tasks
    ]
    state = [0] * len(tasks)  # 0 unseen, 1 on the current path, 2 finished
    found: dict[tuple[int, ...], None] = {}
    for root in range(len(tasks)):
        if state[root]:
            continue
        path, position = [root], {root: 0}
        stack = [iter(edges[root])]
        state[root] = 1
        while stack:
            for nxt in stack[-1]:
                if state[nxt] == 0:
                    state[nxt] = 1
                    position[nxt] = len(path)
                    path.append(nxt)
                    stack.append(iter(edges[nxt]))
                    break
                if state[nxt] == 1:
                    found.setdefault(_rotated(path[position[nxt] :]), None)
            else:
                stack.pop()
                done = path.pop()
                del position[done]
                state[done] = 2
    return [tuple(tasks[i] for i in cycle) for cycle in found]


def _rotated(cycle: list[int]) -> tuple[int, ...]:
    start = cycle.index(min(cycle))
    return tuple(cycle[start:] + cycle[:start])


def _check_pools(problems: _Problems, data: dict[str, Any], tasks: list[_RawTask]) -> None:
    concurrency = data.get("concurrency")
    pools = concurrency.get("pools") if isinstance(concurrency, dict) else None
    declared = list(pools) if isinstance(pools, dict) else []
    for task in tasks:
        pool = task.data.get("pool")
        if not isinstance(pool, str) or pool in declared:
            continue
        message = f"pool '{pool}' is not declared in concurrency.pools"
        if declared:
            message += _did_you_mean(pool, declared) or f" (declared: {', '.join(declared)})"
        else:
            message += " (no pools are declared)"
        problems.add(message, (*task.path, "pool"), task=task.id, field="pool")


def _check_agent_commands(problems: _Problems, data: dict[str, Any], tasks: list[_RawTask]) -> None:
    defaults = data.get("defaults")
    if isinstance(defaults, dict) and defaults.get("agent_command") is not None:
        return
    if data.get("agents"):  # the plan's agents run its agent tasks (agent_specs.assignable)
        return
    for task in tasks:
        action = task.data.get("action")
        if not isinstance(action, dict) or action.get("kind") != "agent":
            continue
        if action.get("agent") is not None:
            _check_agent_preset(problems, task, action)
        elif action.get("command") is None:
            problems.add(
                "an agent action needs 'command' (an argv template such as "
                "[my-agent, --message, '{prompt}']) because defaults.agent_command is not set",
                (*task.path, "action"),
                task=task.id,
                field="action.command",
            )


def _check_agent_preset(problems: _Problems, task: _RawTask, action: dict[str, Any]) -> None:
    """A preset's own settings (its permission modes); the preset name pydantic checks."""
    problem = settings_problem(action.get("agent"), action.get("permissions"))
    if problem is not None:
        at = (*task.path, "action", "permissions")
        problems.add(problem, at, task=task.id, field="action.permissions")


def _check_agent_programs(problems: _Problems, tasks: list[_RawTask], workdir: Path) -> None:
    """Each agent preset's program is installed: on the PATH its action will run with."""
    for task in tasks:
        raw = task.data.get("action")
        if not isinstance(raw, dict) or raw.get("kind") != "agent" or not raw.get("agent"):
            continue
        action = AgentAction.model_validate(raw)  # the whole plan validated already
        env = {**os.environ, **action.env}
        missing = missing_program(action, env, workdir / action.cwd if action.cwd else workdir)
        if missing is not None:
            at = (*task.path, "action", "program" if action.program else "agent")
            problems.add(missing, at, task=task.id, field="action.agent")


def _check_expressions(problems: _Problems, tasks: list[_RawTask]) -> None:
    outcome: dict[str, RuleError | None] = {}  # plans repeat expressions: compile each text once
    for task in tasks:
        for at, source, field in _expressions_of(task):
            if source not in outcome:
                rule = f"{task.id}.{field}"
                try:  # the message names the line (problems.add): asking here would read it
                    compile_expression(source, file=problems.display, rule=rule)
                    outcome[source] = None
                except RuleError as exc:
                    outcome[source] = exc
            failure = outcome[source]
            if failure is not None:
                message = f"invalid expression {source!r}: {failure.message}"
                if failure.column is not None:
                    message += f" (column {failure.column} of the expression)"
                problems.add(message, at, task=task.id, field=field)


def _check_triggers(problems: _Problems, spec: PlanSpec) -> None:
    """The `on:` triggers' expressions, over the event's names (orchestration/event_triggers)."""
    for index, trigger in enumerate(spec.on):
        sources = [("when", trigger.when)] + [(f"params.{k}", v) for k, v in trigger.params.items()]
        for name, source in sources:
            if source is None:
                continue
            try:
                compile_expression(source, names=TRIGGER_EVENT_NAMES)
            except RuleError as error:
                at: TaskPath = ("on", index, *name.split("."))
                problems.add(str(error), at, task=None, field=f"on[{index}].{name}")


def _expressions_of(task: _RawTask) -> Iterator[tuple[TaskPath, str, str]]:
    acceptance = task.data.get("acceptance")
    if isinstance(acceptance, list):
        for i, source in enumerate(acceptance):
            if isinstance(source, str):
                yield (*task.path, "acceptance", i), source, f"acceptance[{i}]"
    branches = task.data.get("branches")
    if isinstance(branches, list):
        for i, branch in enumerate(branches):
            when = branch.get("when") if isinstance(branch, dict) else None
            if isinstance(when, str):
                yield (*task.path, "branches", i, "when"), when, f"branches[{i}].when"


def _resolve_workdir(
    problems: _Problems, data: dict[str, Any], base: Path, check_paths: bool
) -> str:
    raw = data.get("workdir", ".")
    if not isinstance(raw, str):
        return str(base)  # pydantic reported the type
    workdir = (base / Path(raw).expanduser()).resolve()
    if check_paths and not workdir.is_dir():
        state = "is not a directory" if workdir.exists() else "does not exist"
        message = f"workdir '{raw}' {state} (resolved to {workdir})"
        problems.add(message, ("workdir",), task=None, field="workdir")
    return str(workdir)


def _check_environment(problems: _Problems, spec: PlanSpec, workdir: Path) -> None:
    for problem in environment_problems(spec.environment, workdir):
        at: TaskPath = ("environment", *problem.field.split(".")[1:])
        problems.add(problem.message, at, task=None, field=problem.field)


def _resolve_rule_files(
    problems: _Problems, data: dict[str, Any], base: Path, check_paths: bool
) -> tuple[str, ...]:
    raw = data.get("rules")
    if not isinstance(raw, list):
        return ()
    resolved = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, str):
            continue
        rule_file = (base / Path(entry).expanduser()).resolve()
        resolved.append(str(rule_file))
        if check_paths and not rule_file.is_file():
            state = "is a directory" if rule_file.is_dir() else "does not exist"
            message = f"rule file '{entry}' {state} (resolved to {rule_file})"
            problems.add(message, ("rules", i), task=None, field=f"rules[{i}]")
    return tuple(resolved)


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def _format_path(path: TaskPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


__all__ = ["MAX_TASKS", "load_plan", "plan_from_dict", "topological_order"]


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as a run stores it, so that `plan_from_stored` gives it back unchanged.

    The plan's settings are stored whole; its tasks as written (the fields the file set): each
    task's whole spec is stored with the task itself (the tasks table), and a 100,000-task plan
    dumped whole would build about 1.6 KB of dictionaries per task at once.
    """
    spec = plan.spec.model_dump(mode="json", exclude={"tasks"})
    spec["tasks"] = [task.model_dump(mode="json", exclude_unset=True) for task in plan.spec.tasks]
    return {
        "spec": spec,
        "path": plan.path,
        "workdir": plan.workdir,
        "rule_files": list(plan.rule_files),
    }


def plan_from_stored(run: RunRecord) -> Plan:
    """The plan exactly as it was when the run started (the file may have changed since)."""
    stored = run.plan_json
    plan = plan_from_dict(
        stored["spec"], path=Path(stored["path"]), check_paths=False, action_kinds=None
    )
    return replace(plan, workdir=stored["workdir"], rule_files=tuple(stored["rule_files"]))
