"""Time for a crashed run to resume work: `python -m bench.recovery --tasks 10000`.

A real `orch run` of a plan of no-op tasks (`kind: python`, plus two shell tasks that sleep, so
that attempts with processes are under way) is killed with SIGKILL once about half of its tasks are
done. From fresh copies of that store, it measures the time until the resumed engine commits its
first `start` (work resumes):

- in-process: `Store.open`, `Orchestrator.resume()` (load the run and its history, end orphaned
  attempts, move interrupted attempts to a retry, commit), then the ticks until an attempt starts;
- `orch resume --force`: the same through the real command, from starting the process, so it also
  pays for Python's start and the imports. The times are those stored with the run's
  `run_resumed` event and the first new `start` transition.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from orchestration.core.yamlfile import dump_plan
from orchestration.engine.loop import Orchestrator
from orchestration.store import Store

RUN_ID = "recovery"
LONG_TASKS = 2  # shell tasks that sleep, so orphaned processes are there to end
LONG_SLEEP_S = 600
POLL_S = 0.01  # how often the store is read while waiting for the engine
TIMEOUT_S = 300.0  # for the crash to reach its point, or a resume to start work
GOAL_S = 1.0  # issue 6: a 10,000-task run resumes work within a second of recovery starting


def make_plan(directory: Path, count: int, workers: int, seed: int = 1) -> Path:
    """`count` tasks: two long shell tasks nothing waits for, the rest no-ops with dependencies."""
    rng = random.Random(seed)
    tasks: list[dict[str, object]] = [
        {"id": f"long-{i}", "action": {"kind": "shell", "run": ["sleep", str(LONG_SLEEP_S)]}}
        for i in range(LONG_TASKS)
    ]
    for i in range(count - LONG_TASKS):
        deps = [f"t{j}" for j in rng.sample(range(max(0, i - 50), i), k=min(i, 2))] if i else []
        tasks.append(
            {"id": f"t{i}", "action": {"kind": "python", "call": "os:getpid"}, "depends_on": deps}
        )
    plan = {
        "version": 1,
        "name": f"recovery-{count}",
        "concurrency": {"max_workers": workers},
        "tasks": tasks,
    }
    path = directory / "plan.yaml"
    path.write_text(dump_plan(plan))
    return path


def orch(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestration", *args, "--quiet"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def crash(plan: Path, db: Path, count: int, done_fraction: float) -> Counter[str]:
    """Run the plan with `orch run`; SIGKILL it once `done_fraction` of its tasks completed."""
    process = orch("run", str(plan), "--run-id", RUN_ID, "--db", f"sqlite:///{db}")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while _completed(db) < done_fraction * count:
            if process.poll() is not None:
                raise SystemExit(f"`orch run` ended (exit {process.returncode}) before the kill")
            if time.monotonic() > deadline:
                raise SystemExit("the run did not reach the point of the kill in time")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with Store.open(f"sqlite:///{db}") as store:
        return Counter(t.state for t in store.tasks(RUN_ID))


def _completed(db: Path) -> int:
    if not db.exists():
        return 0
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        query = "SELECT count(*) FROM tasks WHERE run_id = ? AND state = 'completed'"
        return int(connection.execute(query, (RUN_ID,)).fetchone()[0])
    except sqlite3.OperationalError:  # no tables yet
        return 0
    finally:
        connection.close()


def copy_state(source: Path, target: Path) -> None:
    """A fresh copy of the crashed store (its write-ahead log too: the engine never closed it)."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def in_process(db: Path) -> dict[str, float]:
    """Seconds to open the store, to resume (load and recover), and then to start an attempt."""
    started = time.perf_counter()
    store = Store.open(f"sqlite:///{db}")
    opened = time.perf_counter()
    orchestrator = Orchestrator.resume(store, RUN_ID, force=True)
    resumed = time.perf_counter()
    deadline = resumed + TIMEOUT_S
    while not orchestrator.dispatch.futures and time.perf_counter() < deadline:
        orchestrator.tick()
    first_start = time.perf_counter()
    if not orchestrator.dispatch.futures:
        raise SystemExit("the resumed engine started no attempt")
    orchestrator.stop()  # ends the long attempts it just started again
    orchestrator.run_until_stopped()
    store.close()
    return {
        "open": opened - started,
        "resume": resumed - opened,
        "first_start": first_start - resumed,
        "total": first_start - started,
    }


def with_cli(db: Path) -> dict[str, float]:
    """Seconds from starting `orch resume` until recovery is committed and until work starts."""
    url = f"sqlite:///{db}"
    with Store.open(url) as store:
        last_move = store.last_transition_id(RUN_ID)
        events = store.events(RUN_ID)
        last_event = events[-1].id if events else 0
        launched = datetime.now(UTC)
        process = orch("resume", RUN_ID, "--force", "--db", url)
        try:
            first = None
            deadline = time.monotonic() + TIMEOUT_S
            while first is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"`orch resume` started no attempt (exit {process.poll()})")
                time.sleep(POLL_S)
                moves = store.transitions(RUN_ID, after_id=last_move)
                first = next((m for m in moves if m.trigger == "start"), None)
            resumed = next(e for e in store.events(RUN_ID, last_event) if e.kind == "run_resumed")
        finally:
            process.send_signal(signal.SIGTERM)  # stops its actions, the long sleeps among them
            process.wait()
    return {
        "recovered": (resumed.at - launched).total_seconds(),
        "first_start": (first.at - launched).total_seconds(),
    }


def measure(count: int, workers: int, done_fraction: float, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        directory = Path(tmp)
        plan = make_plan(directory, count, workers)
        crashed = directory / "crashed.db"
        states = crash(plan, crashed, count, done_fraction)
        shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        print(f"\n{count} tasks, killed with SIGKILL at: {shown}")
        print(f"{'':<22} {'open s':>8} {'resume s':>9} {'→ start s':>10} {'total s':>8}")
        runs = []
        for i in range(repeat):
            db = directory / f"in-process-{i}.db"
            copy_state(crashed, db)
            r = in_process(db)
            runs.append(r["total"])
            print(
                f"{'Orchestrator.resume()':<22} {r['open']:>8.3f} {r['resume']:>9.3f} "
                f"{r['first_start']:>10.3f} {r['total']:>8.3f}"
            )
        cli = []
        print(f"{'':<22} {'recovered s':>12} {'first start s':>14}")
        for i in range(repeat):
            db = directory / f"cli-{i}.db"
            copy_state(crashed, db)
            r = with_cli(db)
            cli.append(r["first_start"])
            print(f"{'orch resume --force':<22} {r['recovered']:>12.3f} {r['first_start']:>14.3f}")
        print(
            f"median until work resumes: {statistics.median(runs):.3f} s in-process, "
            f"{statistics.median(cli):.3f} s with `orch resume` (goal: under {GOAL_S:g} s; "
            f"{_verdict(statistics.median(runs))} in-process, "
            f"{_verdict(statistics.median(cli))} with `orch resume`)"
        )


def _verdict(seconds: float) -> str:
    return "met" if seconds < GOAL_S else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, nargs="*", default=[10_000])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--done", type=float, default=0.5, help="fraction of tasks completed at the kill"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"workers={args.workers} done at kill={args.done:.0%} repeat={args.repeat}")
    for count in args.tasks:
        measure(count, args.workers, args.done, args.repeat)


if __name__ == "__main__":
    main()
