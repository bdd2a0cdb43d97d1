"""The circuit breakers page: each breaker's state in colour, and a Reset button."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestration.web.api.breakers import last_resets, reset_one
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import StoreDep
from orchestration.web.pages.common import render
from orchestration.web.schemas import MAX_REASON_CHARS, breaker_out

router = APIRouter(include_in_schema=False)

# The colours of the task states whose meaning is closest: green flows, red waits, orange probes.
STATE_CLASSES = {"closed": "state-completed", "open": "state-failed", "half_open": "state-retrying"}


@router.get("/breakers", response_class=HTMLResponse)
def breakers_page(request: Request, store: StoreDep, reset: str = "") -> HTMLResponse:
    resets = last_resets(store)
    found = [breaker_out(b, resets.get(b.key)) for b in store.breakers()]
    context = {"breakers": found, "classes": STATE_CLASSES, "reset": reset}
    return render(request, "breakers.html", context)


@router.post("/breakers/reset")
def reset_from_page(
    principal: CurrentPrincipal,
    store: StoreDep,
    key: Annotated[str, Form(min_length=1, max_length=500)],
    reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
) -> Response:
    reset_one(store, key, reason.strip(), principal.name)
    return RedirectResponse(f"/breakers?reset={quote(key, safe='')}", 303)
