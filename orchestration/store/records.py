"""Conversions between the store's table rows and the plain records the engine uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from orchestration.models import (
    BreakerRecord,
    BreakpointRecord,
    DeadLetterRecord,
    DecisionRecord,
    EventRecord,
    InterventionRecord,
    QualityRecord,
    RunRecord,
    RunSetting,
    TaskRecord,
    TaskSpec,
    TransitionRecord,
)


def run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "plan_name": run.plan_name,
        "plan_path": run.plan_path,
        "workdir": run.workdir,
        "state": run.state,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "finished_at": run.finished_at,
        "engine_host": run.engine_host,
        "engine_pid": run.engine_pid,
        "engine_started": run.engine_started,
        "owner": run.owner,
    }


def run_plan_row(run: RunRecord) -> dict[str, Any]:
    return {"run_id": run.id, "plan_json": run.plan_json}


def run_record(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        plan_name=row.plan_name,
        plan_path=row.plan_path,
        workdir=row.workdir,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        plan_json=row.plan_json or {},  # a run stored without its plan reads as an empty one
        engine_host=row.engine_host,
        engine_pid=row.engine_pid,
        engine_started=row.engine_started,
        owner=row.owner,
    )


def task_row(task: TaskRecord, seq: int, now: datetime) -> dict[str, Any]:
    return {
        "run_id": task.run_id,
        "task_id": task.task_id,
        "seq": seq,
        "state": task.state,
        "spec": task.spec.model_dump(mode="json"),
        "attempts": task.attempts,
        "priority": task.priority,
        "outcome": task.outcome,
        "next_attempt_at": task.next_attempt_at,
        "feedback": task.feedback,
        "answer": task.answer,
        "last_error_kind": task.last_error_kind,
        "updated_at": task.updated_at or now,
    }


def task_record(row: Row[Any]) -> TaskRecord:
    return TaskRecord(
        run_id=row.run_id,
        task_id=row.task_id,
        state=row.state,
        spec=(
            TaskSpec.model_validate_json(row.spec)
            if isinstance(row.spec, str)
            else TaskSpec.model_validate(row.spec)
        ),
        attempts=row.attempts,
        priority=row.priority,
        outcome=row.outcome,
        next_attempt_at=row.next_attempt_at,
        feedback=row.feedback,
        answer=row.answer,
        last_error_kind=row.last_error_kind,
        updated_at=row.updated_at,
    )


def transition_record(row: Row[Any]) -> TransitionRecord:
    return TransitionRecord(
        id=row.id,
        run_id=row.run_id,
        task_id=row.task_id,
        source=row.source,
        dest=row.dest,
        trigger=row.trigger,
        reason=row.reason,
        actor=row.actor,
        at=row.at,
    )


_BREAKPOINT_FIELDS: tuple[str, ...] = (
    "task_id",
    "rule",
    "at",
    "severity",
    "action",
    "message",
    "state",
    "created_at",
    "context",
    "resolution",
    "note",
    "resolved_by",
    "resolved_at",
    "scope",
    "expires_at",
    "default_resolution",
    "params",
)


def breakpoint_row(run_id: str, bp: BreakpointRecord) -> dict[str, Any]:
    return {"run_id": run_id, **{name: getattr(bp, name) for name in _BREAKPOINT_FIELDS}}


def breakpoint_record(row: Row[Any]) -> BreakpointRecord:
    values = {name: getattr(row, name) for name in _BREAKPOINT_FIELDS}
    values["params"] = values["params"] or {}
    return BreakpointRecord(id=row.id, run_id=row.run_id, **values)


def setting_row(run_id: str, s: RunSetting) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "kind": s.kind,
        "name": s.name,
        "value": s.value,
        "actor": s.actor,
        "note": s.note,
        "at": s.at,
    }


def setting_record(row: Row[Any]) -> RunSetting:
    return RunSetting(
        id=row.id,
        run_id=row.run_id,
        kind=row.kind,
        name=row.name,
        value=row.value,
        actor=row.actor,
        note=row.note,
        at=row.at,
    )


def decision_row(run_id: str, d: DecisionRecord) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_id": d.task_id,
        "attempt": d.attempt,
        "action": d.action,
        "rule": d.rule,
        "reason": d.reason,
        "figures": d.figures,
        "at": d.at,
    }


def decision_record(row: Row[Any]) -> DecisionRecord:
    return DecisionRecord(
        run_id=row.run_id,
        task_id=row.task_id,
        attempt=row.attempt,
        action=row.action,
        rule=row.rule,
        reason=row.reason,
        figures=row.figures,
        at=row.at,
    )


def quality_row(run_id: str, q: QualityRecord) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_id": q.task_id,
        "attempt": q.attempt,
        "score": q.score,
        "gate_passed": q.gate_passed,
        "stage_scores": q.stage_scores,
        "checks": q.checks,
        "at": q.at,
    }


def quality_record(row: Row[Any]) -> QualityRecord:
    return QualityRecord(
        run_id=row.run_id,
        task_id=row.task_id,
        attempt=row.attempt,
        score=row.score,
        gate_passed=bool(row.gate_passed),
        stage_scores=row.stage_scores,
        checks=row.checks,
        at=row.at,
    )


def event_row(run_id: str, e: EventRecord) -> dict[str, Any]:
    return {"run_id": run_id, "kind": e.kind, "task_id": e.task_id, "data": e.data, "at": e.at}


def event_record(row: Row[Any]) -> EventRecord:
    return EventRecord(
        id=row.id, run_id=row.run_id, kind=row.kind, task_id=row.task_id, data=row.data, at=row.at
    )


def breaker_row(b: BreakerRecord, now: datetime) -> dict[str, Any]:
    return {
        "key": b.key,
        "state": b.state,
        "opened_at": b.opened_at,
        "window": [[at, ok] for at, ok in b.window],
        "probes": list(b.probes),
        "probe_successes": b.probe_successes,
        "reason": b.reason,
        "version": b.version,
        "updated_at": b.updated_at or now,
    }


def breaker_record(row: Row[Any]) -> BreakerRecord:
    return BreakerRecord(
        key=row.key,
        state=row.state,
        opened_at=row.opened_at,
        window=[(float(at), bool(ok)) for at, ok in row.window],
        probes=[float(at) for at in row.probes],
        probe_successes=row.probe_successes,
        reason=row.reason,
        version=row.version,
        updated_at=row.updated_at,
    )


_DEAD_LETTER_FIELDS: tuple[str, ...] = (
    "run_id",
    "task_id",
    "transition_id",
    "failed_at",
    "error_kind",
    "reason",
    "spec",
    "attempts",
    "quality",
    "decisions",
    "breakpoints",
    "state",
    "resolved_at",
    "resolved_by",
    "note",
    "params",
)


def dead_letter_row(d: DeadLetterRecord) -> dict[str, Any]:
    return {name: getattr(d, name) for name in _DEAD_LETTER_FIELDS}


def dead_letter_record(row: Row[Any]) -> DeadLetterRecord:
    return DeadLetterRecord(id=row.id, **{name: getattr(row, name) for name in _DEAD_LETTER_FIELDS})


_INTERVENTION_FIELDS: tuple[str, ...] = (
    "run_id",
    "task_id",
    "action",
    "actor",
    "reason",
    "params",
    "state",
    "note",
    "at",
    "applied_at",
)


def intervention_row(i: InterventionRecord) -> dict[str, Any]:
    return {name: getattr(i, name) for name in _INTERVENTION_FIELDS}


def intervention_record(row: Row[Any]) -> InterventionRecord:
    return InterventionRecord(
        id=row.id, **{name: getattr(row, name) for name in _INTERVENTION_FIELDS}
    )
