"""The store's part for triggers: schedules, their firings, events received, dispatch cursors.

Each method is one unit of work. Firings and events are inserted with a unique key, skipping a
key already taken: that insert is what makes two scheduler processes fire an occurrence once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from orchestration.core.errors import NotFoundError, StoreError
from orchestration.core.trigger_records import FiringRecord, ScheduleRecord, TriggerEventRecord
from orchestration.store import schema
from orchestration.store.records import GENERATED, record_of, row_of

SCHEDULES = schema.Schedule
FIRINGS = schema.TriggerFiring
TRIGGER_EVENTS = schema.TriggerEvent
CURSORS = schema.TriggerCursor
TRANSITIONS = schema.Transition
BREAKPOINTS = schema.Breakpoint
EVENTS = schema.Event
DEAD_LETTERS = schema.DeadLetter
BREAKERS = schema.CircuitBreaker
RUN_READ_LIMIT = 500  # rows of one run table read per dispatch pass


class TriggerStore:
    """Schedules and trigger history, in the same database (and engine) as the runs."""

    def __init__(self, engine: Engine, reader: Engine) -> None:
        self._engine = engine
        self._reader = reader

    # ---- schedules ---------------------------------------------------------------------------

    def add_schedule(self, record: ScheduleRecord, *, replace_existing: bool = False) -> None:
        """Store a new schedule; an existing name is an error unless `replace_existing`."""
        row = row_of(record)
        try:
            with self._engine.begin() as conn:
                if replace_existing:
                    values = {k: v for k, v in row.items() if k not in ("name", "created_at")}
                    statement = update(SCHEDULES).where(SCHEDULES.c.name == record.name)
                    if conn.execute(statement.values(**values)).rowcount == 1:
                        return
                conn.execute(insert(SCHEDULES), [row])
        except IntegrityError:
            raise StoreError(
                f"schedule '{record.name}' already exists; remove it first or choose another name"
            ) from None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store schedule '{record.name}': {_line(exc)}") from exc

    def schedules(self) -> list[ScheduleRecord]:
        rows = self._all(select(SCHEDULES).order_by(SCHEDULES.c.name))
        return [_schedule(row) for row in rows]

    def schedule(self, name: str) -> ScheduleRecord:
        row = self._one(select(SCHEDULES).where(SCHEDULES.c.name == name))
        if row is None:
            raise NotFoundError(f"schedule '{name}' not found (see: orch schedule list)")
        return _schedule(row)

    def set_enabled(self, name: str, enabled: bool, now: datetime) -> None:
        statement = (
            update(SCHEDULES)
            .where(SCHEDULES.c.name == name)
            .values(enabled=enabled, updated_at=now)
        )
        self._write_one(statement, f"schedule '{name}' not found (see: orch schedule list)")

    def remove_schedule(self, name: str) -> None:
        """Delete the schedule; its firings stay as history (their keys keep them fired once)."""
        statement = delete(SCHEDULES).where(SCHEDULES.c.name == name)
        self._write_one(statement, f"schedule '{name}' not found (see: orch schedule list)")

    # ---- firings -----------------------------------------------------------------------------

    def insert_firing(self, firing: FiringRecord) -> FiringRecord | None:
        """Store the firing; None when its key was taken (fired already, or by another process)."""
        try:
            with self._engine.begin() as conn:
                statement = _insert_ignoring(conn, FIRINGS).returning(FIRINGS.c.id)
                new_id = conn.execute(statement, row_of(firing, leave_out=GENERATED)).scalar()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store firing {firing.key}: {_line(exc)}") from exc
        return None if new_id is None else replace(firing, id=int(new_id))

    def update_firing(
        self, firing_id: int, expected: Sequence[str], *, taking_from: Any = None, **values: Any
    ) -> bool:
        """Change a firing whose outcome is one of `expected` (and, with `taking_from`, whose
        holder is that one); False if another process moved or took it first."""
        statement = update(FIRINGS).where(
            FIRINGS.c.id == firing_id, FIRINGS.c.outcome.in_(list(expected))
        )
        if taking_from is not None:
            holder = FIRINGS.c.holder
            statement = statement.where(
                holder.is_(None) if taking_from == "" else holder == taking_from
            )
        statement = statement.values(**values)
        try:
            with self._engine.begin() as conn:
                return bool(conn.execute(statement).rowcount == 1)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot update firing {firing_id}: {_line(exc)}") from exc

    def firings(
        self,
        schedule: str | None = None,
        *,
        outcomes: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[FiringRecord]:
        """Firings oldest first (with `limit`: the newest `limit` of them, oldest first)."""
        query = select(FIRINGS)
        if schedule is not None:
            query = query.where(FIRINGS.c.schedule == schedule)
        if outcomes is not None:
            query = query.where(FIRINGS.c.outcome.in_(list(outcomes)))
        if limit is not None:
            newest = query.order_by(FIRINGS.c.id.desc()).limit(limit)
            return [record_of(FiringRecord, row) for row in reversed(self._all(newest))]
        return [record_of(FiringRecord, row) for row in self._all(query.order_by(FIRINGS.c.id))]

    def schedule_lags(self) -> dict[str, float]:
        """How late each schedule's newest cron occurrence fired, in seconds (never negative;
        the jitter a schedule asks for counts as lateness)."""
        lags: dict[str, float] = {}
        for schedule in self.schedules():
            for newest in self._newest_cron_firing(schedule.name):
                late = (newest.fired_at - newest.due_at).total_seconds()
                lags[schedule.name] = max(0.0, late)
        return lags

    def _newest_cron_firing(self, schedule: str) -> list[FiringRecord]:
        query = (
            select(FIRINGS)
            .where(FIRINGS.c.schedule == schedule, FIRINGS.c.kind == "cron")
            .order_by(FIRINGS.c.id.desc())
            .limit(1)
        )
        return [record_of(FiringRecord, row) for row in self._all(query)]

    def firing_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these keys are fired already."""
        if not keys:
            return set()
        rows = self._all(select(FIRINGS.c.key).where(FIRINGS.c.key.in_(list(keys))))
        return {row.key for row in rows}

    # ---- events ------------------------------------------------------------------------------

    def add_events(self, events: Sequence[TriggerEventRecord]) -> list[TriggerEventRecord]:
        """Store events, skipping keys seen before; the ones stored (with their ids)."""
        stored: list[TriggerEventRecord] = []
        try:
            with self._engine.begin() as conn:
                for event in events:
                    statement = _insert_ignoring(conn, TRIGGER_EVENTS).returning(
                        TRIGGER_EVENTS.c.id
                    )
                    new_id = conn.execute(statement, row_of(event, leave_out=GENERATED)).scalar()
                    if new_id is not None:
                        stored.append(replace(event, id=int(new_id)))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store events: {_line(exc)}") from exc
        return stored

    def event_by_key(self, key: str) -> TriggerEventRecord | None:
        row = self._one(select(TRIGGER_EVENTS).where(TRIGGER_EVENTS.c.key == key))
        return record_of(TriggerEventRecord, row) if row is not None else None

    def trigger_events(
        self, *, undispatched: bool = False, name: str | None = None, limit: int = 1000
    ) -> list[TriggerEventRecord]:
        """Events oldest first; `undispatched`: only those no dispatcher has handled yet."""
        query = select(TRIGGER_EVENTS)
        if undispatched:
            query = query.where(TRIGGER_EVENTS.c.dispatched_at.is_(None))
        if name is not None:
            query = query.where(TRIGGER_EVENTS.c.name == name)
        if undispatched:
            rows = self._all(query.order_by(TRIGGER_EVENTS.c.id).limit(limit))
        else:
            rows = list(
                reversed(self._all(query.order_by(TRIGGER_EVENTS.c.id.desc()).limit(limit)))
            )
        return [record_of(TriggerEventRecord, row) for row in rows]

    def mark_dispatched(self, event_id: int, now: datetime) -> None:
        statement = (
            update(TRIGGER_EVENTS)
            .where(TRIGGER_EVENTS.c.id == event_id, TRIGGER_EVENTS.c.dispatched_at.is_(None))
            .values(dispatched_at=now)
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot mark event {event_id} dispatched: {_line(exc)}") from exc

    # ---- reading the runs' history for run events ----------------------------------------------

    def cursor(self, name: str) -> int | None:
        row = self._one(select(CURSORS.c.position).where(CURSORS.c.name == name))
        return None if row is None else int(row.position)

    def move_cursor(self, name: str, old: int | None, new: int) -> bool:
        """Move a cursor from `old` to `new`; False if another dispatcher moved it first."""
        try:
            with self._engine.begin() as conn:
                if old is None:
                    statement = _insert_ignoring(conn, CURSORS).values(name=name, position=new)
                    return bool(conn.execute(statement).rowcount == 1)
                statement = (
                    update(CURSORS)
                    .where(CURSORS.c.name == name, CURSORS.c.position == old)
                    .values(position=new)
                )
                return bool(conn.execute(statement).rowcount == 1)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot move trigger cursor {name}: {_line(exc)}") from exc

    def last_ids(self) -> dict[str, int]:
        """The newest id of each run table read for run events (0 when empty)."""
        from sqlalchemy import func

        out = {}
        for name, table in _RUN_TABLES.items():
            row = self._one(select(func.max(table.c.id).label("top")))
            out[name] = int(row.top) if row is not None and row.top is not None else 0
        return out

    def run_rows_after(self, name: str, after_id: int) -> list[dict[str, Any]]:
        """Rows of one run table newer than `after_id`, oldest first, as plain mappings."""
        table = _RUN_TABLES[name]
        query = select(table).where(table.c.id > after_id)
        if name == "transitions":
            query = query.where(TRANSITIONS.c.dest.in_(["completed", "failed"]))
        elif name == "events":
            query = query.where(EVENTS.c.kind.in_(["run_finished", "breakpoint_resolved"]))
        rows = self._all(query.order_by(table.c.id).limit(RUN_READ_LIMIT))
        return [dict(row._mapping) for row in rows]

    def open_breakers(self) -> list[dict[str, Any]]:
        rows = self._all(select(BREAKERS).where(BREAKERS.c.state == "open"))
        return [dict(row._mapping) for row in rows]

    # ---- helpers -----------------------------------------------------------------------------

    def _write_one(self, statement: Any, missing: str) -> None:
        try:
            with self._engine.begin() as conn:
                if conn.execute(statement).rowcount != 1:
                    raise NotFoundError(missing)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot change the schedule: {_line(exc)}") from exc

    def _all(self, query: Select[Any]) -> list[Row[Any]]:
        with self._reader.connect() as conn:
            return list(conn.execute(query))

    def _one(self, query: Select[Any]) -> Row[Any] | None:
        with self._reader.connect() as conn:
            return conn.execute(query).first()


_RUN_TABLES = {
    "transitions": TRANSITIONS,
    "breakpoints": BREAKPOINTS,
    "events": EVENTS,
    "dead_letters": DEAD_LETTERS,
}


def _schedule(row: Row[Any]) -> ScheduleRecord:
    return record_of(ScheduleRecord, row)


def _insert_ignoring(conn: Connection, table: Table) -> Any:
    """INSERT that skips a row whose unique key is taken (another writer got there first)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing()


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
