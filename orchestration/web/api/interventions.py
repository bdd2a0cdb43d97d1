"""Interventions: a human's hand on a run or one of its tasks (pause, resume, skip, retry, ...).

The same functions `orch runs pause|resume|cancel|retry|skip` and `orch task
pause|resume|skip|retry|cancel|rerun` call; every action is stored with who did it and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query

from orchestration.core.models import InterventionRecord
from orchestration.resilience.interventions import (
    FINAL_RUN_STATES,
    RUN_ACTIONS,
    TASK_ACTIONS,
    intervene,
    wait_until_applied,
)
from orchestration.resilience.runs import run_is_live
from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.auth import CurrentPrincipal, Principal, clean_name
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.errors import ApiError
from orchestration.web.reviewing import resume_command

router = APIRouter(tags=["interventions"])

# How long a request waits for the engine working on the run to apply an intervention; the CLI
# waits 10 s, a web request less (the answer then says it is still `requested`).
WAIT_SECONDS = 2.0
TAKES_PARAMS = ("retry", "rerun")


def actor_of(requested: str | None, principal: Principal) -> str:
    """Who acts: as for resolving a breakpoint, the body's `actor` or the signed-in name."""
    return clean_name(requested) if requested else principal.name


def check_intervention(
    action: str, task_id: str | None, reason: str, params: Mapping[str, Any]
) -> None:
    """Refuse (422) what the CLI's options would not let through, before anything is stored."""
    allowed = TASK_ACTIONS if task_id else RUN_ACTIONS
    if action not in allowed:
        target = "a task" if task_id else "a whole run"
        raise ApiError(
            422, f"action '{action}' does not apply to {target}; one of {', '.join(allowed)}"
        )
    if action == "skip" and not reason.strip():
        raise ApiError(422, "a skip needs a reason: it is kept in the history")
    if params and action not in TAKES_PARAMS:
        raise ApiError(
            422, f"params change the next attempt: only with {' or '.join(TAKES_PARAMS)}"
        )


def settle(store: Store, record: InterventionRecord) -> InterventionRecord:
    """Wait briefly for a running engine to apply a requested intervention (as the CLI does)."""
    if record.state == "requested":
        record = wait_until_applied(store, record, WAIT_SECONDS)
    if record.state == "refused":
        subject = f"task {record.task_id}" if record.task_id else f"run {record.run_id}"
        raise ApiError(
            409,
            f"intervention {record.id} ({record.action} {subject}) refused by the engine: "
            f"{record.note}",
        )
    return record


def next_text(store: Store, record: InterventionRecord, db_hint: str) -> str:
    """What a person should do next, as the CLI reports it."""
    if record.state == "requested":
        return "requested; the engine working on the run applies it at its next check"
    what = record.note or record.action
    if record.run_id is None:
        return what
    run = store.get_run(record.run_id)
    waiting = run.state not in FINAL_RUN_STATES and record.action != "pause"
    if waiting and not run_is_live(run, datetime.now(UTC)):
        return f"{what}. Continue with: {resume_command(run.id, db_hint)}"
    return what


def carry_out(
    store: Store,
    run_id: str,
    body: schemas.InterventionIn,
    actor: str,
    db_hint: str,
) -> schemas.InterventionDoneOut:
    """Check, carry out and settle one intervention; shared by the API and the pages."""
    store.get_run(run_id)  # 404 for an unknown run
    if body.task is not None:
        store.task(run_id, body.task)  # 404 for an unknown task
    check_intervention(body.action, body.task, body.reason, body.params)
    if body.downstream and body.action != "rerun":
        raise ApiError(422, "downstream goes with rerun only")
    record = intervene(
        store,
        run_id,
        body.action,
        task_id=body.task,
        actor=actor,
        reason=body.reason,
        sets=body.params,
        downstream=body.downstream,
    )
    record = settle(store, record)
    return schemas.InterventionDoneOut(
        intervention=schemas.intervention_out(record),
        run_state=store.get_run(run_id).state,
        next=next_text(store, record, db_hint),
    )


@router.post("/runs/{run_id:id}/interventions", response_model=schemas.InterventionDoneOut)
def create_intervention(
    run_id: str,
    body: schemas.InterventionIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
) -> schemas.InterventionDoneOut:
    """Pause, resume, skip, retry or cancel the run (no `task`) or one task; rerun a task.

    A run no engine works on is changed at once; a running engine applies the request itself
    (the answer waits up to two seconds for that, else its state is `requested`).
    """
    return carry_out(store, run_id, body, actor_of(body.actor, principal), config.db_hint)


@router.get("/runs/{run_id:id}/interventions", response_model=schemas.InterventionsOut)
def list_interventions(
    run_id: str,
    store: StoreDep,
    task: str | None = Query(None, description="Only this task's."),
) -> schemas.InterventionsOut:
    """Every intervention on the run (or one task), oldest first, with who, why and the result."""
    store.get_run(run_id)
    found = store.interventions(run_id, task_id=task)
    return schemas.InterventionsOut(
        run=run_id, interventions=[schemas.intervention_out(i) for i in found]
    )
