"""The REST API under /api/v1: one router module per area, all behind the same authentication.

An area added later (dead letters, circuit breakers, interventions) is one more module with its
own `router`, listed in `AREAS` below; it gets authentication, rate limiting, CSRF checks and
JSON errors from here like the others.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from orchestration.web.api import (
    breakers,
    breakpoints,
    dead_letters,
    events,
    health,
    interventions,
    launches,
    logs,
    runs,
    schedules,
    trigger_events,
    workers,
)
from orchestration.web.auth import require_principal
from orchestration.web.schemas import ErrorOut

PREFIX = "/api/v1"
AREAS = (
    runs,
    launches,
    events,
    logs,
    breakpoints,
    dead_letters,
    breakers,
    interventions,
    schedules,
    trigger_events,
    workers,
    health,
)
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": meaning}
    for status, meaning in (
        (400, "Malformed request (e.g. a body that is not JSON)"),
        (401, "No token, a wrong token, or an expired session"),
        (403, "Cross-site request, or a cookie-authenticated write without its CSRF token"),
        (404, "Unknown run, task, breakpoint, dead letter or circuit breaker"),
        (409, "Resolved or resubmitted already, refused, or the task moved meanwhile"),
        (422, "A field is missing or has a wrong value"),
        (429, "Too many requests for this token; see Retry-After"),
    )
}


def api_router() -> APIRouter:
    router = APIRouter(
        prefix=PREFIX, dependencies=[Depends(require_principal)], responses=ERROR_RESPONSES
    )
    for area in AREAS:
        router.include_router(area.router)
    return router
