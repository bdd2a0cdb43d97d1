"""Assignment strategies: which agent runs an attempt, as pure functions over a snapshot value.

Every strategy first keeps the agents that have every capability the task requires
(`capability_match`), then the ones with a free slot; then it ranks them:

- round_robin: declared order, starting after the agent chosen last (`turn` counts choices);
- load_balanced: fewest attempts running, then the shortest expected time, then declared order;
- priority_based: a task at or above `important_priority` gets the strongest free agent
  (highest predicted success, then highest cost, then declared order), any other task the
  cheapest free one, so strong agents stay free for important work;
- confidence_based: the highest UCB score over a Beta(1, 1) prior of this agent's successes on
  this kind of task: mean = (s + 1) / (n + 2), bonus = c * sqrt(ln(N + 1) / (n + 1)) where n is
  the agent's attempts on the kind, s its successes, N every agent's attempts on the kind and c
  the plan's `exploration`. A new agent (n = 0) gets the largest bonus, so it is tried.

`retry_on: other_agent` leaves out the agents that ran the task's earlier attempts (unless no
other capable agent exists); `same_agent` keeps only the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AgentState:
    """One agent as the strategies see it at the moment of choosing."""

    name: str
    capabilities: frozenset[str] = frozenset()
    cost_per_unit: float = 0.0
    max_concurrent: int = 1
    running: int = 0
    expected_seconds: float = 60.0
    attempts: int = 0  # its finished attempts on this kind of task
    successes: int = 0

    @property
    def free(self) -> bool:
        return self.running < self.max_concurrent

    @property
    def predicted(self) -> float:
        """The Beta(1, 1) posterior mean of its success on this kind of task."""
        return (self.successes + 1) / (self.attempts + 2)


@dataclass(frozen=True, slots=True)
class TaskAsk:
    task_id: str
    priority: int = 5
    kind: str = "agent"
    requires: frozenset[str] = frozenset()
    previous_agents: tuple[str, ...] = ()  # the agents of its earlier attempts, oldest first
    retry_on: str = "any"


@dataclass(frozen=True, slots=True)
class Snapshot:
    agents: tuple[AgentState, ...]
    strategy: str = "load_balanced"
    turn: int = 0  # choices made so far (round_robin)
    exploration: float = 0.5
    important_priority: int = 8


@dataclass(frozen=True, slots=True)
class Choice:
    """The agent chosen (None: none free now, or none capable), why, and every score seen."""

    agent: str | None
    reason: str
    predicted: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    capable: tuple[str, ...] = ()
    waits: bool = False  # capable agents exist, all busy: the task waits for one


def capable_agents(ask: TaskAsk, agents: tuple[AgentState, ...]) -> tuple[AgentState, ...]:
    """capability_match: the agents that have every capability the task requires."""
    return tuple(a for a in agents if ask.requires <= a.capabilities)


def choose(ask: TaskAsk, snapshot: Snapshot) -> Choice:
    """The agent for `ask` under the snapshot's strategy, with the reason in words."""
    capable = capable_agents(ask, snapshot.agents)
    names = tuple(a.name for a in capable)
    if not capable:
        need = ", ".join(sorted(ask.requires))
        return Choice(None, f"no agent has the capabilities {need}", capable=names)
    pool, retry_note = _retry_filter(ask, capable)
    free = tuple(a for a in pool if a.free)
    if not free:
        busy = ", ".join(f"{a.name} {a.running}/{a.max_concurrent}" for a in pool)
        return Choice(None, f"every capable agent is busy ({busy})", capable=names, waits=True)
    rank = _STRATEGIES[snapshot.strategy]
    agent, reason, scores = rank(ask, free, snapshot)
    if ask.requires:
        reason = f"has {', '.join(sorted(ask.requires))}; {reason}"
    return Choice(agent.name, reason + retry_note, round(agent.predicted, 6), scores, capable=names)


