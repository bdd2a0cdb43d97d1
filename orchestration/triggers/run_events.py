"""Events from the runs, read from the store's history: tasks finished, breakpoints, dead letters.

The engine already records all of these (transitions, breakpoints, events, dead letters, circuit
breakers); nothing is added to the loop. A cursor per table remembers the last id read, and each
event's key names its row, so two dispatchers (or one restarted) store each event once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.core.trigger_records import TriggerEventRecord

if TYPE_CHECKING:
    from orchestration.store import Store

RUN_EVENT_NAMES = (
    "task_completed",
    "task_failed",
    "breakpoint_raised",
    "breakpoint_resolved",
    "run_finished",
    "dead_letter",
    "breaker_opened",
)


def collect_run_events(store: Store, now: datetime) -> list[TriggerEventRecord]:
    """Store the run events recorded since the last call; the ones new to the store.

    The first call on a store starts from its newest rows: history before triggers existed
    fires nothing.
    """
    triggers = store.triggers
    stored: list[TriggerEventRecord] = []
    plans: dict[str, str] = {}
    for table, convert in _CONVERTERS.items():
        position = triggers.cursor(f"run:{table}")
        if position is None:
            triggers.move_cursor(f"run:{table}", None, triggers.last_ids()[table])
            continue
        rows = triggers.run_rows_after(table, position)
        if not rows:
            continue
        events = [convert(row, _plan_name(store, row["run_id"], plans), now) for row in rows]
        stored += triggers.add_events(events)
        triggers.move_cursor(f"run:{table}", position, int(rows[-1]["id"]))
    breakers = [_breaker_event(row, now) for row in triggers.open_breakers()]
    stored += triggers.add_events(breakers)
    return stored


def _plan_name(store: Store, run_id: str, cache: dict[str, str]) -> str:
    from orchestration.core.errors import NotFoundError

    if run_id not in cache:
        try:
            cache[run_id] = store.get_run(run_id).plan_name
        except NotFoundError:
            cache[run_id] = ""
    return cache[run_id]


def _event(name: str, key: str, row: dict[str, Any], data: dict[str, Any], now: datetime) -> Any:
    return TriggerEventRecord(name, key, "run", data, now, run_id=row.get("run_id"))


def _transition(row: dict[str, Any], plan: str, now: datetime) -> TriggerEventRecord:
    name = "task_completed" if row["dest"] == "completed" else "task_failed"
    data = {
        "run_id": row["run_id"],
        "plan": plan,
        "task_id": row["task_id"],
        "reason": row["reason"],
        "actor": row["actor"],
    }
    return _event(name, f"run:transition:{row['id']}", row, data, now)


def _breakpoint(row: dict[str, Any], plan: str, now: datetime) -> TriggerEventRecord:
    data = {
        "run_id": row["run_id"],
        "plan": plan,
        "task_id": row["task_id"],
        "breakpoint": row["id"],
        "rule": row["rule"],
        "severity": row["severity"],
        "message": row["message"],
    }
    return _event("breakpoint_raised", f"run:breakpoint:{row['id']}", row, data, now)


def _run_event(row: dict[str, Any], plan: str, now: datetime) -> TriggerEventRecord:
    data = {"run_id": row["run_id"], "plan": plan, "task_id": row["task_id"], **row["data"]}
    return _event(row["kind"], f"run:event:{row['id']}", row, data, now)


def _dead_letter(row: dict[str, Any], plan: str, now: datetime) -> TriggerEventRecord:
    data = {
        "run_id": row["run_id"],
        "plan": plan,
        "task_id": row["task_id"],
        "dead_letter": row["id"],
        "error_kind": row["error_kind"],
        "reason": row["reason"],
    }
    return _event("dead_letter", f"run:dead_letter:{row['id']}", row, data, now)


def _breaker_event(row: dict[str, Any], now: datetime) -> TriggerEventRecord:
    opened = row["opened_at"].isoformat() if row["opened_at"] is not None else ""
    data = {"breaker": row["key"], "reason": row["reason"], "opened_at": opened}
    return TriggerEventRecord(
        "breaker_opened", f"run:breaker:{row['key']}:{opened}", "run", data, now
    )


_CONVERTERS: dict[str, Callable[[dict[str, Any], str, datetime], TriggerEventRecord]] = {
    "transitions": _transition,
    "breakpoints": _breakpoint,
    "events": _run_event,
    "dead_letters": _dead_letter,
}
