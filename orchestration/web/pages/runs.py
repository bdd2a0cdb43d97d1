"""The runs list, a run's page (graph, timeline, counts, live updates) and a task's page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from orchestration.core.attempt_logs import log_path, tail_text
from orchestration.core.models import TaskRecord
from orchestration.engine.fleet_health import shown_health
from orchestration.resilience.runs import attempt_over
from orchestration.resilience.spending import budget_text, spent_cells
from orchestration.store import Store
from orchestration.views.run_pages import task_page as page_of_tasks
from orchestration.web.api.runs import explain
from orchestration.web.config import MAX_ROW_ID
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.pages.common import render
from orchestration.web.reviewing import all_run_summaries, resume_command, run_summary
from orchestration.web.task_graph import MAX_GRAPH_TASKS, render_graph
from orchestration.web.timeline import render_timeline

router = APIRouter(include_in_schema=False)

RECENT_EVENTS = 15
PAGE_SIZE = 100  # tasks per page of the run page (its graph and timeline show that page)
MAX_FOLLOWED = 8  # running attempts whose output the run page follows at once


@router.get("/", response_class=HTMLResponse)
@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, store: StoreDep, config: ConfigDep) -> HTMLResponse:
    return render(request, "runs.html", {"runs": all_run_summaries(store, config.db_hint)})


def _run_context(store: Store, run_id: str, db_hint: str, page: int = 1) -> dict[str, Any]:
    """The run page reads one page of tasks (`run_pages`): its graph is that page with the
    tasks it depends on, its timeline that page's attempts; nothing reads every task."""
    run = store.get_run(run_id)
    now = datetime.now(UTC)
    found = page_of_tasks(store, run, now, page, PAGE_SIZE)
    summary = run_summary(store, run, db_hint=db_hint, spending=found.spending)
    tasks = found.tasks
    moves = store.transitions_of_tasks(run_id, [t.task_id for t in tasks])
    newest = store.recent_transitions(run_id, 1)
    end = now if summary.live else max([run.updated_at, *(m.at for m in newest)])
    recent = store.recent_events(run_id, RECENT_EVENTS)
    running = store.tasks_page(run_id, 0, MAX_FOLLOWED, state="running")
    return {
        "run": summary,
        "tasks": tasks,
        "page": found.page,
        "spending": found.spending,
        "health": shown_health(store, run_id),
        "budget_text": budget_text(found.spending),
        "spent_cells": {t: spent_cells(spent) for t, spent in found.spending.tasks.items()},
        "graph": render_graph(run_id, _with_dependencies(store, run_id, tasks)),
        "graph_limit": MAX_GRAPH_TASKS,
        "timeline": render_timeline(tasks, moves, run.created_at, end),
        "breakpoints": store.breakpoints(run_id, state="open"),
        "events": recent,
        "cursor": f"{recent[0].id if recent else 0}:{newest[0].id if newest else 0}",
        "resume": resume_command(run_id, db_hint),
        "running_attempts": [
            _attempt_output(run.plan_path, run_id, t.task_id, t.attempts)
            for t in running
            if t.attempts >= 1
        ],
    }


def _with_dependencies(store: Store, run_id: str, tasks: list[TaskRecord]) -> list[TaskRecord]:
    """The page's tasks and the tasks they depend on directly (the graph's neighbourhood)."""
    shown = {t.task_id for t in tasks}
    outside = sorted({d for t in tasks for d in t.depends_on} - shown)
    found = store.tasks_by_id(run_id, outside[:MAX_GRAPH_TASKS]) if outside else []
    return (found + tasks)[:MAX_GRAPH_TASKS]


def _attempt_output(plan_path: str, run_id: str, task_id: str, attempt: int) -> dict[str, Any]:
    """An attempt's output so far, and where the page follows it on from (attempt_logs)."""
    text, offset = tail_text(log_path(plan_path, run_id, task_id, attempt))
    stream = f"/api/v1/runs/{run_id}/tasks/{task_id}/log/stream?attempt={attempt}"
    return {
        "key": f"{task_id}:{attempt}",
        "task_id": task_id,
        "attempt": attempt,
        "text": text,
        "offset": offset,
        "stream": stream,
    }


PageNumber = Query(1, ge=1, le=MAX_ROW_ID, description="Which page of tasks, from 1.")


@router.get("/runs/{run_id:id}", response_class=HTMLResponse)
def run_page(
    run_id: str, request: Request, store: StoreDep, config: ConfigDep, page: int = PageNumber
) -> HTMLResponse:
    return render(request, "run.html", _run_context(store, run_id, config.db_hint, page))


@router.get("/runs/{run_id:id}/live", response_class=HTMLResponse)
def run_live(
    run_id: str, request: Request, store: StoreDep, config: ConfigDep, page: int = PageNumber
) -> HTMLResponse:
    """The changing part of the run page; the page fetches it again on each streamed event."""
    return render(request, "run_live.html", _run_context(store, run_id, config.db_hint, page))


@router.get("/runs/{run_id:id}/tasks/{task_id:id}", response_class=HTMLResponse)
def task_page(run_id: str, task_id: str, request: Request, store: StoreDep) -> HTMLResponse:
    task = store.task(run_id, task_id)
    run = store.get_run(run_id)
    output = None
    if task.attempts >= 1:
        output = _attempt_output(run.plan_path, run_id, task_id, task.attempts)
        output["over"] = attempt_over(run, task, task.attempts, datetime.now(UTC))
    context = {
        "run_id": run_id,
        "task": task,
        "output": output,
        "spec": task.spec.model_dump(mode="json", exclude_defaults=True),
        "moves": store.transitions(run_id, task_id),
        "quality": store.quality(run_id, task_id),
        "explained": explain(run_id, task_id, store),
        "breakpoints": [b for b in store.breakpoints(run_id) if b.task_id == task_id],
    }
    return render(request, "task.html", context)
