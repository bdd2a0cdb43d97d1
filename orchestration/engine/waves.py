"""Waves: a plan's topological levels, a wave's figures, its gate, and the planned assignment.

Wave 1 holds the tasks without dependencies; wave k+1 the tasks whose last dependency is in
wave k (graphlib releases them together). With `waves: {gate: EXPR}` in a plan, no task of wave
k+1 starts until every task of wave k is final and EXPR, evaluated over the wave's figures
(GATE_NAMES), is true; otherwise a `wave_gate` breakpoint asks a human.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestration.engine.fleet_health import AttemptFigure, jain_index, p95
from orchestration.rules.expressions import Expression, compile_expression

# The names a wave gate reads (docs/agents.md, "Waves").
GATE_NAMES = frozenset(
    {
        "wave",
        "tasks",
        "succeeded",
        "failed",
        "cancelled",
        "skipped",
        "success_rate",
        "attempts",
        "mean_duration_seconds",
        "p95_duration_seconds",
        "cost",
        "health_score",
    }
)


def plan_waves(tasks: Iterable[Any]) -> list[list[str]]:
    """Task ids by wave, in plan order inside a wave (dependencies outside the set ignored)."""
    nodes = list(tasks)
    ids = {t.id for t in nodes}
    order = {t.id: i for i, t in enumerate(nodes)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for t in nodes:
        sorter.add(t.id, *(d for d in t.depends_on if d in ids))
    sorter.prepare()
    waves = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=order.__getitem__)
        waves.append(ready)
        sorter.done(*ready)
    return waves


def wave_index(waves: Sequence[Sequence[str]]) -> dict[str, int]:
    """Task id -> its wave number (1-based)."""
    return {task: k for k, wave in enumerate(waves, start=1) for task in wave}


def compile_gate(source: str, *, file: str | None = None) -> Expression:
    return compile_expression(source, file=file, rule="waves.gate", names=GATE_NAMES)


def gate_problem(data: Mapping[str, Any]) -> str | None:
    """Why a plan's `waves.gate` does not compile (None: fine or absent)."""
    from orchestration.core.errors import RuleError

    waves = data.get("waves")
    gate = waves.get("gate") if isinstance(waves, dict) else None
    if not isinstance(gate, str):
        return None
    try:
        compile_gate(gate)
    except RuleError as error:
        return (
            f"invalid wave gate {gate!r}: {error.message}; names: {', '.join(sorted(GATE_NAMES))}"
        )
    return None


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """How a task of the wave ended: its state and outcome."""

    task_id: str
    state: str
    outcome: str | None


def wave_figures(
    number: int, ends: Sequence[TaskEnd], attempts: Sequence[AttemptFigure], health_score: float
) -> dict[str, Any]:
    """The gate's context for one wave: its tasks' ends and its attempts' figures."""
    succeeded = sum(1 for e in ends if e.state == "completed" and e.outcome != "skipped")
    durations = [a.duration_seconds for a in attempts]
    return {
        "wave": number,
        "tasks": len(ends),
        "succeeded": succeeded,
        "failed": sum(1 for e in ends if e.state == "failed"),
        "cancelled": sum(1 for e in ends if e.state == "cancelled"),
        "skipped": sum(1 for e in ends if e.outcome == "skipped"),
        "success_rate": round(succeeded / len(ends), 6) if ends else 1.0,
        "attempts": len(attempts),
        "mean_duration_seconds": round(sum(durations) / len(durations), 6) if durations else 0.0,
        "p95_duration_seconds": round(p95(durations) or 0.0, 6),
        "cost": round(sum(a.cost for a in attempts), 6),
        "health_score": health_score,
    }


@dataclass(frozen=True, slots=True)
class PlannedWaves:
    waves: list[list[str]]
    assignment: dict[str, str | None]  # task id -> agent (None: not an agent task)
    loads: dict[str, float]  # agent -> expected seconds of work / its max concurrent
    load_balance: float  # Jain's index of the loads, times 100


def planned_waves(plan: Any) -> PlannedWaves:
    """The waves and, wave by wave, which agent the plan's strategy would give each task.

    Each wave is assigned as if it started at once with no history: the strategy sees the
    running counts grow as it assigns, and a full agent frees up after the wave.
    """
    from orchestration.core.agent_specs import assignable, task_kind
    from orchestration.engine.assignment import AgentState, Snapshot, TaskAsk, choose

    spec = plan.spec
    waves = plan_waves(spec.tasks)
    by_id = {t.id: t for t in spec.tasks}
    agents = {a.name: a for a in spec.agents}
    seconds = dict.fromkeys(agents, 0.0)
    assignment: dict[str, str | None] = {}
    turn = 0
    for wave in waves:
        running = dict.fromkeys(agents, 0)
        for task_id in wave:
            task = by_id[task_id]
            if not agents or not assignable(task.action):
                assignment[task_id] = None
                continue
            states = tuple(
                AgentState(
                    a.name,
                    frozenset(a.capabilities),
                    a.cost_per_unit,
                    a.max_concurrent,
                    running[a.name] % a.max_concurrent,
                    a.expected_seconds,
                )
                for a in agents.values()
            )
            ask = TaskAsk(
                task_id, task.priority, task_kind(task.tags, "agent"), frozenset(task.requires)
            )
            choice = choose(ask, Snapshot(states, spec.assignment.strategy, turn=turn))
            turn += 1
            assignment[task_id] = choice.agent
            if choice.agent is not None:
                running[choice.agent] += 1
                seconds[choice.agent] += agents[choice.agent].expected_seconds
    loads = {n: round(seconds[n] / agents[n].max_concurrent, 6) for n in agents}
    return PlannedWaves(waves, assignment, loads, round(100 * jain_index(list(loads.values())), 2))


__all__ = [
    "GATE_NAMES",
    "PlannedWaves",
    "TaskEnd",
    "compile_gate",
    "gate_problem",
    "plan_waves",
    "planned_waves",
    "wave_figures",
    "wave_index",
]
