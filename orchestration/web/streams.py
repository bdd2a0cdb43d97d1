"""Event streams: one poller per followed run, fanned out to every open stream of it.

Each stream used to poll the store on its own every half second, through the same thread pool
the other endpoints run in: a thousand open streams made two thousand reads a second and a
`GET /runs` waited behind them (1.7 s). Now one `RunFeed` per run reads the store once per
interval, however many streams follow it, and hands what it found to each stream's queue; a
stream reads the store only once itself, to catch up from its cursor when it opens. Open streams
are also capped per client address (429 beyond), so one client cannot hold every socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from orchestration.core.models import EventRecord, TransitionRecord
from orchestration.store import Store
from orchestration.web.config import PAGE_LIMIT
from orchestration.web.errors import ApiError

logger = logging.getLogger(__name__)

Cursor = tuple[int, int]  # (last event id, last transition id) sent


@dataclass(frozen=True, slots=True)
class Found:
    """What one read of the store found after a cursor."""

    events: list[EventRecord]
    moves: list[TransitionRecord]

    @property
    def full(self) -> bool:
        """A page was full: there may be more to read at once."""
        return len(self.events) >= PAGE_LIMIT or len(self.moves) >= PAGE_LIMIT


def read_after(store: Store, run_id: str, cursor: Cursor) -> Found:
    return Found(
        store.events_page(run_id, cursor[0], PAGE_LIMIT),
        store.transitions_page(run_id, cursor[1], PAGE_LIMIT),
    )


@dataclass(eq=False)
class RunFeed:
    """One run's poller and the queues of the streams that follow it."""

    run_id: str
    cursor: Cursor
    queues: set[asyncio.Queue[Found]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class StreamHub:
    """The feeds of the followed runs, and how many streams each client address holds open."""

    def __init__(
        self,
        store: Store,
        poll_seconds: float,
        per_client: int,
        read: Callable[[Store, str, Cursor], Found] = read_after,
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.per_client = per_client
        self._read = read
        self._feeds: dict[str, RunFeed] = {}
        self._open: Counter[str] = Counter()
        self.reads = 0  # store reads made by the feeds (not the catch-ups): one per run per poll

    # ---- admission --------------------------------------------------------------------------

    def admit(self, client: str) -> Callable[[], None]:
        """Count one more open stream for `client` (429 beyond the cap); returns its release."""
        if self._open[client] >= self.per_client:
            raise ApiError(
                429,
                f"too many open event streams from this address ({self.per_client}): close one "
                "first",
                headers={"Retry-After": "5"},
            )
        self._open[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[client] -= 1
                if self._open[client] <= 0:
                    del self._open[client]

        return release

    def open_streams(self, client: str) -> int:
        return self._open.get(client, 0)

    # ---- following a run --------------------------------------------------------------------

    @asynccontextmanager
    async def follow(self, run_id: str, start: Cursor) -> AsyncIterator[asyncio.Queue[Found]]:
        """A queue that receives every new read of the run's feed while the block runs."""
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = RunFeed(run_id, start)
            feed.task = asyncio.create_task(self._poll(feed), name=f"feed {run_id}")
        queue: asyncio.Queue[Found] = asyncio.Queue()
        feed.queues.add(queue)
        try:
            yield queue
        finally:
            feed.queues.discard(queue)
            if not feed.queues and self._feeds.get(run_id) is feed:
                del self._feeds[run_id]
                if feed.task is not None:
                    feed.task.cancel()

    async def catch_up(self, run_id: str, cursor: Cursor) -> Found:
        """What the store holds after `cursor` now (a stream's own read, once, when it opens)."""
        return await run_in_threadpool(self._read, self.store, run_id, cursor)

    def feeds(self) -> int:
        return len(self._feeds)

    async def _poll(self, feed: RunFeed) -> None:
        while feed.queues:
            await asyncio.sleep(self.poll_seconds)
            try:
                found = await run_in_threadpool(self._read, self.store, feed.run_id, feed.cursor)
            except Exception:  # the store is briefly unreachable: try again at the next poll
                logger.warning("event stream of run %s: reading the store failed", feed.run_id)
                continue
            self.reads += 1
            if not found.events and not found.moves:
                continue
            feed.cursor = (
                found.events[-1].id if found.events else feed.cursor[0],
                found.moves[-1].id if found.moves else feed.cursor[1],
            )
            for queue in list(feed.queues):
                queue.put_nowait(found)
