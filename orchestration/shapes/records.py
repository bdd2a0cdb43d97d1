"""The JSON shape of every record, one pydantic model each: the API's responses and every `--json`.

Below both interfaces: it imports pydantic and the domain records, never FastAPI or typer. The
functions at the end build the shapes from store records; `as_json` is what the CLI prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestration.core.models import (
    BreakerRecord,
    BreakpointRecord,
    DeadLetterRecord,
    DecisionRecord,
    EventRecord,
    InterventionRecord,
    QualityRecord,
    RunRecord,
    TaskRecord,
    TransitionRecord,
    split_stored_figures,
)
from orchestration.resilience.spending import RunSpending, Spent
from orchestration.shapes.fleet import AssignmentOut

Resolution = Literal["approve", "reject", "retry", "skip"]


def as_json(shape: BaseModel) -> dict[str, Any]:
    """A shape as plain JSON data, exactly as the API sends it (aliases such as `from`)."""
    return shape.model_dump(mode="json", by_alias=True)


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)


class InterruptionOut(_Out):
    last_heartbeat: datetime = Field(description="When the run's engine was last heard from.")
    seconds_ago: float = Field(description="Seconds since then.")
    resume: str = Field(description="The command that continues the run.")


class SpentOut(_Out):
    """What was spent: cost and tokens the actions reported, attempts started, seconds."""

    cost: float = Field(description="Sum of the `cost` the actions reported (their unit).")
    tokens: int = Field(description="Sum of the `tokens` the actions reported.")
    attempts: int = Field(description="Attempts started.")
    seconds: float = Field(
        description="A run: wall time since it started; a task or agent: time its attempts ran."
    )


class BudgetLimitOut(_Out):
    limit: float | None = Field(description="The plan's limit, or a changed one; null: none.")
    used: float
    share: float | None = Field(description="used / limit; null without a limit.")


class RunSpentOut(SpentOut):
    budget: dict[str, BudgetLimitOut] = Field(
        description="max_cost, max_tokens, max_attempts, max_wall_seconds: each against use."
    )


class EngineOut(_Out):
    host: str | None = Field(description="The machine of the engine that last held the run.")
    pid: int | None = Field(description="Its process id there.")


class RunOut(_Out):
    id: str
    plan: str
    plan_path: str
    workdir: str
    state: str = Field(
        description="running | interrupted (stored as running, but its engine stopped) | "
        "paused | completed | failed | cancelled"
    )
    live: bool = Field(description="An engine is working on the run now (fresh heartbeat).")
    interrupted: InterruptionOut | None = Field(
        None, description="For an interrupted run: since when, and the command that continues it."
    )
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    counts: dict[str, int] = Field(description="Tasks by state.")
    open_breakpoints: int
    engine: EngineOut = Field(description="The engine that last held the run.")
    spent: RunSpentOut | None = Field(None, description="What the run spent, against its budget.")


class LogOut(_Out):
    attempt: int = Field(description="The attempt whose output this is (1 for the first).")
    text: str = Field(description="Output from `offset` on, terminal control sequences removed.")
    offset: int = Field(description="The byte of the log this text starts at.")
    next_offset: int = Field(description="Pass as `offset` to read on.")
    over: bool = Field(description="The attempt is over: the log will not grow any more.")


class TaskOut(_Out):
    id: str
    title: str
    state: str
    outcome: str | None
    attempts: int
    priority: int
    depends_on: list[str]
    tags: list[str]
    risk: str
    next_attempt_at: datetime | None
    updated_at: datetime | None
    spent: SpentOut | None = Field(None, description="What the task's attempts spent.")


class TaskDetailOut(TaskOut):
    spec: dict[str, Any] = Field(description="The task as the plan (or a spawn) gave it.")
    dependents: list[str] = Field(description="The tasks that depend on it directly.")
    feedback: str
    answer: str
    last_error_kind: str


class TransitionOut(_Out):
    id: int
    task: str
    from_: str = Field(alias="from")
    to: str
    trigger: str
    reason: str
    actor: str
    at: datetime


class DecisionOut(_Out):
    task: str
    attempt: int
    decision: str = Field(description="proceed | retry | clarify | escalate | checkpoint")
    rule: str
    reason: str
    figures: dict[str, Any] = Field(description="The values the deciding rule saw.")
    explanation: dict[str, Any] | None = Field(
        description="Why this action: the weighted score with its parts, the rules that did not "
        "match (null for decisions stored before explanations were)."
    )
    at: datetime


class QualityOut(_Out):
    task: str
    attempt: int
    score: float
    gate_passed: bool
    stage_scores: dict[str, float]
    checks: list[dict[str, Any]] = Field(
        description="One per validator: name, stage, passed, score, message."
    )
    at: datetime


class EventOut(_Out):
    id: int
    kind: str
    task: str | None
    data: dict[str, Any]
    at: datetime


class BreakpointOut(_Out):
    id: int
    run: str
    task: str
    rule: str
    at: str = Field(description="before | after the step")
    severity: str
    action: str
    message: str
    state: str = Field(description="open | resolved")
    created_at: datetime
    resolution: str | None
    note: str
    resolved_by: str | None
    resolved_at: datetime | None
    scope: str = Field(description="task: only this task waits | run: no new work starts")
    expires_at: datetime | None = Field(description="When the default resolution applies.")
    default_resolution: str | None
    params: dict[str, Any] = Field(description="The parameters the resolution changed.")
    context: dict[str, Any] | None = Field(
        None, description="The rule context the rule saw (only on a single breakpoint)."
    )


class RunsOut(_Out):
    runs: list[RunOut]


class PageOut(_Out):
    """Which page of a run's tasks a listing holds (tasks in the order they were added)."""

    page: int = Field(description="The page shown, from 1.")
    page_size: int = Field(description="Tasks per page.")
    total: int = Field(description="Tasks the listing pages through (of the state, if given).")
    pages: int = Field(description="How many pages there are (at least 1).")
    state: str | None = Field(None, description="Only tasks in this state, if given.")


