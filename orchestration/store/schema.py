"""The store's tables as SQLAlchemy Core tables, which the migrations create exactly.

Core, not the ORM: the store reads and writes rows, and importing the ORM costs every
`orch status` a tenth of its start-up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

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


metadata = MetaData(naming_convention=NAMING_CONVENTION)


Run = Table(
    "runs",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("plan_name", String(NAME_LENGTH), nullable=False),
    Column("plan_path", Text, nullable=False),
    Column("workdir", Text, nullable=False),
    Column("state", String(STATE_LENGTH), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    # The engine working on the run (migration 0005): who may resume it without waiting.
    Column("engine_host", String(NAME_LENGTH), nullable=True),
    Column("engine_pid", Integer, nullable=True),
    Column("engine_started", Float, nullable=True),  # process start, epoch seconds
    # The claim token of the engine working on the run (None: no engine holds it). Taken and
    # checked by conditional UPDATEs: two engines never hold one run (see Store.claim_run).
    Column("owner", String(OWNER_LENGTH), nullable=True),
    Index("ix_runs_created_at", "created_at"),
)


def _run_fk() -> Any:
    return ForeignKey("runs.id", ondelete="CASCADE")


# The plan a run started with, apart from the run's row, which its heartbeat updates.
RunPlan = Table(
    "run_plans",
    metadata,
    Column("run_id", String(ID_LENGTH), _run_fk(), primary_key=True),
    Column("plan_json", JSON(), nullable=False),
)


Task = Table(
    "tasks",
    metadata,
    Column("run_id", String(ID_LENGTH), _run_fk(), primary_key=True),
    Column("task_id", String(ID_LENGTH), primary_key=True),
    Column("seq", Integer, nullable=False),  # insertion order within the run
    Column("state", String(STATE_LENGTH), nullable=False),
    Column("spec", JSON(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("outcome", String(STATE_LENGTH), nullable=True),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("feedback", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("last_error_kind", String(STATE_LENGTH), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_tasks_run_id_state", "run_id", "state"),
    Index("ix_tasks_run_id_seq", "run_id", "seq"),
)


Transition = Table(
    "transitions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("source", String(STATE_LENGTH), nullable=False),
    Column("dest", String(STATE_LENGTH), nullable=False),
    Column("trigger", String(NAME_LENGTH), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(NAME_LENGTH), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["run_id", "task_id"], ["tasks.run_id", "tasks.task_id"], ondelete="CASCADE"
    ),
    Index("ix_transitions_run_id_task_id", "run_id", "task_id"),
    Index("ix_transitions_run_id_id", "run_id", "id"),
    sqlite_autoincrement=True,
)


Breakpoint = Table(
    "breakpoints",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("rule", String(NAME_LENGTH), nullable=False),
    Column("at", String(STATE_LENGTH), nullable=False),  # before | after
    Column("severity", String(STATE_LENGTH), nullable=False),
    Column("action", String(STATE_LENGTH), nullable=False),
    Column("message", Text, nullable=False),
    Column("state", String(STATE_LENGTH), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("context", JSON(), nullable=False),
    Column("resolution", String(STATE_LENGTH), nullable=True),
    Column("note", Text, nullable=False),
    Column("resolved_by", String(NAME_LENGTH), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("scope", String(STATE_LENGTH), server_default="task", nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("default_resolution", String(STATE_LENGTH), nullable=True),
    Column("params", JSON(), nullable=True),
    Index("ix_breakpoints_run_id_state", "run_id", "state"),
    Index("ix_breakpoints_state", "state"),
    sqlite_autoincrement=True,
)


# Rules switched on or off and budgets extended while a run runs (latest row wins).
RunSettingRow = Table(
    "run_settings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("kind", String(STATE_LENGTH), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("value", JSON(), nullable=False),
    Column("actor", String(NAME_LENGTH), nullable=False),
    Column("note", Text, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_run_settings_run_id_id", "run_id", "id"),
    sqlite_autoincrement=True,
)


Decision = Table(
    "decisions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("action", String(STATE_LENGTH), nullable=False),
    Column("rule", String(NAME_LENGTH), nullable=False),
    Column("reason", Text, nullable=False),
    Column("figures", JSON(), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_decisions_run_id_task_id", "run_id", "task_id"),
)


QualityResult = Table(
    "quality_results",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("gate_passed", Boolean, nullable=False),
    Column("stage_scores", JSON(), nullable=False),
    Column("checks", JSON(), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_quality_results_run_id_task_id", "run_id", "task_id"),
)


Event = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("kind", String(NAME_LENGTH), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=True),
    Column("data", JSON(), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_events_run_id_id", "run_id", "id"),
    Index("ix_events_run_id_task_id", "run_id", "task_id"),
    Index("ix_events_run_id_kind", "run_id", "kind"),
    sqlite_autoincrement=True,
)


# One circuit breaker per key, shared by every run and worker (no run owns it).
CircuitBreaker = Table(
    "circuit_breakers",
    metadata,
    Column("key", String(NAME_LENGTH), primary_key=True),
    Column("state", String(STATE_LENGTH), nullable=False),
    Column("opened_at", UtcDateTime(), nullable=True),
    Column("window", JSON(), nullable=False),  # [[epoch seconds, ok], ...] oldest first
    Column("probes", JSON(), nullable=False),  # epoch seconds of the half-open probes under way
    Column("probe_successes", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


DeadLetter = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("transition_id", BigId, nullable=False),
    Column("failed_at", UtcDateTime(), nullable=False),
    Column("error_kind", String(STATE_LENGTH), nullable=False),
    Column("reason", Text, nullable=False),
    Column("spec", JSON(), nullable=False),
    Column("attempts", JSON(), nullable=False),
    Column("quality", JSON(), nullable=False),
    Column("decisions", JSON(), nullable=False),
    Column("breakpoints", JSON(), nullable=False),
    Column("state", String(STATE_LENGTH), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("resolved_by", String(NAME_LENGTH), nullable=True),
    Column("note", Text, nullable=False),
    Column("params", JSON(), nullable=False),
    UniqueConstraint("run_id", "task_id", "transition_id"),
    Index("ix_dead_letters_state_failed_at", "state", "failed_at"),
    sqlite_autoincrement=True,
)


Intervention = Table(
    "interventions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=True),
    Column("task_id", String(ID_LENGTH), nullable=True),
    Column("action", String(STATE_LENGTH), nullable=False),
    Column("actor", String(NAME_LENGTH), nullable=False),
    Column("reason", Text, nullable=False),
    Column("params", JSON(), nullable=False),
    Column("state", String(STATE_LENGTH), nullable=False),
    Column("note", Text, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("applied_at", UtcDateTime(), nullable=True),
    Index("ix_interventions_run_id_state", "run_id", "state"),
    sqlite_autoincrement=True,
)


# A stored trigger: a plan started by a cron expression and/or by events (migration 0007).
Schedule = Table(
    "schedules",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("plan_path", Text, nullable=False),
    Column("cron", String(NAME_LENGTH), nullable=True),
    Column("tz", String(NAME_LENGTH), nullable=False),
    Column("params", JSON(), nullable=False),
    Column("overlap", String(STATE_LENGTH), nullable=False),
    Column("catch_up_seconds", Float, nullable=False),
    Column("jitter_seconds", Float, nullable=False),
    Column("triggers", JSON(), nullable=False),  # [{event, when, params, then}, ...]
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


# One firing of a schedule: a cron occurrence or a matched event, and what it started.
#
# `key` is unique: the row is inserted before the run is launched, so two scheduler processes
# (or one restarted after a crash) fire each occurrence and each event once.
TriggerFiring = Table(
    "trigger_firings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(400), unique=True, nullable=False),
    Column("schedule", String(NAME_LENGTH), nullable=False),
    Column("kind", String(STATE_LENGTH), nullable=False),  # cron | event
    Column("occurrence", UtcDateTime(), nullable=True),
    Column("event_id", BigId, nullable=True),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("outcome", String(STATE_LENGTH), nullable=False),
    Column("run_id", String(ID_LENGTH), nullable=True),
    Column("params", JSON(), nullable=False),
    Column("tasks", JSON(), nullable=False),
    Column("holder", String(NAME_LENGTH), nullable=True),  # host:pid launching it
    Column("pid", Integer, nullable=True),
    Column("reason", Text, nullable=False),
    Column("fired_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_trigger_firings_schedule_id", "schedule", "id"),
    Index("ix_trigger_firings_outcome", "outcome"),
    sqlite_autoincrement=True,
)


# An event that may fire triggers: sent from outside, or read from a run's history.
TriggerEvent = Table(
    "trigger_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("key", String(400), unique=True, nullable=False),  # deduplication
    Column("source", String(STATE_LENGTH), nullable=False),  # cli | api | webhook | run
    Column("run_id", String(ID_LENGTH), nullable=True),
    Column("data", JSON(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("dispatched_at", UtcDateTime(), nullable=True),
    Index("ix_trigger_events_dispatched_at", "dispatched_at"),
    sqlite_autoincrement=True,
)


# How far the trigger dispatcher has read one of the run tables (the last id seen).
TriggerCursor = Table(
    "trigger_cursors",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


# One attempt offered to worker processes (migration 0011): who holds it, until when, and
# the fencing token its report must carry.
WorkItem = Table(
    "work_items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(ID_LENGTH), _run_fk(), nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("payload", JSON(), nullable=False),
    Column("requires", JSON(), nullable=False),  # capability tags a worker must have to claim it
    Column("state", String(STATE_LENGTH), nullable=False),  # offered | claimed | reported
    Column("lease_owner", String(NAME_LENGTH), nullable=True),
    Column("lease_expires", UtcDateTime(), nullable=True),
    Column("lease_seconds", Float, nullable=False),
    Column("token", Integer, nullable=False),  # bumped by every claim: fences late reports
    Column("deliveries", Integer, nullable=False),  # how many times it was claimed
    Column("result", JSON, nullable=True),
    Column("succeeded", Boolean, nullable=True),  # the attempt's gate passed
    Column("duration_seconds", Float, nullable=True),  # claimed to reported
    Column("offered_at", UtcDateTime(), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=True),
    Column("reported_at", UtcDateTime(), nullable=True),
    Column("reported_by", String(NAME_LENGTH), nullable=True),
    Index("ix_work_items_state_id", "state", "id"),
    Index("ix_work_items_run_id_state", "run_id", "state"),
    sqlite_autoincrement=True,
)


# A worker process (migration 0011): where it runs, what it can do, when it was last heard.
WorkerRow = Table(
    "workers",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("host", String(NAME_LENGTH), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("capabilities", JSON(), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("run_id", String(ID_LENGTH), nullable=True),  # --run: only that run's work
    Column("started_at", UtcDateTime(), nullable=False),
    Column("last_heartbeat", UtcDateTime(), nullable=False),
    Column("state", String(STATE_LENGTH), nullable=False),  # working | stopped
)
