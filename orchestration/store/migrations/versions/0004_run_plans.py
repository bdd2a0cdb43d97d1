"""A run's plan in a table of its own, so that the run's heartbeat does not rewrite it.

SQLite rewrites a whole row on every update: with the plan's JSON in `runs`, each heartbeat of
a 100,000-task run wrote about 40 MB. The plan never changes once the run starts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
ID = sa.String(200)
SQLITE_DROP_COLUMN = (3, 35, 0)  # ALTER TABLE ... DROP COLUMN without rebuilding the table


def _check_sqlite() -> None:
    # Rebuilding `runs` (Alembic's batch mode) would drop it, and with foreign keys on that
    # deletes every task, transition and event of every run: only a native DROP COLUMN is safe.
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < SQLITE_DROP_COLUMN:
        raise RuntimeError(
            f"this store needs SQLite 3.35 or newer to upgrade (found {sqlite3.sqlite_version})"
        )


def upgrade() -> None:
    _check_sqlite()
    op.create_table(
        "run_plans",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("plan_json", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_plans_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_plans"),
    )
    op.execute("INSERT INTO run_plans (run_id, plan_json) SELECT id, plan_json FROM runs")
    op.drop_column("runs", "plan_json")


def downgrade() -> None:
    _check_sqlite()
    op.add_column("runs", sa.Column("plan_json", sa.JSON(), nullable=False, server_default="{}"))
    op.execute(
        "UPDATE runs SET plan_json = "
        "(SELECT plan_json FROM run_plans WHERE run_plans.run_id = runs.id)"
    )
    op.drop_table("run_plans")
