"""The dead letter queue: tasks that failed for good, captured with their whole story."""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import (
    BreakpointRecord,
    DeadLetterRecord,
    DecisionRecord,
    EventRecord,
    InterventionRecord,
    QualityRecord,
    RunRecord,
    TaskRecord,
    TaskSpec,
    TransitionRecord,
)
from orchestration.resilience.interventions import intervene
from orchestration.resilience.overrides import OverrideError, apply_to_spec
from orchestration.resilience.runs import run_id_for
from orchestration.store import Batch, Store

logger = logging.getLogger(__name__)

STATES = ("open", "resubmitted", "closed")
ATTEMPT_EVENTS = ("step", "attempt_stopped")
TAIL_CHARS = 4_000  # characters of each attempt's output kept (the engine keeps as many)
MAX_FILES = 50  # changed files listed per attempt
# The fields of a step's context that tell what an attempt did.
ATTEMPT_FIELDS = (
    "exit_code",
    "timed_out",
    "error_kind",
    "duration_seconds",
    "changed_files_count",
    "lines_changed",
    "quality_score",
    "gate_passed",
    "tests_passed",
    "tests_failed",
    "decision",
)


# ---- capturing -----------------------------------------------------------------------------------


def attempt_entry(event: EventRecord) -> dict[str, Any]:
    """One attempt as a dead letter shows it, from its `step` or `attempt_stopped` event."""
    data = event.data
    entry: dict[str, Any] = {"attempt": data.get("attempt"), "at": event.at.isoformat()}
    if event.kind == "attempt_stopped":
        entry.update(
            stopped_by=data.get("rule"),
            message=data.get("message", ""),
            duration_seconds=data.get("duration_seconds"),
        )
    else:
        entry.update({name: data.get(name) for name in ATTEMPT_FIELDS if name in data})
        files = data.get("changed_files") or []
        entry["changed_files"] = list(files)[:MAX_FILES]
    entry["output_tail"] = str(data.get("output_tail") or "")[-TAIL_CHARS:]
    return entry


def build_dead_letter(
    task: TaskRecord,
    failure: TransitionRecord,
    attempts: Iterable[EventRecord],
    quality: Iterable[QualityRecord],
    decisions: Iterable[DecisionRecord],
    breakpoints: Iterable[BreakpointRecord],
) -> DeadLetterRecord:
    """The dead letter of one failure (`failure` is the move into `failed`), from stored records."""
    entries = [attempt_entry(e) for e in attempts]
    kinds = [str(e["error_kind"]) for e in entries if e.get("error_kind") not in (None, "none")]
    error_kind = task.last_error_kind if task.last_error_kind != "none" else None
    return DeadLetterRecord(
        id=0,
        run_id=task.run_id,
        task_id=task.task_id,
        transition_id=failure.id,
        failed_at=failure.at,
        error_kind=error_kind or (kinds[-1] if kinds else "none"),
        reason=failure.reason,
        spec=task.spec.model_dump(mode="json"),
        attempts=entries,
        quality=[
            {
                "attempt": q.attempt,
                "score": q.score,
                "gate_passed": q.gate_passed,
                "stage_scores": q.stage_scores,
                "checks": q.checks,
            }
            for q in quality
        ],
        decisions=[
            {
                "attempt": d.attempt,
                "decision": d.action,
                "rule": d.rule,
                "reason": d.reason,
                "at": d.at.isoformat(),
            }
            for d in decisions
        ],
        breakpoints=[
            {
                "id": bp.id,
                "rule": bp.rule,
                "at": bp.at,
                "message": bp.message,
                "state": bp.state,
                "resolution": bp.resolution,
                "resolved_by": bp.resolved_by,
                "note": bp.note,
                "resolved_at": bp.resolved_at.isoformat() if bp.resolved_at else None,
            }
            for bp in breakpoints
        ],
        params={"attempts_used": task.attempts},
    )


def capture_dead_letter(store: Store, run_id: str, task_id: str) -> DeadLetterRecord | None:
    """Capture a failed task in the queue (once per failure); None if it is not failed now.

    Safe to call more than once and from several processes: a failure already captured is
    returned as it is stored.
    """
    task = store.task(run_id, task_id)
    if task.state != "failed":
        return None
    failure = next(
        (m for m in reversed(store.transitions(run_id, task_id)) if m.dest == "failed"), None
    )
    if failure is None:
        return None
    stored = _captured(store, run_id, task_id, failure.id)
    if stored is not None:
        return stored
    letter = build_dead_letter(
        task,
        failure,
        store.task_events(run_id, task_id, ATTEMPT_EVENTS),
        store.quality(run_id, task_id),
        store.decisions(run_id, task_id),
        [bp for bp in store.breakpoints(run_id) if bp.task_id == task_id],
    )
    store.commit(run_id, Batch(dead_letters=[letter]))
    return _captured(store, run_id, task_id, failure.id)


def _captured(
    store: Store, run_id: str, task_id: str, transition_id: int
) -> DeadLetterRecord | None:
    return next(
        (d for d in store.dead_letters(run_id, task_id) if d.transition_id == transition_id), None
    )


