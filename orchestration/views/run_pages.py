"""A run read one page at a time: its summary, a page of its tasks, its newest moves.

`orch status`, `GET /runs/{id}`, `GET /runs/{id}/tasks` and the run page read a run through
these, so a 100,000-task run costs one page of rows per request, never a read of every task.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import RunRecord, TaskRecord
from orchestration.resilience.spending import RunSpending, page_spending_of
from orchestration.shapes import records as shapes

if TYPE_CHECKING:
    from orchestration.store import Store

DEFAULT_PAGE_SIZE = 100  # tasks per page unless asked otherwise
MAX_PAGE_SIZE = 1_000  # a page stays cheap to read and to show
RECENT_MOVES = 10  # state changes a summary shows as recent activity


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a run's tasks, with what each spent and where the page sits."""

    tasks: list[TaskRecord]
    spending: RunSpending
    page: shapes.PageOut


def check_page(page: int, page_size: int) -> None:
    """Refuse a page number or size out of range, naming the option and what is expected."""
    if page < 1:
        raise OrchestrationError(f"--page must be 1 or more, got {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise OrchestrationError(f"--page-size must be from 1 to {MAX_PAGE_SIZE}, got {page_size}")


def task_page(
    store: Store,
    run: RunRecord,
    now: datetime,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    state: str | None = None,
) -> TaskPage:
    """Page `page` (from 1) of the run's tasks in the order they were added (only `state`'s)."""
    check_page(page, page_size)
    total = store.task_count(run.id, state)
    tasks = store.tasks_page(run.id, (page - 1) * page_size, page_size, state)
    pages = max(1, -(-total // page_size))
    shape = shapes.PageOut(page=page, page_size=page_size, total=total, pages=pages, state=state)
    return TaskPage(tasks, page_spending_of(store, run, tasks, now), shape)


def run_detail_page(
    store: Store,
    run: RunRecord,
    now: datetime,
    db_hint: str = "",
    *,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    state: str | None = None,
) -> shapes.RunDetailOut:
    """A run's summary (counts by state, open breakpoints, recent moves, spending) and one page
    of its tasks: `orch status RUN --json` and `GET /runs/{id}`."""
    found = task_page(store, run, now, page, page_size, state)
    return detail_of(store, run, now, db_hint, found)


def detail_of(
    store: Store, run: RunRecord, now: datetime, db_hint: str, found: TaskPage
) -> shapes.RunDetailOut:
    """The shape of a run's summary with the page `found` of its tasks."""
    from orchestration.views.run_views import run_summary

    counts = store.task_state_counts(run.id).get(run.id, {})
    summary = run_summary(store, run, now, db_hint, counts=counts, spending=found.spending)
    return shapes.RunDetailOut(
        run=summary,
        tasks=[shapes.task_out(t, found.spending) for t in found.tasks],
        page=found.page,
        recent=[shapes.transition_out(m) for m in store.recent_transitions(run.id, RECENT_MOVES)],
        breakpoints=[shapes.breakpoint_out(bp) for bp in store.breakpoints(run.id, state="open")],
    )


def tasks_listing(
    store: Store,
    run: RunRecord,
    now: datetime,
    *,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    state: str | None = None,
) -> shapes.TasksOut:
    """One page of a run's tasks, each with what it spent (`GET /runs/{id}/tasks`)."""
    found = task_page(store, run, now, page, page_size, state)
    tasks = [shapes.task_out(t, found.spending) for t in found.tasks]
    return shapes.TasksOut(tasks=tasks, page=found.page)
