"""Two engines never work on one run: taking a run is one atomic claim in the store.

The attack: `orch run` is killed with SIGKILL, and then several `orch resume RUN` start at the
same moment. Each used to read "no live engine" and go in, so attempts ran twice at once and one
engine killed the other's live attempt as an orphan. Now exactly one gets in; the others are
refused with a clear message, and no attempt of any task runs twice.

The dead engine's heartbeat is made stale by writing its time into the store (no waiting for the
lease), and every task waits for a gate file the test creates once the refused engines are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from orchestration.core.errors import OrchestrationError
from orchestration.engine.loop import Orchestrator
from orchestration.engine.plan import load_plan
from orchestration.engine.policy import build_engine
from orchestration.pluginhost.hooks import load_plugins
from orchestration.resilience.runs import STALE_RUN_SECONDS
from orchestration.store import Store
from orchestration.store.claims import ClaimLost
from tests.helpers import PY, write_plan

RUN_ID = "claimed"
CHAIN = 6  # tasks, each depending on the one before
RESUMES = 8  # `orch resume` processes started at once
WAIT_S = 180.0  # the longest any step here may take on a busy machine (a bound, not a timing)
POLL_S = 0.02
# Logs `start TASK ATTEMPT PID` with one write, then waits for the gate file.
WAITING_TASK = (
    "import os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "line = f\"start {os.environ['ORCH_TASK_ID']} {os.environ['ORCH_ATTEMPT']} {os.getpid()}\"\n"
    "os.write(fd, (line + '\\n').encode())\n"
    "deadline = time.monotonic() + 600\n"
    "while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:\n"
    "    time.sleep(0.02)\n"
)


def chain_plan(directory: Path, log: Path, gate: Path) -> Path:
    tasks = [
        {
            "id": f"t{i}",
            "action": {"kind": "shell", "run": [PY, "-c", WAITING_TASK, str(log), str(gate)]},
            **({"depends_on": [f"t{i - 1}"]} if i > 1 else {}),
        }
        for i in range(1, CHAIN + 1)
    ]
    plan = {"version": 1, "name": "claims", "workdir": ".", "tasks": tasks}
    return write_plan(directory, plan)


def starts(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()[1:3]) for line in log.read_text().splitlines() if line]  # type: ignore[misc]


def orch_process(*args: str, stderr: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [PY, "-m", "orchestration", *args],
            env={**env, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(POLL_S)


def age_heartbeat(db_url: str, run_id: str) -> None:
    """What waiting out the lease would do: the dead engine's last heartbeat, long ago."""
    past = datetime.now(UTC) - timedelta(seconds=STALE_RUN_SECONDS * 10)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET updated_at = :past WHERE id = :id"),
                {"past": past, "id": run_id},
            )
    finally:
        engine.dispose()


def start_and_kill(tmp_path: Path, db_url: str, log: Path, gate: Path) -> None:
    plan = chain_plan(tmp_path / "plan", log, gate)
    first = orch_process(
        "run", str(plan), "--run-id", RUN_ID, "--db", db_url, "--quiet", stderr=tmp_path / "run.err"
    )
    try:
        wait_for(lambda: ("t1", "1") in starts(log), "the first attempt to start")
    finally:
        first.send_signal(signal.SIGKILL)  # the engine only: its action lives on as an orphan
        first.wait()


def resume_all_at_once(tmp_path: Path, db_url: str, gate: Path) -> list[tuple[int, str]]:
    """Start RESUMES `orch resume` at once; open the gate when all but one have ended."""
    engines = [
        orch_process("resume", RUN_ID, "--db", db_url, "--quiet", stderr=tmp_path / f"r{n}.err")
        for n in range(RESUMES)
    ]
    try:
        deadline = time.monotonic() + WAIT_S
        while sum(p.poll() is not None for p in engines) < RESUMES - 1:
            if time.monotonic() > deadline:
                break  # more than one engine got in: open the gate and let the asserts speak
            time.sleep(POLL_S)
        gate.touch()
        for process in engines:
            process.wait(timeout=WAIT_S)
    finally:
        for process in engines:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [
        (p.returncode, (tmp_path / f"r{n}.err").read_text(errors="replace"))
        for n, p in enumerate(engines)
    ]


@pytest.mark.slow
def test_simultaneous_resumes_of_a_killed_run_let_exactly_one_engine_in(
    tmp_path: Path, db_url: str
) -> None:
    log, gate = tmp_path / "attempts.log", tmp_path / "gate"
    start_and_kill(tmp_path, db_url, log, gate)
    age_heartbeat(db_url, RUN_ID)
    outcomes = resume_all_at_once(tmp_path, db_url, gate)

    codes = Counter(code for code, _ in outcomes)
    assert codes == {0: 1, 2: RESUMES - 1}, outcomes
    for code, stderr in outcomes:
        if code == 2:
            assert "another engine" in stderr and "--force" in stderr, stderr
    attempts = Counter(starts(log))
    assert all(n == 1 for n in attempts.values()), f"an attempt ran twice: {attempts}"
    with Store.open(db_url) as store:
        assert {t.state for t in store.tasks(RUN_ID)} == {"completed"}
        assert store.get_run(RUN_ID).owner is None  # the winner let the run go when done
        assert store.task(RUN_ID, "t1").attempts == 2  # the killed attempt, then one retry