# ---- resubmitting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resubmitted:
    """What a resubmission did: an intervention in the task's run, or a new run."""

    dead_letter: DeadLetterRecord
    intervention: InterventionRecord | None  # same run
    new_run_id: str | None  # --new-run


def resubmit(
    store: Store,
    dead_letter_id: int,
    *,
    actor: str,
    sets: Mapping[str, Any] | None = None,
    new_run: bool = False,
    note: str = "",
    now: datetime | None = None,
) -> Resubmitted:
    """Run a dead letter's task again, with `sets` (`--set key=value`) changed.

    In its own run (default) the task is requeued (`orch task retry`): its dependents that
    were cancelled because it failed wait for it again, and an engine working on the run
    applies it. With `new_run`, a new run of the same plan holds just this task (its spec as it
    failed, dependencies dropped), to start with `orch resume NEW_RUN`.
    """
    now = now or datetime.now(UTC)
    letter = store.dead_letter(dead_letter_id)
    if letter.state != "open":
        raise OrchestrationError(
            f"dead letter {dead_letter_id} is already {letter.state} (by {letter.resolved_by}"
            f"{f' at {letter.resolved_at:%Y-%m-%d %H:%M}Z' if letter.resolved_at else ''})"
        )
    if new_run:
        run_id = _resubmit_in_new_run(store, letter, actor, dict(sets or {}), note, now)
        return Resubmitted(store.dead_letter(dead_letter_id), None, run_id)
    task = store.task(letter.run_id, letter.task_id)
    if task.state != "failed":
        raise OrchestrationError(
            f"task '{task.task_id}' of dead letter {dead_letter_id} is {task.state} now, not "
            f"failed; use --new-run to run it again in a run of its own"
        )
    intervention = intervene(
        store,
        letter.run_id,
        "retry",
        task_id=letter.task_id,
        actor=actor,
        reason=note or f"dead letter {dead_letter_id} resubmitted",
        sets=sets,
        extra={"dead_letter": dead_letter_id},
        now=now,
    )
    return Resubmitted(store.dead_letter(dead_letter_id), intervention, None)


def _resubmit_in_new_run(
    store: Store,
    letter: DeadLetterRecord,
    actor: str,
    sets: dict[str, Any],
    note: str,
    now: datetime,
) -> str:
    old = store.get_run(letter.run_id)
    spec = TaskSpec.model_validate({**letter.spec, "depends_on": []})
    try:
        spec = apply_to_spec(spec, sets)
    except OverrideError as error:
        raise OrchestrationError(error.message) from None
    plan_json = copy.deepcopy(old.plan_json)
    plan_json.setdefault("spec", {})["tasks"] = [spec.model_dump(mode="json")]
    run_id = run_id_for(old.plan_name, now)
    run = RunRecord(
        run_id, old.plan_name, old.plan_path, old.workdir, "paused", now, now, None, plan_json
    )
    task = TaskRecord(run_id, spec.id, "pending", spec, priority=spec.priority)
    store.create_run(run, [task])
    params = {"new_run": run_id, "sets": sets}
    values = {
        "state": "resubmitted",
        "resolved_at": now,
        "resolved_by": actor,
        "note": note or f"resubmitted in run {run_id}",
        "params": params,
    }
    reason = note or f"dead letter {letter.id} resubmitted in a new run"
    intervention = InterventionRecord(
        old.id, letter.task_id, "resubmit", actor, reason, {**params, "dead_letter": letter.id}, now
    )
    intervention.note, intervention.applied_at = f"new run {run_id}", now
    data = {"action": "resubmit", "actor": actor, "reason": reason, "params": params}
    store.commit(
        old.id,
        Batch(
            dead_letter_updates=[(letter.id, "open", values)],
            interventions=[intervention],
            events=[EventRecord(old.id, "intervention", letter.task_id, data, now)],
        ),
    )
    return run_id


# ---- housekeeping and figures ------------------------------------------------------------------


def purge(
    store: Store,
    *,
    older_than_seconds: float | None = None,
    run_id: str | None = None,
    include_open: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[DeadLetterRecord]:
    """Delete dead letters that are dealt with (resubmitted or closed; `include_open`: all),
    that failed longer ago than `older_than_seconds` (None: any age); the ones deleted."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
    chosen = [
        letter
        for letter in store.dead_letters(run_id)
        if (include_open or letter.state != "open")
        and (cutoff is None or letter.failed_at < cutoff)
    ]
    if not dry_run:
        store.delete_dead_letters([letter.id for letter in chosen])
    return chosen


def stats(letters: Iterable[DeadLetterRecord]) -> dict[str, Any]:
    """Counts by state, error kind, task and run (most first), for `orch dlq stats`."""
    letters = list(letters)

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": name, "count": count} for name, count in counter.most_common()]

    return {
        "total": len(letters),
        "by_state": {state: sum(1 for d in letters if d.state == state) for state in STATES},
        "by_error_kind": ranked(Counter(d.error_kind for d in letters)),
        "by_task": ranked(Counter(d.task_id for d in letters)),
        "by_run": ranked(Counter(d.run_id for d in letters)),
    }
