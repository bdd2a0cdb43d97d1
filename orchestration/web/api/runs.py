"""Runs, their tasks, transition history, decisions with their explanations, quality results."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query

from orchestration.run_views import explain_task, run_detail, task_detail
from orchestration.spending import spending_of
from orchestration.web import schemas
from orchestration.web.config import MAX_ROW_ID
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.reviewing import all_run_summaries

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=schemas.RunsOut)
def list_runs(store: StoreDep, config: ConfigDep) -> schemas.RunsOut:
    """Every run in the store, newest first, with its tasks counted by state."""
    return schemas.RunsOut(runs=all_run_summaries(store, config.db_hint, with_spending=True))


@router.get("/runs/{run_id:id}", response_model=schemas.RunDetailOut)
def get_run(run_id: str, store: StoreDep, config: ConfigDep) -> schemas.RunDetailOut:
    """One run and its tasks (the shape of `orch status RUN --json`, plus a few fields).

    A run stored as running whose engine stopped shows as `interrupted`, with the command that
    continues it."""
    return run_detail(store, store.get_run(run_id), datetime.now(UTC), config.db_hint)


@router.get("/runs/{run_id:id}/tasks", response_model=schemas.TasksOut)
def list_tasks(run_id: str, store: StoreDep) -> schemas.TasksOut:
    """The run's tasks, each with what its attempts spent."""
    store.get_run(run_id)
    spending = spending_of(store, run_id, datetime.now(UTC))
    return schemas.TasksOut(tasks=[schemas.task_out(t, spending) for t in store.tasks(run_id)])


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
