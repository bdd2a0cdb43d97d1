"""The critical path of a chain: `python -m bench.chain [--sizes 200 1000] [--profile F]`.

Runs durable chains of no-op `kind: python` tasks (default settings and rules, as
`bench.compare` does; `--inline` with `concurrency.inline_python`, to compare) at each size;
prints the milliseconds per step from the difference between the sizes (start-up cancels out),
wall and CPU time of the process, and the commits and SQL statements per step of the largest
chain, counted by SQLAlchemy event listeners on the store's engines. `--profile F`
writes a cProfile of one run of the largest chain to F (read it with `python -m pstats F`)
and prints its top functions by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.compare import orchestration_run, write_orchestration_plan

INLINE = False  # --inline: `concurrency.inline_python` (not the default), to compare


def run(folder: Path, steps: int) -> None:
    orchestration_run(folder, steps, 1, inline=INLINE)


def timed_run(steps: int, counts: Counter[str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one run of a `steps`-task chain."""
    with tempfile.TemporaryDirectory(prefix="orch-chain-") as tmp:
        write_orchestration_plan(Path(tmp), steps, 1, inline=INLINE)  # before the clock
        started, cpu = time.perf_counter(), time.process_time()
        if counts is None:
            run(Path(tmp), steps)
        else:
            with counted(counts):
                run(Path(tmp), steps)
        return time.perf_counter() - started, time.process_time() - cpu


class counted:
    """Count commits and statements of every store engine made while it is entered."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    def __enter__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def on_statement(*_args: Any) -> None:
            self.counts["statements"] += 1

        def on_commit(*_args: Any) -> None:
            self.counts["commits"] += 1

        def on_many(
            _conn: Any, _cursor: Any, _sql: Any, params: Any, _ctx: Any, many: bool
        ) -> None:
            if many:
                self.counts["executemany"] += 1

        self.listeners = [
            (Engine, "before_cursor_execute", on_statement),
            (Engine, "commit", on_commit),
            (Engine, "before_cursor_execute", on_many),
        ]
        for target, name, function in self.listeners:
            event.listen(target, name, function)

    def __exit__(self, *_exc: Any) -> None:
        from sqlalchemy import event

        for target, name, function in self.listeners:
            event.remove(target, name, function)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs=2, default=[200, 1000], help="small, large")
    parser.add_argument("--repeat", type=int, default=3, help="tries per figure (the median)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the large chain here")
    parser.add_argument("--top", type=int, default=25, help="functions shown from the profile")
    parser.add_argument("--inline", action="store_true", help="with inline_python (not default)")
    args = parser.parse_args()
    global INLINE
    INLINE = args.inline
    small, large = args.sizes
    timed_run(10)  # warm-up: imports and first-call costs are not per step
    tries, cpu_tries = [], []
    for _ in range(args.repeat):
        small_s, small_cpu = timed_run(small)
        large_s, large_cpu = timed_run(large)
        tries.append((large_s - small_s) / (large - small) * 1000)
        cpu_tries.append((large_cpu - small_cpu) / (large - small) * 1000)
    print(f"chain {small} -> {large}: {statistics.median(tries):.3f} ms per step")
    print("  tries: " + ", ".join(f"{t:.3f}" for t in tries))
    # CPU time of the process (every thread): steadier than wall time on a busy machine, blind
    # to waits (hand-offs between threads, the disk).
    print(f"  CPU: {statistics.median(cpu_tries):.3f} ms per step")
    counts_small: Counter[str] = Counter()
    counts_large: Counter[str] = Counter()
    timed_run(small, counts_small)
    timed_run(large, counts_large)
    for name in ("commits", "statements", "executemany"):
        per = (counts_large[name] - counts_small[name]) / (large - small)
        print(f"  {name} per step: {per:.2f} ({counts_large[name]} in the {large}-step run)")
    if args.profile:
        profiler = cProfile.Profile()
        with tempfile.TemporaryDirectory(prefix="orch-chain-") as tmp:
            write_orchestration_plan(Path(tmp), large, 1, inline=INLINE)
            profiler.runcall(run, Path(tmp), large)
        profiler.dump_stats(args.profile)
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumtime").print_stats(args.top)


if __name__ == "__main__":
    main()
