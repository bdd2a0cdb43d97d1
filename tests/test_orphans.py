"""Orphaned attempts: a restarted engine ends the process groups its predecessor left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from orchestration.orphans import AttemptRegistry

SLEEP = [
    sys.executable,
    "-c",
    "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)",
]


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(SLEEP, env={**os.environ, **env}, start_new_session=True)


def gone(process: subprocess.Popen[bytes], timeout: float = 5) -> bool:
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
    process = start({})
    try:
        time.sleep(0.3)
        registry.record("a", process.pid)
        assert registry.end_orphans("run-1", {"a"}) == {"a"}
        assert gone(process)
        deadline = time.monotonic() + 5
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
    mine = start({"ORCH_RUN_ID": "run-1", "ORCH_TASK_ID": "a"})
    other_task = start({"ORCH_RUN_ID": "run-1", "ORCH_TASK_ID": "b"})
    other_run = start({"ORCH_RUN_ID": "run-2", "ORCH_TASK_ID": "a"})
    try:
        time.sleep(0.3)
        assert registry.end_orphans("run-1", {"a"}) == {"a"}
        assert gone(mine)
        assert other_task.poll() is None and other_run.poll() is None  # not theirs to end
    finally:
        for process in (mine, other_task, other_run):
            if process.poll() is None:
                os.killpg(process.pid, 9)
            process.wait()
