"""TimerWheel: one heap of due times for every kind of wake-up the loop has."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from datetime import datetime
from itertools import count

# The kinds of wake-up: one-off ones, keyed by what they wake...
RETRY, BREAKER, EXPIRY, DEADLINE, DIGEST = "retry", "breaker", "expiry", "deadline", "digest"
# ...and the loop's periodic duties (no key), each scheduling its next turn when it runs.
HEARTBEAT, SETTINGS, INTERVENTIONS = "heartbeat", "settings", "interventions"
BLOCKED, ADDED, DURING, ALERTS = "blocked", "added", "during", "alerts"


class TimerWheel:
    """Due times of every kind (retries, expiries, breaker waits, deadlines, periodic syncs).

    Each entry is (due, order, kind, key); `pop_due(now)` hands back, earliest first, what is
    due. An entry knows only its own kind and key: no timer reads another's state, so the
    loop's handlers can run in whatever order the times come due. Stale entries are cheap: the
    handler of their kind checks them against the state they wake.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, str, Hashable]] = []
        self._order = count()  # equal times keep their scheduling order; keys never compared

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, due: datetime, kind: str, key: Hashable = None) -> None:
        heapq.heappush(self._heap, (due, next(self._order), kind, key))

    def pop_due(self, now: datetime) -> list[tuple[datetime, str, Hashable]]:
        """Remove and return (due, kind, key) of every entry due at `now`, earliest first."""
        heap = self._heap
        due: list[tuple[datetime, str, Hashable]] = []
        while heap and heap[0][0] <= now:
            when, _, kind, key = heapq.heappop(heap)
            due.append((when, kind, key))
        return due

    def next_due(self, kinds: frozenset[str] | None = None) -> datetime | None:
        """The earliest due time (of `kinds` only, when given), or None."""
        if kinds is None:
            return self._heap[0][0] if self._heap else None
        return min((e[0] for e in self._heap if e[2] in kinds), default=None)

    def has(self, kind: str) -> bool:
        return any(entry[2] == kind for entry in self._heap)
