"""Calls plugin code on a thread of its own, bounded by a timeout and a stop: it never hangs the
loop, and whatever it raises is returned, not raised."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a call that can be stopped is checked on
TRACEBACK_CHARS = 4_000  # the end of a traceback kept for the output


@dataclass(slots=True)
class ThreadCall:
    """How a call on a thread of its own ended."""

    value: Any = None
    error: BaseException | None = None  # what it raised, if it raised
    traceback: str = ""  # the end of that traceback
    timed_out: bool = False
    interrupted: bool = False  # `stop` was set before it returned
    duration: float = 0.0

    @property
    def returned(self) -> bool:
        return self.error is None and not self.timed_out and not self.interrupted


def call_in_thread(
    function: Callable[[], Any],
    *,
    name: str,
    timeout: float,
    stop: threading.Event | None = None,
    tell_to_stop: threading.Event | None = None,
    grace: float = 0.0,
) -> ThreadCall:
    """Call `function` on a daemon thread until it returns, `timeout` passes or `stop` is set.

    `tell_to_stop`, for a callee that watches one, is set when the wait ends early, and the
    callee gets `grace` seconds more to return. A thread that still runs then is left behind
    (logged): a thread cannot be killed.
    """
    call = ThreadCall()

    def target() -> None:
        try:
            call.value = function()
        except BaseException as error:  # the plugin's failure is returned, never the loop's
            call.error = error
            call.traceback = traceback.format_exc()[-TRACEBACK_CHARS:]

    started = time.monotonic()
    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    timed_out, interrupted = _wait(worker, started + timeout, stop)
    if (timed_out or interrupted) and tell_to_stop is not None:
        tell_to_stop.set()
        worker.join(grace)
    if worker.is_alive():
        logger.warning("%s did not finish within %gs; left behind", name, timeout)
    call.timed_out, call.interrupted = timed_out, interrupted
    call.duration = time.monotonic() - started
    return call


def _wait(
    worker: threading.Thread, deadline: float, stop: threading.Event | None
) -> tuple[bool, bool]:
    """Wait for the thread until the deadline or the stop. Returns (timed out, interrupted)."""
    if stop is None:
        worker.join(max(0.0, deadline - time.monotonic()))
        return worker.is_alive(), False
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if not worker.is_alive():
            break
        if time.monotonic() >= deadline:
            return True, False
        if stop.is_set():
            return False, True
    return False, False
