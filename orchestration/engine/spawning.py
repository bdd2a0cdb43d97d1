"""Grows a running plan: branch tasks, tasks an action asks for, and tasks a human adds."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestration.core.errors import OrchestrationError, PlanError
from orchestration.core.lifecycle import TaskState
from orchestration.core.models import Branch, TaskRecord, TaskSpec
from orchestration.engine.plan import topological_order
from orchestration.rules.expressions import Expression

logger = logging.getLogger(__name__)

MAX_SPAWN_PER_EVENT = 1_000  # one action or branch cannot flood the run


class SpawnError(OrchestrationError):
    """New tasks that cannot join the run (invalid, unknown dependency, cycle); the run goes on."""


def branch_fires(
    branch: Branch,
    when: Expression | None,
    *,
    succeeded: bool,
    context: Mapping[str, Any],
) -> bool:
    """Whether a branch's condition holds for a task that just ended."""
    if branch.on_success:
        return succeeded
    if branch.on_failure:
        return not succeeded
    result = context.get("result") or {}
    if branch.result_equals is not None:
        return all(result.get(k) == v for k, v in branch.result_equals.items())
    if branch.result_contains is not None:
        return all(_contains(result.get(k), v) for k, v in branch.result_contains.items())
    assert when is not None  # the model allows exactly one condition
    return bool(when.evaluate(context))


@dataclass(frozen=True)
class Growth:
    """New tasks a finished task asks for (`specs`, from `source`), or why they are `refused`."""

    source: str
    specs: list[Any]
    refused: str | None = None


def requested_growth(
    task: TaskRecord,
    succeeded: bool,
    context: Mapping[str, Any],
    when: Callable[[TaskRecord, int], Expression | None],
) -> Iterator[Growth]:
    """What a finished task's branches, then its action's `spawn` result, ask to add.

    Lazy, in order: the caller adds each growth before the next branch is looked at. `when`
    gives a branch's compiled condition (task, branch index).
    """
    for index, branch in enumerate(task.spec.branches):
        source = f"task '{task.task_id}' branches[{index}]"
        try:
            fires = branch_fires(branch, when(task, index), succeeded=succeeded, context=context)
        except OrchestrationError as error:
            yield Growth(source, [], f"{source}: {error}")
            continue
        if fires:
            yield Growth(source, list(branch.spawn))
    requested = context.get("result", {}).get("spawn") if succeeded else None
    if requested is None:
        return
    source = f"task '{task.task_id}' result.spawn"
    if not isinstance(requested, list):
        yield Growth(source, [], f"{source}: expected a list of tasks")
        return
    try:
        specs = parse_specs(requested, source)
    except SpawnError as error:
        yield Growth(source, [], str(error))
        return
    yield Growth(source, specs)


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple | dict):
        return item in container
    return False


def parse_specs(raw: Iterable[Any], source: str) -> list[TaskSpec]:
    """Validate task dicts (from an action's result or a file) like plan tasks."""
    items = list(raw)
    if len(items) > MAX_SPAWN_PER_EVENT:
        raise SpawnError(
            f"{source}: {len(items)} tasks at once; the limit is {MAX_SPAWN_PER_EVENT}"
        )
    specs = []
    for index, item in enumerate(items):
        if isinstance(item, TaskSpec):
            specs.append(item)
            continue
        try:
            specs.append(TaskSpec.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            task = item.get("id") if isinstance(item, dict) else None
            raise SpawnError(
                f"{source}: task {index} ({task or 'no id'}), field '{where}': {first['msg']}"
            ) from None
    return specs


def _unique_id(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


def prepare_tasks(
    specs: Sequence[TaskSpec],
    existing: Mapping[str, TaskRecord],
    run_id: str,
    source: str,
    action_kinds: Collection[str] | None = None,
) -> list[TaskRecord]:
    """New pending tasks with ids unique in the run; dependencies checked, no cycles.

    An id that is taken gets a suffix (`-2`, `-3`...); dependencies between the new tasks follow
    the renaming. A dependency must name a task of the run or one of the new tasks. With
    `action_kinds`, a task naming another kind of work is refused.
    """
    for spec in specs:
        if action_kinds is not None and spec.action.kind not in action_kinds:
            raise SpawnError(
                f"{source}: task '{spec.id}' names unknown action kind '{spec.action.kind}'; "
                f"loaded kinds: {', '.join(action_kinds)}"
            )
    taken = set(existing)
    renamed: dict[str, str] = {}
    for spec in specs:
        if spec.id in renamed:
            raise SpawnError(f"{source}: task id '{spec.id}' appears twice")
        renamed[spec.id] = _unique_id(spec.id, taken)
        taken.add(renamed[spec.id])
    new_specs = []
    for spec in specs:
        deps = [renamed.get(dep, dep) for dep in spec.depends_on]
        unknown = [dep for dep in deps if dep not in existing and dep not in renamed.values()]
        if unknown:
            raise SpawnError(f"{source}: task '{spec.id}' depends on unknown task '{unknown[0]}'")
        new_specs.append(spec.model_copy(update={"id": renamed[spec.id], "depends_on": deps}))
    try:
        topological_order(new_specs)
    except PlanError as error:
        raise SpawnError(f"{source}: {error.message}") from None
    return [
        TaskRecord(run_id, spec.id, TaskState.PENDING.value, spec, priority=spec.priority)
        for spec in new_specs
    ]
