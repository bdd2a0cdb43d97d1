"""`orch status RUN` on a terminal: the run's summary, and a page of its tasks when asked.

The figures come from `run_pages.RunDetail`, the records `--json` builds its shape from, so the
table and the JSON cannot disagree; printing them builds no pydantic shape.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from orchestration.cli.task_table import STATE_STYLES, task_table
from orchestration.resilience.spending import budget_text
from orchestration.views.run_pages import DEFAULT_PAGE_SIZE, RunDetail

STATE_ORDER = ("running", "ready", "pending", "retrying", "blocked", "completed", "failed")


def counts_line(counts: dict[str, int]) -> str:
    """`12 tasks: 3 running, 9 completed`, the usual states first, the rest by name."""
    order = [s for s in STATE_ORDER if s in counts] + sorted(set(counts) - set(STATE_ORDER))
    parts = [f"[{STATE_STYLES.get(s, '')}]{counts[s]} {s}[/]" for s in order]
    return f"{sum(counts.values())} tasks: " + (", ".join(parts) if parts else "none")


def print_summary(console: Console, detail: RunDetail) -> None:
    """Counts by state, spending against the budget, open breakpoints, recent moves."""
    run = detail.run
    console.print(f"[bold]run {escape(run.id)}[/] ({detail.state}) {escape(run.plan_name)}")
    console.print(counts_line(detail.counts))
    console.print(budget_text(detail.found.spending), markup=False, highlight=False)
    if detail.breakpoints:
        console.print(f"open breakpoints: {len(detail.breakpoints)}")
        for bp in detail.breakpoints:
            line = f"  {bp.id} {bp.task_id} {bp.rule} ({bp.severity}): {bp.message}"
            console.print(line, markup=False, highlight=False)
    if detail.recent:
        console.print("recent activity:")
        for move in detail.recent:
            reason = f" ({move.reason})" if move.reason else ""
            when = move.at.strftime("%H:%M:%S")
            line = f"  {when} {move.task_id}: {move.source} → {move.dest}{reason}"
            console.print(line, markup=False, highlight=False)


def print_task_page(console: Console, detail: RunDetail) -> None:
    """The page's task table, and which page it is with the command for the next one."""
    found = detail.found
    page = found.page
    title = f"tasks of run {escape(detail.run.id)}"
    if page.pages > 1:
        title += f", page {page.page} of {page.pages}"
    console.print(task_table(found.tasks, title=title, spending=found.spending))
    if page.page < page.pages:
        more = f"orch status {detail.run.id} --tasks --page {page.page + 1}"
        if page.page_size != DEFAULT_PAGE_SIZE:
            more += f" --page-size {page.page_size}"
        if page.state:
            more += f" --state {page.state}"
        console.print(f"next page: {more}", markup=False, highlight=False)
