"""Notifications sent in the background, in order, from a bounded queue: the loop never waits."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

MAX_WAITING = 256  # notifications waiting to be sent; past it a new one is dropped (logged)
DRAIN_POLL_SECONDS = 0.02
IDLE_SECONDS = 5.0  # the sending thread ends after this long without work


class Outbox:
    """One daemon thread sends what `put` queues, one item at a time, through `send`.

    `send` bounds each call itself (the plugin guard's timeout); the queue's bound keeps a
    notifier that falls behind from holding memory without end.
    """

    def __init__(self, send: Callable[[Any], None], on_drop: Callable[[Any], None]) -> None:
        self._send = send
        self._on_drop = on_drop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=MAX_WAITING)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, item: Any) -> None:
        """Queue `item` for sending; drop it (and say so) when the queue is full."""
        with self._lock:  # with the worker's exit check: an item never waits without a worker
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="outbox", daemon=True)
                self._worker.start()
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                full = True
            else:
                full = False
        if full:
            self._on_drop(item)

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued was sent or `timeout` passed; True when all was sent."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(DRAIN_POLL_SECONDS)
        return True

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # idle: the thread ends; the next put starts one
                        self._worker = None
                        return
                continue
            try:
                self._send(item)
            except Exception:  # the guard returns failures; this is a last line of defence
                logger.exception("sending a notification failed")
            finally:
                self._queue.task_done()
