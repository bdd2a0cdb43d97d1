"""Agents as resources: their declaration (plan `agents:` or a shared agents.yaml) and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

AGENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
STRATEGIES = ("round_robin", "load_balanced", "priority_based", "confidence_based")
RetryOn = Literal["any", "same_agent", "other_agent"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


class AgentSpec(_Strict):
    """One agent: a preset CLI or a command template, what it can do, what it costs."""

    name: str = Field(pattern=AGENT_NAME_PATTERN, max_length=100)
    preset: Literal["claude", "codex", "gemini", "aider", "opencode"] | None = None
    command: list[str] | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1)
    permissions: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    program: str | None = Field(None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)
    # Cost of one minute of the agent's running time, used when its turn reports no `cost`.
    cost_per_unit: float = Field(0.0, ge=0)
    max_concurrent: int = Field(1, ge=1, le=10_000)
    # What load_balanced expects an attempt to take before the agent has any history.
    expected_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _preset_or_command(self) -> AgentSpec:
        if (self.preset is None) == (self.command is None):
            raise ValueError(
                f"agent '{self.name}' needs exactly one of 'preset' (claude, codex, gemini, "
                "aider, opencode) or 'command' (an argv template such as "
                "[my-agent, --message, '{prompt}'])"
            )
        if self.command is not None and (self.model or self.permissions or self.program):
            raise ValueError(
                f"agent '{self.name}': model, permissions and program go with 'preset'; "
                "a 'command' template spells its own arguments"
            )
        return self


class AssignmentSettings(_Strict):
    """How a plan's agent tasks are given to its agents (docs/agents.md, "Assignment")."""

    strategy: Literal["round_robin", "load_balanced", "priority_based", "confidence_based"] = (
        "load_balanced"
    )
    # confidence_based: weight of the UCB exploration bonus (0: always the best record so far)
    exploration: float = Field(0.5, ge=0, le=10)
    # priority_based: tasks at or above this priority get the strongest free agent
    important_priority: int = Field(8, ge=1, le=10)
    retry_on: RetryOn = "any"  # a task's own `retry_on` wins


class WavesSpec(_Strict):
    """Run the plan wave by wave: wave k+1 starts when wave k is final and `gate` holds."""

    gate: str | None = None  # a rule expression over the wave's figures (waves.GATE_NAMES)


class HealthWeights(_Strict):
    success: float = Field(0.4, ge=0)
    availability: float = Field(0.2, ge=0)
    prediction: float = Field(0.2, ge=0)
    load_balance: float = Field(0.2, ge=0)


class AnomalySettings(_Strict):
    """Thresholds of the anomaly detectors (orchestration/engine/anomalies.py documents each)."""

    # the anomaly_detected breakpoint's action; pause: the next task to start waits for a human
    action: Literal["notify", "pause", "off"] = "notify"
    failure_streak: int = Field(3, ge=2, le=100)
    drift_window: int = Field(10, ge=3, le=10_000)
    drift_threshold: float = Field(0.3, gt=0, le=1)
    imbalance_min_attempts: int = Field(6, ge=2)
    imbalance_threshold: float = Field(0.6, gt=0, le=1)  # Jain's index below this
    outlier_min_samples: int = Field(5, ge=3)
    outlier_z: float = Field(3.5, gt=0)  # modified z-score (Iglewicz and Hoaglin)
    # a duration this close to the median is no anomaly, whatever its z-score (short tasks
    # vary by more than their spread from one run to the next)
    outlier_min_excess_seconds: float = Field(10.0, ge=0)


class HealthSettings(_Strict):
    weights: HealthWeights = Field(default_factory=HealthWeights)
    anomalies: AnomalySettings = Field(default_factory=AnomalySettings)

    @model_validator(mode="after")
    def _some_weight(self) -> HealthSettings:
        w = self.weights
        if w.success + w.availability + w.prediction + w.load_balance <= 0:
            raise ValueError("health weights must not all be 0")
        return self


def task_kind(tags: list[str], action_kind: str) -> str:
    """The kind of a task for outcome history: its tags sorted and joined, else its action kind."""
    return "+".join(sorted(set(tags))) if tags else action_kind


