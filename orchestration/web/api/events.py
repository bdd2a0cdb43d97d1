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
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.auth import client_address
from orchestration.web.config import MAX_ROW_ID, PAGE_LIMIT
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.errors import ApiError
from orchestration.web.streams import Cursor, Found, StreamHub

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing a quiet stream
RECONNECT_MS = 1000  # told to EventSource: how soon to reconnect after a stream ends


@router.get("/runs/{run_id:id}/events", response_model=schemas.EventsOut)
def list_events(
    run_id: str,
    store: StoreDep,
    after: int = Query(0, ge=0, le=MAX_ROW_ID, description="Only events with a larger id."),
    limit: int = Query(PAGE_LIMIT, ge=1, le=PAGE_LIMIT),
) -> schemas.EventsOut:
    """A page of the run's events, oldest first; pass `last_id` as `after` for the next."""
    store.get_run(run_id)
    found = store.events_page(run_id, after, limit)
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
    if event_id > MAX_ROW_ID or move_id > MAX_ROW_ID:
        raise ApiError(400, f"bad stream cursor '{raw[:40]}': ids are at most {MAX_ROW_ID}")
    return event_id, move_id


def _message(kind: str, cursor: tuple[int, int], data: str) -> str:
    return f"id: {cursor[0]}:{cursor[1]}\nevent: {kind}\ndata: {data}\n\n"


@router.get(
    "/runs/{run_id:id}/events/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."},
        429: {"model": schemas.ErrorOut, "description": "Too many open streams from this address"},
    },
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
    """Follow the run: new events and task state changes as server-sent events.

    One poller per run reads the store for all of its streams; a client address may hold
    `--streams-per-client` streams open at once (429 beyond).
    """
    hub: StreamHub = request.app.state.streams
    release = hub.admit(client_address(request))
    try:
        await run_in_threadpool(store.get_run, run_id)
        raw = last_event_id or after
        if raw:
            cursor = await run_in_threadpool(parse_cursor, raw, store, run_id)
        else:
            cursor = await run_in_threadpool(
                lambda: (store.last_event_id(run_id), store.last_transition_id(run_id))
            )
    except BaseException:
        release()
        raise
    lifetime = max_seconds or config.stream_max_seconds
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _messages(hub, run_id, cursor, lifetime, release),
        media_type="text/event-stream",
        headers=headers,
        background=BackgroundTask(release),  # also when the stream never started
    )


async def _messages(
    hub: StreamHub, run_id: str, cursor: Cursor, lifetime: float, release: Callable[[], None]
) -> AsyncIterator[str]:
    """The stream: what the store holds after `cursor`, then what the run's feed finds."""
    try:
        yield f"retry: {RECONNECT_MS}\n: following run {run_id}\n\n"
        deadline = time.monotonic() + lifetime
        async with hub.follow(run_id, cursor) as queue:
            found = await hub.catch_up(run_id, cursor)
            while True:
                for message in _as_messages(found, cursor):
                    cursor = message[0]
                    yield message[1]
                if found.full:  # more waits in the store: read on before following the feed
                    found = await hub.catch_up(run_id, cursor)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    found = await asyncio.wait_for(queue.get(), min(KEEPALIVE_SECONDS, left))
                except TimeoutError:
                    found = Found([], [])
                    if time.monotonic() < deadline:
                        yield ": keep-alive\n\n"
    finally:
        release()


def _as_messages(found: Found, cursor: Cursor) -> Iterator[tuple[Cursor, str]]:
    """Each event and move after `cursor` as an SSE message, with the cursor after it."""
    for event in found.events:
        if event.id > cursor[0]:
            cursor = (event.id, cursor[1])
            yield cursor, _message("event", cursor, schemas.event_out(event).model_dump_json())
    for move in found.moves:
        if move.id > cursor[1]:
            cursor = (cursor[0], move.id)
            data = json.dumps(schemas.transition_out(move).model_dump(mode="json", by_alias=True))
            yield cursor, _message("transition", cursor, data)
