"""A human's interventions on a run or a task (pause, skip, retry, rerun...), each recorded."""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestration.core.errors import NotFoundError, OrchestrationError
from orchestration.core.hints import resume_command, shell_command
from orchestration.core.lifecycle import FINAL_STATES, TaskHandle, fire
from orchestration.core.models import (
    BreakpointRecord,
    DeadLetterRecord,
    EventRecord,
    InterventionRecord,
    RetryPolicy,
    RunRecord,
    RunSetting,
    TaskRecord,
)
from orchestration.resilience.overrides import OverrideError, apply_to_spec
from orchestration.resilience.runs import run_is_live
from orchestration.store import Batch, Store, StoreConflict

logger = logging.getLogger(__name__)

TASK_ACTIONS = ("pause", "resume", "skip", "retry", "cancel", "rerun")
RUN_ACTIONS = ("pause", "resume", "skip", "retry", "cancel")
# The run setting the loop reads to start nothing new (latest row wins, as for every setting).
PAUSE_KIND = "run"
PAUSE_NAME = "paused"
# Dependents cancelled for these reasons never ran: they come back when their upstream runs again.
REVIVED_OUTCOMES = frozenset({"upstream_failed", "not_needed"})
FINAL_RUN_STATES = frozenset({"completed", "failed", "cancelled"})
REQUEST_POLL_SECONDS = 0.2  # how often a CLI looks whether the engine applied its request
MAX_ATTEMPTS_LIMIT = 100  # RetryPolicy.max_attempts' upper bound


@dataclass(frozen=True, slots=True)
class Stop:
    """A running attempt the engine must stop; then it moves the task with `trigger`."""

    task_id: str
    trigger: str  # block | cancel
    reason: str
    actor: str
    intervention_id: int
    completes: bool  # moving this task completes the intervention: mark it applied then