class RunDetailOut(_Out):
    run: RunOut
    tasks: list[TaskOut] = Field(description="One page of the run's tasks (see `page`).")
    page: PageOut | None = Field(None, description="Which page `tasks` is.")
    recent: list[TransitionOut] = Field(
        default_factory=list, description="The run's newest state changes, newest first."
    )
    breakpoints: list[BreakpointOut] = Field(
        default_factory=list, description="The run's open breakpoints."
    )


class TasksOut(_Out):
    tasks: list[TaskOut]
    page: PageOut | None = Field(None, description="Which page `tasks` is.")


class TaskOneOut(_Out):
    task: TaskDetailOut


class TransitionsOut(_Out):
    transitions: list[TransitionOut]


class DecisionsOut(_Out):
    decisions: list[DecisionOut]


class HistoryOut(_Out):
    transitions: list[TransitionOut]
    decisions: list[DecisionOut]


class PriorityOut(_Out):
    base: float
    deadline_boost: float
    blocking_boost: float
    dependents: int
    retry_penalty: float
    failed_attempts: int
    aging: float
    waited_seconds: float
    effective: float


class ExplainOut(_Out):
    task: str
    state: str
    priority: PriorityOut = Field(description="How the scheduler ranks the task now.")
    decisions: list[DecisionOut] = Field(description="Every decision taken on it, with why.")
    assignments: list[AssignmentOut] = Field(
        default_factory=list, description="Each attempt's agent and why it was chosen."
    )


class QualityListOut(_Out):
    quality: list[QualityOut]


class EventsOut(_Out):
    events: list[EventOut]
    last_id: int = Field(description="Pass as `after` to read on from here.")


class BreakpointsOut(_Out):
    breakpoints: list[BreakpointOut]


class RuleOut(_Out):
    name: str
    at: str | None
    when: str | None = Field(description="The rule's condition, as its file says it now.")
    severity: str | None
    doc: str
    file: str | None


class StepOut(_Out):
    attempt: int | None
    exit_code: int | None
    timed_out: bool
    duration_seconds: float | None
    error_kind: str | None
    changed_files: list[str]
    lines_changed: int | None
    diff_stat: str
    output_tail: str


class DiffOut(_Out):
    text: str
    truncated: bool
    basis: str = Field(description="What the diff compares.")


class OptionOut(_Out):
    resolution: Resolution
    meaning: str


