"""The dashboard's pages: server-rendered HTML with a little JavaScript, no build step.

Like the API, one module per area; an area added later (dead letters, circuit breakers) is one
more module with its own `router`, listed in `AREAS`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from orchestration.web.auth import require_principal
from orchestration.web.pages import (
    breakers,
    breakpoints,
    dead_letters,
    interventions,
    login,
    runs,
    workers,
)

AREAS = (runs, breakpoints, dead_letters, breakers, interventions, workers)


def page_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(login.router)  # open to anyone: it is how one signs in
    signed_in = APIRouter(dependencies=[Depends(require_principal)])
    for area in AREAS:
        signed_in.include_router(area.router)
    router.include_router(signed_in)
    return router