@dataclass
class Changes:
    """What an intervention changes, planned on a snapshot of the run; committed as one batch."""

    batch: Batch = field(default_factory=Batch)
    changed: list[str] = field(default_factory=list)  # tasks whose state or spec changes
    reopened: list[str] = field(default_factory=list)  # tasks that leave a final state
    stops: list[Stop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_cancelled: bool = False

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


@dataclass(frozen=True)
class Applied:
    """What `apply_requested` did: the engine re-reads `changed` tasks and carries out `stops`."""

    applied: list[InterventionRecord]
    refused: list[InterventionRecord]
    changed: list[str]
    reopened: list[str]
    stops: list[Stop]
    run_cancelled: bool


@dataclass
class _Snapshot:
    run: RunRecord
    tasks: dict[str, TaskRecord]
    open_breakpoints: dict[str, BreakpointRecord]
    open_dead_letters: dict[str, list[DeadLetterRecord]]
    running: frozenset[str]  # attempts an engine has under way: stopped, never moved directly
    dependents: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dependents: dict[str, list[str]] = defaultdict(list)
        for task in self.tasks.values():
            for dep in task.spec.depends_on:
                dependents[dep].append(task.task_id)
        self.dependents = dict(dependents)

    def task(self, task_id: str) -> TaskRecord:
        task = self.tasks.get(task_id)
        if task is None:
            raise NotFoundError(f"task '{task_id}' not found in run '{self.run.id}'")
        return task

    def downstream(self, task_id: str) -> list[str]:
        """Every task that depends on `task_id`, directly or not, nearest first."""
        seen: dict[str, None] = {}
        queue = deque(self.dependents.get(task_id, ()))
        while queue:
            child = queue.popleft()
            if child in seen or child == task_id:
                continue
            seen[child] = None
            queue.extend(self.dependents.get(child, ()))
        return list(seen)


FRESH_START_TRIGGERS = frozenset({"rerun", "reset"})  # a finished task made to run again


def fresh_starts(store: Store, run_id: str) -> dict[str, datetime]:
    """When each task of the run last started afresh (`rerun`, or `reset` with an upstream
    task): a breakpoint approved before that does not hold for its new attempts."""
    starts: dict[str, datetime] = {}
    for move in store.transitions(run_id):
        if move.trigger in FRESH_START_TRIGGERS:
            starts[move.task_id] = move.at
    return starts


def load_snapshot(store: Store, run_id: str, running: frozenset[str] = frozenset()) -> _Snapshot:
    run = store.get_run(run_id)
    tasks = {t.task_id: t for t in store.tasks(run_id)}
    open_bps = {bp.task_id: bp for bp in store.breakpoints(run_id, state="open")}
    letters: dict[str, list[DeadLetterRecord]] = defaultdict(list)
    for letter in store.dead_letters(run_id, state="open"):
        letters[letter.task_id].append(letter)
    return _Snapshot(run, tasks, open_bps, dict(letters), running)


# ---- planning: what an intervention does to a snapshot (pure; raises on an illegal change) -----


class _Planner:
    def __init__(self, snap: _Snapshot, request: InterventionRecord, now: datetime) -> None:
        self.snap = snap
        self.request = request
        self.now = now
        self.changes = Changes()
        self.states = {task_id: task.state for task_id, task in snap.tasks.items()}
        self.sets: dict[str, Any] = dict(request.params.get("sets") or {})

    # -- recording -------------------------------------------------------------------------

    def reason(self, what: str | None = None) -> str:
        text = f"{what or self.request.action} by {self.request.actor}"
        return f"{text}: {self.request.reason}" if self.request.reason else text

    def move(self, task_id: str, trigger: str, what: str | None = None) -> None:
        handle = TaskHandle(task_id, self.states[task_id])
        move = fire(handle, trigger, reason=self.reason(what), actor=self.request.actor)
        if move.source in FINAL_STATES and move.dest not in FINAL_STATES:
            self.changes.reopened.append(task_id)
        self.states[task_id] = move.dest
        self.changes.batch.moves.append(move)
        if task_id not in self.changes.changed:
            self.changes.changed.append(task_id)

    def update(self, task_id: str, **values: Any) -> None:
        self.changes.batch.task_updates.append((task_id, values))

    def stop(self, task_id: str, trigger: str, *, completes: bool = True) -> None:
        self.changes.stops.append(
            Stop(
                task_id,
                trigger,
                self.reason(),
                self.request.actor,
                self.request.id,
                completes,
            )
        )
        self.changes.notes.append(f"{task_id}: the attempt under way is being stopped")

    def resolve_breakpoint(self, task_id: str, resolution: str) -> None:
        bp = self.snap.open_breakpoints.get(task_id)
        if bp is None:
            return
        note = f"{self.request.action} by intervention" + (
            f": {self.request.reason}" if self.request.reason else ""
        )
        self.changes.batch.resolutions.append(
            (bp.id, resolution, note, self.request.actor, self.now, dict(self.sets))
        )

    def close_dead_letters(self, task_id: str, state: str, extra: Mapping[str, Any]) -> None:
        for letter in self.snap.open_dead_letters.get(task_id, []):
            values = {
                "state": state,
                "resolved_at": self.now,
                "resolved_by": self.request.actor,
                "note": self.request.reason or self.request.action,
                "params": {"action": self.request.action, **extra},
            }
            self.changes.batch.dead_letter_updates.append((letter.id, "open", values))

    # -- spec changes ------------------------------------------------------------------------

    def new_spec(self, task: TaskRecord, *, fresh_budget: bool) -> Any:
        """The task's spec with the `--set` changes, and attempts left for another go."""
        changes = dict(self.sets)
        if fresh_budget and not any(k == "retry" or k.startswith("retry.") for k in changes):
            policy = task.spec.retry or _plan_retry_policy(self.snap.run, task.task_id)
            if task.attempts >= policy.max_attempts:
                if task.attempts >= MAX_ATTEMPTS_LIMIT:
                    raise OrchestrationError(
                        f"task '{task.task_id}' has used {task.attempts} attempts, the most a "
                        "task may have"
                    )
                more = min(MAX_ATTEMPTS_LIMIT, task.attempts + _base_attempts(self.snap, task))
                changes["retry"] = {**policy.model_dump(mode="json"), "max_attempts": more}
                self.changes.notes.append(
                    f"{task.task_id}: retry.max_attempts raised to {more} "
                    f"({task.attempts} used so far)"
                )
        if not changes:
            return None
        try:
            return apply_to_spec(task.spec, changes)
        except OverrideError as error:
            raise OrchestrationError(error.message) from None

    def reopen(self, task: TaskRecord, trigger: str, *, fresh_budget: bool) -> None:
        self.move(task.task_id, trigger)
        values: dict[str, Any] = {"outcome": None, "next_attempt_at": None}
        spec = self.new_spec(task, fresh_budget=fresh_budget)
        if spec is not None:
            values["spec"] = spec
        self.update(task.task_id, **values)

    def revive_dependents(self, task_id: str) -> None:
        """Bring back the dependents that were cancelled because this task failed."""
        queue = deque(self.snap.dependents.get(task_id, ()))
        while queue:
            child = self.snap.tasks[queue.popleft()]
            if self.states[child.task_id] != "cancelled" or child.outcome not in REVIVED_OUTCOMES:
                continue
            self.move(child.task_id, "revive", f"revived ({self.request.action} of {task_id})")
            self.update(child.task_id, outcome=None)
            queue.extend(self.snap.dependents.get(child.task_id, ()))

    # -- task actions ------------------------------------------------------------------------

    def pause(self, task: TaskRecord) -> None:
        if task.task_id in self.snap.running:
            self.stop(task.task_id, "block")
            return
        if self.states[task.task_id] == "blocked":
            bp = self.snap.open_breakpoints.get(task.task_id)
            where = f" at breakpoint {bp.id} ({bp.rule})" if bp is not None else ""
            raise OrchestrationError(f"task '{task.task_id}' is already blocked{where}")
        self.move(task.task_id, "block", "paused")
        self.changes.notes.append(f"{task.task_id} paused")

    def resume(self, task: TaskRecord) -> None:
        bp = self.snap.open_breakpoints.get(task.task_id)
        if bp is not None:
            raise OrchestrationError(
                f"task '{task.task_id}' waits at breakpoint {bp.id} ({bp.rule}); answer it "
                f"with: orch breakpoints resolve {bp.id} --approve (or --retry, --skip, --reject)"
            )
        state = self.states[task.task_id]
        if state != "blocked":
            raise OrchestrationError(
                f"task '{task.task_id}' is {state}, not paused; only a paused (blocked) task "
                "can be resumed"
            )
        self.move(task.task_id, "unblock", "resumed")
        self.changes.notes.append(f"{task.task_id} resumed")

    def skip(self, task: TaskRecord) -> None:
        was = self.states[task.task_id]
        self.resolve_breakpoint(task.task_id, "skip")
        self.move(task.task_id, "skip", "skipped")
        self.update(task.task_id, outcome="skipped", next_attempt_at=None)
        if was == "failed":
            self.close_dead_letters(task.task_id, "closed", {})
            self.revive_dependents(task.task_id)
        self.changes.notes.append(f"{task.task_id} skipped")

    def cancel(self, task: TaskRecord, *, completes: bool = True) -> None:
        if task.task_id in self.snap.running:
            self.stop(task.task_id, "cancel", completes=completes)
            return
        self.resolve_breakpoint(task.task_id, "reject")
        self.move(task.task_id, "cancel", "cancelled")
        self.update(task.task_id, outcome="cancelled", next_attempt_at=None)
        self.changes.notes.append(f"{task.task_id} cancelled")

    def retry(self, task: TaskRecord) -> None:
        state = self.states[task.task_id]
        if state == "failed":
            self.reopen(task, "requeue", fresh_budget=True)
            self.close_dead_letters(task.task_id, "resubmitted", {"sets": self.sets})
            self.revive_dependents(task.task_id)
        elif state == "blocked":
            self.resolve_breakpoint(task.task_id, "retry")
            self.move(task.task_id, "unblock", "retry")
            spec = self.new_spec(task, fresh_budget=False)
            if spec is not None:
                self.update(task.task_id, spec=spec)
        elif state == "retrying" and task.task_id not in self.snap.running:
            self.move(task.task_id, "wake", "retry now")
            values: dict[str, Any] = {"next_attempt_at": None}
            spec = self.new_spec(task, fresh_budget=False)
            if spec is not None:
                values["spec"] = spec
            self.update(task.task_id, **values)
        else:
            raise OrchestrationError(
                f"cannot retry task '{task.task_id}' in state '{state}': retry applies to a "
                "failed, blocked or retrying task; a finished task runs again with "
                "`orch task rerun`"
            )
        self.changes.notes.append(f"{task.task_id} retried")

    def rerun(self, task: TaskRecord, downstream: bool) -> None:
        state = self.states[task.task_id]
        if state not in FINAL_STATES:
            raise OrchestrationError(
                f"task '{task.task_id}' is {state}; rerun runs a finished task (completed, "
                "failed or cancelled) again"
            )
        below = self.snap.downstream(task.task_id) if downstream else []
        busy = [d for d in below if self.states[d] in ("running", "blocked")]
        if busy:
            listed = ", ".join(f"{d} ({self.states[d]})" for d in busy)
            raise OrchestrationError(
                f"cannot rerun '{task.task_id}' with its downstream: {listed} must finish or be "
                "cancelled first"
            )
        self.reopen(task, "rerun", fresh_budget=True)
        if state == "failed":
            self.close_dead_letters(task.task_id, "resubmitted", {"sets": self.sets})
        if not downstream:
            self.revive_dependents(task.task_id)
        for child_id in below:
            child_state = self.states[child_id]
            if child_state == "pending":
                continue
            self.move(child_id, "reset", f"reset (rerun of {task.task_id})")
            self.update(child_id, outcome=None, next_attempt_at=None)
            if child_state == "failed":
                self.close_dead_letters(child_id, "closed", {"rerun_of": task.task_id})
        reset = [d for d in below if d in self.changes.changed]
        self.changes.notes.append(
            f"{task.task_id} runs again"
            + (
                f"; {len(reset)} downstream task(s) wait for it: {', '.join(reset)}"
                if reset
                else ""
            )
        )

    # -- run actions ---------------------------------------------------------------------------

    def run_cancel(self) -> None:
        for task in self.snap.tasks.values():
            if self.states[task.task_id] not in FINAL_STATES:
                self.cancel(task, completes=False)
        self.changes.run_cancelled = True

    def run_retry(self) -> None:
        failed = [t for t in self.snap.tasks.values() if self.states[t.task_id] == "failed"]
        if not failed:
            raise OrchestrationError(f"run '{self.snap.run.id}' has no failed task to retry")
        for task in failed:
            if self.states[task.task_id] == "failed":  # not revived by an earlier retry
                self.retry(task)

    def run_skip(self) -> None:
        skippable = ("pending", "ready", "blocked", "retrying", "failed")
        targets = [
            t
            for t in self.snap.tasks.values()
            if self.states[t.task_id] in skippable and t.task_id not in self.snap.running
        ]
        if not targets:
            raise OrchestrationError(f"run '{self.snap.run.id}' has no task left to skip")
        for task in targets:
            if self.states[task.task_id] in skippable:
                self.skip(task)


def _plan_retry_policy(run: RunRecord, task_id: str) -> RetryPolicy:
    """The retry policy the plan gives a task without its own: the plan's default."""
    spec = run.plan_json.get("spec", {}) if isinstance(run.plan_json, dict) else {}
    defaults = spec.get("defaults", {}) if isinstance(spec, dict) else {}
    raw = defaults.get("retry") if isinstance(defaults, dict) else None
    return RetryPolicy.model_validate(raw) if raw is not None else RetryPolicy()


def _base_attempts(snap: _Snapshot, task: TaskRecord) -> int:
    """How many attempts one more go gets: what the plan first gave the task."""
    spec = snap.run.plan_json.get("spec", {}) if isinstance(snap.run.plan_json, dict) else {}
    for planned in spec.get("tasks", []) if isinstance(spec, dict) else []:
        if isinstance(planned, dict) and planned.get("id") == task.task_id and planned.get("retry"):
            return RetryPolicy.model_validate(planned["retry"]).max_attempts
    return _plan_retry_policy(snap.run, task.task_id).max_attempts


def plan_intervention(request: InterventionRecord, snap: _Snapshot, now: datetime) -> Changes:
    """The changes `request` makes to the run as `snap` shows it; raises if it cannot apply."""
    planner = _Planner(snap, request, now)
    action = request.action
    if request.task_id is not None:
        task = snap.task(request.task_id)
        if action == "rerun":
            planner.rerun(task, bool(request.params.get("downstream")))
        elif action in TASK_ACTIONS:
            getattr(planner, action)(task)
        else:
            raise OrchestrationError(
                f"unknown task action '{action}'; expected {', '.join(TASK_ACTIONS)}"
            )
    elif action == "cancel":
        planner.run_cancel()
    elif action == "retry":
        planner.run_retry()
    elif action == "skip":
        planner.run_skip()
    else:
        raise OrchestrationError(
            f"unknown run action '{action}'; expected {', '.join(RUN_ACTIONS)}"
        )
    changes = planner.changes
    data = {
        "action": action,
        "actor": request.actor,
        "reason": request.reason,
        "params": request.params,
        "note": changes.note,
    }
    changes.batch.events.append(
        EventRecord(snap.run.id, "intervention", request.task_id, data, now)
    )
    return changes


# ---- carrying interventions out ---------------------------------------------------------------


def intervene(
    store: Store,
    run_id: str,
    action: str,
    *,
    task_id: str | None = None,
    actor: str,
    reason: str = "",
    sets: Mapping[str, Any] | None = None,
    downstream: bool = False,
    extra: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> InterventionRecord:
    """Carry out a human's action on a task (or, without `task_id`, the whole run).

    A run that no engine is working on is changed at once, in one transaction with the
    intervention's record and an event. A run that an engine works on gets a `requested`
    intervention instead, which the engine applies itself (its tasks are its own to move while it
    runs); `wait_until_applied` waits for that. Illegal changes raise before anything is stored.
    """
    now = now or datetime.now(UTC)
    if task_id is None and action in ("pause", "resume"):
        return pause_run(
            store, run_id, actor=actor, reason=reason, now=now, paused=action == "pause"
        )
    params: dict[str, Any] = {"sets": dict(sets or {}), **dict(extra or {})}
    if downstream:
        params["downstream"] = True
    if action == "skip" and not reason:
        raise OrchestrationError("a skip needs a reason (--reason): it is kept in the history")
    request = InterventionRecord(run_id, task_id, action, actor, reason, params, now)
    live = _engine_is_live(store.get_run(run_id), now)
    snap = load_snapshot(
        store,
        run_id,
        running=frozenset(t.task_id for t in store.tasks(run_id) if t.state == "running")
        if live
        else frozenset(),
    )
    if snap.run.state in FINAL_RUN_STATES and task_id is None and action == "cancel":
        raise OrchestrationError(f"run '{run_id}' is already {snap.run.state}")
    changes = plan_intervention(request, snap, now)  # raises here if it cannot apply
    if live:
        request.state = "requested"
        requested = EventRecord(run_id, "intervention_requested", task_id, {"action": action}, now)
        store.commit(run_id, Batch(interventions=[request], events=[requested]))
        return request
    request.note, request.applied_at = changes.note, now
    changes.batch.interventions.append(request)
    changes.batch.run_state = _run_state_after(snap, changes)
    store.commit(run_id, changes.batch)
    return request


def _engine_is_live(run: RunRecord, now: datetime) -> bool:
    return run_is_live(run, now)


def _run_state_after(snap: _Snapshot, changes: Changes) -> str | None:
    """The run's new state when changed without an engine: cancelled, or paused to resume."""
    if changes.run_cancelled:
        return "cancelled"
    if snap.run.state in FINAL_RUN_STATES and changes.reopened:
        return "paused"  # there is work again: `orch resume` continues it; prune keeps it
    return None


def apply_requested(
    store: Store,
    run_id: str,
    *,
    running: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> Applied:
    """Apply the run's `requested` interventions, oldest first (the engine calls this).

    `running`: the tasks whose attempts this engine has under way; a pause or cancel of one of
    them comes back as a `Stop` (the intervention stays requested until the engine has moved
    the task). Each intervention is its own transaction; one that cannot apply is `refused`.
    """
    now = now or datetime.now(UTC)
    applied: list[InterventionRecord] = []
    refused: list[InterventionRecord] = []
    changed: list[str] = []
    reopened: list[str] = []
    stops: list[Stop] = []
    run_cancelled = False
    for request in store.interventions(run_id, state="requested"):
        snap = load_snapshot(store, run_id, running)
        try:
            changes = plan_intervention(request, snap, now)
        except OrchestrationError as error:
            data = {"action": request.action, "actor": request.actor, "error": str(error)}
            batch = Batch(
                intervention_updates=[(request.id, "refused", str(error), now)],
                events=[EventRecord(run_id, "intervention_refused", request.task_id, data, now)],
            )
            if _commit_quietly(store, run_id, batch):
                request.state, request.note = "refused", str(error)
                refused.append(request)
            continue
        done = not any(stop.completes for stop in changes.stops) and not (
            changes.run_cancelled and changes.stops
        )
        if done:
            changes.batch.intervention_updates.append((request.id, "applied", changes.note, now))
        elif not changes.batch.moves:
            changes.batch = Batch()  # nothing to store until the attempts have stopped
        if not _commit_quietly(store, run_id, changes.batch):
            continue
        changed.extend(t for t in changes.changed if t not in changed)
        reopened.extend(t for t in changes.reopened if t not in reopened)
        stops.extend(changes.stops)
        run_cancelled = run_cancelled or changes.run_cancelled
        if done:
            request.state, request.note, request.applied_at = "applied", changes.note, now
            applied.append(request)
    return Applied(applied, refused, changed, reopened, stops, run_cancelled)


def _commit_quietly(store: Store, run_id: str, batch: Batch) -> bool:
    """Commit; False if another writer got there first (it is tried again next time)."""
    if not batch:
        return True
    try:
        store.commit(run_id, batch)
    except StoreConflict as conflict:
        logger.info("intervention not applied this time: %s", conflict)
        return False
    return True


def stop_concluded(stop: Stop, now: datetime) -> tuple[int, str, str, datetime] | None:
    """The `Batch.intervention_updates` entry for a stopped attempt whose task was moved."""
    if not stop.completes:
        return None
    return (
        stop.intervention_id,
        "applied",
        f"{stop.task_id}: attempt stopped, {stop.trigger}",
        now,
    )


def wait_until_applied(
    store: Store, request: InterventionRecord, timeout_seconds: float
) -> InterventionRecord:
    """Wait for the engine to apply a requested intervention; apply it here if the engine left."""
    if request.state != "requested" or request.run_id is None:
        return request
    deadline = time.monotonic() + timeout_seconds
    while True:
        current = store.intervention(request.id)
        if current.state != "requested":
            return current
        if not _engine_is_live(store.get_run(request.run_id), datetime.now(UTC)):
            apply_requested(store, request.run_id)
            return store.intervention(request.id)
        if time.monotonic() >= deadline:
            return current
        time.sleep(REQUEST_POLL_SECONDS)


# ---- pausing a whole run -----------------------------------------------------------------------


def human_pause(store: Store, run_id: str) -> RunSetting | None:
    """The setting that holds the run paused by a human, or None if it is not paused."""
    latest = None
    for setting in store.run_settings(run_id):
        if setting.kind == PAUSE_KIND and setting.name == PAUSE_NAME:
            latest = setting
    return latest if latest is not None and latest.value is True else None


def pause_run(
    store: Store,
    run_id: str,
    *,
    actor: str,
    reason: str = "",
    now: datetime | None = None,
    paused: bool = True,
) -> InterventionRecord:
    """Pause (or with `paused=False` resume) a run: running actions finish, nothing new starts.

    Stored as the run setting `run`/`paused`, which a running engine polls; a resumed engine
    reads it too, so the pause holds across restarts until lifted.
    """
    now = now or datetime.now(UTC)
    run = store.get_run(run_id)
    holding = human_pause(store, run_id)
    action = "pause" if paused else "resume"
    if paused and run.state in FINAL_RUN_STATES:
        raise OrchestrationError(
            f"run '{run_id}' is {run.state}; only a run with work left can be paused"
        )
    if paused and holding is not None:
        raise OrchestrationError(
            f"run '{run_id}' is already paused (by {holding.actor} at {holding.at:%Y-%m-%d %H:%M}Z)"
        )
    if not paused and holding is None:
        raise OrchestrationError(
            f"run '{run_id}' is not paused by a human; a run waiting at breakpoints goes on when "
            f"they are answered ({shell_command('orch', 'breakpoints', 'list', '--run', run_id)}), "
            f"a stopped run with `{resume_command(run_id)}`"
        )
    note = (
        "running actions finish; nothing new starts until it is resumed"
        if paused
        else "new work may start again"
    )
    request = InterventionRecord(run_id, None, action, actor, reason, {}, now, note=note)
    request.applied_at = now
    data = {"action": action, "actor": actor, "reason": reason, "params": {}, "note": note}
    batch = Batch(
        settings=[RunSetting(run_id, PAUSE_KIND, PAUSE_NAME, paused, actor, reason, now)],
        interventions=[request],
        events=[EventRecord(run_id, "intervention", None, data, now)],
    )
    store.commit(run_id, batch)
    return request
