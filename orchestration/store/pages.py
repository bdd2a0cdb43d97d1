"""Queries for paged reads of large runs: a page of tasks, its events and moves, run totals.

Each query goes through an index on (run_id, ...) and reads at most one page of rows, except the
run's spending totals, which the database sums itself (no row comes back to Python).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, and_, case, func, select
from sqlalchemy import cast as sql_cast

from orchestration.store import schema

TASKS = schema.Task
TRANSITIONS = schema.Transition
EVENTS = schema.Event


@dataclass(frozen=True, slots=True)
class RunTotals:
    """What a whole run spent, summed by the database: attempts started, cost, tokens."""

    attempts: int
    cost: float
    tokens: int


def tasks_page(
    columns: Sequence[Any], run_id: str, offset: int, limit: int, state: str | None
) -> Select[Any]:
    """`limit` tasks from `offset` in run order (index (run_id, seq) or (run_id, state))."""
    query = select(*columns).where(TASKS.c.run_id == run_id)
    if state is not None:
        query = query.where(TASKS.c.state == state)
    return query.order_by(TASKS.c.seq).offset(offset).limit(limit)


def task_count(run_id: str, state: str | None) -> Select[Any]:
    query = select(func.count()).select_from(TASKS).where(TASKS.c.run_id == run_id)
    return query if state is None else query.where(TASKS.c.state == state)


def tasks_by_id(columns: Sequence[Any], run_id: str, task_ids: Sequence[str]) -> Select[Any]:
    query = select(*columns).where(TASKS.c.run_id == run_id, TASKS.c.task_id.in_(task_ids))
    return query.order_by(TASKS.c.seq)


def transitions_of(run_id: str, task_ids: Sequence[str]) -> Select[Any]:
    """The moves of these tasks, oldest first (index (run_id, task_id))."""
    query = select(TRANSITIONS).where(
        TRANSITIONS.c.run_id == run_id, TRANSITIONS.c.task_id.in_(task_ids)
    )
    return query.order_by(TRANSITIONS.c.id)


def recent_transitions(run_id: str, limit: int) -> Select[Any]:
    """The run's `limit` newest moves, newest first (index (run_id, id))."""
    query = select(TRANSITIONS).where(TRANSITIONS.c.run_id == run_id)
    return query.order_by(TRANSITIONS.c.id.desc()).limit(limit)


def steps_of(run_id: str, task_ids: Sequence[str]) -> Select[Any]:
    """The `step` events of these tasks (index (run_id, task_id))."""
    query = select(EVENTS).where(
        EVENTS.c.run_id == run_id, EVENTS.c.task_id.in_(task_ids), EVENTS.c.kind == "step"
    )
    return query.order_by(EVENTS.c.id)


def attempts_total(run_id: str) -> Select[Any]:
    return select(func.coalesce(func.sum(TASKS.c.attempts), 0)).where(TASKS.c.run_id == run_id)


def step_totals(run_id: str, dialect: str) -> Select[Any]:
    """Sum of the cost and tokens the run's `step` events report, as `budgets.reported_cost`
    reads one: `cost` (else `cost_usd`) and `tokens`, each only when a number >= 0."""
    cost = _reported(dialect, "cost")
    cost_usd = _reported(dialect, "cost_usd")
    has_cost = _json_type(dialect, "cost").is_not(None)
    chosen = case((has_cost, cost), else_=cost_usd)
    tokens = _reported(dialect, "tokens")
    if dialect == "postgresql":
        tokens = func.trunc(tokens)  # int() of a reported float, as reported_cost does
    return select(func.coalesce(func.sum(chosen), 0.0), func.coalesce(func.sum(tokens), 0)).where(
        EVENTS.c.run_id == run_id, EVENTS.c.kind == "step"
    )


def _json_type(dialect: str, key: str) -> ColumnElement[Any]:
    """The JSON type of `data.result.<key>` (NULL when absent): `number` or `integer`/`real`."""
    if dialect == "postgresql":
        return func.json_typeof(EVENTS.c.data[("result", key)])
    return func.json_type(EVENTS.c.data, f'$.result."{key}"')


def _reported(dialect: str, key: str) -> ColumnElement[Any]:
    """`data.result.<key>` when it is a number >= 0, else 0."""
    kind = _json_type(dialect, key)
    if dialect == "postgresql":
        is_number = kind == "number"
        value: ColumnElement[Any] = sql_cast(EVENTS.c.data[("result", key)].as_string(), Float)
        # PostgreSQL may evaluate the cast before the type test: guard it inside the CASE
        value = case((is_number, value), else_=None)
    else:
        is_number = kind.in_(("integer", "real"))
        value = func.json_extract(EVENTS.c.data, f'$.result."{key}"')
    return case((and_(is_number, value >= 0), value), else_=0)
