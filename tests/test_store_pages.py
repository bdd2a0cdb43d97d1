"""The Store's reads for pollers (the dashboard): pages after a cursor, the newest events, the
last event id and task counts per state, on real SQLite files and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from orchestration.core.models import EventRecord
from orchestration.store import Batch, Store
from tests.test_store import RUN, T0, move, run_record, task_record


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    try:
        opened.create_run(run_record(), [task_record("a"), task_record("b"), task_record("c")])
        opened.create_run(run_record("run-2"), [task_record("x", state="ready", run_id="run-2")])
        yield opened
    finally:
        opened.close()


def _events(store: Store, count: int, run_id: str = RUN) -> None:
    events = [
        EventRecord(run_id, "note", None, {"n": n}, T0 + timedelta(seconds=n)) for n in range(count)
    ]
    store.commit(run_id, Batch(events=events))


def test_an_events_page_holds_at_most_limit_events_after_the_cursor(store: Store) -> None:
    _events(store, 7)
    _events(store, 2, run_id="run-2")
    every = store.events(RUN)
    first = store.events_page(RUN, 0, 3)
    assert first == every[:3]
    following = store.events_page(RUN, first[-1].id, 3)
    assert following == every[3:6]
    assert store.events_page(RUN, every[-1].id, 3) == []


def test_the_newest_events_come_newest_first(store: Store) -> None:
    _events(store, 5)
    every = store.events(RUN)
    assert store.recent_events(RUN, 2) == [every[-1], every[-2]]
    assert store.last_event_id(RUN) == every[-1].id
    assert store.last_event_id("run-2") == 0


def test_a_transitions_page_follows_its_cursor(store: Store) -> None:
    store.commit(RUN, Batch(moves=[move("a", "pending", "ready", "release")]))
    store.commit(RUN, Batch(moves=[move("b", "pending", "ready", "release")]))
    every = store.transitions(RUN)
    assert len(every) == 2
    assert store.transitions_page(RUN, 0, 1) == every[:1]
    assert store.transitions_page(RUN, every[0].id, 5) == every[1:]


def test_task_state_counts_match_the_tasks(store: Store) -> None:
    store.commit(RUN, Batch(moves=[move("a", "pending", "ready", "release")]))
    expected: dict[str, dict[str, int]] = {}
    for run_id in (RUN, "run-2"):
        for task in store.tasks(run_id):
            counts = expected.setdefault(run_id, {})
            counts[task.state] = counts.get(task.state, 0) + 1
    assert store.task_state_counts() == expected
    assert store.task_state_counts(RUN) == {RUN: expected[RUN]}
    assert expected[RUN] == {"ready": 1, "pending": 2}
