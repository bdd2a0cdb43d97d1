"""The JSONL event log: every state change, decision, breakpoint, event and alert, one per line.

Read from the store's journal tables (transitions, decisions, breakpoints, events) after a
cursor, so every engine and worker of one store lands in one log without the loop writing it.
Written to `events-YYYY-MM-DD.jsonl` (UTC day of each record: rotated daily), files older than
the retention deleted. The cursor is kept beside the files, so a restarted follower neither
repeats nor loses a line. The fields are documented in docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestration.core.models import (
    BreakpointRecord,
    DecisionRecord,
    EventRecord,
    TransitionRecord,
)
from orchestration.store import Store

logger = logging.getLogger(__name__)

JOURNALS = ("transition", "decision", "breakpoint", "event")
PAGE_ROWS = 1_000  # rows read per table per poll
RETENTION_DAYS = 14  # default: log files older than this many days are deleted
CURSOR_FILE = ".cursor.json"
FILE_PATTERN = re.compile(r"events-(\d{4}-\d{2}-\d{2})\.jsonl")
ALERT_EVENT = "alert"  # events the alerts module stores: logged as notifications


def _iso(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def entry_of(kind: str, row_id: int, record: Any) -> dict[str, Any]:
    """The JSON object of one journal row (see docs/operations.md for every field)."""
    if isinstance(record, TransitionRecord):
        return {
            "ts": _iso(record.at),
            "type": "state_change",
            "id": f"{kind}:{row_id}",
            "run": record.run_id,
            "task": record.task_id,
            "from": record.source,
            "to": record.dest,
            "trigger": record.trigger,
            "reason": record.reason,
            "actor": record.actor,
        }
    if isinstance(record, DecisionRecord):
        return {
            "ts": _iso(record.at),
            "type": "decision",
            "id": f"{kind}:{row_id}",
            "run": record.run_id,
            "task": record.task_id,
            "attempt": record.attempt,
            "action": record.action,
            "rule": record.rule,
            "reason": record.reason,
            "figures": record.figures,
        }
    if isinstance(record, BreakpointRecord):
        return _breakpoint_entry(kind, row_id, record)
    assert isinstance(record, EventRecord)
    alert = record.kind == ALERT_EVENT
    return {
        "ts": _iso(record.at),
        "type": "notification" if alert else "event",
        "id": f"{kind}:{row_id}",
        "run": record.run_id,
        "task": record.task_id,
        "kind": str(record.data.get("kind", record.kind)) if alert else record.kind,
        "data": record.data,
    }


def _breakpoint_entry(kind: str, row_id: int, bp: BreakpointRecord) -> dict[str, Any]:
    return {
        "ts": _iso(bp.created_at),
        "type": "breakpoint",
        "id": f"{kind}:{row_id}",
        "run": bp.run_id,
        "task": bp.task_id,
        "breakpoint": bp.id,
        "rule": bp.rule,
        "at": bp.at,
        "severity": bp.severity,
        "action": bp.action,
        "message": bp.message,
        "state": bp.state,  # as first read; its answer comes as a `breakpoint_resolved` event
        "resolution": bp.resolution,
    }


@dataclass
class Cursor:
    """The last row id read from each journal table."""

    after: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JOURNALS, 0))

    @classmethod
    def at_end(cls, store: Store, run_id: str | None = None) -> Cursor:
        """A cursor past everything stored now (`follow` shows only what comes next)."""
        cursor = cls()
        for kind in JOURNALS:
            while page := store.journal(kind, cursor.after[kind], PAGE_ROWS, run_id):
                cursor.after[kind] = page[-1][0]
        return cursor

    @classmethod
    def load(cls, path: Path) -> Cursor:
        if not path.exists():
            return cls()
        stored = json.loads(path.read_text(encoding="utf-8"))
        return cls({kind: int(stored.get(kind, 0)) for kind in JOURNALS})

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.after), encoding="utf-8")
        os.replace(temporary, path)  # atomic: a crash leaves the old cursor or the new one


def read_new(store: Store, cursor: Cursor, run_id: str | None = None) -> list[dict[str, Any]]:
    """Entries stored after `cursor` (which moves past them), in time order."""
    entries: list[tuple[str, int, int, dict[str, Any]]] = []
    for order, kind in enumerate(JOURNALS):
        for row_id, record in store.journal(kind, cursor.after[kind], PAGE_ROWS, run_id):
            entry = entry_of(kind, row_id, record)
            entries.append((entry["ts"], order, row_id, entry))
            cursor.after[kind] = row_id
    return [entry for *_, entry in sorted(entries, key=lambda e: e[:3])]


class EventLogFiles:
    """Daily JSONL files in `directory`, those older than `retention_days` deleted."""

    def __init__(self, directory: Path, retention_days: int = RETENTION_DAYS) -> None:
        self.directory = directory
        self.retention_days = retention_days
        directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, day: date) -> Path:
        return self.directory / f"events-{day.isoformat()}.jsonl"

    def write(self, entries: Iterable[dict[str, Any]]) -> int:
        """Append each entry to its day's file; the number written."""
        by_day: dict[date, list[str]] = {}
        for entry in entries:
            day = datetime.fromisoformat(entry["ts"]).date()
            by_day.setdefault(day, []).append(json.dumps(entry, sort_keys=True, default=str))
        for day, lines in sorted(by_day.items()):
            with self.path_for(day).open("a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
        return sum(len(lines) for lines in by_day.values())

    def prune(self, now: datetime) -> list[Path]:
        """Delete the files of days before the retention window; the ones deleted."""
        oldest = (now.astimezone(UTC) - timedelta(days=self.retention_days)).date()
        removed = []
        for path in sorted(self.directory.glob("events-*.jsonl")):
            found = FILE_PATTERN.fullmatch(path.name)
            if found and date.fromisoformat(found[1]) < oldest:
                path.unlink()
                removed.append(path)
        return removed


def export_once(
    store: Store,
    files: EventLogFiles,
    *,
    run_id: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> int:
    """Write what is new since the cursor kept with the files, then apply the retention."""
    cursor_path = files.directory / CURSOR_FILE
    cursor = Cursor.load(cursor_path)
    written = 0
    while entries := read_new(store, cursor, run_id):
        written += files.write(entries)
        cursor.save(cursor_path)  # after the lines: a crash between repeats, never loses
    files.prune((clock or (lambda: datetime.now(UTC)))())
    return written


class EventLogShipper:
    """Writes the event log from a background thread (`orch serve --event-log DIR`, a daemon).

    Every `poll_seconds` it exports what is new; `stop` exports once more, then returns.
    """

    def __init__(self, store: Store, files: EventLogFiles, poll_seconds: float = 1.0) -> None:
        import threading

        self.store = store
        self.files = files
        self.poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            stopping = self._stopping.is_set()
            try:
                export_once(self.store, self.files)
            except Exception:  # a full disk or a lost store connection: try again next time
                logger.exception("event log not written this time")
            if stopping:
                return
            self._stopping.wait(self.poll_seconds)
