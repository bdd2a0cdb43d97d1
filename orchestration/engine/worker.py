"""A worker process: claims attempts from the store's work queue, runs them, reports results.

It runs each attempt as the conductor's own thread pool would (the run's stored plan, its
plugins, validators and snapshots), holds a lease on it renewed by heartbeat, and reports with
the claim's fencing token. A lease lost (the worker was paused past it, or the database was
away too long) stops the attempt and drops its result: the conductor has offered it again.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from orchestration.engine.actions import StopSignal
from orchestration.store.work_queue import WORK_CHANNEL, Claim, Waker, WorkQueue, store_errors

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # longest wait between claims when no NOTIFY arrives
SQLITE_POLL_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0  # the longest pause between tries while the database is away
BEAT_SECONDS = 2.0  # how often the worker's row is marked alive
ADOPT_SECONDS = 5.0  # how often a worker looks for runs whose conductor died


@dataclass
class Held:
    """An attempt this worker runs: its claim and how to stop it when the lease is lost."""

    claim: Claim
    stop: StopSignal
    lost: bool = False


@dataclass
class RunTools:
    """What attempts of one run need here, built once per run from its stored plan."""

    runner: Any  # AttemptRunner
    tasks: dict[str, Any] = field(default_factory=dict)
    task_seconds: dict[str, float] = field(default_factory=dict)
    running: dict[str, Any] = field(default_factory=dict)
    clones: Any = None  # Clones: the attempts run in this worker's clone of the repository


class Worker:
    """`orch worker`: claim, run, renew, report, until stopped."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        concurrency: int = 1,
        capabilities: tuple[str, ...] = (),
        run_id: str | None = None,
        workdir_mode: str = "auto",
        clones: Path | None = None,
        adopt: bool = True,
    ) -> None:
        self.url = url
        self.adopt = adopt  # resume runs whose conductor died
        self.workdir_mode = workdir_mode  # clone, shared, or auto: clone when the path is absent
        self.clones = clones or Path.home() / ".cache" / "orchestration" / "clones"
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency
        self.capabilities = capabilities
        self.run_id = run_id
        self.stop_event = threading.Event()
        self.kill_event = threading.Event()
        self.held: dict[int, Held] = {}
        self.freed = threading.Event()  # set when an attempt ends: a slot is free to claim
        self.lock = threading.Lock()
        self.runs: dict[str, RunTools] = {}
        self.queue: WorkQueue | None = None
        self.store: Any = None
        self.refused = 0  # late results the store refused (the lease was lost)
        self.adopted: dict[str, float] = {}  # run id -> when this worker last resumed it
        self.reported = 0

    # ---- the claim loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Work until `stop()`; attempts under way finish and are reported first."""
        self._connect()
        if self.queue is None:
            return  # stopped before the database ever answered
        poll = POLL_SECONDS if self._queue().postgres else SQLITE_POLL_SECONDS
        waker = Waker(self.url, WORK_CHANNEL, poll)
        beat = threading.Thread(target=self._beat, name="orch-lease", daemon=True)
        beat.start()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="orch-attempt")
        try:
            while not self.stop_event.is_set():
                self.freed.clear()
                claimed = self._claim_free_slots(pool)
                if len(self.held) >= self.concurrency:
                    self.freed.wait(poll)  # full: the next claim follows an attempt's end
                elif not claimed:
                    waker.wait()  # nothing offered that this worker may take
        finally:
            pool.shutdown(wait=True)
            self.kill_event.set()
            waker.close()
            self._retrying(lambda: self._queue().worker_beat(self.name, "stopped"), tries=3)
            if self.store is not None:
                self.store.close()
            self._queue().close()

    def stop(self, *, now: bool = False) -> None:
        """Claim no more; with `now`, stop the attempts under way too (they are offered again
        once their leases run out)."""
        self.stop_event.set()
        if now:
            self.kill_event.set()

    def _claim_free_slots(self, pool: ThreadPoolExecutor) -> int:
        claimed = 0
        while len(self.held) < self.concurrency and not self.stop_event.is_set():
            try:
                claim = self._queue().claim(self.name, self.capabilities, run_id=self.run_id)
            except store_errors() as error:
                self._wait_for_store(error)
                continue
            if claim is None:
                break
            held = Held(claim, StopSignal(self.kill_event))
            with self.lock:
                self.held[claim.id] = held
            future: Future[None] = pool.submit(self._attempt, held)
            future.add_done_callback(partial(self._release, claim.id))
            claimed += 1
        return claimed

    def _release(self, item: int, _done: Future[None] | None = None) -> None:
        with self.lock:
            self.held.pop(item, None)
        self.freed.set()

    # ---- one attempt --------------------------------------------------------------------------

    def _attempt(self, held: Held) -> None:
        from orchestration.engine.attempt_wire import (
            context_of,
            error_json,
            request_of,
            result_json,
            task_of,
        )
        from orchestration.engine.attempts import RunningAttempt
        from orchestration.project.remote_trees import run_in_clone

        claim = held.claim
        label = f"{claim.run_id}/{claim.task_id}#{claim.attempt}"
        try:
            tools = self._tools(claim.run_id)
            task = task_of(claim.payload)
            tools.tasks[task.task_id] = task
            tools.task_seconds[task.task_id] = float(claim.payload.get("task_seconds") or 0.0)
            context = context_of(claim.payload.get("context") or {})
            kind = tools.runner.engine.plugins.actions.get(task.spec.action.kind)
            request = request_of(claim.payload, kind)
            tools.running[task.task_id] = RunningAttempt(context, time.monotonic(), held.stop)
            commit = None
            try:
                if tools.clones is None:
                    result = tools.runner.execute(request, context)
                else:  # in this worker's clone; the work goes back as a commit
                    run = partial(tools.runner.execute, request, context)
                    result, commit = run_in_clone(
                        tools.clones, tools.runner.worktrees, claim.payload, self.name, run
                    )
            finally:
                tools.running.pop(task.task_id, None)
        except Exception as error:  # an engine error: reported, the conductor retries the task
            logger.exception("attempt %s failed in the worker", label)
            data, passed = error_json(f"{type(error).__name__}: {error}", self.name), False
        else:
            data, passed = result_json(result), bool(result.report.gate_passed)
            data["commit"] = commit
        if held.lost:
            self._refused(label)
            return
        stored = self._retrying(
            lambda: self._queue().report(claim, self.name, data, succeeded=passed)
        )
        if stored:
            self.reported += 1
            logger.info("reported %s", label)
        else:
            self._refused(label)

    def _refused(self, label: str) -> None:
        self.refused += 1
        logger.warning("late result of %s refused: this worker's lease on it was lost", label)

    def _tools(self, run_id: str) -> RunTools:
        with self.lock:
            tools = self.runs.get(run_id)
            if tools is None:
                tools = self._build_tools(run_id)
                self.runs[run_id] = tools
            return tools

    def _build_tools(self, run_id: str) -> RunTools:
        from orchestration.engine.attempts import AttemptRunner
        from orchestration.engine.plan import plan_from_stored
        from orchestration.engine.policy import build_engine
        from orchestration.engine.task_expressions import TaskExpressions
        from orchestration.project.checkpoints import ref_component
        from orchestration.project.orphans import AttemptRegistry
        from orchestration.project.remote_trees import Clones, CloneTrees, clone_wanted
        from orchestration.project.workspace import store_files_in
        from orchestration.project.worktrees import open_isolation
        from orchestration.store.db import sqlite_file

        plan = plan_from_stored(self.store.get_run(run_id))
        engine = build_engine(plan)
        directory = Path(plan.path).parent / ".orchestration" / "attempts" / run_id
        tools = RunTools(runner=None)
        worktrees: Any = None
        if clone_wanted(self.workdir_mode, Path(plan.workdir)):  # never write the user's tree
            tools.clones, worktrees = Clones(self.clones), CloneTrees()
            directory = self.clones / "attempts" / ref_component(run_id)
        else:
            worktrees = open_isolation(plan, run_id)
        tools.runner = AttemptRunner(
            plan,
            engine,
            run_id=run_id,
            dry_run=False,
            registry=AttemptRegistry(directory),
            running=tools.running,
            kill_event=self.kill_event,
            ignored_files=store_files_in(Path(plan.workdir), sqlite_file(self.url)),
            task_seconds=tools.task_seconds,
            tasks=tools.tasks,
            expressions=TaskExpressions(plan.path, engine.plugins),
            worktrees=worktrees,
        )
        return tools

    # ---- leases and the database ------------------------------------------------------------

    def _beat(self) -> None:
        """Renew the leases of the attempts under way; stop those whose lease is lost."""
        last_row = last_adopt = 0.0
        while not self.kill_event.wait(self._beat_seconds()):
            with self.lock:
                held = [h for h in self.held.values() if not h.lost]
            for one in held:
                try:
                    if self._queue().renew(one.claim) is None:
                        one.lost = True
                        one.stop.set()  # its result would be refused: stop the work now
                except store_errors() as error:
                    logger.warning("lease of item %s not renewed: %s", one.claim.id, error)
            if time.monotonic() - last_row >= BEAT_SECONDS:
                try:
                    self._queue().worker_beat(self.name)
                    last_row = time.monotonic()
                except store_errors() as error:
                    logger.warning("worker heartbeat not stored: %s", error)
            if time.monotonic() - last_adopt >= ADOPT_SECONDS:
                last_adopt = time.monotonic()
                try:
                    self._adopt_orphaned_runs()
                except store_errors() as error:
                    logger.warning("runs without a conductor not looked for: %s", error)

    def _adopt_orphaned_runs(self) -> None:
        """Conduct again a run on worker processes whose conductor died: once its claim has
        lapsed, start `orch resume` for it. Workers may race to do so; the store's claim lets
        one engine win (the others exit), and a worker tries a run again only after a lease."""
        from datetime import UTC, datetime

        from orchestration.resilience.run_launch import launch_resume
        from orchestration.resilience.runs import STALE_RUN_SECONDS, run_is_live

        if self.store is None or not self.adopt:
            return
        now, clock = datetime.now(UTC), time.monotonic()
        ids = [self.run_id] if self.run_id else self.store.running_run_ids()
        for run_id in ids:
            if clock - self.adopted.get(run_id, -STALE_RUN_SECONDS) < STALE_RUN_SECONDS:
                continue
            run = self.store.get_run(run_id)
            concurrency = (run.plan_json or {}).get("spec", {}).get("concurrency", {})
            if run.state != "running" or concurrency.get("executor") != "workers":
                continue
            if run_is_live(run, now):
                continue
            self.adopted[run_id] = clock
            log = Path(tempfile.gettempdir()) / "orchestration-adopted" / f"{run_id}.log"
            launched = launch_resume(run_id, db_url=self.url, log_path=log)
            logger.warning("run %s lost its conductor: resumed (pid %d)", run_id, launched.pid)

    def _beat_seconds(self) -> float:
        """A third of the shortest lease held: two renewals may fail before it runs out."""
        with self.lock:
            leases = [h.claim.lease_seconds for h in self.held.values()]
        return min([BEAT_SECONDS, *(lease / 3 for lease in leases)])

    def _connect(self) -> None:
        """Open the store and register this worker, waiting while the database is away."""
        from orchestration.store import Store

        while not self.stop_event.is_set():
            try:
                self.queue = self.queue or WorkQueue.open(self.url)
                self.store = self.store or Store.open(self.url)
                self.queue.register_worker(
                    self.name,
                    socket.gethostname(),
                    os.getpid(),
                    self.capabilities,
                    self.concurrency,
                    self.run_id,
                )
                return
            except store_errors() as error:
                self._wait_for_store(error)

    def _queue(self) -> WorkQueue:
        assert self.queue is not None, "the worker is not connected"
        return self.queue

    def _wait_for_store(self, error: BaseException) -> None:
        logger.warning("store unavailable (%s); trying again", str(error).splitlines()[0])
        self.stop_event.wait(RECONNECT_MAX_SECONDS / 5)

    def _retrying(self, call: Any, tries: int = 30) -> Any:
        """`call()`, tried again while the database is away (a restart): None if it stays away."""
        delay = 0.2
        for _ in range(tries):
            try:
                return call()
            except store_errors() as error:
                logger.warning("store unavailable (%s); trying again", str(error).splitlines()[0])
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        return None