class ReviewOut(_Out):
    breakpoint: BreakpointOut
    run: RunOut
    task: TaskDetailOut
    step: StepOut | None = Field(description="What the step did (after-step breakpoints).")
    diff: DiffOut | None
    quality: QualityOut | None = Field(description="The validators' results for that attempt.")
    decisions: list[DecisionOut] = Field(description="The decision for that attempt, and why.")
    rule: RuleOut | None = Field(description="The rule that fired.")
    options: list[OptionOut]


class ResolveOut(_Out):
    breakpoint: BreakpointOut
    task_state: str
    run_live: bool = Field(description="An engine works on the run and picks this up by itself.")
    next: str = Field(description="What to do next, for a person.")
    rolled_back: str | None = Field(
        None, description="With rollback: what the rollback did, and the command that undoes it."
    )


class ErrorDetail(_Out):
    code: str
    message: str


class BatchItemOut(_Out):
    id: int
    ok: bool
    result: ResolveOut | None = None
    error: ErrorDetail | None = None


class BatchResolveOut(_Out):
    results: list[BatchItemOut]
    resolved: int
    failed: int


class ErrorOut(_Out):
    error: ErrorDetail


def run_out(
    run: RunRecord,
    counts: dict[str, int],
    *,
    live: bool,
    open_breakpoints: int,
    interrupted: dict[str, Any] | None = None,
    spending: RunSpending | None = None,
) -> RunOut:
    """A run as every listing shows it; `interrupted` is `runs.interruption`'s facts."""
    return RunOut(
        spent=RunSpentOut(**spending.as_dict()) if spending is not None else None,
        id=run.id,
        plan=run.plan_name,
        plan_path=run.plan_path,
        workdir=run.workdir,
        state="interrupted" if interrupted is not None else run.state,
        live=live,
        interrupted=InterruptionOut(**interrupted) if interrupted is not None else None,
        started_at=run.created_at,
        updated_at=run.updated_at,
        finished_at=run.finished_at,
        counts=counts,
        open_breakpoints=open_breakpoints,
        engine=EngineOut(host=run.engine_host, pid=run.engine_pid),
    )


def task_out(task: TaskRecord, spending: RunSpending | None = None) -> TaskOut:
    return TaskOut(**_task_fields(task), spent=_spent_of(task, spending))


def task_detail_out(
    task: TaskRecord, dependents: list[str], spending: RunSpending | None = None
) -> TaskDetailOut:
    """A task with its spec and what a person answered; `dependents` from `dependents_of`."""
    return TaskDetailOut(
        **_task_fields(task),
        spent=_spent_of(task, spending),
        spec=task.spec.model_dump(mode="json"),
        dependents=dependents,
        feedback=task.feedback,
        answer=task.answer,
        last_error_kind=task.last_error_kind,
    )


def dependents_of(task_id: str, tasks: list[TaskRecord]) -> list[str]:
    """The tasks of a run that depend on `task_id` directly, in the run's order."""
    return [t.task_id for t in tasks if task_id in t.spec.depends_on]


def _spent_of(task: TaskRecord, spending: RunSpending | None) -> SpentOut | None:
    spent: Spent | None = spending.tasks.get(task.task_id) if spending is not None else None
    return SpentOut(**spent.as_dict()) if spent is not None else None


def _task_fields(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.task_id,
        "title": task.spec.title,
        "state": task.state,
        "outcome": task.outcome,
        "attempts": task.attempts,
        "priority": task.priority,
        "depends_on": task.depends_on,
        "tags": list(task.spec.tags),
        "risk": task.spec.risk,
        "next_attempt_at": task.next_attempt_at,
        "updated_at": task.updated_at,
    }


def transition_out(move: TransitionRecord) -> TransitionOut:
    return TransitionOut(
        id=move.id,
        task=move.task_id,
        from_=move.source,
        to=move.dest,
        trigger=move.trigger,
        reason=move.reason,
        actor=move.actor,
        at=move.at,
    )


def decision_out(decision: DecisionRecord) -> DecisionOut:
    # Decisions store their explanation beside the figures the rule saw (older ones have none).
    seen, explanation = split_stored_figures(decision.figures)
    return DecisionOut(
        task=decision.task_id,
        attempt=decision.attempt,
        decision=decision.action,
        rule=decision.rule,
        reason=decision.reason,
        figures=seen,
        explanation=explanation,
        at=decision.at,
    )


