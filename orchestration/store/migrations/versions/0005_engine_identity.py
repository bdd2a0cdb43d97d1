"""The engine working on a run: its host, process id and process start time.

With them, `orch resume` on the same host can tell at once that the engine is gone (its process
no longer exists, or the id now belongs to another process) instead of waiting for the heartbeat
to grow stale; `orch status` shows such a run as interrupted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does later.
NAME = sa.String(200)


def upgrade() -> None:
    # Plain nullable columns: SQLite adds them natively, without rebuilding `runs`.
    op.add_column("runs", sa.Column("engine_host", NAME, nullable=True))
    op.add_column("runs", sa.Column("engine_pid", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("engine_started", sa.Float(), nullable=True))


def downgrade() -> None:
    # A native DROP COLUMN (SQLite 3.35+, checked by 0004's downgrade too): rebuilding `runs` in
    # Alembic's batch mode would cascade-delete every run's rows.
    for column in ("engine_started", "engine_pid", "engine_host"):
        op.drop_column("runs", column)
