"""`orch daemon`: fires schedules and event triggers, and keeps the runs they started going.

The daemon only conducts: each `step(now)` is one scheduler tick (orchestration/trigger_service)
plus resuming the triggered runs that stopped when a daemon stopped or crashed. Runs are
separate `orch run` processes in sessions of their own. On SIGTERM the daemon starts nothing new,
passes SIGTERM on to its runs (each drains as `orch run` does: running actions get their grace,
then stop and are retried on resume) and waits for them; the next daemon resumes them.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestration.core.errors import OrchestrationError
from orchestration.resilience.run_launch import launch_resume, running_children, signal_children
from orchestration.resilience.runs import run_is_live
from orchestration.triggers.launches import LaunchContext, active_runs, run_of

if TYPE_CHECKING:
    from orchestration.store import Store
    from orchestration.triggers.trigger_service import TickResult

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 1.0  # between two ticks
DRAIN_MARGIN_SECONDS = 30.0  # waited beyond the runs' own grace before giving up on them


@dataclass
class Daemon:
    store: Store
    ctx: LaunchContext
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    stopping: threading.Event = field(default_factory=threading.Event)
    resuming: dict[str, int] = field(default_factory=dict)  # run id -> pid of its `orch resume`

    def step(self, now: datetime) -> TickResult:
        """One pass: collect and dispatch events, fire due occurrences, resume stopped runs."""
        from orchestration.triggers.trigger_service import tick

        result = tick(self.store, self.ctx, now)
        self._resume_stopped(now)
        return result

    def run(self, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        """Step until `stopping` is set; a failing step is logged and tried again."""
        while not self.stopping.is_set():
            try:
                self.step(self.clock())
            except OrchestrationError as exc:
                logger.error("daemon step failed: %s", exc)
            self.stopping.wait(interval)

    def drain(self, wait_seconds: float) -> list[int]:
        """Pass SIGTERM to the runs started here and wait for them; the pids still running."""
        signal_children(signal.SIGTERM)
        deadline = time.monotonic() + wait_seconds
        while running_children() and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for child processes to exit, not for time to pass
        return running_children()

    def _resume_stopped(self, now: datetime) -> None:
        """Resume the triggered runs whose engine stopped (a drained or crashed daemon)."""
        alive = set(running_children())
        self.resuming = {r: p for r, p in self.resuming.items() if p in alive}
        for schedule in self.store.triggers.schedules():
            for run_id in active_runs(self.store, schedule.name):
                if run_id not in self.resuming and self._needs_resume(run_id, now):
                    launched = launch_resume(
                        run_id, db_url=self.ctx.db_url, log_path=self.ctx.log_path(run_id)
                    )
                    self.resuming[run_id] = launched.pid
                    logger.info("resuming run %s (pid %s)", run_id, launched.pid)

    def _needs_resume(self, run_id: str, now: datetime) -> bool:
        run = run_of(self.store, run_id)
        if run is None or run_is_live(run, now):
            return False
        if run.state == "running":
            return True  # its engine died
        if run.state != "paused":
            return False
        for event in self.store.recent_events(run_id, 20):  # newest first
            if event.kind in ("run_resumed", "run_started"):
                return False
            if event.kind == "run_finished":
                return event.data.get("state") == "stopped"  # not a pause for a human
        return False
