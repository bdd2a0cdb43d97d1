"""Feedback and health: per-agent and per-run figures and the 0-100 health score, from events.

Each finished attempt is one `AttemptFigure`, built from the run's `step` events (outcome,
duration, cost) and `agent_assigned` events (agent, predicted success, wait for a free agent).

Health = 100 * weighted mean of four parts, each from 0 to 1 (weights from the plan's
`health.weights`, default success 0.4, availability 0.2, prediction 0.2, load balance 0.2):
- success: attempts that passed their gate / finished attempts (1 with none);
- availability: assignments made without waiting for a free agent / assignments (1 with none);
- prediction: 1 - Brier score, the mean of (predicted - outcome)^2 over assigned attempts;
- load balance: Jain's index of the attempts per declared agent, (sum x)^2 / (n * sum x^2)
  (1: even; 1/n: one agent did everything; 1 with fewer than two agents or no attempt).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ASSIGNED = "agent_assigned"
ANOMALY = "anomaly_detected"
STEP = "step"


@dataclass(frozen=True, slots=True)
class AttemptFigure:
    task_id: str
    attempt: int
    succeeded: bool
    duration_seconds: float
    cost: float
    kind: str = ""
    agent: str | None = None
    predicted: float | None = None


@dataclass(frozen=True, slots=True)
class AgentFigures:
    agent: str
    attempts: int
    succeeded: int
    success_rate: float | None
    mean_predicted: float | None
    calibration_error: float | None  # |mean predicted - success rate|
    mean_duration_seconds: float | None
    p95_duration_seconds: float | None
    cost: float


@dataclass(frozen=True, slots=True)
class Health:
    score: float  # 0..100
    parts: dict[str, float]  # each 0..1
    weights: dict[str, float]


@dataclass(frozen=True, slots=True)
class Assignment:
    """One recorded choice of agent (from an `agent_assigned` event)."""

    task_id: str
    attempt: int
    agent: str
    strategy: str
    reason: str
    predicted: float | None
    waited_seconds: float
    scores: dict[str, float] = field(default_factory=dict)
    kind: str = ""


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile, nearest rank: the value at rank ceil(0.95 * n) of the sorted list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-95 * len(ordered) // 100)  # ceil without floats
    return ordered[max(rank, 1) - 1]


def attempt_cost(result: Mapping[str, Any], duration: float, cost_per_unit: float) -> float:
    """The cost the turn reported, else the agent's cost per unit (a minute) times its minutes."""
    cost = result.get("cost") if isinstance(result, Mapping) else None
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return float(cost)
    return cost_per_unit * duration / 60.0


def assignments_from(events: Iterable[Any]) -> list[Assignment]:
    found = []
    for e in events:
        if e.kind != ASSIGNED or e.task_id is None:
            continue
        d = e.data
        found.append(
            Assignment(
                e.task_id,
                int(d.get("attempt", 0)),
                str(d.get("agent")),
                str(d.get("strategy", "")),
                str(d.get("reason", "")),
                d.get("predicted"),
                float(d.get("waited_seconds", 0.0)),
                dict(d.get("scores") or {}),
                str(d.get("kind", "")),
            )
        )
    return found


def attempt_figures(events: Iterable[Any], costs: Mapping[str, float]) -> list[AttemptFigure]:
    """Every finished attempt of a run, from its `step` and `agent_assigned` events.

    `costs`: each agent's cost per unit, for turns that report no cost of their own.
    """
    events = list(events)
    chosen = {(a.task_id, a.attempt): a for a in assignments_from(events)}
    figures = []
    for e in events:
        if e.kind != STEP or e.task_id is None:
            continue
        d = e.data
        result = d.get("result") if isinstance(d.get("result"), Mapping) else {}
        if result.get("dry_run") is True:
            continue
        attempt = int(d.get("attempt", 0))
        a = chosen.get((e.task_id, attempt))
        duration = float(d.get("duration_seconds") or 0.0)
        agent = a.agent if a else None
        figures.append(
            AttemptFigure(
                e.task_id,
                attempt,
                bool(d.get("gate_passed")),
                duration,
                attempt_cost(result, duration, costs.get(agent or "", 0.0)),
                a.kind if a else _kind_of(d.get("tags")),
                agent,
                a.predicted if a else None,
            )
        )
    return figures


def agent_figures(name: str, attempts: Sequence[AttemptFigure]) -> AgentFigures:
    mine = [a for a in attempts if a.agent == name]
    done = len(mine)
    ok = sum(a.succeeded for a in mine)
    rate = ok / done if done else None
    predicted = [a.predicted for a in mine if a.predicted is not None]
    mean_predicted = statistics.fmean(predicted) if predicted else None
    durations = [a.duration_seconds for a in mine]
    return AgentFigures(
        name,
        done,
        ok,
        _round(rate),
        _round(mean_predicted),
        _round(abs(mean_predicted - rate))
        if rate is not None and mean_predicted is not None
        else None,
        _round(statistics.fmean(durations)) if durations else None,
        _round(p95(durations)),
        round(sum(a.cost for a in mine), 6),
    )


