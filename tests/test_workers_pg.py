"""Worker processes on the real PostgreSQL: many tasks, killed and paused workers, a killed
conductor and a restarted server. Every wait is on a file or a stored state the test watches."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from orchestration.store import Store
from orchestration.store.work_queue import ITEMS, WorkQueue
from tests.helpers import PY, write_plan

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# 5,000 tasks in CI (.ci/run sets ORCH_WORKER_TASKS=5000: about 2 minutes on a busy two-core
# machine); elsewhere the suite runs 400.
TASKS = int(os.environ.get("ORCH_WORKER_TASKS", "400"))
WAIT_LIMIT_S = 600  # a condition not reached by then fails the test (never a timing assertion)
LEASE_S = 2  # short leases: the tests wait on their expiry, they do not race it


class Procs:
    """The `orch` processes a test starts, each with its stderr in a file; all ended after."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
        env.update(WORKER=name, NO_COLOR="1")
        with (self.root / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [PY, "-m", "orchestration", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.started[name] = proc
        return proc

    def worker(
        self, name: str, url: str, concurrency: int = 1, *extra: str
    ) -> subprocess.Popen[bytes]:
        argv = ["worker", "--db", url, "--name", name, "-c", str(concurrency), *extra]
        return self.start(name, *argv)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def end(self) -> None:
        for proc in self.started.values():
            if proc.poll() is None:
                kill_tree(proc.pid, signal.SIGCONT)
                kill_tree(proc.pid, signal.SIGKILL)
            proc.wait()


def kill_tree(pid: int, sig: int) -> None:
    """Signal a process and everything it started (a machine dying takes its actions too)."""
    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.end()


def wait_until(what: str, condition: Callable[[], Any], procs: Procs | None = None) -> Any:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not (found := condition()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return found


def finished(proc: subprocess.Popen[bytes], procs: Procs, name: str) -> int:
    try:
        return proc.wait(timeout=WAIT_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not finish:\n{procs.log(name)[-3000:]}")


def recording(task_id: str, records: Path) -> dict[str, Any]:
    """A short shell task that appends the worker's name to its own record file."""
    line = f'echo "$WORKER" >> {records / task_id}'
    return {"id": task_id, "action": {"kind": "shell", "run": ["sh", "-c", line]}}


def held(task_id: str, records: Path, gate: Path) -> dict[str, Any]:
    """A task that records each start (with the worker's name), then waits for `gate`."""
    code = (
        "import os, pathlib, time\n"
        f"with open({str(records / task_id)!r}, 'a') as f: f.write(os.environ['WORKER'] + '\\n')\n"
        "deadline = time.monotonic() + 600\n"
        f"while not pathlib.Path({str(gate)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
    )
    return {"id": task_id, "action": {"kind": "shell", "run": [PY, "-c", code]}}


def plan_of(
    tmp_path: Path, tasks: list[dict[str, Any]], max_workers: int = 8, lease: float = LEASE_S
) -> Path:
    (tmp_path / "work").mkdir(exist_ok=True)
    concurrency = {"executor": "workers", "max_workers": max_workers, "lease_seconds": lease}
    plan = {"version": 1, "name": "w", "workdir": "work", "concurrency": concurrency}
    return write_plan(tmp_path, {**plan, "tasks": tasks})


def starts(records: Path, task_id: str) -> list[str]:
    path = records / task_id
    return path.read_text().split() if path.exists() else []


def items(url: str, task_id: str | None = None) -> list[Any]:
    queue = WorkQueue.open(url)
    try:
        query = select(ITEMS).order_by(ITEMS.c.id)
        if task_id is not None:
            query = query.where(ITEMS.c.task_id == task_id)
        with queue.engine.connect() as conn:
            return list(conn.execute(query))
    finally:
        queue.close()


def all_completed(url: str, run_id: str) -> None:
    with Store.open(url) as store:
        states = Counter(t.state for t in store.tasks(run_id))
    assert states == Counter({"completed": sum(states.values())}), states


def test_four_workers_complete_every_task_once(tmp_path: Path, pg_url: str, procs: Procs) -> None:
    records = tmp_path / "records"
    records.mkdir()
    ids = [f"t{i:05d}" for i in range(TASKS)]
    plan = plan_of(tmp_path, [recording(i, records) for i in ids], max_workers=16, lease=30)
    conductor = procs.start(
        "conductor", "run", str(plan), "--db", pg_url, "--workers", "0", "-q", "--run-id", "many"
    )
    for name in ("w1", "w2", "w3", "w4"):
        procs.worker(name, pg_url)
    assert finished(conductor, procs, "conductor") == 0, procs.log("conductor")[-3000:]
    all_completed(pg_url, "many")
    # Every task ran, and as many times as it was handed to a worker: with no lease lost, once.
    runs = {i: starts(records, i) for i in ids}
    reported = [r for r in items(pg_url) if r.reported_by is not None]
    assert Counter(r.task_id for r in reported) == Counter(ids)  # no attempt reported twice
    deliveries = Counter()
    for row in items(pg_url):
        deliveries[row.task_id] += row.deliveries
    assert {i: len(runs[i]) for i in ids} == {i: deliveries[i] for i in ids}
    # Nothing ran after the execution recorded complete: the last record of each task names
    # the worker the store says reported it (a lease lost on a busy machine re-runs a task
    # before, never after).
    assert {r.task_id: r.reported_by for r in reported} == {i: runs[i][-1] for i in ids}
    assert len({r.reported_by for r in reported}) > 1  # the work was shared


def test_a_killed_workers_attempt_is_retried_elsewhere(
    tmp_path: Path, pg_url: str, procs: Procs
) -> None:
    records, gate = tmp_path / "records", tmp_path / "gate"
    records.mkdir()
    plan = plan_of(tmp_path, [held("slow", records, gate)])
    conductor = procs.start(
        "conductor", "run", str(plan), "--db", pg_url, "--workers", "0", "-q", "--run-id", "k"
    )
    doomed = procs.worker("a", pg_url)
    wait_until("worker a starts the task", lambda: starts(records, "slow") == ["a"])
    kill_tree(doomed.pid, signal.SIGKILL)
    doomed.wait()
    procs.worker("b", pg_url)
    wait_until("the lease expires and b starts it", lambda: starts(records, "slow") == ["a", "b"])
    gate.touch()
    assert finished(conductor, procs, "conductor") == 0, procs.log("conductor")[-3000:]
    all_completed(pg_url, "k")
    [item] = items(pg_url, "slow")
    assert item.reported_by == "b" and item.deliveries == 2 and item.attempt == 1


def test_a_paused_workers_late_result_is_refused(tmp_path: Path, pg_url: str, procs: Procs) -> None:
    records, gate = tmp_path / "records", tmp_path / "gate"
    records.mkdir()
    plan = plan_of(tmp_path, [held("slow", records, gate)])
    conductor = procs.start(
        "conductor", "run", str(plan), "--db", pg_url, "--workers", "0", "-q", "--run-id", "s"
    )
    paused = procs.worker("a", pg_url)
    wait_until("worker a starts the task", lambda: starts(records, "slow") == ["a"])
    paused.send_signal(signal.SIGSTOP)  # the worker only: its action goes on
    wait_until("a's lease expires", lambda: items(pg_url, "slow")[0].state == "offered")
    procs.worker("b", pg_url)
    wait_until("b starts the attempt", lambda: starts(records, "slow") == ["a", "b"])
    gate.touch()
    assert finished(conductor, procs, "conductor") == 0, procs.log("conductor")[-3000:]
    paused.send_signal(signal.SIGCONT)
    wait_until("a is refused", lambda: "late result of s/slow#1 refused" in procs.log("a"))
    [item] = items(pg_url, "slow")
    assert item.reported_by == "b" and item.deliveries == 2
    all_completed(pg_url, "s")


def test_another_process_takes_over_from_a_killed_conductor(
    tmp_path: Path, pg_url: str, procs: Procs
) -> None:
    records, gate = tmp_path / "records", tmp_path / "gate"
    records.mkdir()
    tasks = [held("slow", records, gate), *(recording(f"q{i}", records) for i in range(5))]
    plan = plan_of(tmp_path, tasks)
    first = procs.start(
        "conductor", "run", str(plan), "--db", pg_url, "--workers", "0", "-q", "--run-id", "c"
    )
    procs.worker("a", pg_url, 2, "--no-adopt")  # the test's own `orch resume` takes over
    wait_until("the task starts", lambda: starts(records, "slow") == ["a"])
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = procs.start("resumer", "resume", "c", "--db", pg_url, "-q")
    wait_until("the new conductor offers it again", lambda: len(starts(records, "slow")) == 2)
    gate.touch()
    assert finished(second, procs, "resumer") == 0, procs.log("resumer")[-3000:]
    all_completed(pg_url, "c")
    assert all(starts(records, f"q{i}") for i in range(5))


def test_a_worker_resumes_a_run_whose_conductor_died(
    tmp_path: Path, pg_url: str, procs: Procs
) -> None:
    """No one runs `orch resume`: a worker sees the run has lost its conductor and starts one."""
    records, gate = tmp_path / "records", tmp_path / "gate"
    records.mkdir()
    tasks = [held("slow", records, gate), *(recording(f"q{i}", records) for i in range(3))]
    plan = plan_of(tmp_path, tasks)
    first = procs.start(
        "conductor", "run", str(plan), "--db", pg_url, "--workers", "0", "-q", "--run-id", "o"
    )
    procs.worker("a", pg_url, concurrency=2)
    wait_until("the task starts", lambda: starts(records, "slow") == ["a"])
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_until("the adopted run offers it again", lambda: len(starts(records, "slow")) == 2)
    gate.touch()

    def run_state() -> str | None:
        with Store.open(pg_url) as store:
            state = store.get_run("o").state
        return state if state != "running" else None

    assert wait_until("the resumed run finishes", run_state) == "completed"
    all_completed(pg_url, "o")
    assert "lost its conductor: resumed" in procs.log("a")


def _pg_ctl() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or [shutil.which("pg_ctl")]
    if not found or found[-1] is None:
        pytest.skip("no pg_ctl to restart the server with")
    return str(found[-1])


def restart_postgres(url: str) -> None:
    """Restart the suite's server as its fixture runs it (its own options, its own log)."""
    if os.environ.get("ORCH_TEST_PG_URL"):
        pytest.skip("the server is not the suite's own: it is not restarted")
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    data = Path(row[0])
    argv = [_pg_ctl(), "-D", str(data), "-l", str(data.parent / "server.log"), "-m", "fast"]
    argv += ["-w", "-t", "60", "restart"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True)


def test_workers_and_conductor_come_back_after_a_postgres_restart(
    tmp_path: Path, pg_url: str, procs: Procs
) -> None:
    records, gate = tmp_path / "records", tmp_path / "gate"
    records.mkdir()
    tasks = [held("slow", records, gate), *(recording(f"q{i}", records) for i in range(20))]
    plan = plan_of(tmp_path, tasks)
    conductor = procs.start(
        "conductor", "run", str(plan), "--db", pg_url, "--workers", "0", "-q", "--run-id", "pg"
    )
    procs.worker("a", pg_url, concurrency=2)
    procs.worker("b", pg_url, concurrency=2)
    wait_until("the held task starts", lambda: starts(records, "slow"))
    restart_postgres(pg_url)
    gate.touch()
    assert finished(conductor, procs, "conductor") == 0, procs.log("conductor")[-3000:]
    all_completed(pg_url, "pg")
    assert "the store went away" in procs.log("conductor")  # it did lose the database
    assert all(starts(records, f"q{i}") for i in range(20))
