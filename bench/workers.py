"""Worker processes on PostgreSQL: run throughput with 1, 2 and 4 workers, and claim latency.

    python -m bench.workers [--db postgresql+psycopg://.../postgres] [--tasks 300] [--concurrency 1]

Without --db it starts a throwaway server from Debian's PostgreSQL binaries (as the test suite
does). Throughput: a conductor (`orch run --workers 0`) and N `orch worker` processes run
`--tasks` shell tasks that do nothing (`true`), timed from start to the conductor's exit. Claim
latency: one and four threads claim offered attempts straight from the work queue.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from orchestration.core.models import RunRecord
from orchestration.core.yamlfile import dump_plan
from orchestration.store import Store
from orchestration.store.work_queue import WorkQueue, utcnow


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def throwaway_server() -> Iterator[str]:
    """A PostgreSQL server of its own for the benchmark; its admin URL."""
    bin_dir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    root = Path(tempfile.mkdtemp(prefix="orch-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    run = lambda argv: subprocess.run(_as_postgres(argv), check=True, capture_output=True)  # noqa: E731
    run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"])
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log")]
    run([*pg_ctl, "-o", options, "-w", "start"])
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run([*pg_ctl, "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def orch(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestration", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def throughput(url: str, tasks: int, workers: int, concurrency: int = 1) -> float:
    """Tasks per second of a run whose attempts `workers` worker processes execute."""
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        (Path(tmp) / "work").mkdir()
        plan = {
            "version": 1,
            "name": "bench-workers",
            "workdir": "work",
            "concurrency": {"executor": "workers", "max_workers": 4 * workers * concurrency},
            "tasks": [
                {"id": f"t{i}", "action": {"kind": "shell", "run": ["true"]}} for i in range(tasks)
            ],
        }
        path = Path(tmp) / "plan.yaml"
        path.write_text(dump_plan(plan))
        started = time.perf_counter()
        conductor = orch("run", str(path), "--db", url, "--workers", "0", "-q")
        pool = [
            orch("worker", "--db", url, "--name", f"w{i}", "-c", str(concurrency))
            for i in range(workers)
        ]
        code = conductor.wait()
        elapsed = time.perf_counter() - started
        for worker in pool:
            worker.terminate()
            worker.wait()
        assert code == 0, f"the run ended with exit code {code}"
    return tasks / elapsed


def claim_latency(url: str, count: int, threads: int) -> list[float]:
    """Milliseconds per claim while `threads` claimers empty a queue of `count` attempts."""
    with Store.open(url) as store:
        now = utcnow()
        store.create_run(RunRecord(f"lat{threads}", "b", "/p", "/w", "running", now, now), [])
    queue = WorkQueue.open(url)
    for i in range(count):
        queue.offer(f"lat{threads}", f"t{i}", 1, {"n": i})
    seconds: list[float] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            started = time.perf_counter()
            claim = queue.claim(name)
            took = time.perf_counter() - started
            if claim is None:
                return
            with lock:
                seconds.append(took * 1000)

    pool = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="an admin URL of a PostgreSQL server (default: start one)")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1, help="attempts per worker")
    args = parser.parse_args()
    server = contextmanager(lambda: iter([args.db]))() if args.db else throwaway_server()
    with server as admin:
        print(f"concurrency {args.concurrency} per worker")
        print(f"{'workers':>8} {'tasks':>6} {'tasks/s':>8}")
        for count in args.workers:
            with fresh_database(admin, f"bench_workers_{count}") as url:
                rate = throughput(url, args.tasks, count, args.concurrency)
            print(f"{count:>8} {args.tasks:>6} {rate:>8.1f}")
        print(f"\n{'claimers':>8} {'claims':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
        for threads in (1, 4):
            with fresh_database(admin, f"bench_claims_{threads}") as url:
                took = sorted(claim_latency(url, args.claims, threads))
            p95 = took[int(len(took) * 0.95) - 1]
            print(
                f"{threads:>8} {len(took):>6} {statistics.median(took):>7.2f} {p95:>7.2f} "
                f"{took[-1]:>7.2f}"
            )


if __name__ == "__main__":
    main()
