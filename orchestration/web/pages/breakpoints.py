"""The breakpoints list and the review page, whose form resolves a breakpoint."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestration.resilience.overrides import parse_sets
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import AnnouncerDep, ConfigDep, StoreDep
from orchestration.web.errors import ApiError
from orchestration.web.pages.common import render
from orchestration.web.reviewing import (
    ResolveRequest,
    gather_review,
    next_step,
    resolve,
    resume_command,
)
from orchestration.web.schemas import MAX_ANSWER_CHARS, MAX_NOTE_CHARS

router = APIRouter(include_in_schema=False)

BreakpointId = Path(ge=1, le=2**63 - 1)
# The page's buttons; `answer` is a retry whose answer must be given.
Button = Literal["approve", "retry", "skip", "reject", "answer"]


@router.get("/breakpoints", response_class=HTMLResponse)
def breakpoints_page(
    request: Request, store: StoreDep, state: Literal["open", "all"] = "open"
) -> HTMLResponse:
    found = store.breakpoints(state="open" if state == "open" else None)
    return render(request, "breakpoints.html", {"breakpoints": found, "state": state})


@router.get("/breakpoints/{breakpoint_id}", response_class=HTMLResponse)
def review_page(
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    breakpoint_id: int = BreakpointId,
    done: bool = False,
) -> HTMLResponse:
    review = gather_review(store, store.breakpoint(breakpoint_id))
    follow = None
    if done and review.breakpoint.state == "resolved":
        live, text = next_step(store, review.breakpoint.run, config.db_hint)
        command = None if live else resume_command(review.breakpoint.run, config.db_hint)
        follow = {"live": live, "text": text, "command": command}
    return render(
        request,
        "breakpoint.html",
        {"review": review, "bp": review.breakpoint, "follow": follow},
    )


@router.post("/breakpoints/{breakpoint_id}/resolve")
def resolve_from_page(
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    announcer: AnnouncerDep,
    action: Annotated[Button, Form()],
    note: Annotated[str, Form(max_length=MAX_NOTE_CHARS)] = "",
    answer: Annotated[str, Form(max_length=MAX_ANSWER_CHARS)] = "",
    params: Annotated[str, Form(max_length=MAX_ANSWER_CHARS)] = "",
    breakpoint_id: int = BreakpointId,
) -> Response:
    if action == "answer" and not answer.strip():
        raise ApiError(422, "write the answer first: the agent receives it as {answer}")
    resolution = "retry" if action == "answer" else action
    lines = [line for line in params.splitlines() if line.strip()]
    request = ResolveRequest(
        breakpoint_id,
        resolution,
        principal.name,
        note.strip(),
        answer.strip() or None,
        parse_sets(lines),  # key=value per line, values JSON when they parse: like --set
    )
    resolve(store, request, config.db_hint, announcer.breakpoint_resolved)
    return RedirectResponse(f"/breakpoints/{breakpoint_id}?done=1", 303)
