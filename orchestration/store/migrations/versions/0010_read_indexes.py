"""Indexes for paged reads of large runs: a page's events and moves, a run's steps, its newest move.

A 100,000-task run's status, run page and task listing read one page of tasks at a time; these
let each page's events (by task), the run's `step` events (its spending totals) and its newest
transitions be found through an index instead of a scan of the whole table.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

INDEXES = {
    "ix_events_run_id_task_id": ("events", ["run_id", "task_id"]),
    "ix_events_run_id_kind": ("events", ["run_id", "kind"]),
    "ix_transitions_run_id_id": ("transitions", ["run_id", "id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _columns) in INDEXES.items():
        op.drop_index(name, table_name=table)
