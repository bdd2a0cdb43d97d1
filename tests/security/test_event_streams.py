"""Many open event streams: one poller per run serves them all, and a client's streams are capped.

Against the real `orch serve`, a client opens as many streams as it may (the cap set low here):
one more is refused with 429 and Retry-After, `GET /runs` still answers, a task's state change
reaches every open stream, and a closed stream frees its place. In-process, the run's feed reads
the store once per poll whatever the number of streams, and stops when the last one leaves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from orchestration.core.models import EventRecord
from orchestration.store import Batch, Store
from orchestration.web.errors import ApiError
from orchestration.web.streams import Found, StreamHub, read_after
from tests.test_web_api import Server, bearer, paused_run, start_server, stop_server

CAP = 120  # the server's --streams-per-client here
WAIT_BOUND = 120.0  # seconds a stream may take to show a change before the test gives up
FOLLOWERS = 50
POLLS = 5


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    paused_run(tmp_path, sqlite_url)  # run r1: tasks a and b wait at breakpoints
    started = start_server(
        sqlite_url,
        tmp_path / "token",
        "--streams-per-client",
        str(CAP),
        "--rate-limit",
        "1000",
        "--burst",
        "1000",
    )
    try:
        yield started
    finally:
        stop_server(started)


async def open_stream(client: httpx.AsyncClient, stack: AsyncExitStack) -> httpx.Response:
    response = await stack.enter_async_context(
        client.stream("GET", "/api/v1/runs/r1/events/stream")
    )
    return response


async def first_transition(response: httpx.Response) -> str:
    async for line in response.aiter_lines():
        if line.startswith("data: ") and '"to"' in line:
            return line
    raise AssertionError("the stream ended without a transition")


async def many_streams(server: Server) -> None:
    limits = httpx.Limits(max_connections=CAP + 20, max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(
            base_url=server.base, headers=bearer(server.token), limits=limits, timeout=60
        ) as client,
        AsyncExitStack() as stack,
    ):
        streams = await asyncio.gather(*(open_stream(client, stack) for _ in range(CAP)))
        assert [s.status_code for s in streams] == [200] * CAP
        async with client.stream("GET", "/api/v1/runs/r1/events/stream") as refused:
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            body = await refused.aread()
            assert b"too many open event streams" in body

        # the rest of the API still answers while the streams are open
        runs = await client.get("/api/v1/runs")
        assert runs.status_code == 200 and runs.json()["runs"][0]["id"] == "r1"

        # one change reaches every stream
        skipped = await client.post(
            "/api/v1/runs/r1/interventions", json={"action": "skip", "task": "a", "reason": "x"}
        )
        assert skipped.status_code == 200, skipped.text
        seen = await asyncio.wait_for(
            asyncio.gather(*(first_transition(s) for s in streams)), WAIT_BOUND
        )
        assert all('"task":"a"' in line.replace(" ", "") for line in seen)

        # a closed stream frees its place
        await streams[0].aclose()
        async with client.stream("GET", "/api/v1/runs/r1/events/stream") as again:
            assert again.status_code == 200


def test_many_streams_are_capped_per_client_and_each_gets_every_change(server: Server) -> None:
    asyncio.run(many_streams(server))


def test_one_feed_reads_the_store_once_per_poll_for_every_follower(
    tmp_path: Path, sqlite_url: str
) -> None:
    paused_run(tmp_path, sqlite_url)
    with Store.open(sqlite_url) as store:
        asyncio.run(follow_with_many(store))


async def follow_with_many(store: Store) -> None:
    calls = 0
    enough = asyncio.Event()
    loop = asyncio.get_running_loop()
    lock = threading.Lock()

    def counting(store: Store, run_id: str, cursor: tuple[int, int]) -> Found:
        nonlocal calls
        with lock:
            calls += 1
            if calls >= POLLS:
                loop.call_soon_threadsafe(enough.set)
        return read_after(store, run_id, cursor)

    hub = StreamHub(store, poll_seconds=0.01, per_client=FOLLOWERS, read=counting)
    releases = [hub.admit("127.0.0.1") for _ in range(FOLLOWERS)]
    with pytest.raises(ApiError) as refused:
        hub.admit("127.0.0.1")
    assert refused.value.status == 429
    assert hub.admit("10.0.0.9")  # another address has its own allowance

    start = (store.last_event_id("r1"), store.last_transition_id("r1"))  # from now on
    async with AsyncExitStack() as stack:
        queues = [
            await stack.enter_async_context(hub.follow("r1", start)) for _ in range(FOLLOWERS)
        ]
        assert hub.feeds() == 1
        await asyncio.wait_for(enough.wait(), WAIT_BOUND)
        # every read was the feed's, one per poll, none per follower (one may be under way)
        assert calls - hub.reads in (0, 1)
        assert calls < FOLLOWERS

        now = datetime.now(UTC)
        store.commit("r1", Batch(events=[EventRecord("r1", "note", None, {"n": 1}, now)]))
        newest = store.last_event_id("r1")
        got = await asyncio.wait_for(asyncio.gather(*(q.get() for q in queues)), WAIT_BOUND)
        assert all(item.events[-1].id == newest for item in got)
    assert hub.feeds() == 0  # the last follower left: the feed and its poller are gone
    for release in releases:
        release()
        release()  # a second release changes nothing
    assert hub.open_streams("127.0.0.1") == 0
