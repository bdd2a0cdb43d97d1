"""The API's request shapes; its response shapes are those of shapes.py, re-exported here.

The response shapes are those of the CLI's `--json` output too, so a script can move between the
two.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestration.shapes.records import (
    BatchItemOut,
    BatchResolveOut,
    BatchResubmitItemOut,
    BatchResubmitOut,
    BreakerOut,
    BreakerResetOut,
    BreakersOut,
    BreakpointOut,
    BreakpointsOut,
    BudgetLimitOut,
    DeadLetterDetailOut,
    DeadLetterOneOut,
    DeadLetterOut,
    DeadLettersOut,
    DecisionOut,
    DecisionsOut,
    DiffOut,
    EngineOut,
    ErrorDetail,
    ErrorOut,
    EventOut,
    EventsOut,
    ExplainOut,
    HistoryOut,
    InterruptionOut,
    InterventionDoneOut,
    InterventionOut,
    InterventionsOut,
    LastResetOut,
    LogOut,
    OptionOut,
    PriorityOut,
    QualityListOut,
    QualityOut,
    Resolution,
    ResolveOut,
    ResubmitOut,
    ReviewOut,
    RuleOut,
    RunDetailOut,
    RunOut,
    RunsOut,
    RunSpentOut,
    SpentOut,
    StepOut,
    TaskDetailOut,
    TaskOneOut,
    TaskOut,
    TasksOut,
    TransitionOut,
    TransitionsOut,
    as_json,
    breaker_out,
    breakpoint_out,
    dead_letter_detail_out,
    dead_letter_out,
    decision_out,
    dependents_of,
    event_out,
    intervention_out,
    quality_out,
    run_out,
    task_detail_out,
    task_out,
    transition_out,
)

MAX_NOTE_CHARS = 4000
MAX_ANSWER_CHARS = 20_000
MAX_BATCH = 200  # items in one batch call
MAX_PARAMS = 50  # changed parameters in one resolution
MAX_REASON_CHARS = MAX_NOTE_CHARS
MAX_ACTOR_CHARS = 64

__all__ = [
    "BatchItemIn",
    "BatchItemOut",
    "BatchResolveIn",
    "BatchResolveOut",
    "BatchResubmitIn",
    "BatchResubmitItemIn",
    "BatchResubmitItemOut",
    "BatchResubmitOut",
    "BreakerOut",
    "BreakerResetIn",
    "BreakerResetOut",
    "BreakersOut",
    "BreakpointOut",
    "BreakpointsOut",
    "BudgetLimitOut",
    "DeadLetterDetailOut",
    "DeadLetterOneOut",
    "DeadLetterOut",
    "DeadLettersOut",
    "DecisionOut",
    "DecisionsOut",
    "DiffOut",
    "EngineOut",
    "ErrorDetail",
    "ErrorOut",
    "EventOut",
    "EventsOut",
    "ExplainOut",
    "HistoryOut",
    "InterruptionOut",
    "InterventionAction",
    "InterventionDoneOut",
    "InterventionIn",
    "InterventionOut",
    "InterventionsOut",
    "LastResetOut",
    "LogOut",
    "OptionOut",
    "PriorityOut",
    "QualityListOut",
    "QualityOut",
    "Resolution",
    "ResolveIn",
    "ResolveOut",
    "ResubmitIn",
    "ResubmitOut",
    "ReviewOut",
    "RuleOut",
    "RunDetailOut",
    "RunOut",
    "RunSpentOut",
    "RunsOut",
    "SpentOut",
    "StepOut",
    "TaskDetailOut",
    "TaskOneOut",
    "TaskOut",
    "TasksOut",
    "TransitionOut",
    "TransitionsOut",
    "as_json",
    "breaker_out",
    "breakpoint_out",
    "dead_letter_detail_out",
    "dead_letter_out",
    "decision_out",
    "dependents_of",
    "event_out",
    "intervention_out",
    "quality_out",
    "run_out",
    "task_detail_out",
    "task_out",
    "transition_out",
]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    note: str = Field("", max_length=MAX_NOTE_CHARS, description="Why; stored with it.")
    answer: str | None = Field(
        None, max_length=MAX_ANSWER_CHARS, description="Passed to the agent as {answer}."
    )
    actor: str | None = Field(
        None, max_length=64, description="Who resolves it (default: the session's name, or api)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_PARAMS,
        description="Changed parameters, as `orch breakpoints resolve --set`: task fields by "
        "dotted path for the next attempt (with retry, or approve before a step), e.g. "
        '{"action.prompt": "...", "timeout_seconds": 600}; or `budget.<limit>` for the run.',
    )
    reject_as: Literal["cancel", "fail"] = Field(
        "cancel", description="With reject: the task ends cancelled or failed."
    )
    rollback: bool = Field(
        False,
        description="With reject: restore the run's work tree to its last checkpoint of an "
        "accepted task (as `orch breakpoints resolve --reject --rollback`; refused while an "
        "engine works on the run).",
    )


class BatchItemIn(ResolveIn):
    id: int = Field(ge=1, le=2**63 - 1)


class BatchResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH)


InterventionAction = Literal["pause", "resume", "skip", "retry", "cancel", "rerun"]


class _Reasoned(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=MAX_REASON_CHARS, description="Why; stored with it.")
    actor: str | None = Field(
        None,
        max_length=MAX_ACTOR_CHARS,
        description="Who does it (default: the session's name, or api).",
    )


def _params_field() -> Any:
    return Field(
        default_factory=dict,
        max_length=MAX_PARAMS,
        description="Changed task fields for the next attempt, as `--set`: dotted paths, e.g. "
        '{"action.prompt": "...", "timeout_seconds": 600}.',
    )


class ResubmitIn(_Reasoned):
    params: dict[str, Any] = _params_field()
    new_run: bool = Field(False, description="Run the task alone in a new run of the same plan.")


class BatchResubmitItemIn(ResubmitIn):
    id: int = Field(ge=1, le=2**63 - 1)


class BatchResubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchResubmitItemIn] = Field(min_length=1, max_length=MAX_BATCH)


class BreakerResetIn(_Reasoned):
    pass


class InterventionIn(_Reasoned):
    action: InterventionAction = Field(
        description="pause | resume | skip | retry | cancel for the run or a task; rerun for a "
        "task only (as `orch runs ...` and `orch task ...`)."
    )
    task: str | None = Field(None, max_length=200, description="The task; none: the whole run.")
    params: dict[str, Any] = _params_field()
    downstream: bool = Field(False, description="With rerun: the tasks depending on it too.")


MAX_PLAN_CHARS = 1_000_000  # an uploaded plan's text
MAX_ADDED_TASKS = 1_000  # tasks in one request to add tasks (spawning's limit)


class RunStartIn(BaseModel):
    """Start a run: from the plan a stored run recorded, or from an uploaded plan's text."""

    model_config = ConfigDict(extra="forbid")

    from_run: str | None = Field(
        None,
        max_length=200,
        description="Start a new run of the plan this run recorded when it started (the plan "
        "as it was then, with its working directory and rule files).",
    )
    plan: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PLAN_CHARS,
        description="The text of a plan file (YAML, as for `orch run`).",
    )
    base_dir: str | None = Field(
        None,
        max_length=4096,
        description="With `plan`: the absolute directory its relative `workdir` and `rules` "
        "paths are resolved from (default: the directory `orch serve` was started in).",
    )
    run_id: str | None = Field(None, max_length=200, description="Name the run (as --run-id).")
    params: dict[str, Any] | None = Field(
        None, max_length=MAX_PARAMS, description="Plan parameters (passed as `--params`)."
    )


class TasksAddIn(BaseModel):
    """Tasks to add to a run, in the plan's format (as the file of `orch task add`)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ADDED_TASKS)


class RunActionIn(_Reasoned):
    """Pause, resume or cancel a whole run: who and why are stored with it."""
