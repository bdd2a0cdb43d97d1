"""Breakpoint scope, expiry, default resolution and resolution parameters; run settings log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
ID = sa.String(200)
NAME = sa.String(200)
STATE = sa.String(32)
TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("breakpoints") as batch:
        batch.add_column(sa.Column("scope", STATE, nullable=False, server_default="task"))
        batch.add_column(sa.Column("expires_at", TIME, nullable=True))
        batch.add_column(sa.Column("default_resolution", STATE, nullable=True))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
    op.create_table(
        "run_settings",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("kind", STATE, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_settings"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_settings_run_id_runs", ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_run_settings_run_id_id", "run_settings", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_run_settings_run_id_id", table_name="run_settings")
    op.drop_table("run_settings")
    with op.batch_alter_table("breakpoints") as batch:
        batch.drop_column("params")
        batch.drop_column("default_resolution")
        batch.drop_column("expires_at")
        batch.drop_column("scope")
