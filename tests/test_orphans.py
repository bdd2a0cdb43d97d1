"""Orphaned attempts: a restarted engine ends the process groups its predecessor left behind."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from orchestration.project.orphans import AttemptRegistry
from tests.helpers import wait_for_file

# Starts a grandchild, then says so by creating the file named by its first argument.
SLEEP = [
    sys.executable,
    "-c",
    "import pathlib,subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); pathlib.Path(sys.argv[1]).touch(); time.sleep(60)",
]
_started = itertools.count()


def start(env: dict[str, str], folder: Path) -> subprocess.Popen[bytes]:
    """Start an attempt-like process group and wait until its grandchild runs (no sleep race)."""
    marker = folder / f"started-{next(_started)}"
    process = subprocess.Popen(
        [*SLEEP, str(marker)], env={**os.environ, **env}, start_new_session=True
    )
    wait_for_file(marker)
    return process


def gone(process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                members.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return members


def test_a_recorded_attempt_is_ended_with_its_whole_group(tmp_path: Path) -> None:
    registry = AttemptRegistry(tmp_path / "attempts")
    process = start({}, tmp_path)
    try:
        registry.record("a", process.pid)
        assert registry.end_orphans("run-1", {"a"}) == {"a"}
        assert gone(process)
        deadline = time.monotonic() + 30
        while group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_members(process.pid)  # the grandchild went with it
    finally:
        process.kill()
        process.wait()


def test_an_attempt_the_engine_died_before_recording_is_found_by_its_environment(
    tmp_path: Path,
) -> None:
    registry = AttemptRegistry(tmp_path / "attempts")
    mine = start({"ORCH_RUN_ID": "run-1", "ORCH_TASK_ID": "a"}, tmp_path)
    other_task = start({"ORCH_RUN_ID": "run-1", "ORCH_TASK_ID": "b"}, tmp_path)
    other_run = start({"ORCH_RUN_ID": "run-2", "ORCH_TASK_ID": "a"}, tmp_path)
    try:
        assert registry.end_orphans("run-1", {"a"}) == {"a"}
        assert gone(mine)
        assert other_task.poll() is None and other_run.poll() is None  # not theirs to end
    finally:
        for process in (mine, other_task, other_run):
            if process.poll() is None:
                os.killpg(process.pid, 9)
            process.wait()
