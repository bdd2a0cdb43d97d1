"""The engine that holds a run: `runs.owner`, taken by one conditional UPDATE (an atomic claim).

Two `orch resume` of one run both read "no live engine" and both went in. The owner column lets
the claim be one statement whose row count decides, and lets the owner check on every commit
that its claim still holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

OWNER = sa.String(64)  # frozen copy of the column type


def upgrade() -> None:
    op.add_column("runs", sa.Column("owner", OWNER, nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "owner")
