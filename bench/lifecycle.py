"""Cost of the shared state machine per task and per transition: `python -m bench.lifecycle`."""

from __future__ import annotations

import argparse
import time
import tracemalloc

from orchestration.core.lifecycle import TaskHandle, fire

PATH = ("release", "start", "retry", "wake", "start", "succeed")


def measure(count: int) -> dict[str, float]:
    tracemalloc.start()
    started = time.perf_counter()
    handles = [TaskHandle(f"task-{i}", "pending") for i in range(count)]
    setup = time.perf_counter() - started
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    started = time.perf_counter()
    for handle in handles:
        for trigger in PATH:
            fire(handle, trigger)
    transitions = time.perf_counter() - started
    assert all(h.state == "completed" for h in handles)
    return {
        "tasks": count,
        "setup_us_per_task": setup / count * 1e6,
        "bytes_per_task": memory / count,
        "us_per_transition": transitions / (count * len(PATH)) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"{'tasks':>8} {'setup µs/task':>14} {'bytes/task':>11} {'µs/transition':>14}")
    for count in args.tasks:
        r = measure(count)
        print(
            f"{r['tasks']:>8} {r['setup_us_per_task']:>14.2f} {r['bytes_per_task']:>11.0f} "
            f"{r['us_per_transition']:>14.2f}"
        )


if __name__ == "__main__":
    main()
