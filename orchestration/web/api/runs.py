"""Runs, their tasks, transition history, decisions with their explanations, quality results."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query

from orchestration.views.run_pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, tasks_listing
from orchestration.views.run_views import explain_task, run_detail, task_detail
from orchestration.web import schemas
from orchestration.web.config import MAX_ROW_ID
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.reviewing import all_run_summaries

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=schemas.RunsOut)
def list_runs(store: StoreDep, config: ConfigDep) -> schemas.RunsOut:
    """Every run in the store, newest first, with its tasks counted by state."""
    return schemas.RunsOut(runs=all_run_summaries(store, config.db_hint, with_spending=True))


PageQuery = Query(1, ge=1, le=MAX_ROW_ID, description="Which page of tasks, from 1.")
PageSizeQuery = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Tasks per page.")
StateQuery = Query(None, max_length=32, description="Only tasks in this state.")


@router.get("/runs/{run_id:id}", response_model=schemas.RunDetailOut)
def get_run(
    run_id: str,
    store: StoreDep,
    config: ConfigDep,
    page: int = PageQuery,
    page_size: int = PageSizeQuery,
    state: str | None = StateQuery,
) -> schemas.RunDetailOut:
    """One run's summary and a page of its tasks (the shape of `orch status RUN --json`).

    A run stored as running whose engine stopped shows as `interrupted`, with the command that
    continues it."""
    run = store.get_run(run_id)
    now = datetime.now(UTC)
    paging = {"page": page, "page_size": page_size, "state": state}
    return run_detail(store, run, now, config.db_hint, **paging)


@router.get("/runs/{run_id:id}/tasks", response_model=schemas.TasksOut)
def list_tasks(
    run_id: str,
    store: StoreDep,
    page: int = PageQuery,
    page_size: int = PageSizeQuery,
    state: str | None = StateQuery,
) -> schemas.TasksOut:
    """A page of the run's tasks in the order they were added, each with what it spent."""
    run = store.get_run(run_id)
    now = datetime.now(UTC)
    return tasks_listing(store, run, now, page=page, page_size=page_size, state=state)


@router.get("/runs/{run_id:id}/tasks/{task_id:id}", response_model=schemas.TaskOneOut)
def get_task(run_id: str, task_id: str, store: StoreDep) -> schemas.TaskOneOut:
    return schemas.TaskOneOut(task=task_detail(store, run_id, task_id, datetime.now(UTC)))


@router.get("/runs/{run_id:id}/tasks/{task_id:id}/history", response_model=schemas.HistoryOut)
def task_history(run_id: str, task_id: str, store: StoreDep) -> schemas.HistoryOut:
    """Every state change of a task, and every decision taken on it (`orch task history`)."""
    store.task(run_id, task_id)
    return schemas.HistoryOut(
        transitions=[schemas.transition_out(m) for m in store.transitions(run_id, task_id)],
        decisions=[schemas.decision_out(d) for d in store.decisions(run_id, task_id)],
    )


@router.get("/runs/{run_id:id}/tasks/{task_id:id}/explain", response_model=schemas.ExplainOut)
def explain(run_id: str, task_id: str, store: StoreDep) -> schemas.ExplainOut:
    """Why a task runs when it does: its effective priority now, and each decision with why."""
    return explain_task(store, run_id, task_id, datetime.now(UTC)).shape


@router.get("/runs/{run_id:id}/transitions", response_model=schemas.TransitionsOut)
def transitions(
    run_id: str,
    store: StoreDep,
    task: str | None = Query(None, description="Only this task's moves."),
    after: int = Query(
        0, ge=0, le=MAX_ROW_ID, description="Only moves with a larger id (for polling)."
    ),
) -> schemas.TransitionsOut:
    """The run's state changes in order: from, to, trigger, reason, actor, time."""
    store.get_run(run_id)
    if task is not None:
        store.task(run_id, task)
    moves = store.transitions(run_id, task, after_id=after)
    return schemas.TransitionsOut(transitions=[schemas.transition_out(m) for m in moves])


@router.get("/runs/{run_id:id}/decisions", response_model=schemas.DecisionsOut)
def decisions(
    run_id: str, store: StoreDep, task: str | None = Query(None, description="Only this task.")
) -> schemas.DecisionsOut:
    """Each attempt's decision (proceed, retry, ...), the rule that chose it, why, and figures."""
    store.get_run(run_id)
    found = store.decisions(run_id, task)
    return schemas.DecisionsOut(decisions=[schemas.decision_out(d) for d in found])


@router.get("/runs/{run_id:id}/quality", response_model=schemas.QualityListOut)
def quality(
    run_id: str, store: StoreDep, task: str | None = Query(None, description="Only this task.")
) -> schemas.QualityListOut:
    """Each attempt's validator results: score, gate, stage scores and every check."""
    store.get_run(run_id)
    found = store.quality(run_id, task)
    return schemas.QualityListOut(quality=[schemas.quality_out(q) for q in found])
