"""What a run spent (cost, tokens, attempts, wall time) against its budget: per run, task, agent.

Computed once here from the store, for every surface that shows it (`orch status`, `orch report`,
`orch runs inspect`, the REST API and the run page), so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any

from orchestration.core.durations import format_duration
from orchestration.core.models import EventRecord, RunRecord, RunSetting, TaskRecord
from orchestration.resilience.budgets import LIMITS, budget_limit_value, reported_cost

# The figure each budget limit caps.
LIMITED_FIGURE = {
    "max_cost": "cost",
    "max_tokens": "tokens",
    "max_attempts": "attempts",
    "max_wall_seconds": "seconds",
}


@dataclass(slots=True)
class Spent:
    """Cost and tokens the actions reported, attempts started, and seconds of wall time."""

    cost: float = 0.0
    tokens: int = 0
    attempts: int = 0
    seconds: float = 0.0

    def add(self, other: Spent) -> None:
        self.cost += other.cost
        self.tokens += other.tokens
        self.attempts += other.attempts
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "cost": round(self.cost, 6),
            "tokens": self.tokens,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class RunSpending:
    """A run's spending: the run's wall time since it started, its tasks' attempt time."""

    run: Spent
    tasks: dict[str, Spent]
    agents: dict[str, Spent]
    limits: dict[str, float | None] = field(default_factory=dict)

    def budget(self) -> dict[str, Any]:
        """Each limit with what it caps, the amount used and the share of it (None: no limit)."""
        spent = self.run.as_dict()
        out: dict[str, Any] = {}
        for name in LIMITS:
            limit = self.limits.get(name)
            used = spent[LIMITED_FIGURE[name]]
            share = used / limit if limit else None
            out[name] = {"limit": limit, "used": used, "share": _round(share)}
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**self.run.as_dict(), "budget": self.budget()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def agent_of(spec: Any, default_command: Iterable[str] | None = None) -> str:
    """Whom a task's attempts count for: the action's preset `agent:` when it names one, else the
    program its command runs, else the kind of action."""
    action = spec.action
    preset = getattr(action, "agent", None)
    if isinstance(preset, str) and preset:
        return preset
    command = getattr(action, "run", None) or getattr(action, "command", None)
    if not command and action.kind == "agent":
        command = list(default_command or ())
    if command:
        first = str(command[0])
        return "python" if first == "{python}" else PurePath(first).name or first
    return str(action.kind)


def limits_of(run: RunRecord, settings: Iterable[RunSetting]) -> dict[str, float | None]:
    """The run's budget limits: its plan's, changed by `budget.<limit>` settings (latest wins)."""
    spec = run.plan_json.get("spec", {}) if isinstance(run.plan_json, Mapping) else {}
    budget = spec.get("budget") if isinstance(spec, Mapping) else None
    budget = budget if isinstance(budget, Mapping) else {}
    limits: dict[str, float | None] = {}
    for name in LIMITS:
        value = budget.get(name)
        limits[name] = float(value) if isinstance(value, int | float) else None
    for setting in settings:
        if setting.kind == "budget" and setting.name in LIMITS:
            try:
                limits[setting.name] = budget_limit_value(setting.name, setting.value)
            except ValueError:
                continue  # the engine ignores it too (and logs why)
    return limits


def compute_spending(
    run: RunRecord,
    tasks: Iterable[TaskRecord],
    steps: Iterable[EventRecord],
    settings: Iterable[RunSetting],
    now: datetime,
) -> RunSpending:
    """The figures from stored records: `steps` are the run's `step` events (other kinds are
    skipped); attempts are the tasks' attempt counters, which every started attempt raises."""
    task_list = list(tasks)
    spec = run.plan_json.get("spec", {}) if isinstance(run.plan_json, Mapping) else {}
    defaults = spec.get("defaults", {}) if isinstance(spec, Mapping) else {}
    default_command = defaults.get("agent_command") if isinstance(defaults, Mapping) else None
    by_task = {t.task_id: Spent(attempts=t.attempts) for t in task_list}
    for event in steps:
        if event.kind != "step" or event.task_id not in by_task:
            continue
        result = event.data.get("result")
        cost, tokens = reported_cost(result if isinstance(result, Mapping) else {})
        seconds = event.data.get("duration_seconds")
        spent = by_task[event.task_id]
        spent.cost += cost
        spent.tokens += tokens
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
            spent.seconds += float(seconds)
    agents: dict[str, Spent] = {}
    total = Spent()
    for task in task_list:
        spent = by_task[task.task_id]
        agents.setdefault(agent_of(task.spec, default_command), Spent()).add(spent)
        total.add(spent)
    # The run's wall time is the budget's `max_wall_seconds` figure: since it started.
    total.seconds = max(0.0, ((run.finished_at or now) - run.created_at).total_seconds())
    return RunSpending(total, by_task, dict(sorted(agents.items())), limits_of(run, settings))


def spending_of(store: Any, run_id: str, now: datetime) -> RunSpending:
    """A stored run's spending (reads the run, its tasks, `step` events and settings)."""
    run = store.get_run(run_id)
    steps = store.events(run_id, kinds=("step",))
    return compute_spending(run, store.tasks(run_id), steps, store.run_settings(run_id), now)


def money_text(value: float) -> str:
    """A cost as the actions reported it (no currency is assumed)."""
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def _figure_text(name: str, value: float) -> str:
    if name == "seconds":
        return format_duration(value)
    if name == "cost":
        return money_text(value)
    return f"{int(value):,}"


def budget_text(spending: RunSpending) -> str:
    """One line: each figure against its limit, e.g. `cost 1.25 of 20 (6%)`."""
    parts = []
    for name in ("max_cost", "max_tokens", "max_attempts", "max_wall_seconds"):
        figure = LIMITED_FIGURE[name]
        entry = spending.budget()[name]
        label = {"seconds": "wall time"}.get(figure, figure)
        text = f"{label} {_figure_text(figure, entry['used'])}"
        if entry["limit"] is not None:
            text += f" of {_figure_text(figure, entry['limit'])}"
            if entry["share"] is not None:
                text += f" ({entry['share']:.0%})"
        parts.append(text)
    return "spent: " + ", ".join(parts)


def spent_cells(spent: Spent) -> tuple[str, str, str, str]:
    """A task's or agent's figures for a table: cost, tokens, attempts, attempt time."""
    return (
        money_text(spent.cost),
        f"{spent.tokens:,}",
        str(spent.attempts),
        format_duration(spent.seconds),
    )


def page_spending_of(
    store: Any, run: RunRecord, tasks: Iterable[TaskRecord], now: datetime
) -> RunSpending:
    """A run's spending for a page of its tasks: the run's totals summed by the store
    (`Store.run_totals`, the same figures `spending_of` adds up), each page task's own from
    its `step` events; `agents` is left empty (it needs every task's spec)."""
    task_list = list(tasks)
    steps = store.step_events_of_tasks(run.id, [t.task_id for t in task_list])
    page = compute_spending(run, task_list, steps, store.run_settings(run.id), now)
    totals = store.run_totals(run.id)
    total = Spent(cost=totals.cost, tokens=totals.tokens, attempts=totals.attempts)
    total.seconds = page.run.seconds  # the run's wall time since it started
    return RunSpending(total, page.tasks, {}, page.limits)
