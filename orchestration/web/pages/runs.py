"""The runs list, a run's page (graph, timeline, counts, live updates) and a task's page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestration.attempt_logs import log_path, tail_text
from orchestration.fleet_health import run_health
from orchestration.runs import attempt_over
from orchestration.spending import budget_text, spending_of, spent_cells
from orchestration.store import Store
from orchestration.web.api.runs import explain
from orchestration.web.deps import ConfigDep, StoreDep
from orchestration.web.pages.common import render
from orchestration.web.reviewing import all_run_summaries, resume_command, run_summary
from orchestration.web.task_graph import MAX_GRAPH_TASKS, render_graph
from orchestration.web.timeline import render_timeline

router = APIRouter(include_in_schema=False)

RECENT_EVENTS = 15
MAX_FOLLOWED = 8  # running attempts whose output the run page follows at once


@router.get("/", response_class=HTMLResponse)
@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, store: StoreDep, config: ConfigDep) -> HTMLResponse:
    return render(request, "runs.html", {"runs": all_run_summaries(store, config.db_hint)})


def _run_context(store: Store, run_id: str, db_hint: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    summary = run_summary(store, run, db_hint=db_hint)
    tasks = store.tasks(run_id)
    moves = store.transitions(run_id)
    now = datetime.now(UTC)
    end = now if summary.live else max([run.updated_at, *(m.at for m in moves)])
    recent = store.recent_events(run_id, RECENT_EVENTS)
    newest = recent[0].id if recent else 0
    spending = spending_of(store, run_id, now)
    return {
        "run": summary,
        "tasks": tasks,
        "spending": spending,
        "health": run_health(store, run_id),
        "budget_text": budget_text(spending),
        "spent_cells": {t: spent_cells(spent) for t, spent in spending.tasks.items()},
        "graph": render_graph(run_id, tasks),
        "graph_limit": MAX_GRAPH_TASKS,
        "timeline": render_timeline(tasks, moves, run.created_at, end),
        "breakpoints": store.breakpoints(run_id, state="open"),
        "events": recent,
        "cursor": f"{newest}:{moves[-1].id if moves else 0}",
        "resume": resume_command(run_id, db_hint),
        "running_attempts": [
            _attempt_output(run.plan_path, run_id, t.task_id, t.attempts)
            for t in tasks
            if t.state == "running" and t.attempts >= 1
        ][:MAX_FOLLOWED],
    }


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


@router.get("/runs/{run_id:id}", response_class=HTMLResponse)
def run_page(run_id: str, request: Request, store: StoreDep, config: ConfigDep) -> HTMLResponse:
    return render(request, "run.html", _run_context(store, run_id, config.db_hint))


@router.get("/runs/{run_id:id}/live", response_class=HTMLResponse)
def run_live(run_id: str, request: Request, store: StoreDep, config: ConfigDep) -> HTMLResponse:
    """The changing part of the run page; the page fetches it again on each streamed event."""
    return render(request, "run_live.html", _run_context(store, run_id, config.db_hint))


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
