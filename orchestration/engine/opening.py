"""Opening a run: store a new one, or claim a stored one and pick up where its engine stopped."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import EventRecord, Plan, RunRecord, TaskRecord
from orchestration.core.yamlfile import collection_paused
from orchestration.engine.baselines import baseline_options, baseline_summary, take_baselines
from orchestration.engine.plan import plan_from_stored, plan_json
from orchestration.engine.policy import Engine, build_engine, check_action_kinds
from orchestration.engine.quality import DEFAULT_VALIDATOR_TIMEOUT_SECONDS
from orchestration.project.environment import plan_environment
from orchestration.project.worktrees import open_isolation
from orchestration.resilience.engine_identity import beating, engine_label, owner_alive, this_engine
from orchestration.resilience.interventions import apply_requested, fresh_starts
from orchestration.resilience.runs import (
    HEARTBEAT_SECONDS,
    STALE_RUN_SECONDS,
    check_run_id,
    new_run_id,
)
from orchestration.store import Batch, Store
from orchestration.store.claims import new_owner_token

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def start(
    cls: type[Orchestrator],
    plan: Plan,
    store: Store,
    *,
    run_id: str | None,
    engine: Engine | None,
    **options: Any,
) -> Orchestrator:
    """Store a new run of `plan` (all tasks pending) and return its orchestrator."""
    engine = engine or build_engine(plan)
    open_isolation(plan, "check")  # a plan asking for worktrees without git: before storing
    now = utcnow()
    with collection_paused():  # tens of thousands of records that all stay alive
        run = _new_run(plan, run_id, now)
        tasks = [
            TaskRecord(
                run.id,
                spec.id,
                TaskState.PENDING.value,
                spec,
                priority=spec.priority,
                updated_at=now,
            )
            for spec in plan.spec.tasks
        ]
        store.create_run(run, tasks)
        run.plan_json = {}  # stored; the engine never reads it back: no copy of the plan kept
        # The records as stored: reading the run and its tasks back (the plan's JSON parsed,
        # each spec validated again) would cost a tenth of a 10,000-task run for nothing new.
        orchestrator = cls(store, run, plan, engine, tasks=tasks, **options)
    baselines = measure_baselines(orchestrator)
    data = {"baselines": baselines} if baselines else {}
    orchestrator.state.batch.events.append(EventRecord(run.id, "run_started", None, data, now))
    for task in orchestrator.tasks.values():
        if task.state == TaskState.PENDING:
            orchestrator.evaluate_pending(task.task_id)
    orchestrator.state.flush()
    return orchestrator


def _new_run(plan: Plan, run_id: str | None, now: datetime) -> RunRecord:
    run = RunRecord(
        id=check_run_id(run_id) if run_id else new_run_id(plan, now),
        plan_name=plan.name,
        plan_path=plan.path,
        workdir=plan.workdir,
        state="running",
        created_at=now,
        updated_at=now,
        plan_json=plan_json(plan),
        owner=new_owner_token(),
    )
    me = this_engine()
    run.engine_host, run.engine_pid, run.engine_started = me.host, me.pid, me.started
    return run


def measure_baselines(loop: Orchestrator) -> dict[str, dict[str, Any]]:
    """What the validators with a baseline (e.g. the test suite) say before any task ran."""
    plan, plugins = loop.plan, loop.engine.plugins
    refs = [ref for spec in plan.spec.tasks for ref in plan.validators(spec)]
    options = baseline_options(refs)
    wanted = [n for n in options if getattr(plugins.validators.get(n), "baseline", None)]
    if not wanted:
        return {}
    shown = ", ".join(wanted)
    loop.observer.message(f"measuring the test baseline ({shown}) before any task runs...")
    started = time.monotonic()
    beat = partial(loop.store.commit, loop.run.id, Batch(run_state="running"))
    with beating(beat, HEARTBEAT_SECONDS):
        taken = take_baselines(
            plugins.validators,
            wanted,
            loop.run.id,
            Path(plan.workdir),
            DEFAULT_VALIDATOR_TIMEOUT_SECONDS,
            options,
            plan_environment(plan),
        )
    seconds = time.monotonic() - started
    loop.observer.message(f"baseline measured in {seconds:.1f}s: {baseline_summary(taken)}")
    loop.use_engine(loop.engine.with_baselines(taken))
    return taken


# ---- resuming ---------------------------------------------------------------------------------


def resume(
    cls: type[Orchestrator],
    store: Store,
    run_id: str,
    *,
    engine: Engine | None,
    force: bool,
    **options: Any,
) -> Orchestrator:
    """Claim a stored run and continue it: interrupted attempts are retried, the rest goes on.

    Refuses a run that another engine is still working on (its heartbeat is fresh), unless
    `force`: two engines on one run would run its tasks twice.
    """
    owner = new_owner_token()
    stale_before = utcnow() - timedelta(seconds=STALE_RUN_SECONDS)
    # An engine of this host whose process is gone holds the run no longer: no need to wait.
    holder = store.get_run(run_id)
    gone = holder.owner if holder.owner and owner_alive(holder) is False else None
    # One atomic claim, not "is anyone there?" then "go": two resumes must not both get in.
    # The claim records this process with the owner: a resume reading the run in between must
    # not see the new owner beside the dead engine's process and judge it gone.
    me = this_engine()
    taken = store.claim_run(
        run_id,
        owner,
        stale_before=stale_before,
        force=force,
        holder_gone=gone,
        engine=(me.host, me.pid, me.started),
    )
    if not taken:
        run = store.get_run(run_id)
        age = (utcnow() - run.updated_at).total_seconds()
        raise OrchestrationError(
            f"run '{run_id}' is being worked on by another engine ({engine_label(run)}, "
            f"last heartbeat {age:.0f}s ago). If that engine is gone (killed), wait "
            f"{max(1, STALE_RUN_SECONDS - age):.0f}s or resume with --force."
        )
    try:
        return _resume_claimed(cls, store, store.get_run(run_id), engine, **options)
    except BaseException:
        store.release_run(run_id, owner)
        raise


def _resume_claimed(
    cls: type[Orchestrator], store: Store, run: RunRecord, engine: Engine | None, **options: Any
) -> Orchestrator:
    # Reading a run back builds hundreds of thousands of objects that all stay alive: the
    # cyclic collector would rescan them again and again (a third of a 10,000-task resume).
    with collection_paused():
        plan = plan_from_stored(run)
        engine = engine or build_engine(plan)
        # Interventions asked for while no engine ran are applied before the tasks are read.
        apply_requested(store, run.id)
        orchestrator = cls(store, run, plan, engine, **options)
        # Tasks added while the run worked (`orch task add`, spawns) are not in its plan: a kind
        # of work no loaded plugin provides any more is refused here, before anything moves.
        unfinished = (t.spec for t in orchestrator.tasks.values() if t.state not in FINAL_STATES)
        check_action_kinds(unfinished, orchestrator.engine.plugins, orchestrator.plan.path)
        _recover(orchestrator)
    return orchestrator


def load_history(loop: Orchestrator) -> None:
    """What the run recorded before this engine: figures, approvals, open breakpoints."""
    store, run_id, tally = loop.store, loop.run.id, loop.tally
    for passed in store.gate_results(run_id):  # the figures continue where they were left
        tally.count_gate(passed)
    reruns = False
    for event in store.events(run_id):
        _note_checkpoint_owed(loop, event)
        reruns = reruns or (event.kind == "intervention" and event.data.get("action") == "rerun")
        if event.kind == "run_started" and event.data.get("baselines"):
            loop.use_engine(loop.engine.with_baselines(event.data["baselines"]))
        if event.kind == "step" and event.task_id:
            tally.count_step(event.task_id, loop.tasks.get(event.task_id), event.data)
            loop.dispatch.runner.remember_session(event.task_id, event.data.get("result"))
    tally.budget.attempts = sum(task.attempts for task in loop.tasks.values())
    # An approval given before a task was run again (rerun, rollback) does not hold for it.
    fresh = fresh_starts(store, run_id) if reruns else {}
    for bp in store.breakpoints(run_id, state="resolved"):
        if bp.task_id not in fresh or (bp.resolved_at or fresh[bp.task_id]) > fresh[bp.task_id]:
            loop.admission.remember_approval(bp)
    for task in loop.tasks.values():
        if task.state in FINAL_STATES:
            loop.scheduler.record_final(task.task_id, task.state, task.outcome)
    for bp in store.breakpoints(run_id, state="open"):
        loop.state.watch_open_breakpoint(bp)
    loop.sync.settings()


def _note_checkpoint_owed(loop: Orchestrator, event: EventRecord) -> None:
    """A step a human accepted while no engine ran is owed its checkpoint (taken on resume)."""
    if event.task_id is None:
        return
    if event.kind == "breakpoint_resolved" and event.data.get("resolution") == "approve":
        loop.checkpoints_owed.add(event.task_id)
    elif event.kind in ("checkpoint", "checkpoint_failed", "step"):
        loop.checkpoints_owed.discard(event.task_id)


def _recover(loop: Orchestrator) -> None:
    """Take every task on from where the last engine left it."""
    now, state = loop.clock(), loop.state
    # At-least-once: the attempts under way when the engine died run again, after their
    # processes, if they outlived the engine, are ended.
    running = {t.task_id for t in loop.tasks.values() if t.state == TaskState.RUNNING}
    for task_id in sorted(loop.dispatch.registry.end_orphans(loop.run.id, running)):
        loop.observer.message(f"ended the orphaned attempt of {task_id}")
    for task in loop.tasks.values():
        if task.state == TaskState.RUNNING:
            state.move(task, "retry", "interrupted: the engine stopped during this attempt")
            state.update(task, next_attempt_at=now)
        elif task.state == TaskState.READY:
            loop.integration.restart_after_conflict(task)  # resolved by a human while none ran
            loop.queue(task)
        elif task.state == TaskState.PENDING:
            loop.evaluate_pending(task.task_id)
        elif task.state == TaskState.COMPLETED and task.outcome == "approved":
            loop.integration.merge_approved(task)
    for task_id in sorted(loop.checkpoints_owed):
        owed = loop.tasks.get(task_id)
        if owed and owed.state == TaskState.COMPLETED and owed.outcome == "approved":
            loop.integration.checkpoint(owed)
    state.event("run_resumed", None, {}, now)
    state.run_is("running")
    state.flush()
    for task in loop.tasks.values():
        if task.state == TaskState.FAILED:  # a failure the engine had no time to capture
            state.capture_dead_letter(task.task_id)
