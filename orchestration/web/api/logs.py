"""An attempt's output: read a piece of its log, or follow it as a server-sent-events stream.

The stream sends the log's new text (`event: output`, data `{"text": ...}`, control sequences
removed) as it is written; each message's id is the byte offset after it, so a client that
reconnects (EventSource sends Last-Event-ID) or passes `?offset=` gets exactly what it has not
seen. When the attempt is over (the task left `running`, a later attempt began, or no engine
works on the run) the rest is sent, then `event: end`, and the stream closes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from orchestration.core.attempt_logs import log_path, printable, read_from
from orchestration.resilience.runs import attempt_over
from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.api.events import KEEPALIVE_SECONDS, RECONNECT_MS
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.errors import ApiError

router = APIRouter(tags=["logs"])

CHUNK_BYTES = 256 * 1024  # the most text one message or one read carries


def _attempt(store: Store, run_id: str, task_id: str, attempt: int | None) -> tuple[Path, int]:
    """The log file of the task's `attempt` (default: its latest) and the attempt's number."""
    run = store.get_run(run_id)
    task = store.task(run_id, task_id)
    number = attempt or task.attempts
    if number < 1 or number > task.attempts:
        made = f"has made {task.attempts} attempts"
        raise ApiError(404, f"task '{task_id}' {made}; there is no attempt {number}")
    return log_path(run.plan_path, run_id, task_id, number), number


def _over(store: Store, run_id: str, task_id: str, attempt: int) -> bool:
    run, task = store.get_run(run_id), store.task(run_id, task_id)
    return attempt_over(run, task, attempt, datetime.now(UTC))


@router.get("/runs/{run_id}/tasks/{task_id}/log", response_model=schemas.LogOut)
def read_log(
    run_id: str,
    task_id: str,
    store: StoreDep,
    attempt: int | None = Query(None, ge=1, description="Which attempt (default: the latest)."),
    offset: int = Query(0, ge=0, description="Start at this byte of the log."),
) -> schemas.LogOut:
    """A piece of an attempt's output (at most 256 KiB); pass `next_offset` as `offset` for more."""
    path, number = _attempt(store, run_id, task_id, attempt)
    over = _over(store, run_id, task_id, number)
    text, after = read_from(path, offset, CHUNK_BYTES)
    return schemas.LogOut(
        attempt=number, text=printable(text), offset=offset, next_offset=after, over=over
    )


@router.get(
    "/runs/{run_id}/tasks/{task_id}/log/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."}},
)
async def stream_log(
    run_id: str,
    task_id: str,
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    attempt: int | None = Query(None, ge=1, description="Which attempt (default: the latest)."),
    offset: int = Query(0, ge=0, description="Start at this byte of the log."),
    max_seconds: float | None = Query(
        None, gt=0, le=3600, description="End the stream after this long (clients reconnect)."
    ),
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Follow an attempt's output as it is written, until the attempt is over."""
    path, number = await run_in_threadpool(_attempt, store, run_id, task_id, attempt)
    cursor = int(last_event_id) if last_event_id and last_event_id.isdigit() else offset
    lifetime = max_seconds or config.stream_max_seconds

    async def messages() -> AsyncIterator[str]:
        nonlocal cursor
        yield f"retry: {RECONNECT_MS}\n: following {task_id} attempt {number}\n\n"
        deadline = time.monotonic() + lifetime
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            # Asked before reading: what was written before the end is read after it.
            over = await run_in_threadpool(_over, store, run_id, task_id, number)
            text, cursor = await run_in_threadpool(read_from, path, cursor, CHUNK_BYTES)
            if text:
                quiet_since = time.monotonic()
                data = json.dumps({"text": printable(text)})
                yield f"id: {cursor}\nevent: output\ndata: {data}\n\n"
                continue  # there may be more right away
            if over:
                yield f"id: {cursor}\nevent: end\ndata: {json.dumps({'attempt': number})}\n\n"
                return
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(config.stream_poll_seconds)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)
