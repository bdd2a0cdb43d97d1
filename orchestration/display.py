"""Shows a run's progress: a live rich bar on a terminal, plain timestamped lines otherwise."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestration.models import BreakpointRecord, TaskRecord

STATE_STYLES = {
    "pending": "dim",
    "ready": "cyan",
    "running": "blue",
    "blocked": "bold yellow",
    "retrying": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "red",
}
QUIET_STATES = frozenset({"pending", "ready"})  # too many to print one line each on big runs
DETAIL_CHARS = 160  # a progress line's reason is cut to this many characters, at a word


def clip_words(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a space, with an ellipsis to say so."""
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip(" ,;:") + " …"


class RunDisplay:
    """An Observer for the loop. Use as a context manager around `run_until_stopped`."""

    def __init__(self, total: int, console: Console | None = None, *, live: bool | None = None):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.total = total
        self.finished = 0
        self.progress: Progress | None = None
        self.bar: Any = None

    def __enter__(self) -> RunDisplay:
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.bar = self.progress.add_task("tasks", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _line(self, text: str, style: str = "") -> None:
        if self.live:
            self.console.print(text, style=style, highlight=False, markup=False)
        else:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"{stamp} {text}", file=sys.stderr, flush=True)

    def task_started(self, task: TaskRecord) -> None:
        if self.progress is not None:
            self.progress.update(self.bar, description=f"running {task.task_id}")
        self._line(f"▶ {task.task_id}: attempt {task.attempts}", "blue")

    def task_changed(self, task: TaskRecord, state: str, detail: str) -> None:
        if state in QUIET_STATES or state == "running":
            return
        if state in ("completed", "failed", "cancelled"):
            self.finished += 1
            if self.progress is not None:
                self.progress.update(self.bar, completed=self.finished)
        detail = clip_words(detail.splitlines()[0], DETAIL_CHARS) if detail else ""
        self._line(f"  {task.task_id} → {state} {detail}", STATE_STYLES.get(state, ""))

    def breakpoint_raised(self, breakpoint: BreakpointRecord) -> None:
        self._line(
            f"⏸ breakpoint {breakpoint.id} on {breakpoint.task_id} [{breakpoint.rule}]: "
            f"{breakpoint.message}",
            "bold yellow",
        )

    def message(self, text: str) -> None:
        self._line(text, "yellow")


def task_table(tasks: list[TaskRecord], title: str = "", spending: Any = None) -> Table:
    """The tasks of a run; with `spending` (orchestration.spending), what each one spent."""
    from orchestration.spending import spent_cells

    table = Table(title=title or None)
    columns = ["task", "state", "attempts", "priority", "depends on"]
    if spending is not None:
        columns[3:3] = ["cost", "tokens", "time"]
    for column in columns:
        numeric = column in ("attempts", "cost", "tokens", "time", "priority")
        table.add_column(column, justify="right" if numeric else "left")
    for task in tasks:
        state = task.state + (
            f" ({task.outcome})" if task.outcome and task.outcome != "succeeded" else ""
        )
        row = [
            task.task_id,
            f"[{STATE_STYLES.get(task.state, '')}]{state}[/]",
            str(task.attempts),
            str(task.priority),
            ", ".join(task.depends_on),
        ]
        spent = spending.tasks.get(task.task_id) if spending is not None else None
        if spent is not None:
            cost, tokens, _attempts, seconds = spent_cells(spent)
            row[3:3] = [cost, tokens, seconds]
        table.add_row(*row)
    return table
