"""Acting on runs: start one (from a stored or an uploaded plan), add tasks, pause, resume, cancel.

Same authentication, CSRF and rate limits as every other endpoint (the router's dependencies).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, status

from orchestration.core.errors import OrchestrationError, PlanError
from orchestration.engine.task_adding import add_tasks
from orchestration.resilience.runs import check_run_id, run_id_for, run_is_live
from orchestration.shapes.records import RunStartedOut, TasksAddedOut
from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.api.interventions import actor_of, carry_out
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.config import ServerConfig
from orchestration.web.deps import AnnouncerDep, ConfigDep, StoreDep
from orchestration.web.errors import ApiError
from orchestration.web.reviewing import resume_command

router = APIRouter(tags=["acting on runs"])


def launch_dir(config: ServerConfig) -> Path:
    """Where launched runs' plan files and logs go: configured, else beside the SQLite file."""
    from orchestration.resilience.run_launch import default_launch_dir

    return Path(config.launch_dir) if config.launch_dir else default_launch_dir(config.db_url)


def _stored_plan_data(store: Store, run_id: str) -> dict[str, Any]:
    """The plan a run recorded, with its paths made absolute (as they were resolved then)."""
    stored = store.get_run(run_id).plan_json
    if not isinstance(stored, dict) or not isinstance(stored.get("spec"), dict):
        raise ApiError(409, f"run '{run_id}' recorded no plan to start again")
    data = dict(stored["spec"])
    data["workdir"] = stored.get("workdir", data.get("workdir", "."))
    data["rules"] = list(stored.get("rule_files", []))
    return data


def _uploaded_plan_data(text: str, base_dir: Path, action_kinds: tuple[str, ...]) -> dict[str, Any]:
    """An uploaded plan checked as `orch run` would, its relative paths resolved from base_dir."""
    from orchestration.core.yamlfile import load_yaml_text
    from orchestration.engine.plan import plan_from_dict

    display = "uploaded plan"
    data, _ = load_yaml_text(text, display)
    if not isinstance(data, dict):
        raise PlanError("a plan is a mapping with version, name and tasks", file=display)
    plan = plan_from_dict(data, path=base_dir / "uploaded-plan.yaml", action_kinds=action_kinds)
    return {**data, "workdir": plan.workdir, "rules": list(plan.rule_files)}


def _write_plan(directory: Path, run_id: str, data: dict[str, Any]) -> Path:
    from orchestration.core.yamlfile import dump_plan

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run_id}.plan.yaml"
    path.write_text(dump_plan(data), encoding="utf-8")
    return path


@router.post("/runs", response_model=RunStartedOut, status_code=status.HTTP_202_ACCEPTED)
def start_run(
    body: schemas.RunStartIn, store: StoreDep, config: ConfigDep, announcer: AnnouncerDep
) -> RunStartedOut:
    """Start a new run in the background, as `orch run PLAN --quiet` in a process of its own.

    Give `from_run` (start the plan that run recorded) or `plan` (a plan file's text). The
    answer comes when the process started; follow the run at `/api/v1/runs/{run}`.
    """
    from orchestration.engine.plan import load_plan
    from orchestration.resilience.run_launch import launch_run

    if (body.from_run is None) == (body.plan is None):
        raise ApiError(422, "give exactly one of from_run (a stored run's plan) or plan (its text)")
    kinds = announcer.plugins.action_kinds
    if body.from_run is not None:
        data = _stored_plan_data(store, body.from_run)
    else:
        base = Path(body.base_dir) if body.base_dir else Path.cwd()
        if not base.is_absolute() or not base.is_dir():
            raise ApiError(422, f"base_dir '{base}' is not an absolute path of a directory")
        data = _uploaded_plan_data(body.plan or "", base, kinds)
    name = str(data.get("name") or "run")
    run_id = check_run_id(body.run_id) if body.run_id else run_id_for(name, datetime.now(UTC))
    if body.run_id and _exists(store, run_id):
        raise ApiError(409, f"run '{run_id}' exists already")
    directory = launch_dir(config)
    plan_file = _write_plan(directory, run_id, data)
    load_plan(plan_file, action_kinds=kinds)  # refused here (422) rather than in the log
    log_file = directory / f"{run_id}.log"
    launched = launch_run(
        plan_file, db_url=config.db_url, run_id=run_id, params=body.params, log_path=log_file
    )
    return RunStartedOut(
        run=launched.run_id, pid=launched.pid, plan_file=str(plan_file), log_file=str(log_file)
    )


def _exists(store: Store, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except OrchestrationError:
        return False
    return True


@router.post("/runs/{run_id:id}/tasks", response_model=TasksAddedOut, status_code=201)
def add_run_tasks(
    run_id: str,
    body: schemas.TasksAddIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
    announcer: AnnouncerDep,
) -> TasksAddedOut:
    """Add tasks to the run, validated like plan tasks (as `orch task add`).

    An engine working on the run picks them up by itself; a stopped run runs them when resumed.
    A taken id gets a suffix (-2, -3...); an invalid task refuses the whole request.
    """
    now = datetime.now(UTC)
    source = f"api by {principal.name}"
    records = add_tasks(
        store,
        run_id,
        body.tasks,
        source=source,
        where="tasks",
        action_kinds=announcer.plugins.action_kinds,
        now=now,
    )
    live = run_is_live(store.get_run(run_id), now)
    follow = (
        "the engine working on the run picks them up by itself"
        if live
        else f"run them with: {resume_command(run_id, config.db_hint)}"
    )
    return TasksAddedOut(
        run=run_id, tasks=[r.task_id for r in records], engine_live=live, next=follow
    )


def _run_action(
    action: str, run_id: str, body: schemas.RunActionIn, principal: Any, store: Store, hint: str
) -> schemas.InterventionDoneOut:
    request = schemas.InterventionIn(action=action, reason=body.reason, actor=body.actor)
    return carry_out(store, run_id, request, actor_of(body.actor, principal), hint)


@router.post("/runs/{run_id:id}/pause", response_model=schemas.InterventionDoneOut)
def pause_run(
    run_id: str,
    body: schemas.RunActionIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
) -> schemas.InterventionDoneOut:
    """Pause the run (as `orch runs pause`): running actions finish, nothing new starts."""
    return _run_action("pause", run_id, body, principal, store, config.db_hint)


@router.post("/runs/{run_id:id}/resume", response_model=schemas.InterventionDoneOut)
def resume_run(
    run_id: str,
    body: schemas.RunActionIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
) -> schemas.InterventionDoneOut:
    """Lift a human's pause (as `orch runs resume`): new work may start again."""
    return _run_action("resume", run_id, body, principal, store, config.db_hint)


@router.post("/runs/{run_id:id}/cancel", response_model=schemas.InterventionDoneOut)
def cancel_run(
    run_id: str,
    body: schemas.RunActionIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    config: ConfigDep,
) -> schemas.InterventionDoneOut:
    """Cancel the run (as `orch runs cancel`): running actions are stopped, nothing else starts."""
    return _run_action("cancel", run_id, body, principal, store, config.db_hint)
