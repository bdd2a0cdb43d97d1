"""Conversions between the store's table rows and the plain records the engine uses.

One generic mapping does them all: a record's dataclass fields are the columns of the same name.
Each function below names only what differs from that (a column kept elsewhere, a type to parse).
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Row

from orchestration.core.models import (
    SHARED_CONTEXT,
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

R = TypeVar("R")
Plan: TypeAlias = "tuple[tuple[str, ...], attrgetter[Any], itemgetter[Any]]"
GENERATED = ("id",)  # columns the database fills in on insert


# Per record type (and the fields its table leaves out): the field names, and one getter each
# for a record's attributes and a row's columns, made once (one call fetches them all, several
# times faster than a lookup per field). Every record has several fields: they return tuples.
_PLANS: dict[tuple[type, tuple[str, ...]], Plan] = {}


def _plan(record_type: type, leave_out: tuple[str, ...]) -> Plan:
    plan = _PLANS.get((record_type, leave_out))
    if plan is None:
        names = tuple(f.name for f in fields(record_type) if f.name not in leave_out)
        plan = _PLANS[(record_type, leave_out)] = (names, attrgetter(*names), itemgetter(*names))
    return plan


def record_of(record_type: type[R], row: Row[Any], **given: Any) -> R:
    """A record from a row: each field from the column of its name, unless `given`."""
    names, _, by_column = _plan(record_type, ())
    columns = by_column(row._mapping)  # Row's public mapping view, whatever the column order
    if not given:
        return record_type(*columns)  # the fields in their declared order
    values = dict(zip(names, columns, strict=True))
    values.update(given)
    return record_type(**values)


def row_of(record: Any, *, leave_out: tuple[str, ...] = (), **given: Any) -> dict[str, Any]:
    """A row from a record: each column from the field of its name, unless `given`; the fields
    in `leave_out` have no column in the table written."""
    names, by_field, _ = _plan(type(record), leave_out)
    values = dict(zip(names, by_field(record), strict=True))
    values.update(given)
    return values


def run_row(run: RunRecord) -> dict[str, Any]:
    return row_of(run, leave_out=("plan_json",))  # the plan goes to its own table


def run_plan_row(run: RunRecord) -> dict[str, Any]:
    return {"run_id": run.id, "plan_json": run.plan_json}


def run_record(row: Row[Any]) -> RunRecord:
    # A run stored without its plan reads as an empty one.
    return record_of(RunRecord, row, plan_json=row.plan_json or {})


def task_row(task: TaskRecord, seq: int, now: datetime) -> dict[str, Any]:
    spec = task.spec.model_dump(mode="json")
    return row_of(task, seq=seq, spec=spec, updated_at=task.updated_at or now)


# Each field a task may leave out, with the value it then has (all plain JSON values).
_TASK_DEFAULTS = {
    name: info.get_default(call_default_factory=True)
    for name, info in TaskSpec.model_fields.items()
    if not info.is_required()
}


def task_record(row: Row[Any], shared: dict[Any, Any] | None = None) -> TaskRecord:
    """`shared`: one dict for the rows of one read, so tasks stored alike share their action and
    retry models (models.TaskSpec._shared), as a plan's tasks do when it is loaded."""
    context = {SHARED_CONTEXT: shared} if shared is not None else None
    stored = json.loads(row.spec) if isinstance(row.spec, str) else row.spec
    spec = TaskSpec.model_validate(_as_written(stored), context=context)
    return record_of(TaskRecord, row, spec=spec)


def _as_written(stored: Any) -> Any:
    """A stored spec without the fields that hold their default: the model is the same, but
    pydantic keeps the set of fields given with each model, and all 23 given cost 2.2 KB a task
    (a resumed 100,000-task run held 340 MiB of specs instead of 140)."""
    if not isinstance(stored, dict):
        return stored  # pydantic says what is wrong with it
    return {
        k: v
        for k, v in stored.items()
        if k not in _TASK_DEFAULTS
        or type(v) is not type(_TASK_DEFAULTS[k])
        or v != _TASK_DEFAULTS[k]
    }


def transition_record(row: Row[Any]) -> TransitionRecord:
    return record_of(TransitionRecord, row)


def breakpoint_row(run_id: str, bp: BreakpointRecord) -> dict[str, Any]:
    return row_of(bp, leave_out=GENERATED, run_id=run_id)


def breakpoint_record(row: Row[Any]) -> BreakpointRecord:
    return record_of(BreakpointRecord, row, params=row.params or {})


def setting_row(run_id: str, s: RunSetting) -> dict[str, Any]:
    return row_of(s, leave_out=GENERATED, run_id=run_id)


def setting_record(row: Row[Any]) -> RunSetting:
    return record_of(RunSetting, row)


def decision_row(run_id: str, d: DecisionRecord) -> dict[str, Any]:
    return row_of(d, run_id=run_id)


def decision_record(row: Row[Any]) -> DecisionRecord:
    return record_of(DecisionRecord, row)


def quality_row(run_id: str, q: QualityRecord) -> dict[str, Any]:
    return row_of(q, run_id=run_id)


def quality_record(row: Row[Any]) -> QualityRecord:
    return record_of(QualityRecord, row, gate_passed=bool(row.gate_passed))


def event_row(run_id: str, e: EventRecord) -> dict[str, Any]:
    return row_of(e, leave_out=GENERATED, run_id=run_id)


def event_record(row: Row[Any]) -> EventRecord:
    return record_of(EventRecord, row)


def breaker_row(b: BreakerRecord, now: datetime) -> dict[str, Any]:
    window = [[at, ok] for at, ok in b.window]
    return row_of(b, window=window, probes=list(b.probes), updated_at=b.updated_at or now)


def breaker_record(row: Row[Any]) -> BreakerRecord:
    window = [(float(at), bool(ok)) for at, ok in row.window]
    return record_of(BreakerRecord, row, window=window, probes=[float(at) for at in row.probes])


def dead_letter_row(d: DeadLetterRecord) -> dict[str, Any]:
    return row_of(d, leave_out=GENERATED)


def dead_letter_record(row: Row[Any]) -> DeadLetterRecord:
    return record_of(DeadLetterRecord, row)


def intervention_row(i: InterventionRecord) -> dict[str, Any]:
    return row_of(i, leave_out=GENERATED)


def intervention_record(row: Row[Any]) -> InterventionRecord:
    return record_of(InterventionRecord, row)
