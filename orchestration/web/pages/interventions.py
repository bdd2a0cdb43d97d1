"""Interventions from the run and task pages (pause, resume, skip, retry, cancel) and a run's
list of them: who did what, why, and what came of it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestration.web.api.interventions import carry_out, next_text
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.pages.common import render
from orchestration.web.pages.dead_letters import parameter_lines
from orchestration.web.schemas import (
    MAX_ANSWER_CHARS,
    MAX_REASON_CHARS,
    InterventionAction,
    InterventionIn,
)

router = APIRouter(include_in_schema=False)


@router.get("/runs/{run_id:id}/interventions", response_class=HTMLResponse)
def interventions_page(
    run_id: str, request: Request, store: StoreDep, config: ConfigDep, done: int = 0
) -> HTMLResponse:
    run = store.get_run(run_id)
    found = list(reversed(store.interventions(run_id)))
    latest = next((i for i in found if i.id == done), None)
    follow = next_text(store, latest, config.db_hint) if latest is not None else ""
    context = {"run": run, "interventions": found, "done": latest, "follow": follow}
    return render(request, "interventions.html", context)


@router.post("/runs/{run_id:id}/interventions")
def intervene_from_page(
    run_id: str,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    action: Annotated[InterventionAction, Form()],
    task: Annotated[str, Form(max_length=200)] = "",
    reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
    params: Annotated[str, Form(max_length=MAX_ANSWER_CHARS)] = "",
) -> Response:
    body = InterventionIn(
        action=action, task=task or None, reason=reason.strip(), params=parameter_lines(params)
    )
    done = carry_out(store, run_id, body, principal.name, config.db_hint)
    target = f"/runs/{quote(run_id, safe='')}/interventions?done={done.intervention.id}"
    return RedirectResponse(target, 303)