def _retry_filter(
    ask: TaskAsk, capable: tuple[AgentState, ...]
) -> tuple[tuple[AgentState, ...], str]:
    if not ask.previous_agents or ask.retry_on == "any":
        return capable, ""
    if ask.retry_on == "same_agent":
        last = ask.previous_agents[-1]
        same = tuple(a for a in capable if a.name == last)
        return (same, f" (retry on the same agent {last})") if same else (capable, "")
    others = tuple(a for a in capable if a.name not in ask.previous_agents)
    if not others:
        return capable, " (retry on another agent wanted; no other capable agent)"
    return others, f" (retry on another agent than {', '.join(ask.previous_agents)})"


Ranked = tuple[AgentState, str, dict[str, float]]


def _round_robin(ask: TaskAsk, free: tuple[AgentState, ...], snapshot: Snapshot) -> Ranked:
    order = [a.name for a in snapshot.agents]
    start = snapshot.turn % len(order)
    position = {name: (i - start) % len(order) for i, name in enumerate(order)}
    agent = min(free, key=lambda a: position[a.name])
    scores = {a.name: float(position[a.name]) for a in free}
    return agent, f"round robin: turn {snapshot.turn + 1}, next free in declared order", scores


def _load_balanced(ask: TaskAsk, free: tuple[AgentState, ...], snapshot: Snapshot) -> Ranked:
    agent = min(free, key=lambda a: (a.running, a.expected_seconds, _index(snapshot, a)))
    scores = {a.name: float(a.running) for a in free}
    reason = (
        f"load balanced: {agent.running} running (fewest), expected "
        f"{agent.expected_seconds:g}s per attempt"
    )
    return agent, reason, scores


def _priority_based(ask: TaskAsk, free: tuple[AgentState, ...], snapshot: Snapshot) -> Ranked:
    scores = {a.name: round(a.predicted, 6) for a in free}
    if ask.priority >= snapshot.important_priority:
        agent = max(free, key=lambda a: (a.predicted, a.cost_per_unit, -_index(snapshot, a)))
        reason = (
            f"priority based: priority {ask.priority} >= {snapshot.important_priority}, the "
            f"strongest free agent (predicted success {agent.predicted:.2f})"
        )
        return agent, reason, scores
    agent = min(free, key=lambda a: (a.cost_per_unit, -a.predicted, _index(snapshot, a)))
    reason = (
        f"priority based: priority {ask.priority} < {snapshot.important_priority}, the "
        f"cheapest free agent ({agent.cost_per_unit:g} per unit)"
    )
    return agent, reason, scores


def ucb_score(agent: AgentState, total_attempts: int, exploration: float) -> float:
    """The Beta mean plus the exploration bonus (module docstring)."""
    bonus = exploration * math.sqrt(math.log(total_attempts + 1) / (agent.attempts + 1))
    return agent.predicted + bonus


def _confidence_based(ask: TaskAsk, free: tuple[AgentState, ...], snapshot: Snapshot) -> Ranked:
    total = sum(a.attempts for a in snapshot.agents)
    scores = {a.name: round(ucb_score(a, total, snapshot.exploration), 6) for a in free}
    agent = max(free, key=lambda a: (scores[a.name], -_index(snapshot, a)))
    reason = (
        f"confidence based: UCB score {scores[agent.name]:.3f} on '{ask.kind}' "
        f"({agent.successes}/{agent.attempts} succeeded, predicted {agent.predicted:.2f})"
    )
    return agent, reason, scores


def _index(snapshot: Snapshot, agent: AgentState) -> int:
    return next(i for i, a in enumerate(snapshot.agents) if a.name == agent.name)


_STRATEGIES = {
    "round_robin": _round_robin,
    "load_balanced": _load_balanced,
    "priority_based": _priority_based,
    "confidence_based": _confidence_based,
}

__all__ = ["AgentState", "Choice", "Snapshot", "TaskAsk", "capable_agents", "choose", "ucb_score"]
