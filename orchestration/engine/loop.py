"""The engine loop: a conductor of small parts; each tick wakes what is due, concludes, starts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import BreakpointRecord, Plan, RunRecord, TaskRecord
from orchestration.engine import ending, opening
from orchestration.engine.admission import Admission
from orchestration.engine.alerts import EngineAlerts
from orchestration.engine.concluder import Concluder
from orchestration.engine.dispatch import Dispatch
from orchestration.engine.ending import EXIT_CODES, RunSummary
from orchestration.engine.fleet import open_fleet
from orchestration.engine.growth import Growth
from orchestration.engine.integration import Integration
from orchestration.engine.observer import Observer, SilentObserver
from orchestration.engine.opening import utcnow
from orchestration.engine.outside_sync import OutsideSync
from orchestration.engine.plan import plan_from_stored
from orchestration.engine.policy import Engine, build_engine
from orchestration.engine.run_state import RunState
from orchestration.engine.run_tally import RunTally
from orchestration.engine.scheduler import NOT_NEEDED_REASONS, TaskScheduler
from orchestration.engine.steps import RunFigures
from orchestration.engine.task_expressions import TaskExpressions
from orchestration.engine.timer_wheel import (
    EXPIRY,
    TimerWheel,
)
from orchestration.engine.wakes import Wakes
from orchestration.project.checkpoints import is_git_worktree
from orchestration.project.workspace import store_files_in
from orchestration.project.worktrees import RunWorktrees, open_isolation
from orchestration.resilience.runs import run_is_live
from orchestration.store import Store

# Re-exported: callers build an engine, read a stored plan, ask whether a run is live here.
__all__ = [
    "EXIT_CODES",
    "Observer",
    "Orchestrator",
    "RunSummary",
    "SilentObserver",
    "build_engine",
    "plan_from_stored",
    "run_is_live",
]

IDLE_POLL_SECONDS = 0.2  # how often an idle loop looks for due retries and human answers
MAX_IDLE_SLEEP_SECONDS = 1.0
DEAD_LETTER_ARCHIVE_DIR = "dead-letters"  # under .orchestration/ beside the plan


class Orchestrator:
    """Runs one run of a plan against a store. `tick(now)` does one cycle; `run()` repeats it.

    The loop owns no records itself; it conducts its parts: `state` (the one writer of run
    state), `wheel` (every wake-up), `sync` (what other processes changed), `admission`,
    `dispatch` (attempts under way), `concluder`, `integration`, `growth`, `fleet`, `alerts`.
    """

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
        self.store, self.run, self.plan, self.engine = store, run, plan, engine
        self.clock, self.dry_run = clock, dry_run
        # Every wake-up of the loop, of every kind, on one heap: a tick costs nothing while
        # none is due.
        self.wheel = TimerWheel()
        known = store.tasks(run.id) if tasks is None else tasks
        self.state = RunState(
            store,
            run,
            known,
            plugins=engine.plugins,
            wheel=self.wheel,
            observer=observer or SilentObserver(),
            actor=actor,
            clock=clock,
            on_breakpoint=on_breakpoint,
        )
        self.tasks, self.counts = self.state.tasks, self.state.counts  # read by every part
        self.scheduler = self._new_scheduler()
        self.wakes = Wakes(self)
        self.wakes.schedule_initial(clock())
        self.tally = RunTally.of(store, plan, run.id)
        self._open_parts()
        self.state.on_final = self.on_final
        self.state.on_commit_failed = self.dispatch.stop_now
        opening.load_history(self)
        self.fleet = open_fleet(self)  # agents, waves and anomalies (orchestration/engine/fleet.py)

    def _open_parts(self) -> None:
        plan, run = self.plan, self.run
        self.human_paused = False
        self.run_cancelled = False
        self.checkpoints_owed: set[str] = set()  # accepted by a human while no engine ran
        self.admission = Admission(
            plan,
            self.store,
            self.engine,
            self.wheel,
            dry_run=self.dry_run,
            record_event=self.state.event,
            message=lambda text: self.observer.message(text),  # the display set later
        )
        self.sync = OutsideSync(self)
        self.integration = Integration(self)
        self.growth = Growth(self)
        self.ignored_files = store_files_in(Path(plan.workdir), _sqlite_path(self.store.url))
        self.checkpointing = is_git_worktree(Path(plan.workdir))
        self.expressions = TaskExpressions(plan.path, self.engine.plugins)
        self.worktrees: RunWorktrees | None = open_isolation(plan, run.id)
        self.dispatch = Dispatch(self)
        self.concluder = Concluder(self)
        self.alerts = EngineAlerts(
            self.store,
            run.id,
            self.engine.plugins,
            dead_letter_days=plan.spec.retention.dead_letter_days,
            archive_dir=Path(plan.path).parent / ".orchestration" / DEAD_LETTER_ARCHIVE_DIR,
        )

    @property
    def observer(self) -> Observer:
        return self.state.observer

    @observer.setter
    def observer(self, observer: Observer) -> None:  # a display set after the run is opened
        self.state.observer = observer

    def _new_scheduler(self) -> TaskScheduler:
        concurrency = self.plan.spec.concurrency
        return TaskScheduler(
            self.tasks.values(),
            max_workers=concurrency.max_workers,
            pools=concurrency.pools,
            weights=self.plan.spec.scheduling,
            max_running=concurrency.max_running,
        )

    def use_engine(self, engine: Engine) -> None:
        """Hold a new Engine (rules, switches or baselines changed): the loop's parts use it."""
        self.engine = engine
        self.admission.engine = engine
        self.dispatch.runner.engine = engine

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
        return opening.start(cls, plan, store, run_id=run_id, engine=engine, **options)

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
        """Continue a stored run (see `opening.resume`); `force` takes it from a live engine."""
        return opening.resume(cls, store, run_id, engine=engine, force=force, **options)

    # ---- dependencies -----------------------------------------------------------------------

    def on_final(self, task: TaskRecord) -> None:
        """A task reached a final state: record it, merge or checkpoint it, release its children."""
        if task.state == TaskState.COMPLETED and task.outcome == "approved":
            self.integration.merge_approved(task)
        if task.state == TaskState.COMPLETED and task.outcome in ("succeeded", "approved"):
            self.integration.checkpoint(task)
        self.scheduler.record_final(task.task_id, task.state, task.outcome)
        self.scheduler.discard(task.task_id)
        for child_id in self.scheduler.dependents(task.task_id):
            if self.tasks[child_id].state == TaskState.PENDING:
                self.evaluate_pending(child_id, upstream=task.task_id)

    def evaluate_pending(self, task_id: str, upstream: str | None = None) -> None:
        """Release a pending task whose dependencies are met, or cancel one that cannot run."""
        task = self.tasks[task_id]
        verdict = self.scheduler.verdict(task_id)
        if verdict.action == "release":
            why = "dependencies met" if task.depends_on else "no dependencies"
            self.state.move(task, "release", why)
            self.queue(task)
        elif verdict.action == "cancel":
            cause = f"{verdict.reason}: {upstream}" if upstream else verdict.reason
            outcome = "not_needed" if verdict.reason in NOT_NEEDED_REASONS else "upstream_failed"
            self.state.update(task, outcome=outcome)
            self.state.move(task, "cancel", cause)

    def queue(self, task: TaskRecord) -> None:
        """Hand a ready task to the scheduler; its failed attempts lower its priority."""
        self.scheduler.push_ready(task.task_id, self.clock(), failed_attempts=task.attempts)

    def rebuild_scheduler(self) -> None:
        """Finished tasks came back: the dependency counters start again from the tasks."""
        running = set(self.scheduler.running)
        self.scheduler = self._new_scheduler()
        for task_id in running:
            self.scheduler.started(task_id)
        for task in self.tasks.values():
            if task.state in FINAL_STATES:
                self.scheduler.record_final(task.task_id, task.state, task.outcome)
            elif task.state == TaskState.READY:
                self.queue(task)

    def figures(self, *, starting: bool = False) -> RunFigures:
        """The run-wide figures rules read; `starting`: as seen by an attempt about to start."""
        completed = self.counts[TaskState.COMPLETED]
        now, started = self.clock(), self.run.created_at
        return self.tally.figures(now, started, completed, len(self.tasks), starting=starting)

    # ---- one cycle, and running to the end ----------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """One cycle: human answers, due retries, finished and new attempts. Returns work done."""
        now = now or self.clock()
        work = 0
        for due, kind, key in self.wheel.pop_due(now):
            work += self.wakes.wake(kind, key, due, now)
        work += self.dispatch.collect(now)
        work += self.fleet.tick(now)
        if not self.dispatch.stop_event.is_set():
            work += self.dispatch.start_ready(now)
        self.state.flush()
        return work

    def flush(self) -> None:
        """Commit what the loop's parts recorded since the last commit (see `RunState.flush`)."""
        self.state.flush()

    def outcome(self) -> str | None:
        """The run's state if nothing more can happen without a human or time, else None."""
        return ending.outcome(self)

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
                state = self._settled(work)
                if state is not None:
                    return ending.finish(self, state)
        except BaseException:
            self.dispatch.stop_now()  # the workers stop their actions instead of finishing them
            raise
        finally:
            self.dispatch.shutdown()

    def _settled(self, work: int) -> str | None:
        """After a tick: the state the run ends in, or None after waiting for what comes next."""
        if self.dispatch.stop_event.is_set():
            if not self.dispatch.busy:
                return "stopped"
            self.dispatch.kill_when_grace_ends()
            self._idle_wait()
            return None
        state = self.outcome()
        if state == "paused" and self.sync.blocked():
            return None  # a human answered in the meantime
        if state == "paused" and self.wheel.has(EXPIRY):
            self._idle_wait()  # a default resolution applies soon: wait for it
            return None
        if state is not None and self.sync.added_tasks():
            return None  # tasks were added since the last look: the run is not over
        if state is None and not work:
            self._idle_wait()
        return state

    def _idle_wait(self) -> None:
        if self.dispatch.futures:
            self.dispatch.wait(IDLE_POLL_SECONDS)
            return
        delay = IDLE_POLL_SECONDS
        due = self.wheel.next_due()
        if due is not None:
            delay = (due - self.clock()).total_seconds()
        time.sleep(min(max(delay, 0.01), MAX_IDLE_SLEEP_SECONDS))

    def stop(self, grace_seconds: float = 0.0) -> None:
        """Start no new work; stop the actions under way after `grace_seconds`.

        Safe to call from a signal handler. A second call can shorten the grace, never extend it.
        """
        self.dispatch.stop(grace_seconds)

    @property
    def running_count(self) -> int:
        return self.dispatch.running_count


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])
