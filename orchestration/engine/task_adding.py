"""Adding tasks to a run, even while an engine works on it: `orch task add`, the API, events."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import EventRecord, TaskRecord, TaskSpec
from orchestration.engine.spawning import SpawnError, parse_specs, prepare_tasks
from orchestration.store import Batch, Store


def add_tasks(
    store: Store,
    run_id: str,
    items: Iterable[Any],
    *,
    source: str,
    where: str | None = None,
    action_kinds: Collection[str] | None,
    now: datetime | None = None,
) -> list[TaskRecord]:
    """Validate `items` like plan tasks and store them as pending tasks of the run.

    A running engine picks them up by itself (it looks for tasks it does not know at each
    tick); a stopped run runs them when resumed. A task whose id is taken gets a suffix; an
    invalid task, an unknown dependency or a cycle refuses them all (nothing is stored).
    `source` is stored with the event; `where` names the input in errors (default: source).
    """
    store.get_run(run_id)  # an unknown run: NotFoundError
    try:
        specs = parse_specs(items, where or source)
    except SpawnError as error:
        raise OrchestrationError(error.message) from None
    return store_tasks(store, run_id, specs, source=source, action_kinds=action_kinds, now=now)


def store_tasks(
    store: Store,
    run_id: str,
    specs: Sequence[TaskSpec],
    *,
    source: str,
    action_kinds: Collection[str] | None,
    now: datetime | None = None,
    event_data: Mapping[str, Any] | None = None,
) -> list[TaskRecord]:
    """Store checked task specs as pending tasks of the run, with one `tasks_added` event
    (its data: the source, the task ids and `event_data`) in the same commit."""
    now = now or datetime.now(UTC)
    existing = {t.task_id: t for t in store.tasks(run_id)}
    try:
        records = prepare_tasks(specs, existing, run_id, source, action_kinds)
    except SpawnError as error:
        raise OrchestrationError(error.message) from None
    for record in records:
        record.updated_at = now
    data = {"source": source, "tasks": [r.task_id for r in records], **(event_data or {})}
    store.commit(
        run_id,
        Batch(new_tasks=records, events=[EventRecord(run_id, "tasks_added", None, data, now)]),
    )
    return records
