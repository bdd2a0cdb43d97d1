"""No-op throughput of a durable run on SQLite (`python -m bench.throughput --tasks 1000`).

Every transition is committed before its effect, exactly as in `orch run`; the actions do nothing
(`kind: python` calls `os:getpid` in-process, `kind: shell` runs `true`), so what is measured is
the engine: scheduling, rule checks, quality gate, decisions and the store.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from orchestration.core.yamlfile import dump_plan
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store


def make_plan(directory: Path, count: int, kind: str, workers: int, seed: int = 1) -> Path:
    rng = random.Random(seed)
    action = (
        {"kind": "python", "call": "os:getpid"}
        if kind == "python"
        else {"kind": "shell", "run": ["true"]}
    )
    tasks = []
    for i in range(count):
        deps = [f"t{j}" for j in rng.sample(range(max(0, i - 50), i), k=min(i, 2))] if i else []
        tasks.append({"id": f"t{i}", "action": action, "depends_on": deps})
    plan = {
        "version": 1,
        "name": f"noop-{count}",
        "concurrency": {"max_workers": workers},
        "tasks": tasks,
    }
    path = directory / "plan.yaml"
    path.write_text(dump_plan(plan))
    return path


def measure(count: int, kind: str, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        directory = Path(tmp)
        plan_path = make_plan(directory, count, kind, workers)
        started = time.perf_counter()
        plan = load_plan(plan_path)
        load_seconds = time.perf_counter() - started
        engine = build_engine(plan, load_plugins(entry_points=False))
        store = Store.open(f"sqlite:///{directory / 'state.db'}")
        try:
            started = time.perf_counter()
            orchestrator = Orchestrator.start(plan, store, run_id="bench", engine=engine)
            summary = orchestrator.run_until_stopped()
            elapsed = time.perf_counter() - started
            assert summary.state == "completed", summary
            assert store.integrity_ok()
        finally:
            store.close()
    return {
        "tasks": count,
        "load_seconds": load_seconds,
        "run_seconds": elapsed,
        "tasks_per_second": count / elapsed,
        # the process's peak resident size so far (Linux reports KiB)
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, nargs="*", default=[1_000])
    parser.add_argument("--kind", choices=["python", "shell"], default="python")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    print(f"kind={args.kind} workers={args.workers}")
    print(f"{'tasks':>8} {'load s':>8} {'run s':>8} {'tasks/s':>9} {'peak RSS MiB':>13}")
    for count in args.tasks:
        r = measure(count, args.kind, args.workers)
        print(
            f"{r['tasks']:>8} {r['load_seconds']:>8.2f} {r['run_seconds']:>8.2f} "
            f"{r['tasks_per_second']:>9.0f} {r['peak_mib']:>13.1f}"
        )


if __name__ == "__main__":
    main()
