"""`orch report`: a run's figures, and with --trends how they moved across the runs of its plan."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestration.cli.common import DbOption, JsonOption, console, open_store, print_json
from orchestration.core.durations import format_duration
from orchestration.core.errors import OrchestrationError

if TYPE_CHECKING:
    from orchestration.resilience.spending import RunSpending
    from orchestration.views.trends import Change, PlanTrends, RunFigures

logger = logging.getLogger(__name__)

VERDICT_STYLES = {"better": "green", "worse": "red", "same": "dim"}
# The table's columns: (header, metric or None, how a value is shown).
COLUMNS: tuple[tuple[str, str | None, Callable[["RunFigures"], str]], ...] = (
    ("run", None, lambda r: r.run_id),
    ("started", None, lambda r: f"{r.started_at.astimezone():%Y-%m-%d %H:%M}"),
    ("state", None, lambda r: r.state),
    ("tasks", None, lambda r: str(r.tasks)),
    ("done", None, lambda r: str(r.completed)),
    ("failed", "failed", lambda r: str(r.failed)),
    ("quality", "mean_quality", lambda r: _number(r.mean_quality)),
    ("gate pass", "gate_pass_rate", lambda r: _percent(r.gate_pass_rate)),
    ("attempts/task", "attempts_per_task", lambda r: _number(r.attempts_per_task)),
    ("breakpoints", "breakpoints", lambda r: str(r.breakpoints)),
    ("time to resolve", "mean_seconds_to_resolution", lambda r: _seconds(r)),
)
LABELS = {metric: header for header, metric, _ in COLUMNS if metric}

RunArgument = Annotated[
    str | None,
    typer.Argument(help="The run (default: the newest run, of --plan when given)."),
]
TrendsOption = Annotated[
    bool,
    typer.Option(
        "--trends",
        help="Every run of the plan, oldest first, with arrows for how each figure moved.",
    ),
]
PlanOption = Annotated[
    str | None, typer.Option("--plan", help="The plan's name (default: the run's plan).")
]
LastOption = Annotated[
    int | None, typer.Option("--last", min=1, help="With --trends: only the newest N runs.")
]


def report(
    run_id: RunArgument = None,
    trends: TrendsOption = False,
    interventions: Annotated[
        bool,
        typer.Option("--interventions", help="The run's human interventions: who did what, why."),
    ] = False,
    plan: PlanOption = None,
    last: LastOption = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="agent: sum cost, tokens, attempts and attempt time per agent (the action's "
            "preset `agent:`, else the program its command runs, else the kind of action).",
        ),
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Figures of a run: tasks done and failed, mean quality score, gate pass rate, attempts per
    task, breakpoints and the mean time a human took to resolve one.

    With --trends, the same figures for every run of the plan, oldest first, with an arrow for
    each change since the run before (green better, red worse) and the change from the first run
    to the last. The run's spending (cost, tokens, attempts, wall time) is shown against its
    budget; --by agent sums it per agent. `--json` prints one object: {"run": {...},
    "spent": {...}, "agents": {...} (with --by agent), ...} or, with --trends,
    {"trends": {"plan", "runs": [...], "overall": {...}}}.
    """
    if interventions:
        from orchestration.cli import resilience as cli_resilience

        if run_id is None:
            raise OrchestrationError("--interventions needs a RUN")
        cli_resilience.report(run_id, interventions=True, db=db, json_output=json_output)
        return
    if by not in (None, "agent"):
        raise OrchestrationError(f"--by {by!r}: expected --by agent")
    from orchestration.resilience.spending import budget_text, spending_of
    from orchestration.views.trends import latest_run_of, plan_trends, run_figures

    sections: dict[str, Any] = {}
    printers: list[Callable[[], None]] = []
    store = open_store(db)
    try:
        run = store.get_run(run_id) if run_id else latest_run_of(store, plan)
        if trends:
            found = plan_trends(store, plan or run.plan_name, last)
            sections["trends"] = found.as_dict()
            printers.append(lambda: _print_trends(found))
        else:
            figures = run_figures(store, run)
            spending = spending_of(store, run.id, datetime.now(UTC))
            sections["run"] = figures.as_dict()
            sections["spent"] = spending.as_dict()
            sections.update(_resilience_sections(store, run.id))
            printers.append(lambda: _print_run(figures))
            printers.append(
                lambda: console.print(budget_text(spending), markup=False, highlight=False)
            )
            if by == "agent":
                sections["agents"] = {n: a.as_dict() for n, a in spending.agents.items()}
                printers.append(lambda: console.print(_agents_table(spending)))
            printers.append(lambda: _print_resilience(sections))
    finally:
        store.close()
    if json_output:
        print_json(sections)
        return
    for show in printers:
        show()


