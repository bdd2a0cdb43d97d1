"""Initial schema: runs, tasks, transitions, breakpoints, decisions, quality_results, events.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
ID = sa.String(200)
NAME = sa.String(200)
STATE = sa.String(32)
TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", BIG_ID, primary_key=True, autoincrement=True)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs", ondelete="CASCADE"
    )


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("plan_name", NAME, nullable=False),
        sa.Column("plan_path", sa.Text(), nullable=False),
        sa.Column("workdir", sa.Text(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("plan_json", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])


def _tasks() -> None:
    op.create_table(
        "tasks",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("outcome", STATE, nullable=True),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("feedback", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("last_error_kind", STATE, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "task_id", name="pk_tasks"),
        _run_fk("tasks"),
    )
    op.create_index("ix_tasks_run_id_state", "tasks", ["run_id", "state"])
    op.create_index("ix_tasks_run_id_seq", "tasks", ["run_id", "seq"])


def _transitions() -> None:
    op.create_table(
        "transitions",
        _id(),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("source", STATE, nullable=False),
        sa.Column("dest", STATE, nullable=False),
        sa.Column("trigger", NAME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_transitions"),
        sa.ForeignKeyConstraint(
            ["run_id", "task_id"],
            ["tasks.run_id", "tasks.task_id"],
            name="fk_transitions_run_id_task_id_tasks",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_transitions_run_id_task_id", "transitions", ["run_id", "task_id"])


def _breakpoints() -> None:
    op.create_table(
        "breakpoints",
        _id(),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("rule", NAME, nullable=False),
        sa.Column("at", STATE, nullable=False),
        sa.Column("severity", STATE, nullable=False),
        sa.Column("action", STATE, nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("resolution", STATE, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_by", NAME, nullable=True),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_breakpoints"),
        _run_fk("breakpoints"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_breakpoints_run_id_state", "breakpoints", ["run_id", "state"])
    op.create_index("ix_breakpoints_state", "breakpoints", ["state"])


def _decisions() -> None:
    op.create_table(
        "decisions",
        _id(),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("action", STATE, nullable=False),
        sa.Column("rule", NAME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        _run_fk("decisions"),
    )
    op.create_index("ix_decisions_run_id_task_id", "decisions", ["run_id", "task_id"])


def _quality_results() -> None:
    op.create_table(
        "quality_results",
        _id(),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("gate_passed", sa.Boolean(), nullable=False),
        sa.Column("stage_scores", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quality_results"),
        _run_fk("quality_results"),
    )
    op.create_index("ix_quality_results_run_id_task_id", "quality_results", ["run_id", "task_id"])


def _events() -> None:
    op.create_table(
        "events",
        _id(),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("task_id", ID, nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        _run_fk("events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_run_id_id", "events", ["run_id", "id"])


def upgrade() -> None:
    _runs()
    _tasks()
    _transitions()
    _breakpoints()
    _decisions()
    _quality_results()
    _events()


def downgrade() -> None:
    for table in (
        "events",
        "quality_results",
        "decisions",
        "breakpoints",
        "transitions",
        "tasks",
        "runs",
    ):
        op.drop_table(table)