def quality_out(quality: QualityRecord) -> QualityOut:
    return QualityOut(
        task=quality.task_id,
        attempt=quality.attempt,
        score=quality.score,
        gate_passed=quality.gate_passed,
        stage_scores=quality.stage_scores,
        checks=quality.checks,
        at=quality.at,
    )


def event_out(event: EventRecord) -> EventOut:
    return EventOut(id=event.id, kind=event.kind, task=event.task_id, data=event.data, at=event.at)


def breakpoint_out(bp: BreakpointRecord, *, with_context: bool = False) -> BreakpointOut:
    return BreakpointOut(
        id=bp.id,
        run=bp.run_id,
        task=bp.task_id,
        rule=bp.rule,
        at=bp.at,
        severity=bp.severity,
        action=bp.action,
        message=bp.message,
        state=bp.state,
        created_at=bp.created_at,
        resolution=bp.resolution,
        note=bp.note,
        resolved_by=bp.resolved_by,
        resolved_at=bp.resolved_at,
        scope=bp.scope,
        expires_at=bp.expires_at,
        default_resolution=bp.default_resolution,
        params=bp.params,
        context=bp.context if with_context else None,
    )


class DeadLetterOut(_Out):
    id: int
    run: str
    task: str
    failed_at: datetime
    error_kind: str
    reason: str
    attempts_count: int
    state: str = Field(description="open | resubmitted | closed")
    resolved_at: datetime | None
    resolved_by: str | None
    note: str
    params: dict[str, Any] = Field(description="The resubmission: --set values, new run.")


class DeadLetterDetailOut(DeadLetterOut):
    spec: dict[str, Any]
    attempts: list[dict[str, Any]] = Field(description="Each attempt with its output tail.")
    quality: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    breakpoints: list[dict[str, Any]]


class DeadLettersOut(_Out):
    dead_letters: list[DeadLetterOut]


class DeadLetterOneOut(_Out):
    dead_letter: DeadLetterDetailOut


class InterventionOut(_Out):
    id: int
    run: str | None
    task: str | None
    action: str
    actor: str
    reason: str
    params: dict[str, Any]
    state: str = Field(description="requested (an engine applies it) | applied | refused")
    note: str
    at: datetime
    applied_at: datetime | None


class InterventionsOut(_Out):
    run: str
    interventions: list[InterventionOut]


class ResubmitOut(_Out):
    dead_letter: DeadLetterOut
    intervention: InterventionOut | None = Field(description="In the task's own run.")
    new_run: str | None = Field(description="With new_run: the run to start.")
    next: str = Field(description="What to do next, for a person.")


class BatchResubmitItemOut(_Out):
    id: int
    ok: bool
    result: ResubmitOut | None = None
    error: ErrorDetail | None = None


class BatchResubmitOut(_Out):
    results: list[BatchResubmitItemOut]
    resubmitted: int
    failed: int


class LastResetOut(_Out):
    by: str
    reason: str
    at: datetime


class BreakerOut(_Out):
    key: str
    state: str = Field(description="closed (work flows) | open (work waits) | half_open (probing)")
    opened_at: datetime | None
    calls: int = Field(description="Recent attempts in the window.")
    failures: int
    probes_in_flight: int
    reason: str
    version: int
    updated_at: datetime | None
    last_reset: LastResetOut | None = None


class BreakersOut(_Out):
    breakers: list[BreakerOut]


class BreakerResetOut(_Out):
    breaker: BreakerOut


class InterventionDoneOut(_Out):
    intervention: InterventionOut
    run_state: str
    next: str = Field(description="What to do next, for a person.")


def dead_letter_out(letter: DeadLetterRecord) -> DeadLetterOut:
    return DeadLetterOut(**_dead_letter_fields(letter))


def dead_letter_detail_out(letter: DeadLetterRecord) -> DeadLetterDetailOut:
    return DeadLetterDetailOut(
        **_dead_letter_fields(letter),
        spec=letter.spec,
        attempts=letter.attempts,
        quality=letter.quality,
        decisions=letter.decisions,
        breakpoints=letter.breakpoints,
    )


