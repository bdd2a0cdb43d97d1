"""`orch status RUN` on a terminal: the run's summary, and a page of its tasks when asked.

The figures come from `run_pages.run_detail_page`, the shape `--json` prints, so the table and
the JSON cannot disagree.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from orchestration.cli.display import STATE_STYLES, task_table
from orchestration.core.models import TaskRecord
from orchestration.resilience.spending import RunSpending, budget_text
from orchestration.shapes.records import RunDetailOut
from orchestration.views.run_pages import DEFAULT_PAGE_SIZE

STATE_ORDER = ("running", "ready", "pending", "retrying", "blocked", "completed", "failed")


def counts_line(counts: dict[str, int]) -> str:
    """`12 tasks: 3 running, 9 completed`, the usual states first, the rest by name."""
    order = [s for s in STATE_ORDER if s in counts] + sorted(set(counts) - set(STATE_ORDER))
    parts = [f"[{STATE_STYLES.get(s, '')}]{counts[s]} {s}[/]" for s in order]
    return f"{sum(counts.values())} tasks: " + (", ".join(parts) if parts else "none")


def print_summary(console: Console, detail: RunDetailOut, spending: RunSpending) -> None:
    """Counts by state, spending against the budget, open breakpoints, recent moves."""
    run = detail.run
    console.print(f"[bold]run {escape(run.id)}[/] ({run.state}) {escape(run.plan)}")
    console.print(counts_line(run.counts))
    console.print(budget_text(spending), markup=False, highlight=False)
    if detail.breakpoints:
        console.print(f"open breakpoints: {len(detail.breakpoints)}")
        for bp in detail.breakpoints:
            line = f"  {bp.id} {bp.task} {bp.rule} ({bp.severity}): {bp.message}"
            console.print(line, markup=False, highlight=False)
    if detail.recent:
        console.print("recent activity:")
        for move in detail.recent:
            reason = f" ({move.reason})" if move.reason else ""
            when = move.at.strftime("%H:%M:%S")
            line = f"  {when} {move.task}: {move.from_} → {move.to}{reason}"
            console.print(line, markup=False, highlight=False)


def print_task_page(
    console: Console, detail: RunDetailOut, tasks: list[TaskRecord], spending: RunSpending
) -> None:
    """The page's task table, and which page it is with the command for the next one."""
    page = detail.page
    title = f"tasks of run {escape(detail.run.id)}"
    if page is not None and page.pages > 1:
        title += f", page {page.page} of {page.pages}"
    console.print(task_table(tasks, title=title, spending=spending))
    if page is not None and page.page < page.pages:
        more = f"orch status {detail.run.id} --tasks --page {page.page + 1}"
        if page.page_size != DEFAULT_PAGE_SIZE:
            more += f" --page-size {page.page_size}"
        if page.state:
            more += f" --state {page.state}"
        console.print(f"next page: {more}", markup=False, highlight=False)