def resolve_agents_file(data: Any, base: Path, display: str) -> tuple[Any, list[Any]]:
    """A plan whose `agents` names a file gets that file's agents; problems as PlanErrors.

    The file holds `agents: [...]` (or the list itself); its errors name it, the agent and the
    field. The plan keeps the agents themselves, so a stored run needs no file to resume.
    """
    from orchestration.core.errors import PlanError
    from orchestration.core.yamlfile import load_yaml_file

    if not isinstance(data, dict) or not isinstance(data.get("agents"), str):
        return data, []
    path = (base / Path(data["agents"]).expanduser()).resolve()
    if not path.is_file():
        state = "does not exist" if not path.exists() else "is not a file"
        problem = PlanError(f"agents file '{data['agents']}' {state} (resolved to {path})")
        problem.file, problem.field = display, "agents"
        return {k: v for k, v in data.items() if k != "agents"}, [problem]
    loaded, lines = load_yaml_file(path)
    agents = loaded.get("agents") if isinstance(loaded, dict) else loaded
    problems: list[Any] = []
    if not isinstance(agents, list):
        problems.append(
            PlanError("expected a list of agents under 'agents:'", file=str(path), field="agents")
        )
        return {k: v for k, v in data.items() if k != "agents"}, problems
    prefix: tuple[str | int, ...] = ("agents",) if isinstance(loaded, dict) else ()
    valid = []
    for i, raw in enumerate(agents):
        try:
            AgentSpec.model_validate(raw)
            valid.append(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                field = ".".join(str(p) for p in error["loc"]) or "agent"
                name = raw.get("name") if isinstance(raw, dict) else None
                line = lines.line_of((*prefix, i, *error["loc"]))
                message = _message(error)
                problems.append(
                    PlanError(
                        f"agent {name or i}: {message}",
                        file=str(path),
                        line=line,
                        field=f"agents[{i}].{field}",
                    )
                )
    # The agents in error are reported against their file, not again against the plan.
    return {**data, "agents": valid}, problems


_BOUNDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


def _message(error: Any) -> str:
    """A pydantic error in the words of plan errors: what was given, what was expected."""
    ctx = error.get("ctx") or {}
    if "error" in ctx:
        return str(ctx["error"])
    bounds = [f"{_BOUNDS[k]} {v}" for k, v in ctx.items() if k in _BOUNDS]
    if bounds:
        return f"{error.get('input')!r} is out of range; expected {' and '.join(bounds)}"
    if error["type"] == "extra_forbidden":
        return f"unknown field; expected one of: {', '.join(AgentSpec.model_fields)}"
    return f"{error['msg']}, got {error.get('input')!r}"


def agent_problems(data: dict[str, Any], tasks: list[tuple[Any, dict[str, Any]]]) -> list[Any]:
    """Cross checks: unique names, each `requires` met by some agent, `requires` on agent tasks.

    `tasks`: (path, raw task) pairs. Returns (message, path, task id, field) tuples.
    """
    raw_agents = data.get("agents")
    agents: list[Any] = raw_agents if isinstance(raw_agents, list) else []
    found: list[Any] = []
    seen: set[str] = set()
    offered: set[str] = set()
    for i, agent in enumerate(agents):
        if not isinstance(agent, dict):
            continue
        name = agent.get("name")
        if isinstance(name, str) and name in seen:
            found.append((f"duplicate agent name '{name}'", ("agents", i, "name"), None, "name"))
        seen.add(str(name))
        caps = agent.get("capabilities")
        if isinstance(caps, list):
            offered.update(c for c in caps if isinstance(c, str))
    for path, task in tasks:
        requires = task.get("requires")
        if not isinstance(requires, list) or not requires:
            continue
        action = task.get("action")
        if not agents:
            message = "'requires' needs agents declared in the plan's 'agents:' (or agents.yaml)"
            found.append((message, (*path, "requires"), task.get("id"), "requires"))
            continue
        if not isinstance(action, dict) or action.get("kind") != "agent":
            message = "'requires' applies to agent tasks (kind: agent), assigned to an agent"
            found.append((message, (*path, "requires"), task.get("id"), "requires"))
        missing = [r for r in requires if isinstance(r, str) and r not in offered]
        if missing:
            message = (
                f"no declared agent has the capabilities {', '.join(missing)}; "
                f"expected tags among: {', '.join(sorted(offered)) or '(none declared)'}"
            )
            found.append((message, (*path, "requires"), task.get("id"), "requires"))
    return found


def assignable(action: Any) -> bool:
    """A task its plan's agents run: an agent task naming neither a preset nor a command."""
    return (
        getattr(action, "kind", None) == "agent"
        and getattr(action, "agent", None) is None
        and getattr(action, "command", None) is None
    )


def assigned_action(agent: AgentSpec, action: Any) -> Any:
    """The task's agent action as `agent` runs it (its preset or command, its environment)."""
    from orchestration.core.models import AgentAction

    env = {**agent.env, **action.env, "ORCH_AGENT": agent.name}
    common = {
        "kind": "agent",
        "prompt": action.prompt,
        "cwd": action.cwd,
        "env": env,
        "timeout_seconds": action.timeout_seconds,
        "resume": action.resume,
    }
    if agent.preset is not None:
        return AgentAction(
            **common,
            agent=agent.preset,
            model=agent.model,
            permissions=agent.permissions,
            args=list(agent.args),
            program=agent.program,
        )
    return AgentAction(**common, command=list(agent.command or ()))


__all__ = [
    "STRATEGIES",
    "AgentSpec",
    "AnomalySettings",
    "AssignmentSettings",
    "HealthSettings",
    "HealthWeights",
    "WavesSpec",
    "agent_problems",
    "assignable",
    "assigned_action",
    "resolve_agents_file",
    "task_kind",
]
