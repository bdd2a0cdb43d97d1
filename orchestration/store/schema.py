"""The store's tables as typed SQLAlchemy 2 models; the migrations create exactly this schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later Alembic migrations can drop or alter them by name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 200  # characters; a task id is at most 200 (models.TASK_ID_PATTERN)
NAME_LENGTH = 200  # characters; rule names, actors, triggers, kinds
STATE_LENGTH = 32  # characters; states, outcomes, resolutions, actions
OWNER_LENGTH = 64  # characters; an engine's claim token on a run

# Integer ids that autoincrement everywhere: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone, so we add it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}; the store needs aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    plan_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    plan_path: Mapped[str] = mapped_column(Text)
    workdir: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # The engine working on the run (migration 0005): who may resume it without waiting.
    engine_host: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    engine_pid: Mapped[int | None] = mapped_column(Integer)
    engine_started: Mapped[float | None] = mapped_column(Float)  # process start, epoch seconds
    # The claim token of the engine working on the run (None: no engine holds it). Taken and
    # checked by conditional UPDATEs: two engines never hold one run (see Store.claim_run).
    owner: Mapped[str | None] = mapped_column(String(OWNER_LENGTH))

    __table_args__ = (Index("ix_runs_created_at", "created_at"),)


def _run_fk() -> Any:
    return ForeignKey("runs.id", ondelete="CASCADE")


class RunPlan(Base):
    """The plan a run started with, apart from the run's row, which its heartbeat updates."""

    __tablename__ = "run_plans"

    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk(), primary_key=True)
    plan_json: Mapped[dict[str, Any]]


class Task(Base):
    __tablename__ = "tasks"

    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk(), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)  # insertion order within the run
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    spec: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    next_attempt_at: Mapped[datetime | None]
    feedback: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    last_error_kind: Mapped[str] = mapped_column(String(STATE_LENGTH))
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_tasks_run_id_state", "run_id", "state"),
        Index("ix_tasks_run_id_seq", "run_id", "seq"),
    )


class Transition(Base):
    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    source: Mapped[str] = mapped_column(String(STATE_LENGTH))
    dest: Mapped[str] = mapped_column(String(STATE_LENGTH))
    trigger: Mapped[str] = mapped_column(String(NAME_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "task_id"], ["tasks.run_id", "tasks.task_id"], ondelete="CASCADE"
        ),
        Index("ix_transitions_run_id_task_id", "run_id", "task_id"),
        Index("ix_transitions_run_id_id", "run_id", "id"),  # a run's newest moves (0010)
        # ids only grow (never reused), so `after_id` polling sees every new row
        {"sqlite_autoincrement": True},
    )


class Breakpoint(Base):
    __tablename__ = "breakpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    rule: Mapped[str] = mapped_column(String(NAME_LENGTH))
    at: Mapped[str] = mapped_column(String(STATE_LENGTH))  # before | after
    severity: Mapped[str] = mapped_column(String(STATE_LENGTH))
    action: Mapped[str] = mapped_column(String(STATE_LENGTH))
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    created_at: Mapped[datetime]
    context: Mapped[dict[str, Any]]
    resolution: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    note: Mapped[str] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    resolved_at: Mapped[datetime | None]
    scope: Mapped[str] = mapped_column(String(STATE_LENGTH), server_default="task")
    expires_at: Mapped[datetime | None]
    default_resolution: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    params: Mapped[dict[str, Any] | None]

    __table_args__ = (
        Index("ix_breakpoints_run_id_state", "run_id", "state"),
        Index("ix_breakpoints_state", "state"),
        {"sqlite_autoincrement": True},
    )


class RunSettingRow(Base):
    """Rules switched on or off and budgets extended while a run runs (latest row wins)."""

    __tablename__ = "run_settings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    kind: Mapped[str] = mapped_column(String(STATE_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    value: Mapped[Any] = mapped_column(JSON())
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]

    __table_args__ = (
        Index("ix_run_settings_run_id_id", "run_id", "id"),
        {"sqlite_autoincrement": True},
    )


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempt: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(STATE_LENGTH))
    rule: Mapped[str] = mapped_column(String(NAME_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, Any]]
    at: Mapped[datetime]

    __table_args__ = (Index("ix_decisions_run_id_task_id", "run_id", "task_id"),)


class QualityResult(Base):
    __tablename__ = "quality_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempt: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    gate_passed: Mapped[bool] = mapped_column(Boolean)
    stage_scores: Mapped[dict[str, Any]]
    checks: Mapped[list[Any]]
    at: Mapped[datetime]

    __table_args__ = (Index("ix_quality_results_run_id_task_id", "run_id", "task_id"),)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    kind: Mapped[str] = mapped_column(String(NAME_LENGTH))
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    data: Mapped[dict[str, Any]]
    at: Mapped[datetime]

    __table_args__ = (
        Index("ix_events_run_id_id", "run_id", "id"),
        Index("ix_events_run_id_task_id", "run_id", "task_id"),  # a page's events (0010)
        Index("ix_events_run_id_kind", "run_id", "kind"),  # a run's steps (0010)
        {"sqlite_autoincrement": True},
    )


