"""Runs, tasks and a task's priority read from a store in the shapes of `shapes.py`.

The CLI's `--json` and the API call these same functions, so both show a record the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.core.lifecycle import TaskState
from orchestration.core.models import RunRecord, TaskRecord, TransitionRecord
from orchestration.engine.scheduler import PriorityParts
from orchestration.resilience.runs import interruption, run_is_live
from orchestration.resilience.spending import RunSpending, page_spending_of
from orchestration.shapes import records as shapes

if TYPE_CHECKING:
    from orchestration.store import Store


def state_counts_of(tasks: list[TaskRecord]) -> dict[str, int]:
    """How many of the tasks are in each state."""
    return dict(Counter(task.state for task in tasks))


def run_summary(
    store: Store,
    run: RunRecord,
    now: datetime,
    db_hint: str = "",
    *,
    counts: Mapping[str, int] | None = None,
    spending: RunSpending | None = None,
    with_spending: bool = True,
) -> shapes.RunOut:
    """One run: its state (interrupted when its engine stopped), task counts, open breakpoints,
    and what it spent against its budget. `counts` and `spending` save reading them again."""
    if counts is None:
        counts = store.task_state_counts(run.id).get(run.id, {})
    if spending is None and with_spending:
        spending = page_spending_of(store, run, [], now)  # the run's totals, summed in the store
    return shapes.run_out(
        run,
        dict(counts),
        live=run_is_live(run, now),
        open_breakpoints=len(store.breakpoints(run.id, state="open")),
        interrupted=interruption(run, now, db_hint),
        spending=spending,
    )


def all_run_summaries(
    store: Store,
    now: datetime,
    db_hint: str = "",
    *,
    counts: Mapping[str, Mapping[str, int]] | None = None,
    with_spending: bool = True,
) -> list[shapes.RunOut]:
    """Every run in the store, newest first (`counts` by run saves reading each run's tasks)."""
    open_by_run = Counter(bp.run_id for bp in store.breakpoints(state="open"))
    summaries = []
    for run in store.list_runs():
        if counts is None:
            counts = store.task_state_counts()
        run_counts = dict(counts.get(run.id, {}))
        summaries.append(
            shapes.run_out(
                run,
                run_counts,
                live=run_is_live(run, now),
                open_breakpoints=open_by_run.get(run.id, 0),
                interrupted=interruption(run, now, db_hint),
                spending=page_spending_of(store, run, [], now) if with_spending else None,
            )
        )
    return summaries


def run_detail(
    store: Store, run: RunRecord, now: datetime, db_hint: str = "", **paging: Any
) -> shapes.RunDetailOut:
    """A run's summary and one page of its tasks (`orch status RUN --json`, `GET /runs/{id}`);
    `paging`: page, page_size, state (`run_pages.run_detail_page`)."""
    from orchestration.views.run_pages import run_detail_page

    return run_detail_page(store, run, now, db_hint, **paging)


def task_detail(store: Store, run_id: str, task_id: str, now: datetime) -> shapes.TaskDetailOut:
    """One task with its spec, answers, direct dependents and what its attempts spent."""
    task = store.task(run_id, task_id)
    dependents = shapes.dependents_of(task_id, store.tasks(run_id))
    spending = page_spending_of(store, store.get_run(run_id), [task], now)
    return shapes.task_detail_out(task, dependents, spending)


@dataclass(frozen=True, slots=True)
class TaskExplanation:
    """Why a task runs when it does: the shape, and the priority parts a terminal prints."""

    shape: shapes.ExplainOut
    parts: PriorityParts


def explain_task(store: Store, run_id: str, task_id: str, now: datetime) -> TaskExplanation:
    """A task's effective priority now (the scheduler's view, rebuilt from the store by
    `task_priority`) and every decision taken on it, with why."""
    run = store.get_run(run_id)
    task = store.task(run_id, task_id)
    parts = task_priority(store, run, task_id, now)
    shape = shapes.ExplainOut(
        task=task_id,
        state=task.state,
        priority=shapes.PriorityOut(
            base=parts.base,
            deadline_boost=parts.deadline,
            blocking_boost=parts.blocking,
            dependents=parts.dependents,
            retry_penalty=parts.retries,
            failed_attempts=parts.failed_attempts,
            aging=parts.aging,
            waited_seconds=parts.waited_seconds,
            effective=parts.total,
        ),
        decisions=[shapes.decision_out(d) for d in store.decisions(run_id, task_id)],
        assignments=_assignments(store, run_id, task_id),
    )
    return TaskExplanation(shape, parts)


def ready_since(history: Iterable[TransitionRecord], now: datetime) -> datetime:
    """When a task last became ready (now, if it is not waiting in the ready queue)."""
    since = now
    for move in history:
        since = move.at if move.dest == TaskState.READY else now
    return since


def task_priority(store: Store, run: RunRecord, task_id: str, now: datetime) -> PriorityParts:
    """A task's effective priority as `orch explain` and the dashboard show it: its failed
    attempts are those whose quality gate failed, its dependents each counted once."""
    # Here, not at the top: `orch status` needs neither the plan parser nor a scheduler.
    from orchestration.engine.plan import plan_from_stored
    from orchestration.engine.scheduler import TaskScheduler

    plan = plan_from_stored(run)
    scheduler = TaskScheduler(
        store.tasks(run.id), max_workers=1, pools={}, weights=plan.spec.scheduling
    )
    failed = sum(1 for q in store.quality(run.id, task_id) if not q.gate_passed)
    since = ready_since(store.transitions(run.id, task_id), now)
    scheduler.push_ready(task_id, since, failed_attempts=failed)
    parts = scheduler.priority_of(task_id, now)
    return replace(parts, dependents=scheduler.distinct_downstream(task_id))


def _assignments(store: Store, run_id: str, task_id: str) -> list[shapes.AssignmentOut]:
    # Here, not at the top: `orch status` needs no fleet figures (nor `statistics`).
    from orchestration.engine.fleet_health import task_assignments

    return task_assignments(store, run_id, task_id)
