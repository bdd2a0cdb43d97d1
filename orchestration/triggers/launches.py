"""A firing's run, from stored intent to a run in the store: launch, watch it appear, or fail.

A firing is stored (`starting`, with its run id chosen) before its process is launched; the
launch moves it to `launched`, and the run's row appearing to `started`. Crash anywhere and the
next tick finds the firing where it was: a `starting` one whose launcher died is launched again
under the same run id (a run id is stored once, so a second launch of one run cannot start it
twice); a `launched` one whose process died without making its run failed to start.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.core.errors import NotFoundError, OrchestrationError
from orchestration.core.trigger_records import (
    FAILED_TO_START,
    LAUNCHED,
    STARTED,
    STARTING,
    FiringRecord,
)
from orchestration.resilience.run_launch import launch_run, running_children
from orchestration.store.store import FINAL_RUN_STATES

if TYPE_CHECKING:
    from orchestration.core.models import RunRecord
    from orchestration.pluginhost.hooks import Plugins
    from orchestration.store import Store

logger = logging.getLogger(__name__)

STARTUP_SECONDS = 600.0  # a launched run not in the store by then (another host) failed to start
ORPHAN_SECONDS = 60.0  # a `starting` firing whose launcher is silent this long is taken over
ACTIVE_LOOKBACK = 20  # newest started firings of a schedule checked for an active run
LOG_TAIL_CHARS = 600  # of a failed launch's output, kept as the reason


def holder() -> str:
    """Who launches: this host and process (stored on `starting` firings)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class LaunchContext:
    """Where runs are stored and their launch output goes."""

    db_url: str
    log_dir: Path

    def log_path(self, run_id: str) -> Path:
        return self.log_dir / f"{run_id}.log"


def launch_firing(
    store: Store, firing: FiringRecord, plan_path: str, ctx: LaunchContext, now: datetime
) -> str:
    """Launch the run of a stored `starting` firing; the outcome it reached."""
    assert firing.id is not None and firing.run_id is not None
    try:
        launched = launch_run(
            Path(plan_path),
            db_url=ctx.db_url,
            run_id=firing.run_id,
            params=firing.params or None,
            log_path=ctx.log_path(firing.run_id),
        )
    except (OSError, OrchestrationError) as exc:
        fail_firing(store, firing, f"cannot launch `orch run`: {exc}", now, (STARTING,))
        return FAILED_TO_START
    store.triggers.update_firing(
        firing.id, (STARTING,), outcome=LAUNCHED, pid=launched.pid, updated_at=now
    )
    return LAUNCHED


def fail_firing(
    store: Store, firing: FiringRecord, reason: str, now: datetime, expected: tuple[str, ...]
) -> None:
    """Record that a firing's run did not start, and report it (once, by whoever records it)."""
    assert firing.id is not None
    moved = store.triggers.update_firing(
        firing.id, expected, outcome=FAILED_TO_START, reason=reason, updated_at=now
    )
    if moved:
        _report_start_failure(firing, reason)


def _report_start_failure(
    firing: FiringRecord, reason: str, plugins: Plugins | None = None
) -> None:
    """The one place a schedule's failure to start a run is announced: logged, and a
    `schedule_failed` alert to the notifiers (delivered before this returns, bounded)."""
    from orchestration.engine.alerts import raise_alert
    from orchestration.extension import NOTIFY_TIMEOUT_SECONDS

    logger.error(
        "schedule %s: %s firing %s did not start run %s: %s",
        firing.schedule,
        firing.kind,
        firing.key,
        firing.run_id,
        reason,
    )
    if plugins is None:  # rare: a failed start is worth loading the notifiers for
        from orchestration.pluginhost.hooks import load_plugins

        plugins = load_plugins()
    message = f"schedule {firing.schedule} did not start run {firing.run_id}: {reason}"
    data = {"run": firing.run_id, "schedule": firing.schedule, "firing": firing.key}
    raise_alert(plugins, "schedule_failed", "high", message, data)
    plugins.drain_notifications(NOTIFY_TIMEOUT_SECONDS)


def reconcile(store: Store, ctx: LaunchContext, plans: dict[str, str], now: datetime) -> None:
    """Bring every `starting` and `launched` firing forward (see the module's docstring).

    `plans`: each schedule's plan path, for relaunching a firing whose launcher died.
    """
    running_children()  # reap this process's exited children: a zombie looks alive
    for firing in store.triggers.firings(outcomes=(STARTING, LAUNCHED)):
        assert firing.id is not None and firing.run_id is not None
        if _run_exists(store, firing.run_id):
            store.triggers.update_firing(
                firing.id, (STARTING, LAUNCHED), outcome=STARTED, updated_at=now
            )
        elif firing.outcome == LAUNCHED:
            _check_launched(store, firing, ctx, now)
        elif orphaned(firing, now) and firing.schedule in plans and take_over(store, firing, now):
            launch_firing(store, firing, plans[firing.schedule], ctx, now)


def _check_launched(store: Store, firing: FiringRecord, ctx: LaunchContext, now: datetime) -> None:
    same_host = (firing.holder or "").rsplit(":", 1)[0] == socket.gethostname()
    if same_host and firing.pid is not None:
        if _pid_alive(firing.pid):
            return
        if _run_exists(store, firing.run_id or ""):  # made its run just before exiting
            return
    elif now - firing.updated_at < timedelta(seconds=STARTUP_SECONDS):
        return
    fail_firing(store, firing, _launch_output(ctx, firing.run_id or ""), now, (LAUNCHED,))


def orphaned(firing: FiringRecord, now: datetime) -> bool:
    """A `starting` firing whose launcher is gone (dead here, or silent too long elsewhere)."""
    host, _, pid = (firing.holder or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    return now - firing.updated_at >= timedelta(seconds=ORPHAN_SECONDS)


def take_over(store: Store, firing: FiringRecord, now: datetime) -> bool:
    """Make this process the holder of an orphaned firing; False if another one took it."""
    assert firing.id is not None
    return store.triggers.update_firing(
        firing.id,
        (firing.outcome,),
        taking_from=firing.holder or "",
        holder=holder(),
        updated_at=now,
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_exists(store: Store, run_id: str) -> bool:
    return run_of(store, run_id) is not None


def run_of(store: Store, run_id: str) -> RunRecord | None:
    try:
        return store.get_run(run_id)
    except NotFoundError:
        return None


def _launch_output(ctx: LaunchContext, run_id: str) -> str:
    path = ctx.log_path(run_id)
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    tail = text[-LOG_TAIL_CHARS:] if text else "no output"
    return f"the launched `orch run` exited without starting the run ({path}): {tail}"


def active_runs(store: Store, schedule: str) -> list[str]:
    """Run ids of the schedule that have not finished: launching, running, paused."""
    recent = store.triggers.firings(
        schedule, outcomes=(STARTING, LAUNCHED, STARTED), limit=ACTIVE_LOOKBACK
    )
    active = []
    for firing in recent:
        if firing.run_id is None:
            continue
        run = run_of(store, firing.run_id)
        if run is None and firing.outcome == STARTED:
            continue  # pruned
        if run is None or run.state not in FINAL_RUN_STATES:
            active.append(firing.run_id)
    return active
