"""The plan file's schema (pydantic) and the plain records the engine passes between its parts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from orchestration.core.agent_specs import (
    AgentSpec,
    AssignmentSettings,
    HealthSettings,
    RetryOn,
    WavesSpec,
)
from orchestration.core.bounded_regex import PatternError, compile_pattern

PRIORITY_NAMES: dict[str, int] = {"critical": 10, "high": 8, "medium": 5, "low": 3, "background": 1}
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
ACTION_KINDS = ("shell", "agent", "python")  # built in; plugins add more (`register_actions`)
ACTION_KIND_PATTERN = r"^[a-z][a-z0-9_\-]*$"
ACTION_KIND_MAX_LENGTH = 60
PLUGIN_TAG = "plugin"  # the union tag of every action kind that is not built in
SHARED_CONTEXT = "shared_models"  # validation context key: share equal sub-models (TaskSpec)


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `depend_on` must not be silently ignored.
    # Non-finite figures (.nan, .inf) are errors: NaN passes every range check.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RetryPolicy(_Strict):
    """How often and when a failed task runs again; a plan may name a preset instead."""

    max_attempts: int = Field(3, ge=1, le=100)
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    base_seconds: float = Field(2.0, ge=0)
    max_seconds: float = Field(120.0, ge=0)
    jitter: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in RETRY_PRESETS:
                names = ", ".join(RETRY_PRESETS)
                raise ValueError(f"unknown retry policy '{value}'; expected {names}, or a mapping")
            return RETRY_PRESETS[value]
        return value


# Named policies: `retry: aggressive` in a plan or a task.
RETRY_PRESETS: dict[str, dict[str, Any]] = {
    "standard": {
        "max_attempts": 3,
        "backoff": "exponential",
        "base_seconds": 2,
        "max_seconds": 120,
    },
    "aggressive": {
        "max_attempts": 5,
        "backoff": "exponential",
        "base_seconds": 1,
        "max_seconds": 30,
    },
    "conservative": {
        "max_attempts": 2,
        "backoff": "linear",
        "base_seconds": 30,
        "max_seconds": 600,
    },
}


class ErrorRules(_Strict):
    """How a failed attempt's error is classified: by exit code first, then by output pattern."""

    permanent_exit_codes: list[int] = Field(default_factory=lambda: [126, 127])
    transient_exit_codes: list[int] = Field(default_factory=lambda: [75])
    timeout_exit_codes: list[int] = Field(default_factory=lambda: [124])
    permanent_patterns: list[str] = Field(default_factory=list)
    transient_patterns: list[str] = Field(default_factory=list)

    @field_validator("permanent_patterns", "transient_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:  # the engine the patterns are searched with (bounded_regex), not `re`
                compile_pattern(pattern)
            except PatternError as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return patterns


class Scheduling(_Strict):
    """The weights of a task's effective priority (docs/scheduling.md explains each one)."""

    deadline_boost: float = Field(2.0, ge=0)
    deadline_window_seconds: float = Field(3600.0, ge=0)
    blocking_boost: float = Field(1.0, ge=0)  # times log2(1 + transitive dependents)
    retry_penalty: float = Field(1.0, ge=0)  # per failed attempt
    aging_per_minute: float = Field(0.5, ge=0)  # per minute spent waiting in the ready queue
    risk_gate_confidence: float = Field(0.7, ge=0, le=1)  # high risk below this waits for a human


class ShellAction(_Strict):
    kind: Literal["shell"]
    run: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(None, gt=0)

    @field_validator("run")
    @classmethod
    def _no_nul(cls, run: list[str]) -> list[str]:
        # the OS cannot pass a NUL byte in an argument: say so now, not when the attempt starts
        if any("\0" in argument for argument in run):
            raise ValueError("an argument contains a NUL byte, which no program can receive")
        return run


# The agent CLIs `kind: agent` knows (orchestration/agents/, one module each; docs/agents.md).
AGENT_PRESETS = ("claude", "codex", "gemini", "aider", "opencode")


class AgentAction(_Strict):
    """A coding agent's turn: a preset (`agent: claude`) or a command template (`command`)."""

    kind: Literal["agent"]
    prompt: str
    agent: Literal["claude", "codex", "gemini", "aider", "opencode"] | None = None
    command: list[str] | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1)  # preset: passed with the CLI's model flag
    permissions: str | None = Field(None, min_length=1)  # preset: one of its permission modes
    args: list[str] = Field(default_factory=list)  # preset: more arguments for its CLI
    program: str | None = Field(None, min_length=1)  # preset: the executable, if not its name
    resume: bool = True  # preset: a retry continues the agent's own session
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _preset_or_command(self) -> AgentAction:
        if self.agent is not None and self.command is not None:
            raise ValueError("give either 'agent' (a preset) or 'command' (a template), not both")
        if self.agent is None:
            given = [name for name in ("model", "permissions", "program") if getattr(self, name)]
            if self.args:
                given.append("args")
            if given:
                raise ValueError(
                    f"{', '.join(given)} need 'agent' (one of {', '.join(AGENT_PRESETS)}); "
                    "a 'command' template spells its own arguments"
                )
        return self