def jain_index(loads: Sequence[float]) -> float:
    """Jain's fairness index of the loads: 1 when even, 1/n when one carries everything."""
    total = sum(loads)
    squares = sum(x * x for x in loads)
    if len(loads) < 2 or squares == 0:
        return 1.0
    return total * total / (len(loads) * squares)


def health(
    attempts: Sequence[AttemptFigure],
    assignments: Sequence[Assignment],
    agents: Sequence[str],
    weights: Mapping[str, float],
) -> Health:
    """The health score and its parts (module docstring) over these attempts."""
    success = sum(a.succeeded for a in attempts) / len(attempts) if attempts else 1.0
    waited = sum(1 for a in assignments if a.waited_seconds > 0)
    availability = 1.0 - waited / len(assignments) if assignments else 1.0
    scored = [a for a in attempts if a.predicted is not None]
    brier = (
        statistics.fmean((float(a.predicted or 0) - a.succeeded) ** 2 for a in scored)
        if scored
        else 0.0
    )
    loads = [sum(1 for a in attempts if a.agent == name) for name in agents]
    parts = {
        "success": round(success, 6),
        "availability": round(availability, 6),
        "prediction": round(1.0 - brier, 6),
        "load_balance": round(jain_index(loads), 6),
    }
    total = sum(weights.values())
    score = 100.0 * sum(parts[k] * weights[k] for k in parts) / total if total else 0.0
    return Health(round(score, 2), parts, dict(weights))


def _kind_of(tags: Any) -> str:
    if isinstance(tags, list | tuple) and tags:
        return "+".join(sorted({str(t) for t in tags}))
    return "task"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


__all__ = [
    "ANOMALY",
    "ASSIGNED",
    "AgentFigures",
    "Assignment",
    "AttemptFigure",
    "Health",
    "agent_figures",
    "assignments_from",
    "attempt_cost",
    "attempt_figures",
    "health",
    "jain_index",
    "p95",
]


def shown_health(store: Any, run_id: str) -> Any:
    """The run page's health: for a run whose plan declares agents, waves or health settings;
    None for the others (their page stays one indexed read, even at 100,000 tasks)."""
    spec = (store.get_run(run_id).plan_json or {}).get("spec", {})
    if not (spec.get("agents") or spec.get("waves") or spec.get("health")):
        return None
    return run_health(store, run_id)


def run_health(store: Any, run_id: str) -> Any:
    """`orch health RUN` and the dashboard: the run's figures, score, waves and anomalies."""
    from orchestration.core.agent_specs import HealthSettings
    from orchestration.engine.waves import plan_waves
    from orchestration.shapes.fleet import (
        AgentOut,
        AnomalyOut,
        HealthOut,
        HealthPartsOut,
        WaveHealthOut,
    )

    run = store.get_run(run_id)
    spec = (run.plan_json or {}).get("spec", {})
    agents = [a["name"] for a in spec.get("agents", [])]
    costs = {a["name"]: float(a.get("cost_per_unit", 0.0)) for a in spec.get("agents", [])}
    weights = HealthSettings.model_validate(spec.get("health", {})).weights.model_dump()
    events = store.events(run_id, kinds=[ASSIGNED, STEP, ANOMALY])
    attempts = attempt_figures(events, costs)
    assignments = assignments_from(events)
    whole = health(attempts, assignments, agents, weights)
    named = agent_figures("run", [dataclasses.replace(a, agent="run") for a in attempts])
    waves = []
    for number, wave in enumerate(plan_waves(t.spec for t in store.tasks(run_id)), start=1):
        ids = set(wave)
        part = health(
            [a for a in attempts if a.task_id in ids],
            [a for a in assignments if a.task_id in ids],
            agents,
            weights,
        )
        parts = HealthPartsOut(**part.parts)
        waves.append(WaveHealthOut(wave=number, tasks=wave, score=part.score, parts=parts))
    return HealthOut(
        run=run_id,
        score=whole.score,
        parts=HealthPartsOut(**whole.parts),
        weights=whole.weights,
        attempts=len(attempts),
        success_rate=named.success_rate,
        calibration_error=named.calibration_error,
        mean_duration_seconds=named.mean_duration_seconds,
        p95_duration_seconds=named.p95_duration_seconds,
        cost=named.cost,
        agents=[AgentOut(**dataclasses.asdict(agent_figures(name, attempts))) for name in agents],
        waves=waves,
        anomalies=[
            AnomalyOut(
                kind=str(e.data.get("kind")),
                subject=str(e.data.get("subject")),
                message=str(e.data.get("message")),
                task=e.task_id,
                at=e.at.isoformat(),
                figures=dict(e.data.get("figures") or {}),
            )
            for e in events
            if e.kind == ANOMALY
        ],
    )


def task_assignments(store: Any, run_id: str, task_id: str) -> list[Any]:
    """Each attempt's agent and why (`orch explain`: why this agent)."""
    from orchestration.shapes.fleet import AssignmentOut

    return [
        AssignmentOut(
            task=a.task_id,
            attempt=a.attempt,
            agent=a.agent,
            strategy=a.strategy,
            reason=a.reason,
            predicted=a.predicted,
            waited_seconds=a.waited_seconds,
            scores=a.scores,
        )
        for a in assignments_from(store.task_events(run_id, task_id, kinds=[ASSIGNED]))
    ]
