"""Events for triggers: sent with the API token, or as a forge webhook signed with HMAC-SHA256.

`POST /api/v1/events/{name}` takes `{"data": {...}, "key": "..."}` behind the usual token and
CSRF rules. `POST /api/v1/webhooks/{name}` takes a forge's raw JSON payload instead, without a
token: it must carry `X-Hub-Signature-256: sha256=HEX` (GitHub, Gitea, Forgejo) or
`X-Gitea-Signature: HEX`, the HMAC-SHA256 of the body with the server's webhook secret
(the ORCH_WEBHOOK_SECRET variable, or the file ORCH_WEBHOOK_SECRET_FILE names). The delivery id
header (X-GitHub-Delivery, X-Gitea-Delivery) is the event's deduplication key: a redelivery
starts nothing twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from orchestration.store import Store
from orchestration.triggers.trigger_service import emit_and_dispatch, events_shape, launch_context
from orchestration.triggers.trigger_shapes import EmittedOut, TriggerEventsOut, trigger_event_out
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import StoreDep
from orchestration.web.errors import ApiError

router = APIRouter(tags=["triggers"])
webhook_router = APIRouter(tags=["triggers"])

EventName = Path(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$", description="The event's name, as in `on:`."
)
SECRET_ENV = "ORCH_WEBHOOK_SECRET"
SECRET_FILE_ENV = "ORCH_WEBHOOK_SECRET_FILE"
SIGNATURE_HEADERS = ("x-hub-signature-256", "x-gitea-signature")
DELIVERY_HEADERS = ("x-github-delivery", "x-gitea-delivery", "x-forgejo-delivery")
FORGE_EVENT_HEADERS = ("x-github-event", "x-gitea-event", "x-forgejo-event")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict, description="The event's data.")
    key: str | None = Field(
        None, min_length=1, max_length=180, description="Deduplication key (optional)."
    )


@router.post("/events/{name}", response_model=EmittedOut, status_code=201)
def emit(
    body: EventIn, principal: CurrentPrincipal, store: StoreDep, name: str = EventName
) -> EmittedOut:
    """Send an event (as `orch events emit`): matching triggers start their plans now."""
    return _emit(store, name, body.data, body.key, "api")


@router.get("/trigger-events", response_model=TriggerEventsOut)
def list_trigger_events(
    store: StoreDep,
    name: str | None = Query(None, max_length=200, description="Only events of this name."),
    limit: int = Query(50, ge=1, le=10_000),
) -> TriggerEventsOut:
    """Events received and what each started: as `orch events list --json`."""
    return events_shape(store, limit, name)


@webhook_router.post("/api/v1/webhooks/{name}", response_model=EmittedOut, status_code=201)
async def forge_webhook(request: Request, name: str = EventName) -> EmittedOut:
    """A forge's webhook (push, issue labelled...): its JSON payload becomes the event's data."""
    body = await request.body()
    _check_signature(request, body)
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the webhook body must be a JSON object")
    forge_event = next(
        (request.headers[h] for h in FORGE_EVENT_HEADERS if h in request.headers), None
    )
    if forge_event is not None:
        payload = {**payload, "forge_event": forge_event}
    key = next((request.headers[h] for h in DELIVERY_HEADERS if h in request.headers), None)
    store: Store = request.app.state.store
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_emit, store, name, payload, key, "webhook")


def _emit(
    store: Store, name: str, data: dict[str, Any], key: str | None, source: str
) -> EmittedOut:
    event, created = emit_and_dispatch(
        store, launch_context(store), name, data, source=source, now=datetime.now(UTC), key=key
    )
    firings = [f for f in store.triggers.firings() if f.event_id == event.id]
    return EmittedOut(event=trigger_event_out(event, firings), duplicate=not created)


def webhook_secret(request: Request) -> str:
    """The server's webhook secret: its config, else the environment (empty: webhooks off)."""
    configured = getattr(request.app.state.config, "webhook_secret", "") or ""
    if configured or os.environ.get(SECRET_ENV):
        return configured or os.environ[SECRET_ENV]
    path = os.environ.get(SECRET_FILE_ENV)
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise ApiError(503, f"cannot read the webhook secret file {path}: {exc.strerror}") from None


def _check_signature(request: Request, body: bytes) -> None:
    secret = webhook_secret(request)
    if not secret:
        raise ApiError(
            403,
            f"webhooks are off: start the server with {SECRET_ENV} or {SECRET_FILE_ENV} set",
            code="forbidden",
        )
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    for header in SIGNATURE_HEADERS:
        given = request.headers.get(header)
        if given is not None:
            given = given.removeprefix("sha256=")
            if hmac.compare_digest(given.strip().lower(), expected):
                return
            raise ApiError(
                401, "the webhook signature does not match the body", code="unauthorized"
            )
    raise ApiError(401, "the webhook carries no X-Hub-Signature-256 header", code="unauthorized")