def _dead_letter_fields(letter: DeadLetterRecord) -> dict[str, Any]:
    return {
        "id": letter.id,
        "run": letter.run_id,
        "task": letter.task_id,
        "failed_at": letter.failed_at,
        "error_kind": letter.error_kind,
        "reason": letter.reason,
        "attempts_count": len(letter.attempts),
        "state": letter.state,
        "resolved_at": letter.resolved_at,
        "resolved_by": letter.resolved_by,
        "note": letter.note,
        "params": letter.params,
    }


def intervention_out(record: InterventionRecord) -> InterventionOut:
    return InterventionOut(
        id=record.id,
        run=record.run_id,
        task=record.task_id,
        action=record.action,
        actor=record.actor,
        reason=record.reason,
        params=record.params,
        state=record.state,
        note=record.note,
        at=record.at,
        applied_at=record.applied_at,
    )


def breaker_out(breaker: BreakerRecord, last_reset: InterventionRecord | None = None) -> BreakerOut:
    return BreakerOut(
        key=breaker.key,
        state=breaker.state,
        opened_at=breaker.opened_at,
        calls=len(breaker.window),
        failures=sum(1 for _, ok in breaker.window if not ok),
        probes_in_flight=len(breaker.probes),
        reason=breaker.reason,
        version=breaker.version,
        updated_at=breaker.updated_at,
        last_reset=(
            LastResetOut(by=last_reset.actor, reason=last_reset.reason, at=last_reset.at)
            if last_reset is not None
            else None
        ),
    )


# ---- acting through the API: runs started, tasks added -----------------------------------------


class RunStartedOut(BaseModel):
    """A run started in the background by `POST /api/v1/runs`."""

    run: str = Field(description="The new run's id: follow it at /api/v1/runs/{run}.")
    pid: int = Field(description="The process working on it (`orch run ... --quiet`).")
    plan_file: str = Field(description="The plan file the run was started from.")
    log_file: str = Field(description="Where the run's process writes its output.")
    state: Literal["starting"] = "starting"


class TasksAddedOut(BaseModel):
    """Tasks added to a run by `POST /api/v1/runs/{run}/tasks` (as `orch task add`)."""

    run: str
    tasks: list[str] = Field(description="The ids given to the new tasks (a taken id gets -2...).")
    engine_live: bool = Field(
        description="An engine works on the run and picks them up by itself; else resume it."
    )
    next: str = Field(description="What happens next, as the CLI says it.")


class WorkerOut(_Out):
    """A worker process (`orch worker`) and the attempts it ran, as the store records them."""

    name: str = Field(description="The worker's name (--name, else host:pid).")
    host: str = Field(description="The machine it runs on.")
    pid: int = Field(description="Its process id on that machine.")
    capabilities: list[str] = Field(description="Tags of the tasks it may run (--capabilities).")
    concurrency: int = Field(description="How many attempts it runs at once.")
    run_id: str | None = Field(description="The only run it works for (--run), or null: any.")
    state: str = Field(description="working, or stopped (it ended cleanly).")
    started_at: datetime
    last_heartbeat: datetime = Field(description="When it last said it was alive.")
    current: list[str] = Field(description="Attempts it holds a lease on now: run/task#attempt.")
    reported: int = Field(description="Attempts it ran and reported.")
    succeeded: int = Field(description="Of those, attempts whose quality gate passed.")
    success_rate: float | None = Field(description="succeeded / reported; null before any.")
    mean_duration_seconds: float | None = Field(
        description="Mean time from claim to report of its reported attempts."
    )


def worker_out(worker: Any) -> WorkerOut:
    """The shape of a `work_queue.WorkerFigures`."""
    return WorkerOut(
        name=worker.name,
        host=worker.host,
        pid=worker.pid,
        capabilities=list(worker.capabilities),
        concurrency=worker.concurrency,
        run_id=worker.run_id,
        state=worker.state,
        started_at=worker.started_at,
        last_heartbeat=worker.last_heartbeat,
        current=list(worker.current),
        reported=worker.reported,
        succeeded=worker.succeeded,
        success_rate=worker.success_rate,
        mean_duration_seconds=worker.mean_duration_seconds,
    )
