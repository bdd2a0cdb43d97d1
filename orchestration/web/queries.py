"""Read-only queries the dashboard needs beyond the Store's methods (candidates for the Store).

They read the store's schema tables through its non-locking reader engine and return the same
plain records as the Store; nothing here writes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from orchestration.models import EventRecord, TransitionRecord
from orchestration.store import Store, records
from orchestration.store.store import EVENTS, TASKS, TRANSITIONS

PAGE_LIMIT = 500  # rows one poll of the event stream reads at most
MAX_ROW_ID = 2**63 - 1  # the largest id either store holds (BIGINT): a larger cursor is refused


def _reader(store: Store) -> Engine:
    return store._reader  # the Store's own read path: no SQLite write lock is taken


def events_after(
    store: Store, run_id: str, after_id: int = 0, limit: int = PAGE_LIMIT
) -> list[EventRecord]:
    """Like Store.events, but at most `limit` of them (the oldest first)."""
    query = (
        select(EVENTS)
        .where(EVENTS.c.run_id == run_id, EVENTS.c.id > after_id)
        .order_by(EVENTS.c.id)
        .limit(limit)
    )
    with _reader(store).connect() as conn:
        return [records.event_record(row) for row in conn.execute(query)]


def transitions_after(
    store: Store, run_id: str, after_id: int = 0, limit: int = PAGE_LIMIT
) -> list[TransitionRecord]:
    """Like Store.transitions, but at most `limit` of them (the oldest first)."""
    query = (
        select(TRANSITIONS)
        .where(TRANSITIONS.c.run_id == run_id, TRANSITIONS.c.id > after_id)
        .order_by(TRANSITIONS.c.id)
        .limit(limit)
    )
    with _reader(store).connect() as conn:
        return [records.transition_record(row) for row in conn.execute(query)]


def recent_events(store: Store, run_id: str, limit: int) -> list[EventRecord]:
    """The run's `limit` newest events, newest first."""
    query = (
        select(EVENTS).where(EVENTS.c.run_id == run_id).order_by(EVENTS.c.id.desc()).limit(limit)
    )
    with _reader(store).connect() as conn:
        return [records.event_record(row) for row in conn.execute(query)]


def last_event_id(store: Store, run_id: str) -> int:
    query = select(func.max(EVENTS.c.id)).where(EVENTS.c.run_id == run_id)
    with _reader(store).connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def state_counts(store: Store, run_id: str | None = None) -> dict[str, dict[str, int]]:
    """For every run (or only `run_id`), how many of its tasks are in each state: one query."""
    query: Any = select(TASKS.c.run_id, TASKS.c.state, func.count()).group_by(
        TASKS.c.run_id, TASKS.c.state
    )
    if run_id is not None:
        query = query.where(TASKS.c.run_id == run_id)
    counts: dict[str, dict[str, int]] = {}
    with _reader(store).connect() as conn:
        for run_id, state, count in conn.execute(query):
            counts.setdefault(run_id, {})[state] = int(count)
    return counts


def task_events(store: Store, run_id: str, task_id: str, kind: str) -> list[EventRecord]:
    """One task's events of one kind, oldest first (e.g. its `step` records)."""
    query = (
        select(EVENTS)
        .where(EVENTS.c.run_id == run_id, EVENTS.c.task_id == task_id, EVENTS.c.kind == kind)
        .order_by(EVENTS.c.id)
    )
    with _reader(store).connect() as conn:
        return [records.event_record(row) for row in conn.execute(query)]
