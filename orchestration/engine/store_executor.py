"""An executor whose attempts run on worker processes: offered in the store, results collected.

The loop submits attempts to it as to its thread pool and waits on the same futures; this one
offers each attempt in the work queue and completes its future when a worker reports the
result. It also offers again the attempts whose worker's lease ran out.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from orchestration.engine.attempt_wire import request_payload, result_of
from orchestration.store.work_queue import REPORT_CHANNEL, Waker, WorkQueue, store_errors

if TYPE_CHECKING:
    from orchestration.core.models import Plan
    from orchestration.engine.actions import ActionRequest
    from orchestration.engine.attempts import AttemptResult
    from orchestration.store import Store

logger = logging.getLogger(__name__)

POSTGRES_POLL_SECONDS = 1.0  # longest wait between looks when NOTIFY wakes the conductor
SQLITE_POLL_SECONDS = 0.1  # SQLite has no NOTIFY: the conductor looks this often


def interrupted(task_id: str, attempt: int, reason: str) -> AttemptResult:
    """An attempt taken back from the workers because the run stopped: concluded as an attempt
    the engine stopped in one process is (its task waits for a retry; nothing is counted)."""
    from orchestration.engine.actions import ActionOutcome
    from orchestration.engine.attempts import AttemptResult
    from orchestration.engine.quality import QualityReport
    from orchestration.project.workspace import Changes

    outcome = ActionOutcome(None, False, 0.0, f"[orchestration] {reason}", interrupted=True)
    return AttemptResult(
        task_id, attempt, outcome, Changes((), 0), QualityReport(0.0, False, {}, ()), {}
    )


def _stop_set(runner: Any, task_id: str) -> bool:
    """Whether the loop asked the attempt of `task_id` to stop (its RunningAttempt's signal)."""
    running = getattr(runner, "running", {}).get(task_id)
    return running is not None and running.stop.is_set()


def tree_offer(executor: StoreExecutor, runner: Any, task_id: str, attempt: int) -> Any:
    """Where a worker on another machine gets the attempt's work tree (remote_trees): when
    the run's tasks work in git worktrees; None otherwise (workers share the workdir)."""
    from orchestration.project.checkpoints import GitError
    from orchestration.project.remote_trees import TreePublisher

    worktrees = getattr(runner, "worktrees", None)
    if worktrees is None:
        return None
    if executor.publisher is None:
        executor.publisher = TreePublisher(worktrees, executor.repository)
    try:
        return executor.publisher.offer(task_id, attempt)
    except GitError as error:  # the repository is away: only workers sharing the workdir can
        logger.warning("cannot publish the base of %s#%d: %s", task_id, attempt, error)
        return None


def take_commit(executor: StoreExecutor, offer: Any, result: AttemptResult, commit: Any) -> None:
    """A commit a worker handed back is fetched and checked, and becomes the task's worktree
    (RefusedWork: the task is retried)."""
    from orchestration.project.remote_trees import RefusedWork

    if not commit:
        return
    if executor.publisher is None or offer is None:
        raise RefusedWork(f"commit {commit} of {result.task_id} answers no offered work tree")
    executor.publisher.take(result.task_id, offer, str(commit), result.changes.files)


def pending_attempts(pending: dict[int, tuple[Any, Any, str, int]]) -> list[tuple[Any, str, int]]:
    return [(future, task_id, attempt) for future, _r, task_id, attempt in pending.values()]


def attempt_executor(
    plan: Plan, store: Store, run_id: str, kill_event: threading.Event | None = None
) -> Executor:
    """The loop's executor: its thread pool, or worker processes when the plan says so
    (`concurrency.executor: workers`, set by `orch run --workers 0` and `orch submit`)."""
    concurrency = plan.spec.concurrency
    if concurrency.executor != "workers":
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(concurrency.max_workers, thread_name_prefix="orch-worker")
    return StoreExecutor(plan, store.url, run_id, kill_event or threading.Event())


class StoreExecutor(Executor):
    """Offers attempts to worker processes; completes their futures with the results."""

    def __init__(self, plan: Plan, url: str, run_id: str, kill_event: threading.Event) -> None:
        self.run_id = run_id
        self.lease_seconds = plan.spec.concurrency.lease_seconds
        self.capabilities = set(plan.spec.concurrency.capabilities)
        self.repository = plan.spec.concurrency.repository
        self.trees: dict[int, Any] = {}  # item id -> the TreeOffer a worker elsewhere clones
        self.publisher: Any = None  # TreePublisher, made at the first offer of a git run
        self.kill_event = kill_event
        self.queue = WorkQueue.open(url)
        # A conductor taking the run over takes back what its predecessor offered: those
        # tasks are retried by the loop (at-least-once), and a late report of them is refused.
        taken = self.queue.withdraw(run_id=run_id)
        if taken:
            logger.info("withdrew %d attempt(s) offered by the run's previous conductor", taken)
        # item id -> (its future, the loop's runner, task id, attempt number)
        self.pending: dict[int, tuple[Future[AttemptResult], Any, str, int]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        poll = POSTGRES_POLL_SECONDS if self.queue.postgres else SQLITE_POLL_SECONDS
        self.waker = Waker(url, REPORT_CHANNEL, poll)
        self.thread = threading.Thread(target=self._collect, name="orch-collector", daemon=True)
        self.thread.start()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Offer the attempt `fn(request, context)` would run; its future completes when a
        worker reports it. `fn` is the loop's AttemptRunner.execute: its runner is told the
        agent session the attempt ended with, as running it here would have."""
        request: ActionRequest
        context: dict[str, Any]
        request, context = args
        runner = getattr(fn, "__self__", None)
        seconds = getattr(runner, "task_seconds", {}).get(request.task.id, 0.0)
        payload = request_payload(request, context, seconds)
        offer = tree_offer(self, runner, request.task.id, request.attempt)
        payload["tree"] = offer.to_json() if offer is not None else None
        requires = sorted(set(request.task.tags) & self.capabilities)
        future: Future[AttemptResult] = Future()
        item = self.queue.offer(
            self.run_id,
            request.task.id,
            request.attempt,
            payload,
            requires=requires,
            lease_seconds=self.lease_seconds,
        )
        with self.lock:
            self.pending[item] = (future, runner, request.task.id, request.attempt)
            self.trees[item] = offer
        return future

    def _collect(self) -> None:
        while not self.done.is_set():
            if self.kill_event.is_set():
                self._withdraw_all("the run stopped while the attempt ran on a worker")
            self._withdraw_stopped()
            with self.lock:
                ids = list(self.pending)
            if ids:
                try:
                    self.queue.expire(run_id=self.run_id)
                    reported = self.queue.collect(self.run_id, ids)
                except store_errors() as error:  # the database is away: look again later
                    logger.warning("cannot collect results from the store: %s", error)
                    self.waker.wait()
                    continue
                for found in reported:
                    self._complete(found.id, found.result)
            self.waker.wait()
        self.waker.close()

    def _complete(self, item: int, data: dict[str, Any]) -> None:
        with self.lock:
            future, runner, _task, _attempt = self.pending.pop(item)
            offer = self.trees.pop(item, None)
        try:
            result = result_of(data)
            take_commit(self, offer, result, data.get("commit"))  # work done in a clone
        except Exception as error:  # a result this engine cannot read: the task is retried
            future.set_exception(error)
            return
        if runner is not None and hasattr(runner, "remember_session"):
            runner.remember_session(result.task_id, result.outcome.result)
        future.set_result(result)

    def _withdraw_stopped(self) -> None:
        """Take back the attempts the loop stopped (an `at: during` rule set their stop): the
        worker's renewal is refused and it stops the action, as a thread here would."""
        with self.lock:
            stopped = {
                item: entry for item, entry in self.pending.items() if _stop_set(entry[1], entry[2])
            }
            for item in stopped:
                del self.pending[item]
        self._withdraw(stopped, "the attempt was stopped by the engine")

    def _withdraw_all(self, reason: str) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        self._withdraw(pending, reason)

    def _withdraw(self, pending: dict[int, tuple[Any, Any, str, int]], reason: str) -> None:
        if not pending:
            return
        for item in pending:
            self.trees.pop(item, None)
        try:
            self.queue.withdraw(list(pending))
        except store_errors() as error:  # the next conductor withdraws them anyway
            logger.warning("cannot withdraw offered attempts: %s", error)
        for future, task_id, attempt in pending_attempts(pending):
            future.set_result(interrupted(task_id, attempt, reason))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop collecting; attempts still offered are taken back (their workers' reports are
        refused; the loop retries their tasks when the run continues)."""
        self.done.set()
        if wait:
            self.thread.join()
        self._withdraw_all("the conductor stopped")
        if self.publisher is not None:
            self.publisher.close()
        self.queue.close()
