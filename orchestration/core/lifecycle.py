"""The eight task states and their legal moves, defined once on a shared `transitions` machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from transitions import Machine

from orchestration.core.errors import TaskStateError

logger = logging.getLogger(__name__)


class TaskState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    BLOCKED = "blocked"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# `failed` is final for the run but a human may still requeue or skip it.
FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})

# The declarative table of DESIGN section 3: trigger, sources, destination.
TRANSITIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("release", ("pending",), "ready"),
    ("start", ("ready",), "running"),
    ("succeed", ("running",), "completed"),
    ("fail", ("running", "blocked"), "failed"),  # blocked: a reviewer rejects it as failed
    ("retry", ("running",), "retrying"),
    # retrying: a human pauses a task that waits for its retry time (orch task pause)
    ("block", ("running", "ready", "pending", "retrying"), "blocked"),
    ("unblock", ("blocked",), "ready"),
    ("approve", ("blocked",), "completed"),
    ("wake", ("retrying",), "ready"),
    ("requeue", ("failed",), "ready"),
    ("skip", ("pending", "ready", "blocked", "retrying", "failed"), "completed"),
    ("cancel", ("pending", "ready", "running", "blocked", "retrying"), "cancelled"),
    # Human interventions on finished work (orchestration/resilience/interventions.py):
    # a dependent cancelled because its upstream failed comes back when that upstream is retried
    ("revive", ("cancelled",), "pending"),
    # `orch task rerun`: a finished task runs again; its earlier attempts stay in the history
    ("rerun", ("completed", "failed", "cancelled"), "ready"),
    # `orch task rerun --downstream`: a dependent waits for the rerun upstream again
    ("reset", ("completed", "failed", "cancelled", "ready", "retrying"), "pending"),
)


@dataclass(slots=True)
class TaskHandle:
    """The small plain object the machine drives: the store's row stays the source of truth."""

    task_id: str
    state: str


@dataclass(frozen=True, slots=True)
class Move:
    """One transition that happened, ready to be stored in the history table."""

    task_id: str
    source: str
    dest: str
    trigger: str
    reason: str
    actor: str


def _build_machine() -> Machine:
    machine = Machine(
        model=None,
        states=[s.value for s in TaskState],
        initial=TaskState.PENDING.value,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    for trigger, sources, dest in TRANSITIONS:
        machine.add_transition(trigger, list(sources), dest)
    return machine


# Built once for the whole process. Tasks are never registered with `add_model` (quadratic and
# never freed); `fire` moves a TaskHandle by the machine's own transitions (see PITFALLS.md).
_MACHINE = _build_machine()


def _legal_triggers(machine: Machine) -> dict[str, tuple[str, ...]]:
    """state -> the triggers the machine accepts from it, in the order they were added."""
    return {state.value: tuple(machine.get_triggers(state.value)) for state in TaskState}


def _moves(machine: Machine) -> dict[tuple[str, str], str]:
    """(state, trigger) -> destination, read from the machine's transitions once at import.

    Firing an event costs about 7 µs of `transitions` bookkeeping (event data, callbacks, state
    objects) against under 1 µs for a lookup, three times per task on the hot path. The machine
    has no callbacks, and a transition with a condition is refused here, so a move is fully
    described by its (source, trigger) pair.
    """
    table: dict[tuple[str, str], str] = {}
    for source, triggers in _legal_triggers(machine).items():
        for trigger in triggers:
            (transition, *others) = machine.get_transitions(trigger=trigger, source=source)
            if others or transition.conditions or transition.dest is None:
                raise RuntimeError(f"transition {trigger} from {source} is not a plain move")
            table[(source, trigger)] = transition.dest
    return table


_LEGAL = _legal_triggers(_MACHINE)
_MOVES = _moves(_MACHINE)


def legal_triggers(state: str) -> tuple[str, ...]:
    """The triggers that may be fired from `state`, in table order."""
    return _LEGAL.get(state, ())


def fire(task: TaskHandle, trigger: str, *, reason: str = "", actor: str = "engine") -> Move:
    """Apply `trigger` to `task`, or raise TaskStateError naming the task, state and legal moves."""
    source = task.state
    dest = _MOVES.get((source, trigger))
    if dest is None:
        raise TaskStateError(task.task_id, source, trigger, legal_triggers(source))
    task.state = dest
    return Move(task.task_id, source, dest, trigger, reason, actor)
