"""Shutdown and timeouts with a real `orch run` process: SIGTERM/SIGINT drain with a grace
period, a second Ctrl-C stops at once, nothing is lost, and a timed-out action's group dies."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from orchestration.store import Store
from tests.helpers import (
    PY,
    StderrWatch,
    held_code,
    orch,
    shell_task,
    wait_for_file,
    write_plan,
)


def start_run(tmp_path: Path, tasks: list[dict], *args: str) -> subprocess.Popen[str]:
    path = write_plan(tmp_path, {"version": 1, "name": "sd", "tasks": tasks})
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    return subprocess.Popen(
        [PY, "-m", "orchestration", "run", str(path), "--quiet", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def store_of(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / '.orchestration' / 'state.db'}")


def wait_until_running(tmp_path: Path, task_id: str, timeout: float = 120) -> str:
    """The run's id once `task_id` is running. Called after the task's own start marker appeared,
    so the engine has created the store by then: the test never opens it while it is created."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (tmp_path / ".orchestration" / "state.db").exists():
            store = store_of(tmp_path)
            try:
                runs = store.list_runs()
                if runs and store.task(runs[0].id, task_id).state == "running":
                    return runs[0].id
            finally:
                store.close()
        time.sleep(0.05)
    raise AssertionError(f"{task_id} never ran")


def sleeper(task_id: str, seconds: float, marker: Path | None = None, **extra: object) -> dict:
    """Sleeps (only on the first attempt when `marker` is given), then writes `<id>.done`."""
    code = (
        "import os,pathlib,sys,time; m=sys.argv[1]; first=not m or not pathlib.Path(m).exists();"
        "m and pathlib.Path(m).touch(); open(sys.argv[3],'w').write(str(os.getpid()));"
        "time.sleep(float(sys.argv[2]) if first else 0); pathlib.Path(sys.argv[3] + '.done').touch()"
    )
    pidfile = str(marker.parent / f"{task_id}.pid") if marker else f"{task_id}.pid"
    run = [PY, "-c", code, str(marker or ""), str(seconds), pidfile]
    return {"id": task_id, "action": {"kind": "shell", "run": run}, **extra}


def test_sigterm_lets_the_running_action_finish_within_the_grace_and_starts_nothing_new(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "release-a"  # `a` works until the engine has taken the signal in
    started = tmp_path / "a-started"
    tasks = [shell_task("a", held_code(gate, started), priority=9), shell_task("b", "pass")]
    process = start_run(tmp_path, tasks, "--grace", "120")
    engine = StderrWatch(process)
    wait_for_file(started)
    run_id = wait_until_running(tmp_path, "a")
    process.send_signal(signal.SIGTERM)
    engine.wait_for("get up to 120s to finish")
    gate.touch()
    stderr = engine.finish()
    assert process.returncode == 143, stderr
    assert "1 running action(s) get up to 120s to finish" in stderr
    assert f"orch resume {run_id}" in stderr
    store = store_of(tmp_path)
    try:
        a, b = store.task(run_id, "a"), store.task(run_id, "b")
        assert (a.state, a.attempts) == ("completed", 1)  # it finished in its grace
        assert b.attempts == 0 and b.state in ("ready", "pending")  # nothing new started
        assert store.get_run(run_id).state == "paused"
    finally:
        store.close()
    resumed = orch("resume", run_id, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_an_action_still_running_after_the_grace_is_stopped_and_retried_on_resume(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "a.mark"
    process = start_run(tmp_path, [sleeper("a", 60, marker)], "--grace", "1")
    wait_for_file(tmp_path / "a.pid")  # the action itself is under way, not only its record
    run_id = wait_until_running(tmp_path, "a")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 50  # not the 60 s the action sleeps
    pid = int((tmp_path / "a.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    store = store_of(tmp_path)
    try:
        assert store.task(run_id, "a").state == "retrying"
        (retry,) = [m for m in store.transitions(run_id, "a") if m.trigger == "retry"]
        assert "interrupted" in retry.reason
    finally:
        store.close()
    resumed = orch("resume", run_id, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    store = store_of(tmp_path)
    try:
        assert (store.task(run_id, "a").state, store.task(run_id, "a").attempts) == ("completed", 2)
    finally:
        store.close()


def test_a_second_ctrl_c_stops_at_once_and_loses_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "a.mark"
    process = start_run(tmp_path, [sleeper("a", 60, marker)], "--grace", "600")
    engine = StderrWatch(process)
    wait_for_file(tmp_path / "a.pid")  # the action itself is under way, not only its record
    run_id = wait_until_running(tmp_path, "a")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    engine.wait_for("Press Ctrl-C again")  # the first one was taken in: a drain began
    process.send_signal(signal.SIGINT)
    stderr = engine.finish(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 50  # not the 600 s grace, nor the 60 s sleep
    assert "stopped at once" in stderr
    pid = int((tmp_path / "a.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    resumed = orch("resume", run_id, "--quiet", "--force", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    store = store_of(tmp_path)
    try:
        task = store.task(run_id, "a")
        assert (task.state, task.attempts) == ("completed", 2)
        assert store.integrity_ok()
    finally:
        store.close()


def test_an_action_past_its_timeout_dies_with_its_group_and_counts_as_a_timeout(
    tmp_path: Path,
) -> None:
    code = (
        "import subprocess,sys,time;"
        "c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        "open('child.pid','w').write(str(c.pid)); time.sleep(60)"
    )
    # 10 s: long enough for the action to start its child on a busy machine
    task = shell_task("a", code, timeout_seconds=10, retry={"max_attempts": 1})
    path = write_plan(tmp_path, {"version": 1, "name": "to", "tasks": [task]})
    completed = orch("run", str(path), "--quiet", cwd=tmp_path, timeout=120)
    assert completed.returncode in (1, 3), completed.stderr
    child = int((tmp_path / "child.pid").read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    store = store_of(tmp_path)
    try:
        run_id = store.list_runs()[0].id
        (step,) = [e for e in store.events(run_id) if e.kind == "step"]
        assert step.data["timed_out"] is True and step.data["error_kind"] == "timeout"
    finally:
        store.close()
