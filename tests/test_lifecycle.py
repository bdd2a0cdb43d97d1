"""The eight-state machine: legal moves, clear errors for illegal ones, history checks."""

from __future__ import annotations

import pytest

from orchestration.core.errors import TaskStateError
from orchestration.core.lifecycle import (
    TRANSITIONS,
    TaskHandle,
    TaskState,
    fire,
    legal_triggers,
)
from tests.helpers import is_legal_path

ALL_STATES = [s.value for s in TaskState]


def test_eight_states() -> None:
    assert len(ALL_STATES) == 8


@pytest.mark.parametrize(("trigger", "sources", "dest"), TRANSITIONS)
def test_every_legal_move_lands_where_the_table_says(
    trigger: str, sources: tuple[str, ...], dest: str
) -> None:
    for source in sources:
        task = TaskHandle("t", source)
        move = fire(task, trigger, reason="why", actor="tester")
        assert (task.state, move.source, move.dest) == (dest, source, dest)
        assert (move.trigger, move.reason, move.actor) == (trigger, "why", "tester")


@pytest.mark.parametrize("state", ALL_STATES)
def test_every_illegal_move_raises_with_task_state_and_legal_triggers(state: str) -> None:
    allowed = {t for t, sources, _ in TRANSITIONS if state in sources}
    for trigger in {t for t, _, _ in TRANSITIONS} - allowed:
        task = TaskHandle("build-api", state)
        with pytest.raises(TaskStateError) as caught:
            fire(task, trigger)
        message = str(caught.value)
        assert "build-api" in message and f"'{state}'" in message and trigger in message
        for legal in allowed:
            assert legal in message
        assert task.state == state  # nothing changed


def test_unknown_trigger_is_a_task_state_error() -> None:
    with pytest.raises(TaskStateError, match="legal triggers: release"):
        fire(TaskHandle("a", "pending"), "explode")


def test_final_states_only_leave_by_human_interventions() -> None:
    with pytest.raises(TaskStateError, match=r"legal triggers: rerun, reset"):
        fire(TaskHandle("a", "completed"), "start")
    assert legal_triggers("completed") == ("rerun", "reset")
    assert legal_triggers("cancelled") == ("revive", "rerun", "reset")


def test_cancel_from_every_non_final_state_and_skip_rules() -> None:
    for state in ("pending", "ready", "running", "blocked", "retrying"):
        assert "cancel" in legal_triggers(state)
    assert "cancel" not in legal_triggers("failed")
    assert set(legal_triggers("failed")) == {"requeue", "skip", "rerun", "reset"}


def test_is_legal_path() -> None:
    good = [
        ("pending", "ready", "release"),
        ("ready", "running", "start"),
        ("running", "retrying", "retry"),
        ("retrying", "ready", "wake"),
        ("ready", "running", "start"),
        ("running", "completed", "succeed"),
    ]
    assert is_legal_path(good)
    assert not is_legal_path(good[1:])  # must start at pending
    assert not is_legal_path([("pending", "running", "start")])
    assert not is_legal_path([("pending", "ready", "release"), ("running", "completed", "succeed")])


def test_handles_are_independent() -> None:
    a, b = TaskHandle("a", "pending"), TaskHandle("b", "pending")
    fire(a, "release")
    assert (a.state, b.state) == ("ready", "pending")
