"""Schedules, their firings, trigger events and the dispatcher's cursors (issue 17: triggers).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
ID = sa.String(200)
NAME = sa.String(200)
KEY = sa.String(400)
STATE = sa.String(32)
TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _schedules() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", NAME, nullable=False),
        sa.Column("plan_path", sa.Text(), nullable=False),
        sa.Column("cron", NAME, nullable=True),
        sa.Column("tz", NAME, nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("overlap", STATE, nullable=False),
        sa.Column("catch_up_seconds", sa.Float(), nullable=False),
        sa.Column("jitter_seconds", sa.Float(), nullable=False),
        sa.Column("triggers", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_schedules"),
    )


def _trigger_firings() -> None:
    op.create_table(
        "trigger_firings",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("key", KEY, nullable=False),
        sa.Column("schedule", NAME, nullable=False),
        sa.Column("kind", STATE, nullable=False),
        sa.Column("occurrence", TIME, nullable=True),
        sa.Column("event_id", BIG_ID, nullable=True),
        sa.Column("due_at", TIME, nullable=False),
        sa.Column("outcome", STATE, nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("holder", NAME, nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("fired_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trigger_firings"),
        sa.UniqueConstraint("key", name="uq_trigger_firings_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_trigger_firings_schedule_id", "trigger_firings", ["schedule", "id"])
    op.create_index("ix_trigger_firings_outcome", "trigger_firings", ["outcome"])


def _trigger_events() -> None:
    op.create_table(
        "trigger_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("source", STATE, nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("dispatched_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trigger_events"),
        sa.UniqueConstraint("key", name="uq_trigger_events_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_trigger_events_dispatched_at", "trigger_events", ["dispatched_at"])


def upgrade() -> None:
    _schedules()
    _trigger_firings()
    _trigger_events()
    op.create_table(
        "trigger_cursors",
        sa.Column("name", NAME, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_trigger_cursors"),
    )


def downgrade() -> None:
    op.drop_table("trigger_cursors")
    op.drop_index("ix_trigger_events_dispatched_at", table_name="trigger_events")
    op.drop_table("trigger_events")
    op.drop_index("ix_trigger_firings_outcome", table_name="trigger_firings")
    op.drop_index("ix_trigger_firings_schedule_id", table_name="trigger_firings")
    op.drop_table("trigger_firings")
    op.drop_table("schedules")
