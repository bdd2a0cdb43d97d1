"""When the next attempt of a failed task may start: exponential, linear or fixed backoff."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from orchestration.core.models import RetryPolicy


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Delay before attempt `attempt + 1`, after `attempt` attempts failed (attempt >= 1).

    Full jitter (a uniform draw between 0 and the capped delay) spreads retries of many tasks
    that failed together, e.g. after a rate limit.
    """
    failures = max(1, attempt)
    if policy.backoff == "exponential":
        delay = policy.base_seconds * 2 ** min(failures - 1, 60)
    elif policy.backoff == "linear":
        delay = policy.base_seconds * failures
    else:
        delay = policy.base_seconds
    delay = min(delay, policy.max_seconds)
    if policy.jitter:
        delay = (rng or random).uniform(0, delay)
    return delay


def next_attempt_at(
    policy: RetryPolicy, attempt: int, now: datetime, rng: random.Random | None = None
) -> datetime:
    return now + timedelta(seconds=backoff_seconds(policy, attempt, rng))
