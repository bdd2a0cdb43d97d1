"""The engine loop: release, check, run, assess, decide, apply — every change committed first."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from orchestration.core.context import frozen_or_plain, jsonable
from orchestration.core.errors import OrchestrationError
from orchestration.core.lifecycle import FINAL_STATES, TaskHandle, TaskState, fire
from orchestration.core.models import (
    BreakpointRecord,
    DecisionRecord,
    EventRecord,
    Plan,
    QualityRecord,
    RunRecord,
    TaskRecord,
)
from orchestration.core.yamlfile import collection_paused
from orchestration.engine.actions import ActionOutcome, ActionRequest, StopSignal
from orchestration.engine.admission import Admission
from orchestration.engine.alerts import POLL_SECONDS as ALERT_SECONDS
from orchestration.engine.alerts import EngineAlerts
from orchestration.engine.attempts import AttemptResult, AttemptRunner, RunningAttempt
from orchestration.engine.baselines import baseline_options, baseline_summary, take_baselines
from orchestration.engine.breakpoints import BreakpointCheck
from orchestration.engine.conclusion import (
    Effects,
    Raised,
    after_crash,
    after_decision,
    after_interrupt,
    after_stop,
)
from orchestration.engine.decisions import EXPLANATION_KEY, Decision
from orchestration.engine.fleet import open_fleet
from orchestration.engine.growth import Growth
from orchestration.engine.integration import MERGE_CONFLICT, Integration  # noqa: F401
from orchestration.engine.learning import outcome_stats_from_store
from orchestration.engine.outside_sync import OutsideSync
from orchestration.engine.plan import plan_from_stored, plan_json
from orchestration.engine.policy import Engine, build_engine, check_action_kinds
from orchestration.engine.quality import DEFAULT_VALIDATOR_TIMEOUT_SECONDS
from orchestration.engine.regressions import compare_attempts
from orchestration.engine.scheduler import NOT_NEEDED_REASONS, TaskScheduler
from orchestration.engine.steps import RunFigures, before_context
from orchestration.engine.store_executor import attempt_executor
from orchestration.engine.task_expressions import TaskExpressions
from orchestration.engine.timer_wheel import (
    ADDED,
    ALERTS,
    BLOCKED,
    BREAKER,
    DEADLINE,
    DIGEST,
    DURING,
    EXPIRY,
    HEARTBEAT,
    INTERVENTIONS,
    RETRY,
    SETTINGS,
    TimerWheel,
)
from orchestration.engine.tracing import trace_finished_run
from orchestration.extension import Notification
from orchestration.pluginhost.digests import DigestBuffer
from orchestration.project.checkpoints import is_git_worktree
from orchestration.project.environment import plan_environment
from orchestration.project.orphans import AttemptRegistry
from orchestration.project.workspace import store_files_in
from orchestration.project.worktrees import RunWorktrees, open_isolation
from orchestration.resilience.budgets import RunBudget
from orchestration.resilience.dead_letters import capture_dead_letter
from orchestration.resilience.engine_identity import beating, engine_label, owner_alive, this_engine
from orchestration.resilience.interventions import (
    Stop,
    apply_requested,
    fresh_starts,
    stop_concluded,
)
from orchestration.resilience.runs import (
    HEARTBEAT_SECONDS,
    STALE_RUN_SECONDS,
    check_run_id,
    new_run_id,
    run_is_live,  # noqa: F401  (re-exported: callers ask the loop whether a run is live)
)
from orchestration.resilience.stuck import AttemptSignature, repeat_figures, signature
from orchestration.store import Batch, Store
from orchestration.store.claims import new_owner_token

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.2  # how often an idle loop looks for due retries and human answers
MAX_IDLE_SLEEP_SECONDS = 1.0
BLOCKED_SYNC_SECONDS = 0.5
ADDED_SYNC_SECONDS = 1.0  # how often a running engine looks for tasks added from outside
DURING_CHECK_SECONDS = 1.0  # how often `at: during` rules look at the attempts under way
INTERVENTION_SYNC_SECONDS = 1.0  # how often a working engine applies requested interventions
DEAD_LETTER_ARCHIVE_DIR = "dead-letters"  # under .orchestration/ beside the plan
# The periodic duties on the timer wheel, each with its own period and first turn (seconds).
PERIODIC_SECONDS = {
    HEARTBEAT: HEARTBEAT_SECONDS,
    SETTINGS: ADDED_SYNC_SECONDS,
    INTERVENTIONS: INTERVENTION_SYNC_SECONDS,
    BLOCKED: BLOCKED_SYNC_SECONDS,
    ADDED: ADDED_SYNC_SECONDS,
    DURING: DURING_CHECK_SECONDS,
    ALERTS: ALERT_SECONDS,
}
PERIODIC_FIRST = {
    HEARTBEAT: 0,
    SETTINGS: 1,
    INTERVENTIONS: 0,
    BLOCKED: 0,
    ADDED: 1,
    DURING: 0,
    ALERTS: ALERT_SECONDS,
}
EXIT_CODES = {
    "completed": 0,
    "failed": 1,
    "stalled": 1,
    "cancelled": 1,
    "paused": 3,
    "stopped": 130,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Observer(Protocol):
    """Receives what the loop does, for a progress display. Every method is optional to act on."""

    def task_started(self, task: TaskRecord) -> None: ...
    def task_changed(self, task: TaskRecord, state: str, detail: str) -> None: ...
    def breakpoint_raised(self, breakpoint: BreakpointRecord) -> None: ...
    def message(self, text: str) -> None: ...


class SilentObserver:
    def task_started(self, task: TaskRecord) -> None:
        pass

    def task_changed(self, task: TaskRecord, state: str, detail: str) -> None:
        pass

    def breakpoint_raised(self, breakpoint: BreakpointRecord) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    state: str  # completed | failed | paused | stalled | cancelled
    counts: dict[str, int]
    open_breakpoints: list[BreakpointRecord] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    # each task that cannot start yet -> its unfinished dependencies with their states
    waiting: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.state, 1)


class Orchestrator:
    """Runs one run of a plan against a store. `tick(now)` does one cycle; `run()` repeats it."""

    def __init__(
        self,
        store: Store,
        run: RunRecord,
        plan: Plan,
        engine: Engine,
        *,
        observer: Observer | None = None,
        actor: str = "engine",
        clock: Callable[[], datetime] = utcnow,
        on_breakpoint: Callable[[BreakpointRecord], None] | None = None,
        dry_run: bool = False,
        tasks: Iterable[TaskRecord] | None = None,
    ) -> None:
        """`tasks`: the run's tasks exactly as just stored (`start`), saving reading them back."""
        self.dry_run = dry_run
        self.store = store
        self.run = run
        self.plan = plan
        self.engine = engine
        self.observer = observer or SilentObserver()
        self.actor = actor
        self.clock = clock
        self.on_breakpoint = on_breakpoint
        known = store.tasks(run.id) if tasks is None else tasks
        self.tasks: dict[str, TaskRecord] = {t.task_id: t for t in known}
        self.counts: Counter[str] = Counter(t.state for t in self.tasks.values())
        self.scheduler = self._new_scheduler()
        # Every wake-up of the loop, of every kind, on one heap: a tick costs nothing while
        # none is due.
        self.wheel = TimerWheel()
        self._schedule_initial_wakes(run, clock())
        self._init_figures()
        self._init_outside_state()
        self._init_attempts()
        self.alerts = EngineAlerts(
            store,
            run.id,
            engine.plugins,
            dead_letter_days=plan.spec.retention.dead_letter_days,
            archive_dir=Path(plan.path).parent / ".orchestration" / DEAD_LETTER_ARCHIVE_DIR,
        )
        self._load_history()
        self.fleet = open_fleet(self)  # agents, waves and anomalies (orchestration/engine/fleet.py)

    def _new_scheduler(self) -> TaskScheduler:
        concurrency = self.plan.spec.concurrency
        return TaskScheduler(
            self.tasks.values(),
            max_workers=concurrency.max_workers,
            pools=concurrency.pools,
            weights=self.plan.spec.scheduling,
            max_running=concurrency.max_running,
        )

    def _new_executor(self) -> Executor:
        """Where attempts that do not run inline run: the one place the executor is made.

        Threads of this process, or worker processes (`concurrency.executor: workers`)."""
        return attempt_executor(self.plan, self.store, self.run.id, self.kill_event)

    def _init_attempts(self) -> None:
        """The attempts under way, where they run, and how they are stopped."""
        plan, run = self.plan, self.run
        self.futures: dict[Future[AttemptResult], str] = {}
        self._starting = 0
        # Attempts run in the loop's own thread (inline python), concluded on the next tick.
        self.inline_done: list[tuple[str, AttemptResult | Exception]] = []
        self.stop_event = threading.Event()  # set: no new attempt starts (draining)
        self.kill_event = threading.Event()  # set: attempts under way are stopped now
        self.executor = self._new_executor()
        self._kill_at: float | None = None  # when draining turns into stopping (monotonic)
        # Beside the plan, like the default store: where this engine notes its actions' processes.
        attempts_dir = Path(plan.path).parent / ".orchestration" / "attempts" / run.id
        self.attempts = AttemptRegistry(attempts_dir)
        self.ignored_files = store_files_in(Path(plan.workdir), _sqlite_path(self.store.url))
        self.checkpointing = is_git_worktree(Path(plan.workdir))
        self.running_attempts: dict[str, RunningAttempt] = {}
        self.stopped_by_rule: dict[str, Raised] = {}
        self.expressions = TaskExpressions(plan.path, self.engine.plugins)
        self.worktrees: RunWorktrees | None = open_isolation(plan, run.id)
        self.attempt_runner = AttemptRunner(
            plan,
            self.engine,
            run_id=run.id,
            dry_run=self.dry_run,
            registry=self.attempts,
            running=self.running_attempts,
            kill_event=self.kill_event,
            ignored_files=self.ignored_files,
            task_seconds=self.task_seconds,
            tasks=self.tasks,
            expressions=self.expressions,
            worktrees=self.worktrees,
        )

    def _init_figures(self) -> None:
        """What the run has recorded and rules read: the batch, run-wide figures, history."""
        store, plan, run = self.store, self.plan, self.run
        self.batch = Batch()
        self.pending_notifications: list[Notification] = []
        self.pending_breakpoints: list[BreakpointRecord] = []
        self.task_seconds: dict[str, float] = defaultdict(float)
        self.consecutive_failures = 0
        self.run_failures = 0
        self.budget = RunBudget.of(plan.spec.budget)
        self.attempt_history: dict[str, list[AttemptSignature]] = defaultdict(list)
        self.checkpoints_owed: set[str] = set()  # accepted by a human while no engine ran
        # Success statistics over every stored attempt of this plan (this run's too, on resume).
        # Earlier runs here; this run's own attempts are counted as its history loads.
        self.outcomes = outcome_stats_from_store(store, plan.name, exclude_runs=[run.id])
        self.previous_quality: dict[str, Any] = {}  # task id -> its last QualityReport/Record
        self.comparison_notes: dict[str, str] = {}
        self.digests = DigestBuffer()

    def _init_outside_state(self) -> None:
        """What humans and other processes decide: holds, pauses, switches, breakers."""
        self.run_holds: set[int] = set()  # open breakpoints with `scope: run`
        self.admission = Admission(
            self.plan,
            self.store,
            self.engine,
            self.wheel,
            dry_run=self.dry_run,
            record_event=self._event,
            message=self.observer.message,
        )
        self._human_stops: dict[str, Stop] = {}
        self.human_paused = False
        self.run_cancelled = False
        self.sync = OutsideSync(self)
        self.integration = Integration(self)
        self.growth = Growth(self)
        self._held_noted = False

    def _schedule_initial_wakes(self, run: RunRecord, now: datetime) -> None:
        """Retries and deadlines of the tasks, and the first turn of each periodic duty."""
        wheel = self.wheel
        for task in self.tasks.values():
            if task.state == TaskState.RETRYING:
                wheel.schedule(task.next_attempt_at or run.created_at, RETRY, task.task_id)
            if task.spec.deadline is not None and task.state not in FINAL_STATES:
                wheel.schedule(task.spec.deadline, DEADLINE, task.task_id)
        for duty, first in PERIODIC_FIRST.items():
            wheel.schedule(now + timedelta(seconds=first), duty)

    def _wake(self, kind: str, key: Any, due: datetime, now: datetime) -> int:
        """Do what came due on the timer wheel; periodic duties schedule their next turn."""
        if kind == RETRY:
            return self._wake_retry(key, due)
        if kind == BREAKER:
            return self._wake_breaker(key)
        if kind == EXPIRY:
            return self.sync.expire(key, now)
        if kind == DEADLINE:
            self._deadline_missed(key, due, now)
            return 0
        if kind == DIGEST:
            self._send_due_digests(now)
            return 0
        self.wheel.schedule(now + timedelta(seconds=PERIODIC_SECONDS[kind]), kind)
        if kind == HEARTBEAT:
            self.batch.run_state = "running"  # also refreshes the run's updated_at
            return 0
        if kind == SETTINGS:
            self.sync.settings()
            return 0
        if kind == ALERTS:
            self.batch.events.extend(self.alerts.poll(now))
            return 0
        if kind == DURING:
            self._check_running(now)
            return 0
        if kind == INTERVENTIONS:
            return self.sync.interventions(now)
        if kind == BLOCKED:
            return self.sync.blocked()
        return self.sync.added_tasks()

    def use_engine(self, engine: Engine) -> None:
        """Hold a new Engine (rules, switches or baselines changed): the loop's parts use it."""
        self.engine = engine
        self.attempt_runner.engine = engine
        self.admission.engine = engine

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        plan: Plan,
        store: Store,
        *,
        run_id: str | None = None,
        engine: Engine | None = None,
        **options: Any,
    ) -> Orchestrator:
        """Store a new run of `plan` (all tasks pending) and return its orchestrator."""
        engine = engine or build_engine(plan)
        open_isolation(plan, "check")  # a plan asking for worktrees without git: before storing
        now = utcnow()
        with collection_paused():  # tens of thousands of records that all stay alive
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
        baselines = orchestrator._take_baselines()
        data = {"baselines": baselines} if baselines else {}
        orchestrator.batch.events.append(EventRecord(run.id, "run_started", None, data, now))
        orchestrator._release_initial()
        return orchestrator

    def _take_baselines(self) -> dict[str, dict[str, Any]]:
        """What the validators with a baseline (e.g. the test suite) say before any task ran."""
        refs = [ref for spec in self.plan.spec.tasks for ref in self.plan.validators(spec)]
        options = baseline_options(refs)
        wanted = [
            n for n in options if getattr(self.engine.plugins.validators.get(n), "baseline", None)
        ]
        if not wanted:
            return {}
        self.observer.message(
            f"measuring the test baseline ({', '.join(wanted)}) before any task runs..."
        )
        started = time.monotonic()
        beat = partial(self.store.commit, self.run.id, Batch(run_state="running"))
        with beating(beat, HEARTBEAT_SECONDS):
            taken = take_baselines(
                self.engine.plugins.validators,
                wanted,
                self.run.id,
                Path(self.plan.workdir),
                DEFAULT_VALIDATOR_TIMEOUT_SECONDS,
                options,
                plan_environment(self.plan),
            )
        seconds = time.monotonic() - started
        self.observer.message(f"baseline measured in {seconds:.1f}s: {baseline_summary(taken)}")
        self.use_engine(self.engine.with_baselines(taken))
        return taken

    @classmethod
    def resume(
        cls,
        store: Store,
        run_id: str,
        *,
        engine: Engine | None = None,
        force: bool = False,
        **options: Any,
    ) -> Orchestrator:
        """Continue a stored run: interrupted attempts are retried, everything else goes on.

        Refuses a run that another engine is still working on (its heartbeat is fresh), unless
        `force`: two engines on one run would run its tasks twice.
        """
        owner = new_owner_token()
        stale_before = utcnow() - timedelta(seconds=STALE_RUN_SECONDS)
        # An engine of this host whose process is gone holds the run no longer: no need to wait.
        holder = store.get_run(run_id)
        gone = holder.owner if holder.owner and owner_alive(holder) is False else None
        # One atomic claim, not "is anyone there?" then "go": two resumes must not both get in.
        taken = store.claim_run(
            run_id, owner, stale_before=stale_before, force=force, holder_gone=gone
        )
        if not taken:
            run = store.get_run(run_id)
            age = (utcnow() - run.updated_at).total_seconds()
            raise OrchestrationError(
                f"run '{run_id}' is being worked on by another engine ({engine_label(run)}, "
                f"last heartbeat {age:.0f}s ago). If that engine is gone (killed), wait "
                f"{max(1, STALE_RUN_SECONDS - age):.0f}s or resume with --force."
            )
        me = this_engine()
        store.record_engine(run_id, me.host, me.pid, me.started)
        try:
            return cls._resume_claimed(store, store.get_run(run_id), engine, **options)
        except BaseException:
            store.release_run(run_id, owner)
            raise

    @classmethod
    def _resume_claimed(
        cls, store: Store, run: RunRecord, engine: Engine | None, **options: Any
    ) -> Orchestrator:
        # Reading a run back builds hundreds of thousands of objects that all stay alive: the
        # cyclic collector would rescan them again and again (a third of a 10,000-task resume).
        with collection_paused():
            plan = plan_from_stored(run)
            engine = engine or build_engine(plan)
            # Interventions asked for while no engine ran are applied before the tasks are read.
            apply_requested(store, run.id)
            orchestrator = cls(store, run, plan, engine, **options)
            orchestrator._check_unfinished_kinds()
            orchestrator._recover()
        return orchestrator

    def _check_unfinished_kinds(self) -> None:
        """Tasks added while the run worked (`orch task add`, spawns) are not in its plan: a kind
        of work no loaded plugin provides any more is refused here, before anything moves."""
        unfinished = (t.spec for t in self.tasks.values() if t.state not in FINAL_STATES)
        check_action_kinds(unfinished, self.engine.plugins, self.plan.path)

    def _load_history(self) -> None:
        resolved = self.store.breakpoints(self.run.id, state="resolved")
        reruns = False
        # The run-wide figures rules read continue where the last engine left them.
        for passed in self.store.gate_results(self.run.id):
            failed = not passed
            self.run_failures += failed
            self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
        for event in self.store.events(self.run.id):
            self._note_checkpoint_owed(event)
            reruns = reruns or (
                event.kind == "intervention" and event.data.get("action") == "rerun"
            )
            if event.kind == "run_started" and event.data.get("baselines"):
                self.use_engine(self.engine.with_baselines(event.data["baselines"]))
            if event.kind == "step" and event.task_id:
                seconds = event.data.get("duration_seconds") or 0
                self.task_seconds[event.task_id] += float(seconds)
                self.budget.spend(event.data.get("result") or {})
                self.attempt_runner.remember_session(event.task_id, event.data.get("result"))
                self.attempt_history[event.task_id].append(signature(event.data))
                self._learn_from_step(event.task_id, event.data)
        self.budget.attempts = sum(task.attempts for task in self.tasks.values())
        # An approval given before a task was run again (rerun, rollback) does not hold for it.
        fresh = fresh_starts(self.store, self.run.id) if reruns else {}
        for bp in resolved:
            if bp.task_id not in fresh or (bp.resolved_at or fresh[bp.task_id]) > fresh[bp.task_id]:
                self.admission.remember_approval(bp)
        for task in self.tasks.values():
            if task.state in FINAL_STATES:
                self.scheduler.record_final(task.task_id, task.state, task.outcome)
        for bp in self.store.breakpoints(self.run.id, state="open"):
            self._watch_open_breakpoint(bp)
        self.sync.settings()

    def _note_checkpoint_owed(self, event: EventRecord) -> None:
        """A step a human accepted while no engine ran is owed its checkpoint (taken on resume)."""
        if event.task_id is None:
            return
        if event.kind == "breakpoint_resolved" and event.data.get("resolution") == "approve":
            self.checkpoints_owed.add(event.task_id)
        elif event.kind in ("checkpoint", "checkpoint_failed", "step"):
            self.checkpoints_owed.discard(event.task_id)

    def _learn_from_step(self, task_id: str, step: Mapping[str, Any]) -> None:
        task = self.tasks.get(task_id)
        result = step.get("result")
        if task is None or (isinstance(result, Mapping) and result.get("dry_run") is True):
            return
        confidence = step.get("confidence", task.spec.confidence)
        usable = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        self.outcomes.update(
            task.spec.action.kind,
            task.spec.tags,
            bool(step.get("gate_passed")),
            float(confidence) if usable else None,
        )

    def _watch_open_breakpoint(self, bp: BreakpointRecord) -> None:
        if bp.scope == "run":
            self.run_holds.add(bp.id)
        if bp.expires_at is not None:
            self.wheel.schedule(bp.expires_at, EXPIRY, bp.id)

    def _release_initial(self) -> None:
        for task in self.tasks.values():
            if task.state == TaskState.PENDING:
                self._evaluate_pending(task.task_id)
        self.flush()

    def _recover(self) -> None:
        now = self.clock()
        # At-least-once: the attempts under way when the engine died run again, after their
        # processes, if they outlived the engine, are ended.
        running = {t.task_id for t in self.tasks.values() if t.state == TaskState.RUNNING}
        for task_id in sorted(self.attempts.end_orphans(self.run.id, running)):
            self.observer.message(f"ended the orphaned attempt of {task_id}")
        for task in self.tasks.values():
            if task.state == TaskState.RUNNING:
                self._move(task, "retry", "interrupted: the engine stopped during this attempt")
                self._update(task, next_attempt_at=now)
            elif task.state == TaskState.READY:
                self.integration.restart_after_conflict(task)  # resolved by a human while none ran
                self._queue(task)
            elif task.state == TaskState.PENDING:
                self._evaluate_pending(task.task_id)
            elif task.state == TaskState.COMPLETED and task.outcome == "approved":
                self.integration.merge_approved(task)
        for task_id in sorted(self.checkpoints_owed):
            owed = self.tasks.get(task_id)
            if owed and owed.state == TaskState.COMPLETED and owed.outcome == "approved":
                self.integration.checkpoint(owed)
        self.batch.events.append(EventRecord(self.run.id, "run_resumed", None, {}, now))
        self.batch.run_state = "running"
        self.flush()
        for task in self.tasks.values():
            if task.state != TaskState.FAILED:
                continue
            try:  # a failure the engine had no time to capture before it died
                capture_dead_letter(self.store, self.run.id, task.task_id)
            except OrchestrationError as error:
                logger.warning("dead letter for %s not captured: %s", task.task_id, error)

    # ---- recording changes ----------------------------------------------------------------

    def _move(
        self, task: TaskRecord, trigger: str, reason: str = "", actor: str | None = None
    ) -> None:
        move = fire(
            TaskHandle(task.task_id, task.state), trigger, reason=reason, actor=actor or self.actor
        )
        self.counts[move.source] -= 1
        self.counts[move.dest] += 1
        task.state = move.dest
        self.batch.moves.append(move)
        if move.dest in FINAL_STATES:
            self._on_final(task)

    def _update(self, task: TaskRecord, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(task, name, value)
        self.batch.task_updates.append((task.task_id, fields))
        wake_at = task.next_attempt_at
        if "next_attempt_at" in fields and wake_at is not None and task.state == "retrying":
            self.wheel.schedule(wake_at, RETRY, task.task_id)

    def flush(self) -> None:
        """Commit everything recorded since the last flush in one transaction, then announce it."""
        for note in self.engine.plugins.take_notes():  # plugin calls that overran or were skipped
            event = EventRecord(self.run.id, note["kind"], None, note, self.clock())
            self.batch.events.append(event)
        if not self.batch:
            return
        batch, self.batch = self.batch, Batch()
        try:
            ids = self.store.commit(self.run.id, batch, owner=self.run.owner)
        except BaseException:
            # Nothing of the batch is stored: stop every action (their tasks stay `running` in
            # the store and are retried on resume) and announce nothing.
            self.stop_event.set()
            self.kill_event.set()
            self.pending_breakpoints, self.pending_notifications = [], []
            raise
        self._capture_failures(batch)
        for move in batch.moves:
            self.engine.plugins.emit(
                "on_transition",
                run_id=self.run.id,
                task_id=move.task_id,
                source=move.source,
                dest=move.dest,
                trigger=move.trigger,
            )
            self.observer.task_changed(self.tasks[move.task_id], move.dest, move.reason)
        for bp_id, bp in zip(ids, self.pending_breakpoints, strict=False):
            bp.id = bp_id
            if bp.state == "open":
                self._watch_open_breakpoint(bp)
            self._announce_breakpoint(bp)
        self.pending_breakpoints = []
        for notification in self.pending_notifications:  # sent in the background, in order
            self.engine.plugins.notify_later(notification)
        self.pending_notifications = []

    def _capture_failures(self, batch: Batch) -> None:
        """Tasks that just failed for good go to the dead letter queue with their story."""
        for move in batch.moves:
            if move.dest != TaskState.FAILED:
                continue
            try:
                capture_dead_letter(self.store, self.run.id, move.task_id)
            except OrchestrationError as error:  # the queue must never stop a run
                logger.warning("dead letter for %s not captured: %s", move.task_id, error)

    def _announce_breakpoint(self, bp: BreakpointRecord) -> None:
        self.engine.plugins.emit(
            "on_breakpoint_raised",
            run_id=bp.run_id,
            task_id=bp.task_id,
            rule=bp.rule,
            message=bp.message,
        )
        if bp.state == "open":
            self.observer.breakpoint_raised(bp)
            if self.on_breakpoint is not None:
                self.on_breakpoint(bp)

    # ---- dependencies -----------------------------------------------------------------------

    def _on_final(self, task: TaskRecord) -> None:
        if task.state == TaskState.COMPLETED and task.outcome == "approved":
            self.integration.merge_approved(task)
        if task.state == TaskState.COMPLETED and task.outcome in ("succeeded", "approved"):
            self.integration.checkpoint(task)
        self.scheduler.record_final(task.task_id, task.state, task.outcome)
        self.scheduler.discard(task.task_id)
        for child_id in self.scheduler.dependents(task.task_id):
            if self.tasks[child_id].state == TaskState.PENDING:
                self._evaluate_pending(child_id, upstream=task.task_id)

    # ---- isolated work trees -----------------------------------------------------------------

    def _evaluate_pending(self, task_id: str, upstream: str | None = None) -> None:
        task = self.tasks[task_id]
        verdict = self.scheduler.verdict(task_id)
        if verdict.action == "release":
            self._move(
                task, "release", "dependencies met" if task.depends_on else "no dependencies"
            )
            self._queue(task)
        elif verdict.action == "cancel":
            cause = f"{verdict.reason}: {upstream}" if upstream else verdict.reason
            outcome = "not_needed" if verdict.reason in NOT_NEEDED_REASONS else "upstream_failed"
            self._update(task, outcome=outcome)
            self._move(task, "cancel", cause)

    # ---- one cycle --------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """One cycle: human answers, due retries, finished and new attempts. Returns work done."""
        now = now or self.clock()
        work = 0
        for due, kind, key in self.wheel.pop_due(now):
            work += self._wake(kind, key, due, now)
        work += self._collect_finished(now)
        work += self.fleet.tick(now)
        if not self.stop_event.is_set():
            work += self._start_ready(now)
        self.flush()
        return work

    # ---- breakpoints that expire, hold the run, or are sent as digests ---------------------

    def _run_held(self) -> bool:
        """An open breakpoint with `scope: run` (stored, or raised and not yet committed)."""
        return bool(self.run_holds) or any(
            bp.scope == "run" and bp.state == "open" for bp in self.pending_breakpoints
        )

    # ---- interventions and circuit breakers ----------------------------------------------------

    def _rebuild_scheduler(self) -> None:
        """Finished tasks came back: the dependency counters start again from the tasks."""
        running = set(self.scheduler.running)
        self.scheduler = self._new_scheduler()
        for task_id in running:
            self.scheduler.started(task_id)
        for task in self.tasks.values():
            if task.state in FINAL_STATES:
                self.scheduler.record_final(task.task_id, task.state, task.outcome)
            elif task.state == TaskState.READY:
                self._queue(task)

    def _record_breaker(self, task_id: str, outcome: ActionOutcome | None, now: datetime) -> None:
        update = self.admission.breaker_outcome(task_id, outcome, now)
        if update is not None:
            self.batch.breaker_updates.append(update)

    def _event(self, kind: str, task_id: str | None, data: dict[str, Any], now: datetime) -> None:
        """Record an event in the batch the next flush commits."""
        self.batch.events.append(EventRecord(self.run.id, kind, task_id, data, now))

    def _send_due_digests(self, now: datetime, *, everything: bool = False) -> None:
        if len(self.digests):
            self.pending_notifications.extend(self.digests.due(now, everything=everything))

    def _wake_breaker(self, task_id: str) -> int:
        task = self.tasks[task_id]
        if task.state != TaskState.READY:
            return 0
        self._queue(task)
        return 1

    def _wake_retry(self, task_id: str, when: datetime) -> int:
        task = self.tasks[task_id]
        moved_on = task.next_attempt_at is not None and task.next_attempt_at != when
        if task.state != TaskState.RETRYING or moved_on:
            return 0  # a stale entry: the task moved on, or got a new retry time
        self._move(task, "wake", "retry time reached")
        self._update(task, next_attempt_at=None)
        self._queue(task)
        return 1

    def _deadline_missed(self, task_id: str, deadline: datetime, now: datetime) -> None:
        task = self.tasks[task_id]
        if task.state not in FINAL_STATES:
            data = {"deadline": deadline.isoformat(), "state": task.state}
            self.batch.events.append(
                EventRecord(self.run.id, "deadline_missed", task_id, data, now)
            )
            self.observer.message(f"deadline missed: {task_id} (due {deadline:%Y-%m-%d %H:%M}Z)")

    def _queue(self, task: TaskRecord) -> None:
        """Hand a ready task to the scheduler; its failed attempts lower its priority."""
        self.scheduler.push_ready(task.task_id, self.clock(), failed_attempts=task.attempts)

    def _figures(self, *, starting: bool = False) -> RunFigures:
        """The run-wide figures; `starting`: as seen by an attempt about to start."""
        elapsed = (self.clock() - self.run.created_at).total_seconds()
        return RunFigures(
            consecutive_failures=self.consecutive_failures,
            run_failures=self.run_failures,
            completed_count=self.counts[TaskState.COMPLETED],
            total_count=len(self.tasks),
            run_elapsed_seconds=elapsed,
            run_attempts=self.budget.attempts + (1 if starting else 0),
            run_cost=self.budget.cost,
            run_tokens=self.budget.tokens,
            over_budget=self.budget.over(elapsed, starting=starting),
        )

    def _start_ready(self, now: datetime) -> int:
        requests: list[tuple[ActionRequest, dict[str, Any]]] = []
        if self.human_paused or self.run_cancelled:
            return 0
        if self._run_held():
            if not self._held_noted and self.scheduler.queued_count:
                self._held_noted = True
                held = ", ".join(str(i) for i in sorted(self.run_holds))
                self.observer.message(f"no new work starts: breakpoint {held} holds the run")
            return 0
        queued = self.scheduler.queued_count and self.scheduler.has_capacity()
        if queued and self.admission.machine_busy(now):
            return 0
        while self.scheduler.has_capacity():
            task_id = self.scheduler.next_ready(now)
            if task_id is None:
                break
            task = self.tasks[task_id]
            if task.state != TaskState.READY or not self.admission.breaker_allows(task, now):
                continue
            if not self.fleet.admit(task, now):
                continue
            prepared = self._prepare_attempt(task, now)
            if prepared is not None:
                requests.append(prepared)
            elif self._run_held():
                break  # a run-wide pause was just raised: nothing more starts
        self._starting = len(requests)  # counted as running from the moment they are stored
        self.flush()  # the `start` moves are stored before any action begins
        inline = []
        for request, context in requests:
            self.observer.task_started(self.tasks[request.task.id])
            if self._runs_inline(request):
                inline.append((request, context))
                continue
            stop = StopSignal(self.kill_event)
            self.running_attempts[request.task.id] = RunningAttempt(context, time.monotonic(), stop)
            future = self.executor.submit(self.attempt_runner.execute, request, context)
            self.futures[future] = request.task.id
            self._starting -= 1
        self.attempt_runner.execute_inline(inline, self.inline_done)
        self._starting = 0
        return len(requests)

    def _runs_inline(self, request: ActionRequest) -> bool:
        return request.inline

    def _prepare_attempt(
        self, task: TaskRecord, now: datetime
    ) -> tuple[ActionRequest, dict[str, Any]] | None:
        attempt = task.attempts + 1
        policy = self.plan.retry_policy(task.spec)
        context = before_context(
            task,
            attempt,
            policy.max_attempts,
            self._figures(starting=True),
            self.task_seconds[task.task_id],
            now,
            self.plan.spec.signals,
            self.plan.when_exhausted(task.spec),
        )
        context.update(repeat_figures(self.attempt_history[task.task_id]))
        spec = task.spec
        context.update(
            self.outcomes.learned(spec.action.kind, spec.tags, context["confidence"]).context()
        )
        gate = self.admission.risk_gate(task, context)
        if gate is not None:
            self._block(task, gate, context, now)
            return None
        if self.dry_run and task.spec.risk == "high":
            check = BreakpointCheck()  # recorded, not run: nothing to stop before
        else:
            check = self.engine.breakpoints.check("before", context)
        self._record_rule_errors(task, check, now)
        check = self.admission.unapproved(task.task_id, check, context)
        self._record_notices(task, check, context, "before", now)
        pause = check.first("pause")
        if pause is not None:
            self._block(task, Raised.of(pause, "before"), context, now)
            return None
        self._move(task, "start", f"attempt {attempt}")
        self._update(task, attempts=attempt)
        self.budget.attempts += 1
        self.scheduler.started(task.task_id)
        return self.fleet.assign(self.attempt_runner.request(task, attempt), now), context

    # ---- concluding an attempt, back in the loop thread --------------------------------------

    def _check_running(self, now: datetime) -> None:
        """Evaluate `at: during` rules on the attempts under way; stop those a rule stops."""
        if not self.running_attempts or not self.engine.rules.breakpoints_at("during"):
            return
        figures = self._figures()
        for task_id, running in list(self.running_attempts.items()):
            if running.stop.is_set() or task_id in self.stopped_by_rule:
                continue
            task = self.tasks[task_id]
            context = dict(running.context)
            seconds = time.monotonic() - running.started
            context.update(
                duration_seconds=round(seconds, 3),
                task_elapsed_seconds=round(self.task_seconds[task_id] + seconds, 3),
                run_elapsed_seconds=round(figures.run_elapsed_seconds, 3),
                completed_count=figures.completed_count,
                run_cost=round(figures.run_cost, 6),
                run_tokens=figures.run_tokens,
                over_budget=figures.over_budget,
            )
            check = self.engine.breakpoints.check("during", context)
            self._record_rule_errors(task, check, now)
            self._record_notices(task, check, context, "during", now)
            hit = check.first("pause") or check.first("auto")
            if hit is not None:
                self.stopped_by_rule[task_id] = Raised.of(hit, "during")
                self.observer.message(f"{task_id}: {hit.message}; stopping the attempt")
                running.stop.set()

    def _collect_finished(self, now: datetime) -> int:
        inline, self.inline_done = self.inline_done, []
        for task_id, inline_result in inline:
            self.scheduler.stopped(task_id)
            if isinstance(inline_result, Exception):
                self._conclude_crash(self.tasks[task_id], inline_result, now)
            else:
                self._conclude(self.tasks[task_id], inline_result, now)
        done = [f for f in self.futures if f.done()]
        for future in done:
            task_id = self.futures.pop(future)
            self.scheduler.stopped(task_id)
            try:
                result = future.result()
            except BaseException as error:  # an engine bug in the worker: never lose the task
                logger.exception("attempt of %s crashed in the engine", task_id)
                self._record_breaker(task_id, None, now)
                self._conclude_crash(self.tasks[task_id], error, now)
                continue
            if task_id in self._human_stops:
                self._conclude_human_stop(self.tasks[task_id], result, now)
                continue
            self._conclude(self.tasks[task_id], result, now)
        return len(done) + len(inline)

    def _conclude_human_stop(self, task: TaskRecord, result: AttemptResult, now: datetime) -> None:
        """A human paused or cancelled the task while its attempt ran: do as they asked."""
        stop = self._human_stops.pop(task.task_id)
        self.running_attempts.pop(task.task_id, None)
        self.stopped_by_rule.pop(task.task_id, None)
        self._record_breaker(task.task_id, result.outcome, now)
        self.task_seconds[task.task_id] += result.outcome.duration_seconds
        self._move(task, stop.trigger, stop.reason, actor=stop.actor)
        if stop.trigger == "cancel":
            self._update(task, outcome="cancelled")
        update = stop_concluded(stop, now)
        if update is not None:
            self.batch.intervention_updates.append(update)

    def _conclude_crash(self, task: TaskRecord, error: BaseException, now: datetime) -> None:
        policy = self.plan.retry_policy(task.spec)
        effects = after_crash(task.task_id, task.attempts, policy, error, now)
        self._apply_effects(task, effects, None, {}, now)

    def _conclude(self, task: TaskRecord, result: AttemptResult, now: datetime) -> None:
        self.running_attempts.pop(task.task_id, None)
        self._record_breaker(task.task_id, result.outcome, now)
        stopped_by = self.stopped_by_rule.pop(task.task_id, None)
        if result.outcome.interrupted and stopped_by is not None:
            self._conclude_stopped(task, result, stopped_by, now)
            return
        if result.outcome.interrupted:
            self._apply_effects(task, after_interrupt(now), result, {}, now)
            return
        self.task_seconds[task.task_id] += result.outcome.duration_seconds
        attempt_ok = result.report.gate_passed
        self.consecutive_failures = 0 if attempt_ok else self.consecutive_failures + 1
        self.run_failures += 0 if attempt_ok else 1
        self.budget.spend(result.outcome.result)
        history = self.attempt_history[task.task_id]
        history.append(signature(result.context))
        figures = self._figures()
        context = {
            **result.context,
            **repeat_figures(history),
            "consecutive_failures": figures.consecutive_failures,
            "run_failures": figures.run_failures,
            "completed_count": figures.completed_count,
            "run_elapsed_seconds": round(figures.run_elapsed_seconds, 3),
            "run_attempts": figures.run_attempts,
            "run_cost": round(figures.run_cost, 6),
            "run_tokens": figures.run_tokens,
            "over_budget": figures.over_budget,
        }
        spec = task.spec
        previous = self._previous_quality(task.task_id, result.attempt)
        comparison = compare_attempts(result.report, previous)
        context.update(comparison.context())
        context["stage_conflicts"] = result.report.stage_conflicts
        context.update(
            self.outcomes.learned(spec.action.kind, spec.tags, context["confidence"]).context()
        )
        if result.outcome.result.get("dry_run") is not True:
            self.outcomes.update(
                spec.action.kind, spec.tags, result.report.gate_passed, context["confidence"]
            )
        self.previous_quality[task.task_id] = result.report
        self.comparison_notes[task.task_id] = comparison.feedback()
        frozen = frozen_or_plain(context)  # once for the decision rules and the breakpoints
        decision = self.engine.decisions.decide(frozen)
        if result.report.gate_failures:
            gate = "; ".join(result.report.gate_failures)
            decision = replace(decision, reason=f"{decision.reason} ({gate})")
        context["decision"] = decision.action
        self._record_attempt(task, result, decision, context, now)
        self.fleet.concluded(task, result, now)
        if result.outcome.result.get("dry_run") is True and self.dry_run:
            check = BreakpointCheck()  # nothing ran, so there is nothing to review
        else:
            check = self.engine.breakpoints.check("after", frozen_or_plain(context, frozen))
        self._record_rule_errors(task, check, now)
        self._record_notices(task, check, context, "after", now)
        self._apply(task, result, decision, check, context, now)

    def _previous_quality(self, task_id: str, attempt: int) -> Any:
        """The task's last assessed attempt: from memory, or from the store after a resume."""
        if attempt <= 1:
            return None
        if task_id not in self.previous_quality:
            stored = self.store.quality(self.run.id, task_id)
            self.previous_quality[task_id] = stored[-1] if stored else None
        return self.previous_quality[task_id]

    def _conclude_stopped(
        self, task: TaskRecord, result: AttemptResult, raised: Raised, now: datetime
    ) -> None:
        """An `at: during` rule stopped the attempt: retry it (auto) or ask a human (pause)."""
        self.task_seconds[task.task_id] += result.outcome.duration_seconds
        data = {
            "rule": raised.rule,
            "message": raised.message,
            "attempt": result.attempt,
            "duration_seconds": round(result.outcome.duration_seconds, 3),
            "output_tail": result.outcome.output_tail,
        }
        self.batch.events.append(
            EventRecord(self.run.id, "attempt_stopped", task.task_id, data, now)
        )
        rule = self.engine.rules_by_name.get(raised.rule)
        policy = self.plan.retry_policy(task.spec)
        context = {**result.context, "duration_seconds": data["duration_seconds"]}
        effects = after_stop(raised, rule, task.attempts, policy, context, now)
        self._apply_effects(task, effects, result, context, now)

    def _record_attempt(
        self,
        task: TaskRecord,
        result: AttemptResult,
        decision: Decision,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        report = result.report
        self.batch.quality.append(
            QualityRecord(
                self.run.id,
                task.task_id,
                result.attempt,
                report.score,
                report.gate_passed,
                dict(report.stage_scores),
                [c.as_dict() for c in report.checks],
                now,
            )
        )
        self.batch.decisions.append(
            DecisionRecord(
                self.run.id,
                task.task_id,
                result.attempt,
                decision.action,
                decision.rule,
                decision.reason,
                _stored_figures(decision),
                now,
            )
        )
        step = {**jsonable(context), "diff_stat": result.changes.diff_stat, "at": "after"}
        self.batch.events.append(EventRecord(self.run.id, "step", task.task_id, step, now))
        self.engine.plugins.emit(
            "on_decision",
            run_id=self.run.id,
            task_id=task.task_id,
            decision=decision.action,
            reason=decision.reason,
        )

    def _apply(
        self,
        task: TaskRecord,
        result: AttemptResult,
        decision: Decision,
        check: BreakpointCheck,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        note = self.comparison_notes.pop(task.task_id, "")
        feedback = "\n".join(part for part in (result.report.feedback, note) if part)
        policy = self.plan.retry_policy(task.spec)
        effects = after_decision(
            task.attempts, policy, result.outcome, decision, check, feedback, now
        )
        self._apply_effects(task, effects, result, context, now)

    def _apply_effects(
        self,
        task: TaskRecord,
        effects: Effects,
        result: AttemptResult | None,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        """The applier: record what a conclusion (a value, see `conclusion`) asks for."""
        if (
            effects.accept
            and result is not None
            and not self.integration.merged(task, result, context, now)
        ):
            return  # a merge conflict: the task is blocked at a `merge_conflict` breakpoint
        if effects.update:
            self._update(task, **effects.update)
        if effects.block is not None:
            self._block(task, effects.block, effects.context or context, now)
            return
        assert effects.trigger is not None
        self._move(task, effects.trigger, effects.reason)
        if effects.then_update:
            self._update(task, **effects.then_update)
        if effects.grow is not None:
            self.growth.grow(task, effects.grow, context, now)

    # ---- a plan that grows while it runs ------------------------------------------------------

    def _block(
        self, task: TaskRecord, raised: Raised, context: dict[str, Any], now: datetime
    ) -> None:
        self._move(task, "block", f"breakpoint {raised.rule}: {raised.message}")
        self._add_breakpoint(task, raised, context, now, state="open")

    def _add_breakpoint(
        self,
        task: TaskRecord,
        raised: Raised,
        context: dict[str, Any],
        now: datetime,
        *,
        state: str,
    ) -> None:
        resolved = state != "open"
        bp = BreakpointRecord(
            id=0,
            run_id=self.run.id,
            task_id=task.task_id,
            rule=raised.rule,
            at=raised.at,
            severity=raised.severity,
            action=raised.action,
            message=raised.message,
            state=state,
            created_at=now,
            context=jsonable(context),
            resolution=raised.action if resolved else None,
            resolved_by=self.actor if resolved else None,
            resolved_at=now if resolved else None,
            scope=raised.scope if not resolved else "task",
            expires_at=(
                now + timedelta(seconds=raised.expires_after)
                if raised.expires_after is not None and not resolved
                else None
            ),
            default_resolution=raised.default if not resolved else None,
        )
        self.batch.breakpoints.append(bp)
        self.pending_breakpoints.append(bp)
        notification = Notification(
            "breakpoint_raised",
            self.run.id,
            f"{raised.rule} ({raised.severity})",
            raised.message,
            raised.severity,
            task.task_id,
            {"rule": raised.rule, "at": raised.at, "action": raised.action, "scope": bp.scope},
        )
        if raised.digest_seconds:
            self.digests.add(raised.rule, notification, raised.digest_seconds, now)
            self.wheel.schedule(now + timedelta(seconds=raised.digest_seconds), DIGEST)
        else:
            self.pending_notifications.append(notification)

    def _record_notices(
        self,
        task: TaskRecord,
        check: BreakpointCheck,
        context: dict[str, Any],
        at: str,
        now: datetime,
    ) -> None:
        for hit in check.of_action("notify"):
            self._add_breakpoint(task, Raised.of(hit, at), context, now, state="resolved")
        for hit in check.of_action("auto"):
            self._add_breakpoint(task, Raised.of(hit, at), context, now, state="resolved")

    def _record_rule_errors(self, task: TaskRecord, check: BreakpointCheck, now: datetime) -> None:
        for error in check.errors:
            self.observer.message(f"warning: {error}")
            self.batch.events.append(
                EventRecord(self.run.id, "rule_error", task.task_id, {"error": error}, now)
            )

    # ---- running to the end -----------------------------------------------------------------

    def outcome(self) -> str | None:
        """The run's state if nothing more can happen without a human or time, else None."""
        if self.futures or self.inline_done:
            return None
        if self.run_cancelled:
            return "cancelled"
        if self.human_paused:
            return "paused"  # a human paused the run: nothing starts until `orch runs resume`
        if self.run_holds:
            return "paused"  # a breakpoint holds the whole run: nothing starts until it is answered
        if self.scheduler.queued_count:
            return None
        if self.counts[TaskState.RETRYING] or self.counts[TaskState.READY] > self.fleet.holding():
            return None
        if self.counts[TaskState.BLOCKED]:
            return "paused"
        if self.counts[TaskState.PENDING]:
            return "stalled"
        if self.counts[TaskState.FAILED] or any(
            t.state == TaskState.CANCELLED and t.outcome != "not_needed"
            for t in self.tasks.values()
        ):
            return "failed"
        return "completed"

    def _idle_wait(self) -> None:
        if self.futures:
            wait(list(self.futures), timeout=IDLE_POLL_SECONDS, return_when=FIRST_COMPLETED)
            return
        delay = IDLE_POLL_SECONDS
        due = self.wheel.next_due()
        if due is not None:
            delay = (due - self.clock()).total_seconds()
        time.sleep(min(max(delay, 0.01), MAX_IDLE_SLEEP_SECONDS))

    def run_until_stopped(self) -> RunSummary:
        """Repeat `tick` until the run is done, waits only for a human, or is stopped.

        After `stop(grace)` no new attempt starts; running actions get `grace` seconds to end
        (their outcomes count as usual), then they are stopped and their tasks wait for a retry;
        the run ends as `stopped` (stored as paused; resume continues). A KeyboardInterrupt ends
        at once: the store keeps the last committed state, and the attempts under way are
        retried on resume.
        """
        try:
            while True:
                work = self.tick()
                if self.stop_event.is_set():
                    if not self.futures and not self.inline_done:
                        return self._finish("stopped")
                    if self._kill_at is not None and time.monotonic() >= self._kill_at:
                        self.kill_event.set()
                    self._idle_wait()
                    continue
                state = self.outcome()
                if state == "paused" and self.sync.blocked():
                    continue  # a human answered in the meantime
                if state == "paused" and self.wheel.has(EXPIRY):
                    self._idle_wait()  # a default resolution applies soon: wait for it
                    continue
                if state is not None and self.sync.added_tasks():
                    continue  # tasks were added since the last look: the run is not over
                if state is not None:
                    return self._finish(state)
                if not work:
                    self._idle_wait()
        except BaseException:
            self.stop_event.set()
            self.kill_event.set()  # the workers stop their actions instead of finishing them
            raise
        finally:
            self.executor.shutdown(wait=True)
            self.attempt_runner.stop_watches()

    def stop(self, grace_seconds: float = 0.0) -> None:
        """Start no new work; stop the actions under way after `grace_seconds`.

        Safe to call from a signal handler. A second call can shorten the grace, never extend it.
        """
        kill_at = time.monotonic() + max(0.0, grace_seconds)
        self._kill_at = kill_at if self._kill_at is None else min(self._kill_at, kill_at)
        self.stop_event.set()
        if grace_seconds <= 0:
            self.kill_event.set()

    @property
    def running_count(self) -> int:
        # a signal may arrive between storing `running` and submitting the action
        return len(self.futures) + self._starting

    def _finish(self, state: str) -> RunSummary:
        now = self.clock()
        stuck = (
            [t.task_id for t in self.tasks.values() if t.state == TaskState.PENDING]
            if state == "stalled"
            else []
        )
        stored_state = "paused" if state in ("paused", "stalled", "stopped") else state
        self._send_due_digests(now, everything=True)
        self.batch.run_state = stored_state
        self.integration.announce(now)
        self.batch.events.append(
            EventRecord(self.run.id, "run_finished", None, {"state": state, "stuck": stuck}, now)
        )
        self.flush()
        last_alerts = self.alerts.poll(now)  # e.g. the dead letters just captured
        if stored_state != "paused":
            self.attempt_runner.discard_indexes()
        counts = {s.value: self.counts[s.value] for s in TaskState if self.counts[s.value]}
        self.engine.plugins.emit("on_run_finished", run_id=self.run.id, state=state, counts=counts)
        shown = ", ".join(f"{n} {name}" for name, n in counts.items())
        self.engine.plugins.notify_later(
            Notification(
                "run_finished",
                self.run.id,
                f"run {state}",
                f"{self.run.plan_name}: {shown}",
                "high" if state in ("failed", "stalled") else "low",
                None,
                {"state": state, "counts": counts},
            )
        )
        # Before returning (the process may exit): what is queued is sent, waiting at most one
        # notifier timeout.
        self.engine.plugins.drain_notifications()
        # The run was released with its final state: what the guard noted of those last plugin
        # calls is stored without a claim (only events; no task moves after this).
        self.run.owner = None
        self.batch.events.extend(last_alerts)
        self.flush()
        trace_finished_run(self.store, self.run.id, stored_state)
        open_bps = self.store.breakpoints(self.run.id, state="open") if state == "paused" else []
        return RunSummary(self.run.id, state, counts, open_bps, stuck, self._waiting())

    def _waiting(self) -> dict[str, list[str]]:
        """What each pending task waits for: its dependencies that have not finished."""
        waiting = {}
        for task in self.tasks.values():
            if task.state != TaskState.PENDING:
                continue
            waiting[task.task_id] = [
                f"{dep} ({self.tasks[dep].state})"
                for dep in task.depends_on
                if dep in self.tasks and self.tasks[dep].state not in FINAL_STATES
            ]
        return waiting


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])


def _stored_figures(decision: Decision) -> dict[str, Any]:
    """`jsonable(decision.stored_figures())` without walking the explanation: it is built as
    plain JSON data already (Explanation.as_dict), and it is most of what is stored."""
    stored: dict[str, Any] = jsonable(dict(decision.figures))
    if decision.explanation is not None:
        stored[EXPLANATION_KEY] = decision.explanation.as_dict()
    return stored