class CircuitBreaker(Base):
    """One circuit breaker per key, shared by every run and worker (no run owns it)."""

    __tablename__ = "circuit_breakers"

    key: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    opened_at: Mapped[datetime | None]
    window: Mapped[list[Any]]  # [[epoch seconds, ok], ...] oldest first
    probes: Mapped[list[Any]]  # epoch seconds of the half-open probes under way
    probe_successes: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    transition_id: Mapped[int] = mapped_column(BigId)
    failed_at: Mapped[datetime]
    error_kind: Mapped[str] = mapped_column(String(STATE_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]]
    attempts: Mapped[list[Any]]
    quality: Mapped[list[Any]]
    decisions: Mapped[list[Any]]
    breakpoints: Mapped[list[Any]]
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    note: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]

    __table_args__ = (
        # one dead letter per failure: capturing the same move twice inserts nothing
        UniqueConstraint("run_id", "task_id", "transition_id"),
        Index("ix_dead_letters_state_failed_at", "state", "failed_at"),
        {"sqlite_autoincrement": True},
    )


class Intervention(Base):
    __tablename__ = "interventions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), _run_fk())
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    action: Mapped[str] = mapped_column(String(STATE_LENGTH))
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    applied_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_interventions_run_id_state", "run_id", "state"),
        {"sqlite_autoincrement": True},
    )


class Schedule(Base):
    """A stored trigger: a plan started by a cron expression and/or by events (migration 0007)."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    plan_path: Mapped[str] = mapped_column(Text)
    cron: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    tz: Mapped[str] = mapped_column(String(NAME_LENGTH))
    params: Mapped[dict[str, Any]]
    overlap: Mapped[str] = mapped_column(String(STATE_LENGTH))
    catch_up_seconds: Mapped[float] = mapped_column(Float)
    jitter_seconds: Mapped[float] = mapped_column(Float)
    triggers: Mapped[list[Any]]  # [{event, when, params, then}, ...]
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TriggerFiring(Base):
    """One firing of a schedule: a cron occurrence or a matched event, and what it started.

    `key` is unique: the row is inserted before the run is launched, so two scheduler processes
    (or one restarted after a crash) fire each occurrence and each event once.
    """

    __tablename__ = "trigger_firings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    schedule: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(STATE_LENGTH))  # cron | event
    occurrence: Mapped[datetime | None]
    event_id: Mapped[int | None] = mapped_column(BigId)
    due_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(STATE_LENGTH))
    run_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    params: Mapped[dict[str, Any]]
    tasks: Mapped[list[Any]]
    holder: Mapped[str | None] = mapped_column(String(NAME_LENGTH))  # host:pid launching it
    pid: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    fired_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_trigger_firings_schedule_id", "schedule", "id"),
        Index("ix_trigger_firings_outcome", "outcome"),
        {"sqlite_autoincrement": True},
    )


class TriggerEvent(Base):
    """An event that may fire triggers: sent from outside, or read from a run's history."""

    __tablename__ = "trigger_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    key: Mapped[str] = mapped_column(String(400), unique=True)  # deduplication
    source: Mapped[str] = mapped_column(String(STATE_LENGTH))  # cli | api | webhook | run
    run_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    data: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_trigger_events_dispatched_at", "dispatched_at"),
        {"sqlite_autoincrement": True},
    )


class TriggerCursor(Base):
    """How far the trigger dispatcher has read one of the run tables (the last id seen)."""

    __tablename__ = "trigger_cursors"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class WorkItem(Base):
    """One attempt offered to worker processes (migration 0011): who holds it, until when, and
    the fencing token its report must carry."""

    __tablename__ = "work_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), _run_fk())
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempt: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]]
    requires: Mapped[list[Any]]  # capability tags a worker must have to claim it
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))  # offered | claimed | reported
    lease_owner: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    lease_expires: Mapped[datetime | None]
    lease_seconds: Mapped[float] = mapped_column(Float)
    token: Mapped[int] = mapped_column(Integer)  # bumped by every claim: fences late reports
    deliveries: Mapped[int] = mapped_column(Integer)  # how many times it was claimed
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    succeeded: Mapped[bool | None] = mapped_column(Boolean)  # the attempt's gate passed
    duration_seconds: Mapped[float | None] = mapped_column(Float)  # claimed to reported
    offered_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    reported_at: Mapped[datetime | None]
    reported_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))

    __table_args__ = (
        Index("ix_work_items_state_id", "state", "id"),
        Index("ix_work_items_run_id_state", "run_id", "state"),
        {"sqlite_autoincrement": True},
    )


class WorkerRow(Base):
    """A worker process (migration 0011): where it runs, what it can do, when it was last heard."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    host: Mapped[str] = mapped_column(String(NAME_LENGTH))
    pid: Mapped[int] = mapped_column(Integer)
    capabilities: Mapped[list[Any]]
    concurrency: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))  # --run: only that run's work
    started_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))  # working | stopped
