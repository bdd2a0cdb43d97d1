"""Work items and workers: attempts offered to worker processes, claimed under a lease.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
ID = sa.String(200)
NAME = sa.String(200)
STATE = sa.String(32)
TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _work_items() -> None:
    op.create_table(
        "work_items",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("requires", sa.JSON(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("lease_owner", NAME, nullable=True),
        sa.Column("lease_expires", TIME, nullable=True),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("succeeded", sa.Boolean(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("offered_at", TIME, nullable=False),
        sa.Column("claimed_at", TIME, nullable=True),
        sa.Column("reported_at", TIME, nullable=True),
        sa.Column("reported_by", NAME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_work_items"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_work_items_run_id_runs", ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_work_items_state_id", "work_items", ["state", "id"])
    op.create_index("ix_work_items_run_id_state", "work_items", ["run_id", "state"])


def _workers() -> None:
    op.create_table(
        "workers",
        sa.Column("name", NAME, nullable=False),
        sa.Column("host", NAME, nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("last_heartbeat", TIME, nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_workers"),
    )


def upgrade() -> None:
    _work_items()
    _workers()


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_work_items_run_id_state", table_name="work_items")
    op.drop_index("ix_work_items_state_id", table_name="work_items")
    op.drop_table("work_items")
