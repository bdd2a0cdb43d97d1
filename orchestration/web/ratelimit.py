"""A token bucket per caller: so many requests a second on average, with a burst allowance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED_KEYS = 10_000  # beyond this, buckets that are full again are forgotten


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """`acquire(key)` takes one request from `key`'s bucket, or says how long to wait."""

    def __init__(
        self, rate_per_second: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be > 0 and burst >= 1")
        self.rate = rate_per_second
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead; else the seconds until one more would be allowed."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_TRACKED_KEYS:
                    self._forget_full(now)
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def wait_time(self, key: str) -> float:
        """Like `acquire` without taking anything: 0 when a request would be allowed now."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.at) * self.rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


class FailedAuthLimiter:
    """Failed token checks per client address: `failures_per_minute`, then a wait.

    Only failures take from the bucket (a wrong or malformed bearer token, a wrong token in the
    login form); a request that authenticates takes nothing.
    """

    def __init__(
        self, failures_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures_per_minute < 1:
            raise ValueError("failures_per_minute must be >= 1")
        self._buckets = RateLimiter(failures_per_minute / 60.0, failures_per_minute, clock)

    def blocked_for(self, address: str) -> float:
        """Seconds until `address` may present credentials again; 0 when it may now."""
        return self._buckets.wait_time(address)

    def record_failure(self, address: str) -> None:
        self._buckets.acquire(address)
