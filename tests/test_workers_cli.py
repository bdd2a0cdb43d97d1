"""`orch validate` on plans for worker processes, and a run shared by workers on SQLite."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestration.store import Store
from tests.helpers import PY, orch, orch_json, wait_for_file, write_plan

WAIT_LIMIT_S = 300


def _plan(tmp_path: Path, tasks: list[dict], **concurrency: object) -> Path:
    (tmp_path / "work").mkdir(exist_ok=True)
    settings = {"executor": "workers", **concurrency}
    plan = {"version": 1, "name": "w", "workdir": "work", "concurrency": settings, "tasks": tasks}
    return write_plan(tmp_path, plan)


def _task(task_id: str, records: Path) -> dict:
    line = f'echo "$WORKER" >> {records / task_id}'
    return {"id": task_id, "action": {"kind": "shell", "run": ["sh", "-c", line]}}


def test_validate_says_a_workdir_without_git_runs_on_local_workers(tmp_path: Path) -> None:
    plan = _plan(tmp_path, [_task("a", tmp_path)])
    done = orch("validate", str(plan))
    assert done.returncode == 0, done.stderr
    assert "is not a git repository" in done.stdout and "this machine only" in done.stdout
    assert orch_json("validate", str(plan))["workers"] == "local"
    subprocess.run(["git", "init", "-q", str(tmp_path / "work")], check=True)
    done = orch("validate", str(plan))
    assert "not a git repository" not in done.stdout
    assert orch_json("validate", str(plan))["workers"] == "any"


def test_local_workers_share_a_run_on_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    ids = [f"t{i}" for i in range(12)]
    plan = _plan(tmp_path, [_task(i, records) for i in ids], max_workers=4, lease_seconds=5)
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    workers = []
    for name in ("a", "b"):
        argv = [PY, "-m", "orchestration", "worker", "--db", sqlite_url, "--name", name]
        with (tmp_path / f"{name}.log").open("wb") as log:
            started = subprocess.Popen(argv, env={**env, "WORKER": name}, stdout=log, stderr=log)
        workers.append(started)
    try:
        done = orch(
            "submit", str(plan), "--db", sqlite_url, "-q", "--run-id", "r", timeout=WAIT_LIMIT_S
        )
    finally:
        for worker in workers:
            worker.terminate()  # SIGTERM: finish what runs, then stop
        for worker in workers:
            worker.wait(timeout=WAIT_LIMIT_S)
    assert done.returncode == 0, done.stderr
    with Store.open(sqlite_url) as store:
        assert {t.state for t in store.tasks("r")} == {"completed"}
        shown = {w.name: w for w in store.workers()}
    ran = {i: (records / i).read_text().split() for i in ids}
    assert all(len(names) == 1 for names in ran.values())
    assert sum(w.reported for w in shown.values()) == len(ids)
    assert {w.state for w in shown.values()} == {"stopped"}
    for name, worker in shown.items():
        assert worker.reported == sum(names == [name] for names in ran.values())


def test_a_stopped_conductor_takes_its_attempts_back_and_resume_finishes(
    tmp_path: Path, sqlite_url: str
) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    code = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
    code += f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.02)\n"
    task = {"id": "slow", "action": {"kind": "shell", "run": [PY, "-c", code]}}
    plan = _plan(tmp_path, [task], shutdown_grace_seconds=0)
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    argv = [PY, "-m", "orchestration", "worker", "--db", sqlite_url, "--name", "a"]
    with (tmp_path / "a.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    conductor = subprocess.Popen(
        [PY, "-m", "orchestration", "submit", str(plan), "--db", sqlite_url, "-q", "--run-id", "r"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_file(started)
        conductor.terminate()  # SIGTERM with no grace: the attempt on the worker is taken back
        assert conductor.wait(timeout=WAIT_LIMIT_S) == 143
        with Store.open(sqlite_url) as store:
            slow = store.task("r", "slow")
        assert (slow.state, slow.attempts) == ("retrying", 1)
        gate.touch()
        done = orch("resume", "r", "--db", sqlite_url, "-q", timeout=WAIT_LIMIT_S)
        assert done.returncode == 0, done.stderr
    finally:
        worker.terminate()
        worker.wait(timeout=WAIT_LIMIT_S)
        if conductor.poll() is None:
            conductor.kill()
            conductor.wait()


def test_a_during_rule_stops_an_attempt_on_a_worker(tmp_path: Path, sqlite_url: str) -> None:
    marker = tmp_path / "slow-once"
    # The first attempt waits until stopped; the second finds the marker and ends at once.
    code = (
        f"import pathlib, time\np = pathlib.Path({str(marker)!r})\n"
        "if not p.exists():\n    p.touch()\n    time.sleep(600)\n"
    )
    (tmp_path / "rules.yaml").write_text(
        "breakpoints:\n  - {name: time_threshold_exceeded, when: 'duration_seconds >= 1'}\n"
    )
    (tmp_path / "work").mkdir()
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "w",
            "workdir": "work",
            "rules": ["rules.yaml"],
            "defaults": {"retry": {"max_attempts": 3, "base_seconds": 0, "jitter": False}},
            "concurrency": {"executor": "workers"},
            "tasks": [{"id": "a", "action": {"kind": "shell", "run": [PY, "-c", code]}}],
        },
    )
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    argv = [PY, "-m", "orchestration", "worker", "--db", sqlite_url, "--name", "a"]
    with (tmp_path / "a.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        done = orch(
            "submit", str(plan), "--db", sqlite_url, "-q", "--run-id", "r", timeout=WAIT_LIMIT_S
        )
    finally:
        worker.terminate()
        worker.wait(timeout=WAIT_LIMIT_S)
    assert done.returncode == 0, done.stderr
    with Store.open(sqlite_url) as store:
        assert store.task("r", "a").attempts == 2
        stopped = [e for e in store.events("r") if e.kind == "attempt_stopped"]
    assert len(stopped) == 1 and stopped[0].data["rule"] == "time_threshold_exceeded"
