"""The run's event log: read a page of it, or follow it as a server-sent-events stream.

The stream sends the run's new events (`event: event`) and its task state changes
(`event: transition`) as they are stored. Each message's id is the cursor `E:T` (the last event
id and the last transition id sent); a client reconnecting with Last-Event-ID (EventSource does
so by itself) or `?after=E:T` gets exactly what it has not seen.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from orchestration.models import EventRecord, TransitionRecord
from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.errors import ApiError
from orchestration.web.queries import PAGE_LIMIT, events_after, transitions_after
from orchestration.web.queries import last_event_id as newest_event_id

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing a quiet stream
RECONNECT_MS = 1000  # told to EventSource: how soon to reconnect after a stream ends


@router.get("/runs/{run_id:id}/events", response_model=schemas.EventsOut)
def list_events(
    run_id: str,
    store: StoreDep,
    after: int = Query(0, ge=0, description="Only events with a larger id."),
    limit: int = Query(PAGE_LIMIT, ge=1, le=PAGE_LIMIT),
) -> schemas.EventsOut:
    """A page of the run's events, oldest first; pass `last_id` as `after` for the next."""
    store.get_run(run_id)
    found = events_after(store, run_id, after, limit)
    last = found[-1].id if found else after
    return schemas.EventsOut(events=[schemas.event_out(e) for e in found], last_id=last)


def parse_cursor(raw: str, store: Store, run_id: str) -> tuple[int, int]:
    """`E:T` -> (E, T); a bare `E` follows transitions from now on."""
    event_part, sep, move_part = raw.strip().partition(":")
    try:
        event_id = int(event_part)
        move_id = int(move_part) if sep else store.last_transition_id(run_id)
    except ValueError:
        message = f"bad stream cursor '{raw[:40]}': expected EVENT_ID:TRANSITION_ID"
        raise ApiError(400, message) from None
    if event_id < 0 or move_id < 0:
        raise ApiError(400, f"bad stream cursor '{raw[:40]}': ids are not negative")
    return event_id, move_id


def _message(kind: str, cursor: tuple[int, int], data: str) -> str:
    return f"id: {cursor[0]}:{cursor[1]}\nevent: {kind}\ndata: {data}\n\n"


@router.get(
    "/runs/{run_id:id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."}},
)
async def stream_events(
    run_id: str,
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    after: str | None = Query(
        None, description="Start after this cursor `E:T` (default: from now on)."
    ),
    max_seconds: float | None = Query(
        None, gt=0, le=3600, description="End the stream after this long (clients reconnect)."
    ),
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Follow the run: new events and task state changes as server-sent events."""
    await run_in_threadpool(store.get_run, run_id)
    raw = last_event_id or after
    if raw:
        cursor = await run_in_threadpool(parse_cursor, raw, store, run_id)
    else:
        cursor = await run_in_threadpool(
            lambda: (newest_event_id(store, run_id), store.last_transition_id(run_id))
        )
    lifetime = max_seconds or config.stream_max_seconds

    async def messages() -> AsyncIterator[str]:
        nonlocal cursor
        yield f"retry: {RECONNECT_MS}\n: following run {run_id}\n\n"
        deadline = time.monotonic() + lifetime
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            events, moves = await run_in_threadpool(_read, store, run_id, cursor)
            for event in events:
                cursor = (event.id, cursor[1])
                yield _message("event", cursor, schemas.event_out(event).model_dump_json())
            for move in moves:
                cursor = (cursor[0], move.id)
                data = json.dumps(
                    schemas.transition_out(move).model_dump(mode="json", by_alias=True)
                )
                yield _message("transition", cursor, data)
            if events or moves:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(config.stream_poll_seconds)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)


def _read(
    store: Store, run_id: str, cursor: tuple[int, int]
) -> tuple[list[EventRecord], list[TransitionRecord]]:
    return events_after(store, run_id, cursor[0]), transitions_after(store, run_id, cursor[1])
