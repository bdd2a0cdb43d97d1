"""Stored runs seen from outside an engine: their ids, their plans, and whether one is alive."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration.lifecycle import TaskState
from orchestration.models import Plan, RunRecord, TransitionRecord
from orchestration.plan import plan_from_dict

HEARTBEAT_SECONDS = 2.0  # how often a working engine marks its run as alive
STALE_RUN_SECONDS = 15.0  # a `running` run not heard from for this long has lost its engine


def run_is_live(run: RunRecord, now: datetime) -> bool:
    """Whether an engine is working on the run: it is `running` and its heartbeat is fresh."""
    age = (now - run.updated_at).total_seconds()
    return run.state == "running" and age < STALE_RUN_SECONDS


def new_run_id(plan: Plan, now: datetime) -> str:
    return f"{plan.name[:40]}-{now:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as a run stores it, so that `plan_from_stored` gives it back unchanged."""
    return {
        "spec": plan.spec.model_dump(mode="json"),
        "path": plan.path,
        "workdir": plan.workdir,
        "rule_files": list(plan.rule_files),
    }


def plan_from_stored(run: RunRecord) -> Plan:
    """The plan exactly as it was when the run started (the file may have changed since)."""
    stored = run.plan_json
    plan = plan_from_dict(
        stored["spec"], path=Path(stored["path"]), check_paths=False, action_kinds=None
    )
    return replace(plan, workdir=stored["workdir"], rule_files=tuple(stored["rule_files"]))


def ready_since(history: Iterable[TransitionRecord], now: datetime) -> datetime:
    """When a task last became ready (now, if it is not waiting in the ready queue)."""
    since = now
    for move in history:
        since = move.at if move.dest == TaskState.READY else now
    return since


def task_priority(store: Any, run: RunRecord, task_id: str, now: datetime) -> Any:
    """A task's effective priority as `orch explain` and the dashboard show it: its failed
    attempts are those whose quality gate failed, its dependents each counted once."""
    from orchestration.scheduler import TaskScheduler

    plan = plan_from_stored(run)
    scheduler = TaskScheduler(
        store.tasks(run.id), max_workers=1, pools={}, weights=plan.spec.scheduling
    )
    failed = sum(1 for q in store.quality(run.id, task_id) if not q.gate_passed)
    since = ready_since(store.transitions(run.id, task_id), now)
    scheduler.push_ready(task_id, since, failed_attempts=failed)
    parts = scheduler.priority_of(task_id, now)
    return replace(parts, dependents=scheduler.distinct_downstream(task_id))
