"""Reads of a large run: `python -m bench.large_runs [--tasks 100000] [--memory]`.

Stores a run of `--tasks` tasks in a SQLite file through the store's batch API (a chain: each
task started and completed, with a `step` event reporting cost and tokens; the last ones still
running, ready and pending; one open breakpoint), then times each read a person makes of it:
`orch status` (summary, a late page of tasks, `--json`), the dashboard's run page (and its live
part, graph and timeline included), the API's run and task listing. Goal: 0.5 s each.

`--memory` also loads a `--tasks` plan file and starts an engine on it in a child process, and
prints its resident memory (peak and after start) and the Python heap tracemalloc sees.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.core.lifecycle import Move
from orchestration.core.models import BreakpointRecord, EventRecord, RunRecord, TaskRecord, TaskSpec
from orchestration.store import Batch, Store

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

RUN = "large"
SLICE = 5_000  # tasks per committed batch while the run is built
GOAL_SECONDS = 0.5
STEPS = (("pending", "ready", "release"), ("ready", "running", "start"))
DONE = ("running", "completed", "succeed")


def build_run(store: Store, count: int) -> None:
    """A chain of `count` tasks, nearly all completed, stored through `create_run` and batches."""
    now = datetime.now(UTC)
    specs = [
        TaskSpec.model_validate(
            {
                "id": f"t{i}",
                "action": {"kind": "python", "call": "os:getpid"},
                "depends_on": [f"t{i - 1}"] if i else [],
            }
        )
        for i in range(count)
    ]
    run = RunRecord(RUN, "large", "plan.yaml", ".", "running", now, now, plan_json={"spec": {}})
    store.create_run(run, [TaskRecord(RUN, s.id, "pending", s) for s in specs])
    finished = max(0, count - 20)
    for first in range(0, count - 10, SLICE):
        batch = Batch()
        for i in range(first, min(count - 10, first + SLICE)):
            task_id = f"t{i}"
            moves = [*STEPS, DONE] if i < finished else list(STEPS)
            batch.moves.extend(Move(task_id, s, d, t, "", "engine") for s, d, t in moves)
            batch.task_updates.append((task_id, {"attempts": 1}))
            if i < finished:
                data = {"result": {"cost": 0.01, "tokens": 50}, "duration_seconds": 0.002}
                batch.events.append(EventRecord(RUN, "step", task_id, data, now))
        store.commit(RUN, batch)
    task = f"t{count - 15}"
    bp = BreakpointRecord(0, RUN, task, "bench", "after", "high", "pause", "look", "open", now)
    store.commit(RUN, Batch(breakpoints=[bp]))


def timed(name: str, read: Callable[[], object]) -> float:
    read()  # once to warm SQLAlchemy's statement cache and the templates, as a server is
    started = time.perf_counter()
    read()
    seconds = time.perf_counter() - started
    verdict = "ok" if seconds <= GOAL_SECONDS else "over the goal"
    print(f"{name:<48} {seconds:>7.3f} s  {verdict}")
    return seconds


def time_reads(url: str, count: int) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from orchestration.cli.root import app
    from orchestration.web.app import create_app
    from orchestration.web.config import ServerConfig

    runner = CliRunner()
    last_page = f"{count // 100}"

    def cli(*args: str) -> Callable[[], object]:
        def call() -> object:
            result = runner.invoke(app, ["status", RUN, *args, "--db", url])
            assert result.exit_code == 0, result.output
            return result

        return call

    timed("orch status (summary)", cli())
    timed(f"orch status --tasks --page {last_page}", cli("--tasks", "--page", last_page))
    timed("orch status --json", cli("--json"))
    with Store.open(url) as store:
        server = ServerConfig(db_url=url, token="bench-token")
        with TestClient(create_app(server, store=store), follow_redirects=False) as client:
            headers = {"Authorization": "Bearer bench-token"}
            sign_in(client)

            def get(path: str, expect: str = RUN) -> Callable[[], object]:
                def call() -> object:
                    answer = client.get(path, headers=headers)
                    assert answer.status_code == 200, answer.text[:300]
                    assert expect in answer.text, answer.text[:300]
                    return answer

                return call

            timed("dashboard run page (graph, timeline)", get(f"/runs/{RUN}", "task-graph"))
            timed(f"dashboard run page, page {last_page}", get(f"/runs/{RUN}?page={last_page}"))
            timed("dashboard live part", get(f"/runs/{RUN}/live"))
            timed("API GET /runs/{id}", get(f"/api/v1/runs/{RUN}"))
            tasks = f"/api/v1/runs/{RUN}/tasks?page={last_page}"
            timed(f"API GET /runs/{{id}}/tasks?page={last_page}", get(tasks, '"page"'))


def sign_in(client: TestClient) -> None:
    """A dashboard session, as a person signs in with the form (the pages want a session)."""
    import re

    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None, "no CSRF token on the login form"
    data = {"token": "bench-token", "name": "bench", "next": "/runs", "csrf_token": csrf[1]}
    assert client.post("/login", data=data).status_code == 303


MEMORY_CHILD = """
import gc, resource, sys, tracemalloc
from pathlib import Path
from orchestration.pluginhost.hooks import load_plugins
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.store import Store
folder = Path(sys.argv[1])
plan = load_plan(folder / "plan.yaml")
engine = build_engine(plan, load_plugins(entry_points=False))
store = Store.open(f"sqlite:///{folder / 'engine.db'}")
tracemalloc.start()
orchestrator = Orchestrator.start(plan, store, run_id="memory", engine=engine)
gc.collect()
heap = tracemalloc.get_traced_memory()[0] / 2**20
status = open("/proc/self/status").read().splitlines()
rss = [int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS")]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"engine for {len(plan.spec.tasks)} tasks: peak RSS {peak:.0f} MiB, "
      f"RSS after start {rss[0]:.0f} MiB, engine heap after start {heap:.0f} MiB")
"""


def engine_memory(count: int, folder: Path) -> None:
    from bench.scheduler import random_dag, write

    write(folder, random_dag(count), 8)
    subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(folder)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true", help="measure the engine's memory too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-large-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'state.db'}"
        started = time.perf_counter()
        with Store.open(url) as store:
            build_run(store, args.tasks)
        print(f"stored a {args.tasks}-task run in {time.perf_counter() - started:.1f} s")
        time_reads(url, args.tasks)
        if args.memory:
            engine_memory(args.tasks, Path(tmp))


if __name__ == "__main__":
    main()
