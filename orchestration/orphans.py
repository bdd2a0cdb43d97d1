"""Records the process group of each running attempt, so a restarted engine can end orphans.

An action runs in its own session, so when the engine is killed (kill -9, a closed terminal) the
action goes on. Before the retry starts, recovery ends the old attempt's process group, so two
attempts never work in the same directory at once. A record holds the group id and the leader's
start time (from /proc): a group id reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

logger = logging.getLogger(__name__)

PROC = Path("/proc")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after it follow its ')'.
    return stat.rsplit(")", 1)[1].split()[19]


class AttemptRegistry:
    """One file per running attempt under `directory`: `<task id>` holding `pgid start-time`."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _path(self, task_id: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / task_id.replace("/", "_")

    def record(self, task_id: str, pid: int) -> None:
        path = self._path(task_id)
        started = _start_time(pid)
        if path is None or started is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{pid} {started}\n")
        except OSError as error:  # a read-only directory costs only this safety net
            logger.warning("cannot record the process of %s: %s", task_id, error)

    def forget(self, task_id: str) -> None:
        path = self._path(task_id)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def end_orphan(self, task_id: str) -> bool:
        """Kill the recorded process group of an attempt if it still runs. True if it did."""
        path = self._path(task_id)
        if path is None:
            return False
        try:
            pid_text, started = path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return False
        self.forget(task_id)
        if _start_time(pid) != started:
            return False  # gone, or the id now belongs to another process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            logger.warning("ended the orphaned attempt of %s (process group %d)", task_id, pid)
            return True
        return False
