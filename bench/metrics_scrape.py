"""One `/metrics` scrape over a big run: `python -m bench.metrics_scrape --tasks 5000`.

Stores a run of N independent tasks (all ready, none run: the queue figures have the most to
read), then renders the store's collector a few times in-process, as `GET /metrics` does, and
prints the median and the worst time and the size of the answer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from orchestration.core.yamlfile import dump_plan
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.operations.metrics import metrics_registry
from orchestration.store import Store


def big_run(directory: Path, tasks: int) -> str:
    shell = {"kind": "shell", "run": [sys.executable, "-c", ""]}
    plan = {
        "version": 1,
        "name": "bench-metrics",
        "tasks": [{"id": f"t{i}", "action": shell} for i in range(tasks)],
    }
    (directory / "plan.yaml").write_text(dump_plan(plan))
    url = f"sqlite:///{directory / 'state.db'}"
    loaded = load_plan(directory / "plan.yaml")
    with Store.open(url) as store:
        run = Orchestrator.start(loaded, store, run_id="bench", engine=build_engine(loaded))
        run.flush()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = big_run(Path(directory), args.tasks)
        with Store.open(url) as store:
            registry = metrics_registry(store)
            times, size = [], 0
            for _ in range(args.scrapes):
                started = time.perf_counter()
                size = len(generate_latest(registry))
                times.append(time.perf_counter() - started)
    print(
        f"{args.tasks} tasks: scrape median {statistics.median(times) * 1000:.0f} ms, "
        f"worst {max(times) * 1000:.0f} ms, {size} bytes"
    )


if __name__ == "__main__":
    main()
