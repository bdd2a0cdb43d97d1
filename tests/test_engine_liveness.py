"""Honest status: a run whose engine was killed shows as interrupted, and resume takes it over.

Real engines (`orch run` in a subprocess) hold a run open with a task that waits for a file the
test creates; the engine is killed with SIGKILL, as `kill -9` would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, update

from orchestration.resilience.engine_identity import owner_alive, process_alive, this_engine
from orchestration.store import Store
from orchestration.store.schema import Run
from tests.helpers import orch, orch_in_background, orch_json, shell_task, write_plan
from tests.test_web_api import start_server, stop_server

RUN_ID = "held"
WAIT_S = 120.0  # how long a test waits for an engine to reach a state (a busy machine is slow)
WAIT_FOR_FILE = (
    "import os, sys, time\n"
    "print('waiting for the release file', flush=True)\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
    "print('released', flush=True)\n"
)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def held_plan(tmp_path: Path) -> tuple[Path, Path]:
    release = tmp_path / "release"
    task = shell_task("hold", WAIT_FOR_FILE)
    task["action"]["run"].append(str(release))
    plan = write_plan(tmp_path / "project", {"version": 1, "name": "held", "tasks": [task]})
    return plan, release


def db_of(plan: Path) -> str:
    return f"sqlite:///{plan.parent / '.orchestration' / 'state.db'}"


def task_running(db: str) -> bool:
    try:
        with Store.open(db) as store:
            return store.task(RUN_ID, "hold").state == "running"
    except Exception:  # the engine has not stored its run yet
        return False


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path, str]]:
    plan, release = held_plan(tmp_path)
    db = db_of(plan)
    process = orch_in_background("run", str(plan), "--run-id", RUN_ID, "--db", db)
    try:
        wait_until(lambda: task_running(db), "the engine to start the task")
        yield process, plan, release, db
    finally:
        release.touch()  # a leftover action (orphan) ends by itself
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=WAIT_S)


def test_a_killed_engine_shows_as_interrupted_and_resume_takes_over_at_once(
    engine: tuple[subprocess.Popen[str], Path, Path, str],
) -> None:
    process, plan, release, db = engine
    with Store.open(db) as store:
        recorded = store.get_run(RUN_ID)
    assert (recorded.engine_host, recorded.engine_pid) == (this_engine().host, process.pid)
    assert owner_alive(recorded) is True

    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=WAIT_S)

    shown = orch_json("status", RUN_ID, "--db", db)["run"]
    assert shown["state"] == "interrupted"
    assert shown["interrupted"]["resume"] == f"orch resume {RUN_ID} --db {db}"
    with Store.open(db) as store:
        stored = store.get_run(RUN_ID)
    assert stored.state == "running"  # the store is unchanged: only the view is honest
    age = (datetime.now(UTC) - stored.updated_at).total_seconds()
    assert 0 <= shown["interrupted"]["seconds_ago"] <= age + 1
    text = orch("status", RUN_ID, "--db", db)
    assert "interrupted" in text.stdout and f"orch resume {RUN_ID}" in text.stdout
    server = start_server(db, plan.parent / "token")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        api = httpx.get(f"{server.base}/api/v1/runs/{RUN_ID}", headers=headers, timeout=10)
        served = api.json()["run"]
        assert (served["state"], served["live"]) == ("interrupted", False)
        assert served["interrupted"]["resume"] == f"orch resume {RUN_ID} --db {db}"
        heartbeat = datetime.fromisoformat(served["interrupted"]["last_heartbeat"])
        assert heartbeat == stored.updated_at
        page = httpx.get(f"{server.base}/runs/{RUN_ID}", headers=headers, timeout=10)
        assert "Interrupted" in page.text and f"orch resume {RUN_ID} --db {db}" in page.text
    finally:
        stop_server(server)

    # Right after the kill, well within the heartbeat's lease, resume takes the run.
    release.touch()
    resumed = orch("resume", RUN_ID, "--db", db, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    with Store.open(db) as store:
        run = store.get_run(RUN_ID)
        assert run.state == "completed"
        assert store.task(RUN_ID, "hold").attempts == 2  # the killed attempt ran again
    assert run.engine_pid not in (None, process.pid)


def test_resume_refuses_while_the_engine_lives(
    engine: tuple[subprocess.Popen[str], Path, Path, str],
) -> None:
    process, _plan, _release, db = engine
    refused = orch("resume", RUN_ID, "--db", db, "--quiet")
    assert refused.returncode == 2
    assert f"process {process.pid}" in refused.stderr
    assert orch_json("status", RUN_ID, "--db", db)["run"]["state"] == "running"
    assert process.poll() is None


def _store_engine(db: str, **values: object) -> None:
    """Write the run's row directly, as an engine on another machine would have."""
    engine = create_engine(db)
    try:
        with engine.begin() as conn:
            conn.execute(update(Run).where(Run.c.id == RUN_ID).values(**values))
    finally:
        engine.dispose()


def test_on_another_host_the_heartbeat_lease_decides(tmp_path: Path) -> None:
    plan, release = held_plan(tmp_path)
    release.touch()
    db = db_of(plan)
    assert orch("run", str(plan), "--run-id", RUN_ID, "--db", db, "--quiet").returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer exists here
    now = datetime.now(UTC)
    foreign = {"engine_host": "elsewhere.example", "engine_pid": gone.pid, "engine_started": 1.0}
    _store_engine(db, state="running", updated_at=now, finished_at=None, **foreign)

    refused = orch("resume", RUN_ID, "--db", db, "--quiet")
    assert refused.returncode == 2  # its process may live there: wait for the lease
    assert orch_json("status", RUN_ID, "--db", db)["run"]["state"] == "running"

    _store_engine(db, updated_at=now - timedelta(seconds=60))
    shown = orch_json("status", RUN_ID, "--db", db)["run"]
    assert shown["state"] == "interrupted"
    assert shown["engine"] == {"host": "elsewhere.example", "pid": gone.pid}
    assert orch("resume", RUN_ID, "--db", db, "--quiet").returncode == 0


def test_a_reused_process_id_is_not_the_engine() -> None:
    me = this_engine()
    assert process_alive(me.pid, me.started)
    assert not process_alive(me.pid, me.started - 3600)  # same id, another start: not ours
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not process_alive(gone.pid, None)
    assert os.getpid() == me.pid
