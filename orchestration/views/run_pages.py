"""A run read one page at a time: its summary, a page of its tasks, its newest moves.

`orch status`, `GET /runs/{id}`, `GET /runs/{id}/tasks` and the run page read a run through
these, so a 100,000-task run costs one page of rows per request, never a read of every task.
The figures are read once into plain records (`RunDetail`); `orch status` prints them as they
are, and the JSON shapes (`run_detail_out`) are built from them, so the two cannot disagree.
The shapes are imported where they are built: the plain `orch status` builds no pydantic shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import BreakpointRecord, RunRecord, TaskRecord, TransitionRecord
from orchestration.resilience.runs import interruption, run_is_live
from orchestration.resilience.spending import RunSpending, page_spending_of

if TYPE_CHECKING:
    from orchestration.shapes import records as shapes
    from orchestration.store import Store

DEFAULT_PAGE_SIZE = 100  # tasks per page unless asked otherwise
MAX_PAGE_SIZE = 1_000  # a page stays cheap to read and to show
RECENT_MOVES = 10  # state changes a summary shows as recent activity


@dataclass(frozen=True, slots=True)
class Page:
    """Which page of a run's tasks a listing holds (the fields of `shapes.PageOut`)."""

    page: int
    page_size: int
    total: int
    pages: int
    state: str | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a run's tasks, with what each spent and where the page sits."""

    tasks: list[TaskRecord]
    spending: RunSpending
    page: Page


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run's summary and one page of its tasks, as read from the store: what `orch status`
    prints, and what `run_detail_out` turns into the JSON shape."""

    run: RunRecord
    counts: dict[str, int]  # the run's tasks by state
    live: bool  # an engine works on the run now
    interrupted: dict[str, Any] | None  # `runs.interruption`'s facts, for an interrupted run
    found: TaskPage
    recent: list[TransitionRecord]  # the newest state changes, newest first
    breakpoints: list[BreakpointRecord]  # the open ones

    @property
    def state(self) -> str:
        """The run's state as users see it: `interrupted` when its engine stopped."""
        return "interrupted" if self.interrupted is not None else self.run.state


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
    where = Page(page=page, page_size=page_size, total=total, pages=pages, state=state)
    return TaskPage(tasks, page_spending_of(store, run, tasks, now), where)


def run_detail(
    store: Store, run: RunRecord, now: datetime, db_hint: str, found: TaskPage
) -> RunDetail:
    """A run's summary (counts by state, open breakpoints, recent moves, spending) with the
    page `found` of its tasks."""
    return RunDetail(
        run=run,
        counts=dict(store.task_state_counts(run.id).get(run.id, {})),
        live=run_is_live(run, now),
        interrupted=interruption(run, now, db_hint),
        found=found,
        recent=store.recent_transitions(run.id, RECENT_MOVES),
        breakpoints=store.breakpoints(run.id, state="open"),
    )


def page_out(page: Page) -> shapes.PageOut:
    """The JSON shape of which page a listing holds."""
    from orchestration.shapes import records as shapes

    return shapes.PageOut(
        page=page.page,
        page_size=page.page_size,
        total=page.total,
        pages=page.pages,
        state=page.state,
    )


def run_detail_out(detail: RunDetail) -> shapes.RunDetailOut:
    """The JSON shape of a run's summary with its page of tasks (`--json`, `GET /runs/{id}`)."""
    from orchestration.shapes import records as shapes

    spending = detail.found.spending
    summary = shapes.run_out(
        detail.run,
        dict(detail.counts),
        live=detail.live,
        open_breakpoints=len(detail.breakpoints),
        interrupted=detail.interrupted,
        spending=spending,
    )
    return shapes.RunDetailOut(
        run=summary,
        tasks=[shapes.task_out(t, spending) for t in detail.found.tasks],
        page=page_out(detail.found.page),
        recent=[shapes.transition_out(m) for m in detail.recent],
        breakpoints=[shapes.breakpoint_out(bp) for bp in detail.breakpoints],
    )


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
    return run_detail_out(run_detail(store, run, now, db_hint, found))


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
    from orchestration.shapes import records as shapes

    found = task_page(store, run, now, page, page_size, state)
    tasks = [shapes.task_out(t, found.spending) for t in found.tasks]
    return shapes.TasksOut(tasks=tasks, page=page_out(found.page))
