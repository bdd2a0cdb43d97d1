"""Circuit breakers, dead letters and interventions (issue 6: resilience).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
ID = sa.String(200)
NAME = sa.String(200)
STATE = sa.String(32)
TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs", ondelete="CASCADE"
    )


def _circuit_breakers() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("key", NAME, nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("opened_at", TIME, nullable=True),
        sa.Column("window", sa.JSON(), nullable=False),
        sa.Column("probes", sa.JSON(), nullable=False),
        sa.Column("probe_successes", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_circuit_breakers"),
    )


def _dead_letters() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("transition_id", BIG_ID, nullable=False),
        sa.Column("failed_at", TIME, nullable=False),
        sa.Column("error_kind", STATE, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("breakpoints", sa.JSON(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("resolved_by", NAME, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.UniqueConstraint(
            "run_id",
            "task_id",
            "transition_id",
            name="uq_dead_letters_run_id_task_id_transition_id",
        ),
        _run_fk("dead_letters"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_dead_letters_state_failed_at", "dead_letters", ["state", "failed_at"])


def _interventions() -> None:
    op.create_table(
        "interventions",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("task_id", ID, nullable=True),
        sa.Column("action", STATE, nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("applied_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_interventions"),
        _run_fk("interventions"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_interventions_run_id_state", "interventions", ["run_id", "state"])


def upgrade() -> None:
    _circuit_breakers()
    _dead_letters()
    _interventions()


def downgrade() -> None:
    op.drop_index("ix_interventions_run_id_state", table_name="interventions")
    op.drop_table("interventions")
    op.drop_index("ix_dead_letters_state_failed_at", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("circuit_breakers")