def _resilience_sections(store: Any, run_id: str) -> dict[str, Any]:
    """Tasks by state, the human interventions and the dead letters of a run."""
    from orchestration.resilience.interventions import human_pause
    from orchestration.shapes.records import as_json, intervention_out

    counts: dict[str, int] = {}
    for task in store.tasks(run_id):
        counts[task.state] = counts.get(task.state, 0) + 1
    pause = human_pause(store, run_id)
    return {
        "counts": counts,
        "paused_by": (
            {"actor": pause.actor, "reason": pause.note, "at": pause.at.isoformat()}
            if pause
            else None
        ),
        "interventions": [as_json(intervention_out(i)) for i in store.interventions(run_id)],
        "dead_letters": len(store.dead_letters(run_id)),
    }


def _print_resilience(sections: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(sections["counts"].items()))
    console.print(f"tasks by state: {counts}", highlight=False)
    if sections["paused_by"]:
        paused = sections["paused_by"]
        console.print(f"paused by {paused['actor']}: {paused['reason']}", highlight=False)
    console.print(
        f"interventions: {len(sections['interventions'])} (orch report RUN --interventions); "
        f"dead letters: {sections['dead_letters']} (orch dlq list --run RUN)",
        highlight=False,
    )


def _print_run(run: "RunFigures") -> None:
    table = Table(title=f"run {escape(run.run_id)} of plan '{escape(run.plan)}'", show_header=False)
    table.add_column("figure")
    table.add_column("value")
    table.add_row("state", run.state)
    table.add_row("started", f"{run.started_at.astimezone():%Y-%m-%d %H:%M:%S}")
    table.add_row("duration", format_duration(run.duration_seconds))
    table.add_row("tasks", f"{run.tasks} ({run.completed} completed, {run.failed} failed)")
    table.add_row("attempts", f"{run.attempts} ({_number(run.attempts_per_task)} per task)")
    table.add_row("mean quality", _number(run.mean_quality))
    table.add_row("gate pass rate", _percent(run.gate_pass_rate))
    table.add_row("breakpoints", f"{run.breakpoints} paused, {run.auto_breakpoints} automatic")
    table.add_row("mean time to resolve", _seconds(run))
    console.print(table)


def _agents_table(spending: "RunSpending") -> Table:
    from orchestration.resilience.spending import spent_cells

    table = Table(title="spent per agent")
    for column in ("agent", "cost", "tokens", "attempts", "attempt time"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for name, spent in spending.agents.items():
        table.add_row(escape(name), *spent_cells(spent))
    return table


def _print_trends(trends: "PlanTrends") -> None:
    table = Table(title=f"plan '{escape(trends.plan)}': {len(trends.runs)} runs, oldest first")
    for header, _, _ in COLUMNS:
        table.add_column(header)
    for run, changes in zip(trends.runs, trends.changes, strict=True):
        table.add_row(*(_cell(show(run), changes.get(m) if m else None) for _, m, show in COLUMNS))
    console.print(table)
    if len(trends.runs) < 2:
        console.print("one run so far: nothing to compare yet", highlight=False)
        return
    moved = [c for c in trends.overall.values() if c.direction is not None]
    summary = ", ".join(
        f"{LABELS[c.metric]} {c.arrow} {c.verdict}"
        if c.verdict != "same"
        else f"{LABELS[c.metric]} {c.arrow}"
        for c in moved
    )
    console.print(f"first run to last: {summary or 'nothing to compare'}", highlight=False)


def _cell(text: str, change: "Change | None") -> str:
    text = escape(text)
    if change is None or change.direction is None:
        return text
    style = VERDICT_STYLES.get(change.verdict or "", "")
    return f"{text} [{style}]{change.arrow}[/]" if style else f"{text} {change.arrow}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _seconds(run: "RunFigures") -> str:
    seconds = run.mean_seconds_to_resolution
    return "-" if seconds is None else format_duration(seconds)


def register(app: typer.Typer) -> None:
    """Add `report` to the `orch` application."""
    app.command("report")(report)