class PythonAction(_Strict):
    kind: Literal["python"]
    call: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(None, gt=0)


class PluginAction(_Strict):
    """Work of a kind a plugin provides through `register_actions`; its options go in `args`.

    The plan loader accepts only kinds the loaded plugins provide (see `load_plan`).
    """

    kind: str = Field(pattern=ACTION_KIND_PATTERN, max_length=ACTION_KIND_MAX_LENGTH)
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(None, gt=0)


def _action_tag(value: Any) -> str | None:
    """Which action model reads `value`: a built-in kind's own, else the plugin one."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return None
    return kind if kind in ACTION_KINDS else PLUGIN_TAG


ActionSpec = Annotated[
    Annotated[ShellAction, Tag("shell")]
    | Annotated[AgentAction, Tag("agent")]
    | Annotated[PythonAction, Tag("python")]
    | Annotated[PluginAction, Tag(PLUGIN_TAG)],
    Discriminator(_action_tag),
]


class ValidatorRef(_Strict):
    """A validator to run after a step: a bare name, or a name with options (`run`, `stage`...)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    name: str
    stage: Literal["syntax", "requirements", "quality", "testing"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Branch(_Strict):
    """Tasks to add when a task ends: on a rule expression or one of the shorthands."""

    when: str | None = None  # a rule expression over the task's last step context
    on_success: bool = False  # the task completed
    on_failure: bool = False  # the task failed for good
    result_equals: dict[str, Any] | None = None  # every key of the action's result equals
    result_contains: dict[str, Any] | None = None  # every key's value contains the given one
    spawn: list[TaskSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_condition(self) -> Branch:
        given = [
            name
            for name in ("when", "on_success", "on_failure", "result_equals", "result_contains")
            if getattr(self, name) not in (None, False)
        ]
        if len(given) != 1:
            raise ValueError(
                "a branch needs exactly one condition: when, on_success, on_failure, "
                f"result_equals or result_contains (got {', '.join(given) or 'none'})"
            )
        return self


class TaskGate(_Strict):
    """A task's own quality gate; a key left out (None) keeps the rule files' gate."""

    min_score: float | None = Field(None, ge=0.0, le=1.0)
    required: list[Literal["syntax", "requirements", "quality", "testing"]] | None = None


class TaskSpec(_Strict):
    id: str = Field(pattern=TASK_ID_PATTERN, max_length=200)
    title: str = ""
    action: ActionSpec
    depends_on: list[str] = Field(default_factory=list)
    trigger: Literal["all_success", "all_done", "one_failed", "none_failed"] = "all_success"
    priority: int = 5
    risk: Literal["low", "medium", "high"] = "low"
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    deadline: datetime | None = None
    pool: str | None = None
    tags: list[str] = Field(default_factory=list)
    acceptance: list[str] = Field(default_factory=list)
    retry: RetryPolicy | None = None
    timeout_seconds: float | None = Field(None, gt=0)
    validators: list[ValidatorRef] | None = None
    gate: TaskGate | None = None  # None: the rule files' gate (quality.gate) applies
    branches: list[Branch] = Field(default_factory=list)
    # The circuit breaker this task's attempts count against (orchestration/resilience/breakers.py);
    # None: derived as the plan's `breakers.keys_from` says.
    breaker: str | None = Field(None, min_length=1, max_length=200)
    # The declared scope of the change, read by the `change_exceeds_scope` rule: a size class
    # (signals.CHANGE_BUDGETS lines) or an explicit line budget, which wins.
    expected_change: Literal["small", "medium", "large"] | None = None
    line_budget: int | None = Field(None, ge=1, le=10_000_000)
    # Out of attempts with a failed gate: hand the task to a human, or fail it (trigger rules and
    # failure branches then go on). None: the plan's `defaults.when_exhausted`.
    when_exhausted: Literal["escalate", "fail"] | None = None
    requires: list[str] = Field(default_factory=list)  # capabilities its agent must have
    retry_on: RetryOn | None = None  # None: the plan's assignment.retry_on

    @field_validator("action", "retry", mode="wrap")
    @classmethod
    def _shared(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """One model for each action or retry policy written alike, when validating a plan.

        A plan of many tasks repeats the same few actions; each model costs about 600 bytes.
        They are frozen, so tasks can share them. `SHARED_CONTEXT` turns this on: a dict that
        lives as long as one plan is validated.
        """
        shared = info.context.get(SHARED_CONTEXT) if isinstance(info.context, dict) else None
        if shared is None or not isinstance(value, dict | str):
            return handler(value)
        key = (info.field_name, repr(value))
        model = shared.get(key)
        if model is None:
            model = shared[key] = handler(value)  # a value in error raises: never shared
        return model

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a priority name or an integer 1..10")
        if isinstance(value, str):
            if value not in PRIORITY_NAMES:
                names = " | ".join(PRIORITY_NAMES)
                raise ValueError(f"unknown priority '{value}'; expected {names}, or 1..10")
            return PRIORITY_NAMES[value]
        if isinstance(value, int | float) and not 1 <= value <= 10:
            raise ValueError(f"priority {value} is out of range; expected 1..10 or a name")
        return value


class Budget(_Strict):
    """What a run may spend before `budget_exceeded` stops it for a human (None: no limit)."""

    max_attempts: int | None = Field(None, ge=1)
    max_wall_seconds: float | None = Field(None, gt=0)
    max_cost: float | None = Field(None, ge=0)  # in the unit the actions report `cost` in
    max_tokens: int | None = Field(None, ge=0)


class Defaults(_Strict):
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    errors: ErrorRules = Field(default_factory=ErrorRules)
    timeout_seconds: float = Field(900.0, gt=0)
    validators: list[ValidatorRef] = Field(default_factory=list)
    agent_command: list[str] | None = Field(None, min_length=1)
    # `escalate` by default: an unattended run must not silently drop work a human could still
    # rescue with one answer; `fail` lets trigger rules and failure branches take over instead.
    when_exhausted: Literal["escalate", "fail"] = "escalate"


class SignalSettings(_Strict):
    """Review signals the engine computes per step (signals.py, docs/rules.md)."""

    # Extra named patterns for `destructive_operations`, added to the built-in ones.
    destructive_patterns: dict[str, str] = Field(default_factory=dict)
    # Compare the public API of the Python packages a step touched (griffe); off for speed.
    public_api: bool = True

    @field_validator("destructive_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: dict[str, str]) -> dict[str, str]:
        for name, pattern in patterns.items():
            try:  # the engine the patterns are searched with (bounded_regex), not `re`
                compile_pattern(pattern)
            except PatternError as error:
                raise ValueError(
                    f"pattern {name!r}: not a valid regular expression: {error}"
                ) from None
        return patterns


class ResourceGuards(_Strict):
    """Start no new work while the machine is this busy (checked with psutil)."""

    max_cpu_percent: float | None = Field(None, gt=0, le=100)
    max_memory_percent: float | None = Field(None, gt=0, le=100)


class Concurrency(_Strict):
    max_workers: int = Field(1, ge=1, le=256)
    max_running: int | None = Field(None, ge=1)  # cap for this run across all workers
    pools: dict[str, int] = Field(default_factory=dict)
    guards: ResourceGuards = Field(default_factory=ResourceGuards)
    # Run `kind: python` actions in the engine's own thread, up to max_workers per batch, with
    # one commit per batch: for many short in-process functions. The loop waits while one runs,
    # and an inline action has no timeout (a python action on a worker thread does).
    inline_python: bool = False
    # On Ctrl-C / SIGTERM, how long running actions may go on before they are stopped.
    shutdown_grace_seconds: float = Field(30.0, ge=0, le=86_400)
    # Who executes the attempts: this process's threads, or worker processes (`orch worker`)
    # that claim them from the store (PostgreSQL, or SQLite for workers on this machine).
    executor: Literal["threads", "workers"] = "threads"
    # How long a worker's claim on an attempt holds without a heartbeat; past it the attempt
    # is offered again and the late worker's result is refused.
    lease_seconds: float = Field(30.0, ge=1, le=86_400)
    # Task tags that are worker capabilities: a task tagged with one runs only on a worker
    # started with `--capabilities` naming it.
    capabilities: list[str] = Field(default_factory=list)
    # The git repository workers on other machines clone and push their work to (a bare
    # repository's path, file:// or ssh URL); unset: the workdir's own repository.
    repository: str | None = Field(None, min_length=1)

    @field_validator("repository")
    @classmethod
    def _reachable_repository(cls, repository: str | None) -> str | None:
        # A relative path would name a different place for each worker's working directory.
        if repository is None or ":" in repository or repository.startswith("/"):
            return repository
        raise ValueError(
            f"expected a URL (ssh://host/repo.git, file:///path), host:path or an absolute "
            f"path every worker reaches, got the relative path {repository!r}"
        )

    @field_validator("pools")
    @classmethod
    def _positive_slots(cls, pools: dict[str, int]) -> dict[str, int]:
        for name, slots in pools.items():
            if slots < 1:
                raise ValueError(f"pool '{name}' needs at least 1 slot, got {slots}")
        return pools


BreakerKeySource = Literal["task", "pool", "agent", "command"]
BREAKER_KEY_SOURCES: tuple[BreakerKeySource, ...] = ("task", "pool", "agent", "command")


def _default_key_sources() -> list[BreakerKeySource]:
    return ["task", "agent"]


class BreakerSettings(_Strict):
    """Circuit breakers: stop starting work against a failing integration point for a while.

    A breaker opens when, within `window_seconds`, at least `min_calls` attempts were recorded
    and `failure_rate` of them failed; it lets `half_open_probes` attempts through after
    `recovery_seconds`, and closes when they succeed (orchestration/resilience/breakers.py).
    """

    enabled: bool = True
    window_seconds: float = Field(300.0, gt=0, le=86_400)
    min_calls: int = Field(5, ge=1, le=1000)
    failure_rate: float = Field(0.5, gt=0, le=1)
    recovery_seconds: float = Field(60.0, ge=0, le=86_400)
    half_open_probes: int = Field(1, ge=1, le=100)
    # a probe not heard from for this long (its engine died) no longer holds its slot
    probe_lease_seconds: float = Field(3600.0, gt=0, le=7 * 86_400)
    # where a task's breaker key comes from, first that applies: the task's own `breaker`, its
    # pool, its agent command, its shell program or python module
    keys_from: list[BreakerKeySource] = Field(default_factory=_default_key_sources)


class Retention(_Strict):
    """How long `orch prune` keeps this plan's finished runs (None: as the command says)."""

    keep_days: float | None = Field(None, gt=0, le=36_500)
    keep_failed: bool = False  # failed runs of this plan are never pruned
    # Dead letters older than this are archived (.orchestration/dead-letters/*.jsonl beside the
    # plan) and purged by the engine working on a run of this plan (None: kept until purged).
    dead_letter_days: float | None = Field(None, gt=0, le=36_500)


class EnvironmentSpec(_Strict):
    """The project's own environment, where validators and the test baseline run.

    `python`: its interpreter (relative to the workdir, or a name on PATH); `run`: a prefix for
    every validator command (e.g. `[uv, run]`); `env`: variables for those commands. Without it,
    a `.venv` or `venv` in the workdir, else the python3 on PATH (environment.py).
    """

    python: str | None = Field(None, min_length=1)
    run: list[str] | None = Field(None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)


ParamValue = str | int | float | bool | None
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# The names an event trigger's `when` and `params` expressions may read.
TRIGGER_EVENT_NAMES = frozenset({"event", "data", "key", "source", "run_id"})


class EventTrigger(_Strict):
    """`on: {event: NAME, when: EXPR}`: an event that starts a run (or adds tasks to one).

    `when` is a rule expression over `event` (the name), `data` (the event's data) and `key`;
    `params` maps plan parameters to expressions over the same names; `then` says what to do.
    """

    event: str = Field(min_length=1, max_length=200)
    when: str | None = Field(None, min_length=1)
    params: dict[str, str] = Field(default_factory=dict)
    then: Literal["start_run", "add_tasks"] = "start_run"


class PlanSpec(_Strict):
    version: Literal[1]
    name: str = Field(min_length=1, max_length=200)
    workdir: str = "."
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[str] = Field(default_factory=list)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    budget: Budget = Field(default_factory=Budget)
    breakers: BreakerSettings = Field(default_factory=BreakerSettings)
    retention: Retention = Field(default_factory=Retention)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    # worktree: each task in a git worktree of its own, merged into `orchestration/<run>`;
    # shared: every task edits the workdir itself. Unset: worktree when the workdir is in a
    # git repository and max_workers > 1, else shared.
    isolation: Literal["worktree", "shared"] | None = None
    # In worktree isolation: run each task's validators on the merged result before its merge.
    validate_after_merge: bool = False
    # Plan parameters and their defaults (None: required), used as `{name}` in the tasks'
    # text (orchestration/engine/plan_params.py); `orch run --params` and triggers give values.
    params: dict[str, ParamValue] = Field(default_factory=dict)
    # Events that start a run of this plan or add its tasks to a running one (docs/triggers.md).
    on: list[EventTrigger] = Field(default_factory=list)
    agents: list[AgentSpec] = Field(default_factory=list)  # or a file name (agent_specs.py)
    assignment: AssignmentSettings = Field(default_factory=AssignmentSettings)
    waves: WavesSpec | None = None  # None: waves are shown, not enforced
    health: HealthSettings = Field(default_factory=HealthSettings)
    tasks: list[TaskSpec] = Field(min_length=1)

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("params")
    @classmethod
    def _param_names(cls, params: dict[str, ParamValue]) -> dict[str, ParamValue]:
        for name in params:
            if not PARAM_NAME.fullmatch(name):
                raise ValueError(
                    f"parameter name {name!r} must be letters, digits and '_', not starting "
                    "with a digit"
                )
        return params


Branch.model_rebuild()


@dataclass(frozen=True, slots=True)
class Plan:
    """A loaded, fully validated plan: the spec plus where it came from."""

    spec: PlanSpec
    path: str  # absolute path of the plan file
    workdir: str  # absolute working directory of the actions
    rule_files: tuple[str, ...]  # absolute paths of the plan's extra rule files

    @property
    def name(self) -> str:
        return self.spec.name

    def task(self, task_id: str) -> TaskSpec:
        return next(t for t in self.spec.tasks if t.id == task_id)

    def retry_policy(self, task: TaskSpec) -> RetryPolicy:
        return task.retry or self.spec.defaults.retry

    def timeout(self, task: TaskSpec) -> float:
        action_timeout = getattr(task.action, "timeout_seconds", None)
        return action_timeout or task.timeout_seconds or self.spec.defaults.timeout_seconds

    def validators(self, task: TaskSpec) -> list[ValidatorRef]:
        return task.validators if task.validators is not None else self.spec.defaults.validators

    def when_exhausted(self, task: TaskSpec) -> str:
        return task.when_exhausted or self.spec.defaults.when_exhausted


# ---- records the store returns and the engine passes around (never ORM rows) ----------------


@dataclass(slots=True)
class RunRecord:
    id: str
    plan_name: str
    plan_path: str
    workdir: str
    state: str  # running | paused | completed | failed | cancelled
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    plan_json: dict[str, Any] = field(default_factory=dict)
    engine_host: str | None = None  # the engine working on it: host, process id, start time
    engine_pid: int | None = None
    engine_started: float | None = None
    owner: str | None = None  # the claim token of the engine holding the run, if any


@dataclass(slots=True)
class TaskRecord:
    run_id: str
    task_id: str
    state: str
    spec: TaskSpec
    attempts: int = 0
    priority: int = 5
    outcome: str | None = None  # completed tasks: succeeded | skipped | approved
    next_attempt_at: datetime | None = None
    feedback: str = ""  # what validators said about the previous attempt
    answer: str = ""  # a human's answer to a clarify question
    last_error_kind: str = "none"
    updated_at: datetime | None = None

    @property
    def depends_on(self) -> list[str]:
        return list(self.spec.depends_on)


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    id: int
    run_id: str
    task_id: str
    source: str
    dest: str
    trigger: str
    reason: str
    actor: str
    at: datetime


@dataclass(slots=True)
class BreakpointRecord:
    id: int
    run_id: str
    task_id: str
    rule: str
    at: str  # before | after
    severity: str
    action: str  # pause | notify | auto
    message: str
    state: str  # open | resolved
    created_at: datetime
    context: dict[str, Any] = field(default_factory=dict)
    resolution: str | None = None  # approve | reject | retry | skip | auto | notify | expired
    note: str = ""
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    scope: str = "task"  # task: only this task waits | run: no new work starts in the run
    expires_at: datetime | None = None  # when the default resolution applies by itself
    default_resolution: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # `--set` values of the resolution


@dataclass(frozen=True, slots=True)
class RunSetting:
    """A change to a run made while it runs: a rule switched on or off, a budget extended.

    Stored as a log; for each (kind, name) the latest row is in force.
    """

    run_id: str
    kind: str  # rule | budget
    name: str
    value: Any
    actor: str
    note: str
    at: datetime
    id: int = 0


EXPLANATION_KEY = "explanation"  # where the explanation goes in the stored decision figures


def split_stored_figures(
    stored: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A stored decision's figures as (what the rule saw, its explanation or None if older)."""
    seen = {k: v for k, v in stored.items() if k != EXPLANATION_KEY}
    explanation = stored.get(EXPLANATION_KEY)
    return seen, explanation if isinstance(explanation, dict) else None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    run_id: str
    task_id: str
    attempt: int
    action: str  # proceed | retry | clarify | escalate | checkpoint
    rule: str
    reason: str
    figures: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class QualityRecord:
    run_id: str
    task_id: str
    attempt: int
    score: float
    gate_passed: bool
    stage_scores: dict[str, float]
    checks: list[dict[str, Any]]  # one per validator: name, stage, passed, score, message
    at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    run_id: str
    kind: str
    task_id: str | None
    data: dict[str, Any]
    at: datetime
    id: int = 0


@dataclass(slots=True)
class BreakerRecord:
    """The stored state of one circuit breaker, shared by every run and worker of a store."""

    key: str
    state: str  # closed | open | half_open
    opened_at: datetime | None = None
    # recent outcomes, oldest first: (epoch seconds, succeeded)
    window: list[tuple[float, bool]] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)  # epoch seconds each probe was let through
    probe_successes: int = 0
    reason: str = ""  # why it is in its state, for `orch breakers list`
    version: int = 0  # grows with every stored change
    updated_at: datetime | None = None


@dataclass(slots=True)
class DeadLetterRecord:
    """A task that failed for good, captured with everything needed to understand and retry it."""

    id: int
    run_id: str
    task_id: str
    transition_id: int  # the move into `failed` this captures (one dead letter per failure)
    failed_at: datetime
    error_kind: str
    reason: str
    spec: dict[str, Any]
    attempts: list[dict[str, Any]]  # per attempt: number, exit code, output tail, error kind...
    quality: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    breakpoints: list[dict[str, Any]]  # the human decisions taken on the task
    state: str = "open"  # open | resubmitted | closed
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # resubmission: --set values, new run


@dataclass(slots=True)
class InterventionRecord:
    """A human's action on a run or task (pause, skip, retry, ...), with who and why."""

    run_id: str | None  # None: store-wide, e.g. a circuit breaker reset
    task_id: str | None  # None: the whole run
    action: str
    actor: str
    reason: str
    params: dict[str, Any]
    at: datetime
    state: str = "applied"  # requested (an engine applies it) | applied | refused
    note: str = ""  # what came of it
    applied_at: datetime | None = None
    id: int = 0
