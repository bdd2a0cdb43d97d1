"""The eight task states and their legal moves, defined once on a shared `transitions` machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from transitions import Machine, MachineError

from orchestration.errors import TaskStateError

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


FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
# `failed` is final for the run but a human may still requeue or skip it.
NON_FINAL = [s.value for s in TaskState if s not in (TaskState.COMPLETED, TaskState.CANCELLED)]

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
    # Human interventions on finished work (orchestration/interventions.py):
    # a dependent cancelled because its upstream failed comes back when that upstream is retried
    ("revive", ("cancelled",), "pending"),
    # `orch task rerun`: a finished task runs again; its earlier attempts stay in the history
    ("rerun", ("completed", "failed", "cancelled"), "ready"),
    # `orch task rerun --downstream`: a dependent waits for the rerun upstream again
    ("reset", ("completed", "failed", "cancelled", "ready", "retrying"), "pending"),
)

TRIGGERS = tuple(name for name, _, _ in TRANSITIONS)


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
# never freed); each transition fires the event on a TaskHandle directly (see PITFALLS.md).
_MACHINE = _build_machine()
_LEGAL: dict[str, tuple[str, ...]] = {
    state.value: tuple(t for t, sources, _ in TRANSITIONS if state.value in sources)
    for state in TaskState
}
_DEST = {trigger: dest for trigger, _, dest in TRANSITIONS}


def _compiled_moves(machine: Machine) -> dict[tuple[str, str], str]:
    """(state, trigger) -> destination, read from the machine's own transitions.

    Firing an event costs about 7 µs of `transitions` bookkeeping (event data, callbacks, state
    objects) against under 1 µs for a table lookup, three times per task on the hot path. The
    machine has no conditions, callbacks or hooks, so a move is fully described by its (source,
    trigger) pair: this table is that description, taken from the machine itself so the two
    cannot disagree. A machine that gains a callback or a condition is refused here (and `fire`
    would need to go through it again).
    """
    hooks = (
        machine.prepare_event,
        machine.before_state_change,
        machine.after_state_change,
        machine.finalize_event,
        machine.on_exception,
    )
    state_hooks = [h for state in machine.states.values() for h in (state.on_enter, state.on_exit)]
    if any(hooks) or any(state_hooks):
        raise RuntimeError("the task machine has callbacks: a compiled move table would skip them")
    table: dict[tuple[str, str], str] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            transition = transitions[0]
            if len(transitions) > 1 or transition.conditions:
                raise RuntimeError(f"conditional transition {trigger} from {source}: not compiled")
            if transition.prepare or transition.before or transition.after:
                raise RuntimeError(f"transition {trigger} from {source} has callbacks")
            if transition.dest is None:  # an internal transition: none in the table above
                raise RuntimeError(f"internal transition {trigger} from {source}: not compiled")
            table[(source, trigger)] = transition.dest
    return table


_MOVES = _compiled_moves(_MACHINE)


def legal_triggers(state: str) -> tuple[str, ...]:
    """The triggers that may be fired from `state`, in table order."""
    return _LEGAL.get(state, ())


def destination(trigger: str) -> str:
    """The state a trigger leads to."""
    return _DEST[trigger]


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def fire(task: TaskHandle, trigger: str, *, reason: str = "", actor: str = "engine") -> Move:
    """Apply `trigger` to `task`, or raise TaskStateError naming the task, state and legal moves."""
    source = task.state
    dest = _MOVES.get((source, trigger))
    if dest is None:
        raise TaskStateError(task.task_id, source, trigger, legal_triggers(source))
    task.state = dest
    return Move(task.task_id, source, dest, trigger, reason, actor)


def fire_through_machine(
    task: TaskHandle, trigger: str, *, reason: str = "", actor: str = "engine"
) -> Move:
    """`fire` by way of the `transitions` machine itself: the reference `fire` is tested against."""
    source = task.state
    event = _MACHINE.events.get(trigger)
    if event is None:
        raise TaskStateError(task.task_id, source, trigger, legal_triggers(source))
    try:
        event.trigger(task)
    except MachineError:
        raise TaskStateError(task.task_id, source, trigger, legal_triggers(source)) from None
    return Move(task.task_id, source, task.state, trigger, reason, actor)


def is_legal_path(moves: list[tuple[str, str, str]]) -> bool:
    """Whether a stored history (source, dest, trigger) is a legal walk from `pending`."""
    state = TaskState.PENDING.value
    for source, dest, trigger in moves:
        if source != state or trigger not in _LEGAL.get(source, ()) or _DEST[trigger] != dest:
            return False
        state = dest
    return True
