"""Calls bounded by a timeout and a stop, like `core.guarded.call_in_thread`, on kept daemon
threads instead of a new thread per call (in-process actions, plugin hooks)."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from orchestration.core.guarded import POLL_SECONDS, TRACEBACK_CHARS, ThreadCall

logger = logging.getLogger(__name__)

# Idle threads kept for the next call; more are started when more calls run at once, and the
# extra ones end once they are idle again.
MAX_IDLE_THREADS = 8


class _Job:
    """One call handed to a kept thread; `done` is set when it returned or raised."""

    __slots__ = ("done", "error", "function", "name", "traceback", "value")

    def __init__(self, function: Callable[[], Any], name: str) -> None:
        self.function = function
        self.name = name
        self.value: Any = None
        self.error: BaseException | None = None
        self.traceback = ""
        self.done = threading.Event()


class KeptThreads:
    """Daemon threads that take calls from one queue.

    Starting a thread per call (as `call_in_thread` does) costs a thread's creation and two
    hand-offs of the GIL each time: about 0.25 ms on an idle 2-core machine, several times that
    under load, for a no-op function. Why not `concurrent.futures.ThreadPoolExecutor`: a call
    that never returns must be abandoned, and that executor's threads are joined when the
    interpreter exits, so one hung action would keep the process from exiting. A call that
    overruns here is abandoned the same way `call_in_thread` abandons it: its thread goes on
    running it (a thread cannot be killed) and comes back to the pool only if it ever returns.
    """

    def __init__(self, max_idle: int = MAX_IDLE_THREADS) -> None:
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting on the queue, or about to
        self._max_idle = max_idle

    def call(
        self,
        function: Callable[[], Any],
        *,
        name: str,
        timeout: float,
        stop: threading.Event | None = None,
        tell_to_stop: threading.Event | None = None,
        grace: float = 0.0,
    ) -> ThreadCall:
        """Call `function` on a kept thread until it returns, `timeout` passes or `stop` is set
        (the same contract as `core.guarded.call_in_thread`)."""
        started = time.monotonic()
        job = _Job(function, name)
        self._hand_over(job)
        timed_out, interrupted = _wait(job.done, started + timeout, stop)
        if (timed_out or interrupted) and tell_to_stop is not None:
            tell_to_stop.set()
            job.done.wait(grace)
        if not job.done.is_set():
            logger.warning("%s did not finish within %gs; left behind", name, timeout)
            return ThreadCall(
                timed_out=timed_out, interrupted=interrupted, duration=time.monotonic() - started
            )
        return ThreadCall(
            value=job.value,
            error=job.error,
            traceback=job.traceback,
            timed_out=timed_out,
            interrupted=interrupted,
            duration=time.monotonic() - started,
        )

    def _hand_over(self, job: _Job) -> None:
        with self._lock:
            start_one = self._idle == 0
            if not start_one:
                self._idle -= 1  # that thread is taken by this job
        if start_one:
            threading.Thread(target=self._serve, args=(job,), name=job.name, daemon=True).start()
        else:
            self._jobs.put(job)

    def _serve(self, job: _Job) -> None:
        current = threading.current_thread()
        while True:
            current.name = job.name
            _run(job)
            with self._lock:
                if self._idle >= self._max_idle:
                    return  # enough threads wait already
                self._idle += 1
            current.name = "kept-thread-idle"
            job = self._jobs.get()


def _run(job: _Job) -> None:
    try:
        job.value = job.function()
    except BaseException as error:  # the callee's failure is returned, never the caller's
        job.error = error
        job.traceback = traceback.format_exc()[-TRACEBACK_CHARS:]
    finally:
        job.function = _returned  # drop the call's closure: the thread may wait long
        job.done.set()


def _returned() -> None:
    return None


def _wait(
    done: threading.Event, deadline: float, stop: threading.Event | None
) -> tuple[bool, bool]:
    """Wait for the call until the deadline or the stop. Returns (timed out, interrupted)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return not done.is_set(), False
        if done.wait(min(remaining, POLL_SECONDS) if stop is not None else remaining):
            return False, False
        if stop is not None and stop.is_set():
            return False, True


KEPT_THREADS = KeptThreads()  # one pool for the process: every run's calls share it


def _forget_threads_in_child() -> None:
    """A forked child has none of its parent's threads: it starts with an empty pool."""
    global KEPT_THREADS
    KEPT_THREADS = KeptThreads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_in_child)
