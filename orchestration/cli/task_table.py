"""A run's tasks as a rich table, and the colour of each state: light to import (`orch status`)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from orchestration.core.models import TaskRecord

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


def task_table(tasks: list[TaskRecord], title: str = "", spending: Any = None) -> Table:
    """The tasks of a run; with `spending` (see spending.py), what each one spent."""
    from orchestration.resilience.spending import spent_cells

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
