"""Breakpoints: list them, show one with everything a reviewer needs, resolve one or many."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query

from orchestration.core.errors import OrchestrationError
from orchestration.web import schemas
from orchestration.web.auth import CurrentPrincipal, Principal, clean_name
from orchestration.web.deps import AnnouncerDep, ConfigDep, StoreDep
from orchestration.web.errors import CODES, ApiError, status_of
from orchestration.web.reviewing import ResolveRequest, gather_review, resolve

router = APIRouter(tags=["breakpoints"])

BreakpointId = Path(ge=1, le=2**63 - 1, description="The breakpoint's id.")


@router.get("/breakpoints", response_model=schemas.BreakpointsOut)
def list_breakpoints(
    store: StoreDep,
    run: str | None = Query(None, description="Only this run's."),
    state: Literal["open", "resolved", "all"] = Query("open"),
) -> schemas.BreakpointsOut:
    """Open breakpoints (or resolved ones, or all), oldest first."""
    if run is not None:
        store.get_run(run)
    found = store.breakpoints(run, state=None if state == "all" else state)
    return schemas.BreakpointsOut(breakpoints=[schemas.breakpoint_out(bp) for bp in found])


@router.get("/breakpoints/{breakpoint_id}", response_model=schemas.ReviewOut)
def show_breakpoint(
    store: StoreDep,
    breakpoint_id: int = BreakpointId,
    diff: bool = Query(True, description="Include the diff of the step's files (needs git)."),
) -> schemas.ReviewOut:
    """The breakpoint with its context, the step, the diff, validators, decision, rule, options."""
    return gather_review(store, store.breakpoint(breakpoint_id), with_diff=diff)


def _request(breakpoint_id: int, body: schemas.ResolveIn, principal: Principal) -> ResolveRequest:
    return ResolveRequest(
        breakpoint_id,
        body.resolution,
        clean_name(body.actor) if body.actor else principal.name,
        body.note,
        body.answer,
        body.params,
        body.reject_as,
        body.rollback,
    )


@router.post("/breakpoints/{breakpoint_id}/resolve", response_model=schemas.ResolveOut)
def resolve_one(
    body: schemas.ResolveIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    announcer: AnnouncerDep,
    breakpoint_id: int = BreakpointId,
) -> schemas.ResolveOut:
    """Approve, reject, retry or skip an open breakpoint (409 if it is resolved already).

    A run an engine is working on picks the answer up by itself; otherwise `next` says how to
    continue it (`orch resume RUN`).
    """
    request = _request(breakpoint_id, body, principal)
    return resolve(store, request, config.db_hint, announcer.breakpoint_resolved)


@router.post("/breakpoints/resolve", response_model=schemas.BatchResolveOut)
def resolve_many(
    body: schemas.BatchResolveIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    announcer: AnnouncerDep,
) -> schemas.BatchResolveOut:
    """Resolve several breakpoints in one call, each on its own: one failing stops no other.

    Each item reports `ok` with the result, or the error it would have had alone.
    """
    results = []
    for item in body.items:
        request = _request(item.id, item, principal)
        try:
            outcome = resolve(store, request, config.db_hint, announcer.breakpoint_resolved)
        except ApiError as error:
            detail = schemas.ErrorDetail(code=error.code, message=error.message)
            results.append(schemas.BatchItemOut(id=item.id, ok=False, error=detail))
            continue
        except OrchestrationError as error:
            code = CODES.get(status_of(error), "error")
            detail = schemas.ErrorDetail(code=code, message=str(error))
            results.append(schemas.BatchItemOut(id=item.id, ok=False, error=detail))
            continue
        results.append(schemas.BatchItemOut(id=item.id, ok=True, result=outcome))
    resolved = sum(r.ok for r in results)
    return schemas.BatchResolveOut(
        results=results, resolved=resolved, failed=len(results) - resolved
    )
