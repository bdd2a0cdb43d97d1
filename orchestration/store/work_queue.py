"""The store's work queue: attempts offered to worker processes, claimed under a fenced lease.

A conductor offers an attempt; a worker claims it (PostgreSQL: `SELECT ... FOR UPDATE SKIP
LOCKED`, so claimers never wait on each other's rows; SQLite: one claimer at a time under its
write lock), renews its lease by heartbeat and reports the result with the token its claim
received. Every claim bumps the token, so a worker whose lease expired (killed, paused, cut off)
cannot store its late result: the attempt was offered again (at-least-once, as in one process).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from orchestration.store import schema
from orchestration.store.db import create_store_engine, upgrade_schema

logger = logging.getLogger(__name__)

ITEMS = schema.WorkItem
WORKERS = schema.WorkerRow
OFFERED, CLAIMED, REPORTED, COLLECTED = "offered", "claimed", "reported", "collected"
WORK_CHANNEL = "orch_work"  # NOTIFY when attempts are offered: workers wake
REPORT_CHANNEL = "orch_reported"  # NOTIFY when a result is reported: its conductor wakes
SQLITE_CANDIDATES = 50  # offered items a SQLite claim looks through for one it may take


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker's hold on one attempt: the token its renewals and its report must carry."""

    id: int
    run_id: str
    task_id: str
    attempt: int
    payload: dict[str, Any]
    token: int
    lease_seconds: float
    lease_expires: datetime


@dataclass(frozen=True, slots=True)
class Reported:
    """A result a worker stored for the conductor to collect."""

    id: int
    task_id: str
    attempt: int
    result: dict[str, Any]
    reported_by: str | None


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """One worker as `orch workers` shows it: all read from the store."""

    name: str
    host: str
    pid: int
    capabilities: tuple[str, ...]
    concurrency: int
    run_id: str | None
    state: str
    started_at: datetime
    last_heartbeat: datetime
    current: tuple[str, ...]  # `run/task#attempt` it holds a lease on now
    reported: int
    succeeded: int
    mean_duration_seconds: float | None

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.reported if self.reported else None


