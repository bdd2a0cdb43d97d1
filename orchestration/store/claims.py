"""Which engine holds a run: one conditional UPDATE takes it; every commit of the holder checks it.

Reading "no live engine" and then starting to work is a race: two `orch resume` both read it and
both went in. Taking a run is therefore one statement whose row count decides: SQLite runs it
under its write lock (BEGIN IMMEDIATE), PostgreSQL re-checks the WHERE clause on the row a
concurrent claim just committed. The holder's commits read its claim inside their transaction
(PostgreSQL: FOR SHARE, so a takeover waits for the commit), so an engine whose run was taken
over (`--force`, or after its heartbeat went stale) stores nothing more and stops.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, or_, select, update

from orchestration.core.errors import StoreError
from orchestration.store import schema

RUNS = schema.Run
HOST_CHARS = 32  # of the host name kept in a token (the token column holds 64)
# Built once: every commit of a running engine reads its claim, so SQLAlchemy's compiled cache
# must serve it (building the statement each time cost more than the query).
_HOLDER = select(RUNS.c.owner).where(RUNS.c.id == bindparam("c_run")).with_for_update(read=True)


class ClaimLost(StoreError):
    """This engine's claim on the run was taken by another engine: it must stop at once."""


def new_owner_token() -> str:
    """A token naming this engine: host and process for people, random bits for uniqueness."""
    return f"{socket.gethostname()[:HOST_CHARS]}:{os.getpid()}:{secrets.token_hex(6)}"


def claim(
    conn: Connection,
    run_id: str,
    owner: str,
    now: datetime,
    *,
    stale_before: datetime,
    force: bool,
    holder_gone: str | None = None,
) -> bool:
    """Take the run for `owner` if no engine holds it; True if this statement took it.

    Free: its heartbeat is older than `stale_before` (its engine is gone), or no engine holds
    it and it is not marked running, or it is still held by `holder_gone`, an engine the
    caller knows to be dead (of several callers who know it, only the first gets the run).
    `force` takes it whatever holds it.
    """
    # The engine recorded before is forgotten in the same statement: until the new holder
    # records its own process, a concurrent resume that read the old, dead engine's process
    # beside the new owner would take the run from a live engine as "held by a dead one".
    statement = (
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(owner=owner, updated_at=now, engine_host=None, engine_pid=None, engine_started=None)
    )
    if not force:
        conditions = [
            RUNS.c.updated_at < stale_before,
            and_(RUNS.c.owner.is_(None), RUNS.c.state != "running"),
        ]
        if holder_gone is not None:
            conditions.append(RUNS.c.owner == holder_gone)
        statement = statement.where(or_(*conditions))
    return conn.execute(statement).rowcount == 1


def release(conn: Connection, run_id: str, owner: str) -> None:
    """Give the run up (nothing happens if `owner` no longer holds it)."""
    conn.execute(update(RUNS).where(RUNS.c.id == run_id, RUNS.c.owner == owner).values(owner=None))


def check_owner(conn: Connection, run_id: str, owner: str) -> None:
    """Raise ClaimLost unless `owner` still holds the run (read inside the caller's transaction)."""
    holder = conn.execute(_HOLDER, {"c_run": run_id}).scalar()
    if holder != owner:
        taken_by = f"engine {holder}" if holder else "no engine (it was released)"
        raise ClaimLost(
            f"run '{run_id}' was taken over by {taken_by}: this engine ({owner}) stops and "
            "stores nothing more; its attempts under way are stopped and retried by the holder"
        )
