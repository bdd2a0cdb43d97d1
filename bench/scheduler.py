"""Scheduler and run benchmarks for random DAGs: `python -m bench.scheduler [--sizes ...]`.

For each size it reports the time to load and validate the plan file, the in-memory cost per
task of the scheduler alone (release, priority queue, pools, dependents), the end-to-end no-op
throughput of a durable run on SQLite (every transition committed before its effect), and the
peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestration.core.models import TaskRecord, TaskSpec
from orchestration.core.yamlfile import dump_plan
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.engine.scheduler import TaskScheduler
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store


def random_dag(count: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    tasks: list[dict[str, object]] = []
    for i in range(count):
        window = range(max(0, i - 100), i)
        deps = [f"t{j}" for j in rng.sample(window, k=min(len(window), rng.randint(0, 3)))]
        tasks.append(
            {
                "id": f"t{i}",
                "priority": rng.randint(1, 10),
                "action": {"kind": "python", "call": "os:getpid"},
                "depends_on": deps,
            }
        )
    return tasks


def write(directory: Path, tasks: list[dict[str, object]], workers: int) -> Path:
    plan = {
        "version": 1,
        "name": f"bench-{len(tasks)}",
        "concurrency": {"max_workers": workers, "inline_python": True},
        "tasks": tasks,
    }
    path = directory / "plan.yaml"
    path.write_text(dump_plan(plan))
    return path


def scheduling_cost(tasks: list[dict[str, object]]) -> float:
    """Seconds per task to drive the whole DAG through the in-memory scheduler alone."""
    records = [
        TaskRecord("bench", str(t["id"]), "pending", TaskSpec.model_validate(t)) for t in tasks
    ]
    now = datetime.now(UTC)
    started = time.perf_counter()
    scheduler = TaskScheduler(records, max_workers=8, pools={})
    for task_id, node in scheduler.nodes.items():
        if not node.deps:
            scheduler.push_ready(task_id, now)
    done = 0
    while done < len(records):
        task_id = scheduler.next_ready(now)
        assert task_id is not None, "the DAG stalled"
        scheduler.started(task_id)
        scheduler.stopped(task_id)
        scheduler.record_final(task_id, "completed", "succeeded")
        done += 1
        for child in scheduler.dependents(task_id):
            if scheduler.verdict(child).action == "release":
                scheduler.push_ready(child, now)
    return (time.perf_counter() - started) / len(records)


def run_throughput(plan_path: Path, directory: Path) -> float:
    plan = load_plan(plan_path)
    engine = build_engine(plan, load_plugins(entry_points=False))
    store = Store.open(f"sqlite:///{directory / 'state.db'}")
    try:
        started = time.perf_counter()
        orchestrator = Orchestrator.start(plan, store, run_id="bench", engine=engine)
        summary = orchestrator.run_until_stopped()
        elapsed = time.perf_counter() - started
        assert summary.state == "completed", summary.state
    finally:
        store.close()
    return len(plan.spec.tasks) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--run-up-to", type=int, default=10_000, help="skip the durable run above this size"
    )
    args = parser.parse_args()
    print(f"{'tasks':>8} {'load s':>8} {'sched µs/task':>14} {'run tasks/s':>12} {'peak MiB':>9}")
    for size in args.sizes:
        tasks = random_dag(size)
        with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
            directory = Path(tmp)
            path = write(directory, tasks, args.workers)
            started = time.perf_counter()
            load_plan(path)
            load = time.perf_counter() - started
            cost = scheduling_cost(tasks) * 1e6
            rate = run_throughput(path, directory) if size <= args.run_up_to else float("nan")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{size:>8} {load:>8.2f} {cost:>14.1f} {rate:>12.0f} {peak:>9.0f}")


if __name__ == "__main__":
    main()
