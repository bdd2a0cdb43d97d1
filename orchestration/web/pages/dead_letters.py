"""The dead letter list and a dead letter's page, whose form resubmits it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestration.resilience.overrides import parse_sets
from orchestration.web.api.dead_letters import resubmit_one
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.pages.common import render
from orchestration.web.reviewing import next_step, resume_command
from orchestration.web.schemas import MAX_ANSWER_CHARS, MAX_REASON_CHARS, ResubmitIn

router = APIRouter(include_in_schema=False)

DeadLetterId = Path(ge=1, le=2**63 - 1)


def parameter_lines(text: str) -> dict[str, object]:
    """The form's changed parameters: `key=value` per line, values JSON when they parse (--set)."""
    return parse_sets(line for line in text.splitlines() if line.strip())


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters_page(
    request: Request, store: StoreDep, state: Literal["open", "all"] = "open"
) -> HTMLResponse:
    found = store.dead_letters(state="open" if state == "open" else None)
    return render(request, "dead_letters.html", {"letters": found, "state": state})


@router.get("/dead-letters/{dead_letter_id}", response_class=HTMLResponse)
def dead_letter_page(
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    dead_letter_id: int = DeadLetterId,
    done: bool = False,
) -> HTMLResponse:
    letter = store.dead_letter(dead_letter_id)
    follow = None
    if done and letter.state == "resubmitted":
        new_run = letter.params.get("new_run")
        if isinstance(new_run, str):
            follow = {"live": False, "text": "Resubmitted as a new run; start it with:"}
            follow["command"] = resume_command(new_run, config.db_hint)
        else:
            live, text = next_step(store, letter.run_id, config.db_hint)
            command = None if live else resume_command(letter.run_id, config.db_hint)
            follow = {"live": live, "text": text, "command": command}
    return render(request, "dead_letter.html", {"letter": letter, "follow": follow})


@router.post("/dead-letters/{dead_letter_id}/resubmit")
def resubmit_from_page(
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
    params: Annotated[str, Form(max_length=MAX_ANSWER_CHARS)] = "",
    new_run: Annotated[bool, Form()] = False,
    dead_letter_id: int = DeadLetterId,
) -> Response:
    body = ResubmitIn(reason=reason.strip(), params=parameter_lines(params), new_run=new_run)
    resubmit_one(store, dead_letter_id, body, principal.name, config.db_hint)
    return RedirectResponse(f"/dead-letters/{dead_letter_id}?done=1", 303)
