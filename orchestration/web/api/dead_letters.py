"""The dead letter queue: tasks that failed for good, shown in full and resubmitted.

Resubmitting calls `orchestration.resilience.dead_letters.resubmit`, as `orch dlq resubmit` does.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query

from orchestration.core.errors import OrchestrationError
from orchestration.resilience.dead_letters import resubmit
from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.api.interventions import actor_of, next_text, settle
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.errors import CODES, ApiError, status_of
from orchestration.web.reviewing import resume_command

router = APIRouter(tags=["dead letters"])

DeadLetterId = Path(ge=1, le=2**63 - 1, description="The dead letter's id.")


@router.get("/dead-letters", response_model=schemas.DeadLettersOut)
def list_dead_letters(
    store: StoreDep,
    run: str | None = Query(None, description="Only this run's."),
    task: str | None = Query(None, description="Only this task's."),
    state: Literal["open", "resubmitted", "closed", "all"] = Query("open"),
) -> schemas.DeadLettersOut:
    """Dead letters (open ones by default), oldest first, as `orch dlq list --json`."""
    if run is not None:
        store.get_run(run)
    found = store.dead_letters(run, task, None if state == "all" else state)
    return schemas.DeadLettersOut(dead_letters=[schemas.dead_letter_out(d) for d in found])


@router.get("/dead-letters/{dead_letter_id}", response_model=schemas.DeadLetterOneOut)
def show_dead_letter(
    store: StoreDep, dead_letter_id: int = DeadLetterId
) -> schemas.DeadLetterOneOut:
    """A dead letter in full: spec, attempts, output tails, validators, decisions, breakpoints."""
    return schemas.DeadLetterOneOut(
        dead_letter=schemas.dead_letter_detail_out(store.dead_letter(dead_letter_id))
    )


def resubmit_one(
    store: Store, dead_letter_id: int, body: schemas.ResubmitIn, actor: str, db_hint: str
) -> schemas.ResubmitOut:
    """Resubmit one dead letter (409 if it was dealt with already); shared with the pages."""
    letter = store.dead_letter(dead_letter_id)
    if letter.state != "open":
        raise ApiError(
            409,
            f"dead letter {dead_letter_id} is already {letter.state} (by {letter.resolved_by})",
        )
    done = resubmit(
        store,
        dead_letter_id,
        actor=actor,
        sets=body.params,
        new_run=body.new_run,
        note=body.reason,
    )
    if done.new_run_id is not None:
        return schemas.ResubmitOut(
            dead_letter=schemas.dead_letter_out(done.dead_letter),
            intervention=None,
            new_run=done.new_run_id,
            next=f"Start the new run with: {resume_command(done.new_run_id, db_hint)}",
        )
    assert done.intervention is not None
    record = settle(store, done.intervention)
    return schemas.ResubmitOut(
        dead_letter=schemas.dead_letter_out(store.dead_letter(dead_letter_id)),
        intervention=schemas.intervention_out(record),
        new_run=None,
        next=next_text(store, record, db_hint),
    )


@router.post("/dead-letters/{dead_letter_id}/resubmit", response_model=schemas.ResubmitOut)
def resubmit_dead_letter(
    body: schemas.ResubmitIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    dead_letter_id: int = DeadLetterId,
) -> schemas.ResubmitOut:
    """Run the task again: in its run (its cancelled dependents wait for it again), or with
    `new_run` alone in a new run of the same plan, to start with `orch resume NEW_RUN`."""
    return resubmit_one(
        store, dead_letter_id, body, actor_of(body.actor, principal), config.db_hint
    )


@router.post("/dead-letters/resubmit", response_model=schemas.BatchResubmitOut)
def resubmit_many(
    body: schemas.BatchResubmitIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
) -> schemas.BatchResubmitOut:
    """Resubmit several dead letters, each on its own: one failing stops no other."""
    results = []
    for item in body.items:
        actor = actor_of(item.actor, principal)
        try:
            outcome = resubmit_one(store, item.id, item, actor, config.db_hint)
        except ApiError as error:
            detail = schemas.ErrorDetail(code=error.code, message=error.message)
            results.append(schemas.BatchResubmitItemOut(id=item.id, ok=False, error=detail))
            continue
        except OrchestrationError as error:
            code = CODES.get(status_of(error), "error")
            detail = schemas.ErrorDetail(code=code, message=str(error))
            results.append(schemas.BatchResubmitItemOut(id=item.id, ok=False, error=detail))
            continue
        results.append(schemas.BatchResubmitItemOut(id=item.id, ok=True, result=outcome))
    done = sum(r.ok for r in results)
    return schemas.BatchResubmitOut(results=results, resubmitted=done, failed=len(results) - done)