class WorkQueue:
    """Offer, claim, renew, report, expire and withdraw attempts in the store's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str) -> WorkQueue:
        """A queue on the store at `url` (its schema upgraded as `Store.open` does)."""
        engine = create_store_engine(url)
        upgrade_schema(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- the conductor's side -------------------------------------------------------------

    def offer(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        payload: dict[str, Any],
        *,
        requires: Sequence[str] = (),
        lease_seconds: float = 30.0,
    ) -> int:
        """Offer one attempt to the workers; its item's id."""
        values = {
            "run_id": run_id,
            "task_id": task_id,
            "attempt": attempt,
            "payload": payload,
            "requires": sorted(set(requires)),
            "state": OFFERED,
            "lease_seconds": lease_seconds,
            "token": 0,
            "deliveries": 0,
            "offered_at": utcnow(),
        }
        with self.engine.begin() as conn:
            item_id = conn.execute(insert(ITEMS).values(values).returning(ITEMS.c.id)).scalar_one()
            self._notify(conn, WORK_CHANNEL, run_id)
        return int(item_id)

    def collect(self, run_id: str, item_ids: Iterable[int]) -> list[Reported]:
        """The reported results among `item_ids`, marked collected (each is handed over once)."""
        wanted = list(item_ids)
        if not wanted:
            return []
        found: list[Reported] = []
        with self.engine.begin() as conn:
            for chunk in _chunks(wanted, 500):
                rows = conn.execute(
                    select(
                        ITEMS.c.id,
                        ITEMS.c.task_id,
                        ITEMS.c.attempt,
                        ITEMS.c.result,
                        ITEMS.c.reported_by,
                    ).where(
                        ITEMS.c.run_id == run_id, ITEMS.c.state == REPORTED, ITEMS.c.id.in_(chunk)
                    )
                ).all()
                found.extend(
                    Reported(r.id, r.task_id, r.attempt, r.result or {}, r.reported_by)
                    for r in rows
                )
            ids = [r.id for r in found]
            for chunk in _chunks(ids, 500):
                conn.execute(update(ITEMS).where(ITEMS.c.id.in_(chunk)).values(state=COLLECTED))
        return found

    def withdraw(self, item_ids: Iterable[int] = (), *, run_id: str | None = None) -> int:
        """Take back attempts not yet collected (by id, or every one of `run_id`): a worker
        holding one is refused its renewal and its report. Returns how many were withdrawn."""
        statement = delete(ITEMS).where(ITEMS.c.state != COLLECTED)
        ids = list(item_ids)
        if run_id is not None:
            statement = statement.where(ITEMS.c.run_id == run_id)
        elif ids:
            statement = statement.where(ITEMS.c.id.in_(ids))
        else:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    def expire(self, now: datetime | None = None, *, run_id: str | None = None) -> list[int]:
        """Offer again the attempts whose lease ran out; their ids."""
        now = now or utcnow()
        statement = (
            update(ITEMS)
            .where(ITEMS.c.state == CLAIMED, ITEMS.c.lease_expires < now)
            .values(state=OFFERED, lease_owner=None, lease_expires=None)
            .returning(ITEMS.c.id)
        )
        if run_id is not None:
            statement = statement.where(ITEMS.c.run_id == run_id)
        with self.engine.begin() as conn:
            ids = [int(i) for i in conn.execute(statement).scalars()]
            if ids:
                self._notify(conn, WORK_CHANNEL, run_id or "")
        if ids:
            logger.info("leases expired, offered again: items %s", ids)
        return ids

    # ---- the worker's side ----------------------------------------------------------------

    def claim(
        self,
        worker: str,
        capabilities: Sequence[str] = (),
        *,
        run_id: str | None = None,
        now: datetime | None = None,
    ) -> Claim | None:
        """Take the oldest offered attempt this worker may run (None: there is none)."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            row = self._pick(conn, capabilities, run_id)
            if row is None:
                return None
            expires = now + timedelta(seconds=row.lease_seconds)
            claimed = conn.execute(
                update(ITEMS)
                .where(ITEMS.c.id == row.id, ITEMS.c.state == OFFERED)
                .values(
                    state=CLAIMED,
                    lease_owner=worker,
                    lease_expires=expires,
                    token=ITEMS.c.token + 1,
                    deliveries=ITEMS.c.deliveries + 1,
                    claimed_at=now,
                )
                .returning(ITEMS.c.token)
            ).scalar_one_or_none()
        if claimed is None:
            return None
        return Claim(
            row.id,
            row.run_id,
            row.task_id,
            row.attempt,
            row.payload,
            int(claimed),
            row.lease_seconds,
            expires,
        )

    def _pick(self, conn: Any, capabilities: Sequence[str], run_id: str | None) -> Any:
        columns = (
            ITEMS.c.id,
            ITEMS.c.run_id,
            ITEMS.c.task_id,
            ITEMS.c.attempt,
            ITEMS.c.payload,
            ITEMS.c.requires,
            ITEMS.c.lease_seconds,
        )
        query = select(*columns).where(ITEMS.c.state == OFFERED).order_by(ITEMS.c.id)
        if run_id is not None:
            query = query.where(ITEMS.c.run_id == run_id)
        if self.postgres:
            # Rows other claimers hold are skipped, not waited for: claims never queue up.
            caps = sql_cast(literal(_json_list(capabilities)), JSONB)
            query = query.where(sql_cast(ITEMS.c.requires, JSONB).op("<@")(caps))
            return conn.execute(query.limit(1).with_for_update(skip_locked=True)).first()
        # SQLite: the transaction holds the write lock (BEGIN IMMEDIATE): no one else claims.
        have = set(capabilities)
        for row in conn.execute(query.limit(SQLITE_CANDIDATES)):
            if set(row.requires or ()) <= have:
                return row
        return None

    def renew(self, claim: Claim, now: datetime | None = None) -> datetime | None:
        """Extend the lease of `claim`; its new expiry, or None if the lease is lost."""
        now = now or utcnow()
        expires = now + timedelta(seconds=claim.lease_seconds)
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(ITEMS).where(*_held(claim, now)).values(lease_expires=expires)
            ).rowcount
        return expires if changed == 1 else None

    def report(
        self,
        claim: Claim,
        worker: str,
        result: dict[str, Any],
        *,
        succeeded: bool,
        now: datetime | None = None,
    ) -> bool:
        """Store the attempt's result if `claim` still holds its lease; False: refused (the
        lease expired or the attempt was withdrawn or claimed again: the result is dropped)."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            claimed_at = conn.execute(
                update(ITEMS)
                .where(*_held(claim, now))
                .values(
                    state=REPORTED,
                    result=result,
                    succeeded=succeeded,
                    reported_at=now,
                    reported_by=worker,
                    lease_expires=None,
                )
                .returning(ITEMS.c.claimed_at)
            ).scalar_one_or_none()
            if claimed_at is None:
                return False
            seconds = (now - claimed_at).total_seconds()
            conn.execute(
                update(ITEMS).where(ITEMS.c.id == claim.id).values(duration_seconds=seconds)
            )
            self._notify(conn, REPORT_CHANNEL, claim.run_id)
        return True

    # ---- workers ----------------------------------------------------------------------------

    def register_worker(
        self,
        name: str,
        host: str,
        pid: int,
        capabilities: Sequence[str],
        concurrency: int,
        run_id: str | None,
    ) -> None:
        """Record a worker starting (a worker of the same name before it is replaced)."""
        now = utcnow()
        values = {
            "name": name,
            "host": host,
            "pid": pid,
            "capabilities": sorted(set(capabilities)),
            "concurrency": concurrency,
            "run_id": run_id,
            "started_at": now,
            "last_heartbeat": now,
            "state": "working",
        }
        with self.engine.begin() as conn:
            if self.postgres:
                statement = pg_insert(WORKERS).values(values)
                excluded = {k: statement.excluded[k] for k in values if k != "name"}
                conn.execute(
                    statement.on_conflict_do_update(index_elements=["name"], set_=excluded)
                )
                return
            conn.execute(delete(WORKERS).where(WORKERS.c.name == name))
            conn.execute(insert(WORKERS).values(values))

    def worker_beat(self, name: str, state: str = "working") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(WORKERS)
                .where(WORKERS.c.name == name)
                .values(last_heartbeat=utcnow(), state=state)
            )

    def workers(self) -> list[WorkerFigures]:
        """Every worker recorded, with what it holds now and its reported attempts' figures."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(WORKERS).order_by(WORKERS.c.name)).all()
            held = conn.execute(
                select(ITEMS.c.lease_owner, ITEMS.c.run_id, ITEMS.c.task_id, ITEMS.c.attempt)
                .where(ITEMS.c.state == CLAIMED)
                .order_by(ITEMS.c.id)
            ).all()
            done = conn.execute(
                select(
                    ITEMS.c.reported_by,
                    func.count(),
                    func.sum(sql_cast(ITEMS.c.succeeded, Integer)),
                    func.avg(ITEMS.c.duration_seconds),
                )
                .where(ITEMS.c.reported_by.is_not(None))
                .group_by(ITEMS.c.reported_by)
            ).all()
        current: dict[str, list[str]] = {}
        for owner, run, task, attempt in held:
            current.setdefault(owner, []).append(f"{run}/{task}#{attempt}")
        figures = {row[0]: row[1:] for row in done}
        return [
            _worker_figures(row, current.get(row.name, []), figures.get(row.name)) for row in rows
        ]

    # ---- notifications ------------------------------------------------------------------------

    def _notify(self, conn: Any, channel: str, payload: str) -> None:
        """Wake the listeners of `channel` when this transaction commits (PostgreSQL only)."""
        if self.postgres:
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


def _held(claim: Claim, now: datetime) -> tuple[Any, ...]:
    """The conditions under which `claim` still holds its attempt: the fence."""
    return (
        ITEMS.c.id == claim.id,
        ITEMS.c.token == claim.token,
        ITEMS.c.state == CLAIMED,
        ITEMS.c.lease_expires >= now,
    )


def _json_list(values: Sequence[str]) -> str:
    import json

    return json.dumps(sorted(set(values)))


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _worker_figures(row: Any, current: list[str], done: Any) -> WorkerFigures:
    reported, succeeded, mean = done if done is not None else (0, 0, None)
    return WorkerFigures(
        name=row.name,
        host=row.host,
        pid=row.pid,
        capabilities=tuple(row.capabilities or ()),
        concurrency=row.concurrency,
        run_id=row.run_id,
        state=row.state,
        started_at=row.started_at,
        last_heartbeat=row.last_heartbeat,
        current=tuple(current),
        reported=int(reported or 0),
        succeeded=int(succeeded or 0),
        mean_duration_seconds=float(mean) if mean is not None else None,
    )


class Waker:
    """Waits for a NOTIFY on `channel` (PostgreSQL), else for the polling interval.

    Its own autocommit connection, opened again after the server went away: a missed
    notification costs at most one polling interval, never a lost attempt.
    """

    def __init__(self, url: str, channel: str, poll_seconds: float) -> None:
        self.url = url
        self.channel = channel
        self.poll_seconds = poll_seconds
        self.conn: Any = None
        self.listening = url.startswith("postgresql")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until notified (True) or the timeout / polling interval passed (False)."""
        timeout = self.poll_seconds if timeout is None else min(timeout, self.poll_seconds)
        if not self.listening:
            time.sleep(timeout)
            return False
        try:
            conn = self._connection()
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except Exception as error:  # the server went away: poll until it is back
            logger.info("no notifications from the store (%s); polling", error)
            self.close()
            time.sleep(timeout)
            return False

    def _connection(self) -> Any:
        if self.conn is None:
            import psycopg

            url = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
            self.conn.execute(f"LISTEN {self.channel}")  # a constant of this module
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                self.conn.close()
            self.conn = None


def store_errors() -> tuple[type[BaseException], ...]:
    """The errors a lost or restarting database raises: a worker retries after them."""
    return (SQLAlchemyError, OSError)