@pytest.mark.slow
def test_simultaneous_resumes_of_a_paused_run_let_exactly_one_engine_in(
    tmp_path: Path, sqlite_url: str
) -> None:
    log, gate = tmp_path / "attempts.log", tmp_path / "gate"
    plan = chain_plan(tmp_path / "plan", log, gate)
    first = orch_process(
        "run", str(plan), "--run-id", RUN_ID, "--db", sqlite_url, "--quiet", "--grace", "0",
        stderr=tmp_path / "run.err",
    )  # fmt: skip
    wait_for(lambda: ("t1", "1") in starts(log), "the first attempt to start")
    first.send_signal(signal.SIGTERM)  # a clean stop: the run is paused and held by no engine
    assert first.wait(timeout=WAIT_S) == 143, (tmp_path / "run.err").read_text()
    with Store.open(sqlite_url) as store:
        assert store.get_run(RUN_ID).state == "paused"

    outcomes = resume_all_at_once(tmp_path, sqlite_url, gate)

    assert Counter(code for code, _ in outcomes) == {0: 1, 2: RESUMES - 1}, outcomes
    attempts = Counter(starts(log))
    assert all(n == 1 for n in attempts.values()), f"an attempt ran twice: {attempts}"


def test_the_claim_is_atomic_under_many_threads(db_url: str) -> None:
    """Many claims at the same instant, each on its own connection: exactly one wins."""
    with Store.open(db_url) as store:
        _store_run(store, state="paused")
        barrier = threading.Barrier(RESUMES)
        won: list[str] = []

        def claim(owner: str) -> None:
            barrier.wait()
            stale = datetime.now(UTC) - timedelta(seconds=STALE_RUN_SECONDS)
            if store.claim_run(RUN_ID, owner, stale_before=stale):
                won.append(owner)

        threads = [threading.Thread(target=claim, args=(f"e{n}",)) for n in range(RESUMES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, won
        assert store.get_run(RUN_ID).owner == won[0]


def test_a_holder_known_dead_is_replaced_by_exactly_one_engine(db_url: str) -> None:
    """A resume that knows the holder's process is gone need not wait for its heartbeat to go
    stale, but of several such resumes only the first gets the run (compare-and-swap on it)."""
    with Store.open(db_url) as store:
        _store_run(store, state="paused")
        fresh = datetime.now(UTC) - timedelta(seconds=STALE_RUN_SECONDS)
        assert store.claim_run(RUN_ID, "dead", stale_before=fresh)  # the engine later killed
        assert not store.claim_run(RUN_ID, "plain", stale_before=fresh)  # heartbeat is fresh
        barrier = threading.Barrier(RESUMES)
        won: list[str] = []

        def replace_dead(owner: str) -> None:
            barrier.wait()
            if store.claim_run(RUN_ID, owner, stale_before=fresh, holder_gone="dead"):
                won.append(owner)

        threads = [threading.Thread(target=replace_dead, args=(f"e{n}",)) for n in range(RESUMES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, won
        assert store.get_run(RUN_ID).owner == won[0]


def test_a_new_holder_is_not_mistaken_for_the_dead_engine_before_it_records_itself(
    db_url: str,
) -> None:
    """Between a resume's claim and its recording of its own process, a second resume reads the
    run: it must not see the new owner beside the killed engine's process (and so take the run
    from a live engine as if its holder were dead)."""
    from orchestration.resilience.engine_identity import owner_alive

    with Store.open(db_url) as store:
        _store_run(store, state="paused")
        fresh = datetime.now(UTC) - timedelta(seconds=STALE_RUN_SECONDS)
        assert store.claim_run(RUN_ID, "killed", stale_before=fresh)
        dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True)
        store.record_engine(RUN_ID, os.uname().nodename, int(dead.stdout), 1.0)
        assert owner_alive(store.get_run(RUN_ID)) is False  # the killed engine, gone
        assert store.claim_run(RUN_ID, "first", stale_before=fresh, holder_gone="killed")
        seen = store.get_run(RUN_ID)  # what a second resume reads before "first" records itself
        assert seen.owner == "first" and owner_alive(seen) is None  # unknown: the lease decides
        gone = seen.owner if owner_alive(seen) is False else None
        assert not store.claim_run(RUN_ID, "second", stale_before=fresh, holder_gone=gone)


def test_an_engine_whose_run_was_taken_over_stores_nothing_more(
    tmp_path: Path, sqlite_url: str
) -> None:
    gate = tmp_path / "gate"
    plan_path = chain_plan(tmp_path / "plan", tmp_path / "attempts.log", gate)
    plan = load_plan(plan_path)
    with Store.open(sqlite_url) as store:
        engine = build_engine(plan, load_plugins(entry_points=False))
        orchestrator = Orchestrator.start(plan, store, run_id=RUN_ID, engine=engine)
        orchestrator.tick()  # t1 starts
        assert store.task(RUN_ID, "t1").state == "running"
        stale = datetime.now(UTC)  # ignored: --force takes the run whatever holds it
        assert store.claim_run(RUN_ID, "intruder", stale_before=stale, force=True)
        gate.touch()
        with pytest.raises(ClaimLost, match="taken over"):
            orchestrator.run_until_stopped()
        assert store.task(RUN_ID, "t1").state == "running"  # the lost engine's result not stored
        assert store.get_run(RUN_ID).owner == "intruder"
        with pytest.raises(OrchestrationError, match="another engine"):
            Orchestrator.resume(store, RUN_ID)  # the intruder's claim is fresh


def _store_run(store: Store, *, state: str) -> None:
    from orchestration.core.models import RunRecord

    now = datetime.now(UTC)
    store.create_run(RunRecord(RUN_ID, "claims", "/p.yaml", "/w", state, now, now), [])
