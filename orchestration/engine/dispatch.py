"""Dispatch: start the ready attempts, watch them under way, and collect them when they end."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.lifecycle import TaskState
from orchestration.core.models import TaskRecord
from orchestration.engine.actions import ActionRequest, StopSignal
from orchestration.engine.attempts import AttemptResult, AttemptRunner, RunningAttempt
from orchestration.engine.breakpoints import BreakpointCheck
from orchestration.engine.conclusion import Raised
from orchestration.engine.steps import before_context
from orchestration.engine.store_executor import attempt_executor
from orchestration.project.orphans import AttemptRegistry
from orchestration.resilience.interventions import Stop
from orchestration.resilience.stuck import repeat_figures

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator

logger = logging.getLogger(__name__)

Prepared = tuple[ActionRequest, dict[str, Any]]


class Dispatch:
    """The attempts of a run: which are under way, where they run, and how they stop.

    `start_ready` admits what the scheduler hands out and stores each `start` move before its
    action begins; `check_running` applies `at: during` rules; `collect` hands every finished
    attempt to the loop's concluder. Attempts run on the executor (threads of this process, or
    worker processes) or inline in the loop's thread (`inline_python`), concluded next tick.
    """

    def __init__(self, loop: Orchestrator) -> None:
        self.loop = loop
        plan, run = loop.plan, loop.run
        self.futures: dict[Future[AttemptResult], str] = {}
        self.starting = 0  # stored as running, not yet submitted (a signal may come in between)
        self.inline_done: list[tuple[str, AttemptResult | Exception]] = []
        self.stop_event = threading.Event()  # set: no new attempt starts (draining)
        self.kill_event = threading.Event()  # set: attempts under way are stopped now
        self.kill_at: float | None = None  # when draining turns into stopping (monotonic)
        self.running_attempts: dict[str, RunningAttempt] = {}
        self.stopped_by_rule: dict[str, Raised] = {}
        self.human_stops: dict[str, Stop] = {}  # asked for from other processes while running
        self.held_noted = False
        self.executor = attempt_executor(plan, loop.store, run.id, self.kill_event)
        # Beside the plan, like the default store: where this engine notes its actions' processes.
        attempts_dir = Path(plan.path).parent / ".orchestration" / "attempts" / run.id
        self.registry = AttemptRegistry(attempts_dir)
        self.runner = AttemptRunner(
            plan,
            loop.engine,
            run_id=run.id,
            dry_run=loop.dry_run,
            registry=self.registry,
            running=self.running_attempts,
            kill_event=self.kill_event,
            ignored_files=loop.ignored_files,
            task_seconds=loop.tally.task_seconds,
            tasks=loop.tasks,
            expressions=loop.expressions,
            worktrees=loop.worktrees,
        )

    @property
    def busy(self) -> bool:
        """Attempts under way, or ended and not yet concluded."""
        return bool(self.futures or self.inline_done)

    @property
    def running_count(self) -> int:
        # a signal may arrive between storing `running` and submitting the action
        return len(self.futures) + self.starting

    # ---- starting ---------------------------------------------------------------------------

    def start_ready(self, now: datetime) -> int:
        if not self._may_start(now):
            return 0
        loop = self.loop
        requests: list[Prepared] = []
        while loop.scheduler.has_capacity():
            task_id = loop.scheduler.next_ready(now)
            if task_id is None:
                break
            task = loop.tasks[task_id]
            if task.state != TaskState.READY or not loop.admission.breaker_allows(task, now):
                continue
            if not loop.fleet.admit(task, now):
                continue
            prepared = self._prepare(task, now)
            if prepared is not None:
                requests.append(prepared)
            elif loop.state.run_held():
                break  # a run-wide pause was just raised: nothing more starts
        self.starting = len(requests)  # counted as running from the moment they are stored
        loop.state.flush()  # the `start` moves are stored before any action begins
        self._submit(requests)
        return len(requests)

    def _may_start(self, now: datetime) -> bool:
        loop = self.loop
        if loop.human_paused or loop.run_cancelled:
            return False
        if loop.state.run_held():
            if not self.held_noted and loop.scheduler.queued_count:
                self.held_noted = True
                held = ", ".join(str(i) for i in sorted(loop.state.run_holds))
                loop.observer.message(f"no new work starts: breakpoint {held} holds the run")
            return False
        queued = loop.scheduler.queued_count and loop.scheduler.has_capacity()
        return not (queued and loop.admission.machine_busy(now))

    def _submit(self, requests: list[Prepared]) -> None:
        inline = []
        for request, context in requests:
            self.loop.observer.task_started(self.loop.tasks[request.task.id])
            if request.inline:
                inline.append((request, context))
                continue
            stop = StopSignal(self.kill_event)
            self.running_attempts[request.task.id] = RunningAttempt(context, time.monotonic(), stop)
            future = self.executor.submit(self.runner.execute, request, context)
            self.futures[future] = request.task.id
            self.starting -= 1
        self.runner.execute_inline(inline, self.inline_done)
        self.starting = 0

    def _prepare(self, task: TaskRecord, now: datetime) -> Prepared | None:
        """The `before` checks of an attempt; None if one holds it at a breakpoint."""
        loop, state, spec = self.loop, self.loop.state, task.spec
        attempt = task.attempts + 1
        context = before_context(
            task,
            attempt,
            loop.plan.retry_policy(spec).max_attempts,
            loop.figures(starting=True),
            loop.tally.task_seconds[task.task_id],
            now,
            loop.plan.spec.signals,
            loop.plan.when_exhausted(spec),
        )
        context.update(repeat_figures(loop.tally.attempt_history[task.task_id]))
        learned = loop.tally.outcomes.learned(spec.action.kind, spec.tags, context["confidence"])
        context.update(learned.context())
        gate = loop.admission.risk_gate(task, context)
        if gate is not None:
            state.block(task, gate, context, now)
            return None
        if loop.dry_run and spec.risk == "high":
            check = BreakpointCheck()  # recorded, not run: nothing to stop before
        else:
            check = loop.engine.breakpoints.check("before", context)
        state.record_rule_errors(task, check, now)
        check = loop.admission.unapproved(task.task_id, check, context)
        state.record_notices(task, check, context, "before", now)
        pause = check.first("pause")
        if pause is not None:
            state.block(task, Raised.of(pause, "before"), context, now)
            return None
        state.move(task, "start", f"attempt {attempt}")
        state.update(task, attempts=attempt)
        loop.tally.budget.attempts += 1
        loop.scheduler.started(task.task_id)
        return loop.fleet.assign(self.runner.request(task, attempt), now), context

    # ---- under way ----------------------------------------------------------------------------

    def check_running(self, now: datetime) -> None:
        """Evaluate `at: during` rules on the attempts under way; stop those a rule stops."""
        loop = self.loop
        if not self.running_attempts or not loop.engine.rules.breakpoints_at("during"):
            return
        figures = loop.figures()
        for task_id, running in list(self.running_attempts.items()):
            if running.stop.is_set() or task_id in self.stopped_by_rule:
                continue
            task = loop.tasks[task_id]
            context = dict(running.context)
            seconds = time.monotonic() - running.started
            context.update(
                duration_seconds=round(seconds, 3),
                task_elapsed_seconds=round(loop.tally.task_seconds[task_id] + seconds, 3),
                run_elapsed_seconds=round(figures.run_elapsed_seconds, 3),
                completed_count=figures.completed_count,
                run_cost=round(figures.run_cost, 6),
                run_tokens=figures.run_tokens,
                over_budget=figures.over_budget,
            )
            check = loop.engine.breakpoints.check("during", context)
            loop.state.record_rule_errors(task, check, now)
            loop.state.record_notices(task, check, context, "during", now)
            hit = check.first("pause") or check.first("auto")
            if hit is not None:
                self.stopped_by_rule[task_id] = Raised.of(hit, "during")
                loop.observer.message(f"{task_id}: {hit.message}; stopping the attempt")
                running.stop.set()

    def wait(self, timeout: float) -> None:
        """Until an attempt under way ends, at most `timeout` seconds."""
        wait(list(self.futures), timeout=timeout, return_when=FIRST_COMPLETED)

    # ---- ended ------------------------------------------------------------------------------

    def collect(self, now: datetime) -> int:
        """Conclude every attempt that ended since the last tick."""
        loop, concluder = self.loop, self.loop.concluder
        inline, self.inline_done = self.inline_done, []
        for task_id, inline_result in inline:
            loop.scheduler.stopped(task_id)
            if isinstance(inline_result, Exception):
                concluder.crashed(loop.tasks[task_id], inline_result, now)
            else:
                concluder.conclude(loop.tasks[task_id], inline_result, now)
        done = [f for f in self.futures if f.done()]
        for future in done:
            task_id = self.futures.pop(future)
            loop.scheduler.stopped(task_id)
            try:
                result = future.result()
            except BaseException as error:  # an engine bug in the worker: never lose the task
                logger.exception("attempt of %s crashed in the engine", task_id)
                concluder.record_breaker(task_id, None, now)
                concluder.crashed(loop.tasks[task_id], error, now)
                continue
            if task_id in self.human_stops:
                concluder.stopped_by_human(loop.tasks[task_id], result, now)
                continue
            concluder.conclude(loop.tasks[task_id], result, now)
        return len(done) + len(inline)

    # ---- stopping -----------------------------------------------------------------------------

    def stop(self, grace_seconds: float) -> None:
        kill_at = time.monotonic() + max(0.0, grace_seconds)
        self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)
        self.stop_event.set()
        if grace_seconds <= 0:
            self.kill_event.set()

    def stop_now(self) -> None:
        """Start nothing more and stop the actions under way (a commit failed, an exception)."""
        self.stop_event.set()
        self.kill_event.set()

    def kill_when_grace_ends(self) -> None:
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_event.set()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
        self.runner.stop_watches()
