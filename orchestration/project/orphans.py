"""Records the process group of each running attempt, so a restarted engine can end orphans.

An action runs in its own session, so when the engine is killed (kill -9, a closed terminal) the
action goes on. Before the retry starts, recovery ends the old attempt's process group, so two
attempts never work in the same directory at once. A record holds the group id and the leader's
start time (from /proc): a group id reused by an unrelated process is never signalled.

The record is written just after the process starts; an engine killed in between leaves an
attempt nobody recorded. So recovery also looks for processes whose environment names the run
and the task (every action gets ORCH_RUN_ID and ORCH_TASK_ID) and ends their groups too.
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

    def end_orphans(self, run_id: str, task_ids: set[str]) -> set[str]:
        """End every leftover attempt of these tasks: recorded, or found by its environment.

        Returns the tasks an attempt was ended for.
        """
        ended = {task_id for task_id in task_ids if self.end_orphan(task_id)}
        for task_id, pgid in _groups_by_environment(run_id, task_ids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                logger.warning("ended the unrecorded attempt of %s (group %d)", task_id, pgid)
                ended.add(task_id)
        return ended

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


def _groups_by_environment(run_id: str, task_ids: set[str]) -> list[tuple[str, int]]:
    """(task id, process group) of live processes started as an attempt of one of the tasks."""
    if not task_ids:
        return []
    import psutil  # only a recovery with attempts under way pays for the scan

    found = []
    own_group = os.getpgid(0)
    for process in psutil.process_iter():
        try:
            environ = process.environ()
            if environ.get("ORCH_RUN_ID") != run_id:
                continue
            task_id = environ.get("ORCH_TASK_ID")
            if task_id not in task_ids:
                continue
            pgid = os.getpgid(process.pid)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
        if pgid != own_group:
            found.append((task_id, pgid))
    return found
