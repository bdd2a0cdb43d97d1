"""Engine memory for a large plan: `python -m bench.memory [--tasks 100000] [--top 15]`.

A child process loads a `--tasks` no-op plan file (the random DAG of `bench.scheduler`) and
starts an engine on it (`Orchestrator.start` on a SQLite file), as `orch run` does before its
first task. It prints the process's peak resident memory (VmHWM) after loading the plan and
after starting, and its resident memory (VmRSS) after start. The plan file is written by another
child: `ru_maxrss` and VmHWM survive `exec`, so a child of a process that built a large plan in
memory would report that process's peak as its own.

`--run` also runs the plan to its end and prints the peak then; `--resume` resumes the started
run in another process (`Orchestrator.resume`: its tasks read back from the store) and prints
its peak. `--top N` runs one more child under tracemalloc (which slows it and adds its own
memory, so its figures are apart) and prints the traced heap's peak and the N source lines
holding the most memory after start, for the analysis.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import gc, sys, time, tracemalloc
from pathlib import Path
from orchestration.pluginhost.hooks import load_plugins
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.store import Store

folder, top, run = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "run"

def status(name):
    lines = Path("/proc/self/status").read_text().splitlines()
    kib = next(int(line.split()[1]) for line in lines if line.startswith(name + ":"))
    return f"{kib / 1024:.0f} MiB"

def peak():
    return status("VmHWM")

def resident():
    return status("VmRSS")

if top:
    tracemalloc.start(1)
started = time.perf_counter()
plan = load_plan(folder / "plan.yaml")
print(f"tasks {len(plan.spec.tasks)}: loaded in {time.perf_counter() - started:.1f} s, "
      f"peak RSS {peak()}, RSS {resident()}")
engine = build_engine(plan, load_plugins(entry_points=False))
store = Store.open(f"sqlite:///{folder / 'engine.db'}")
orchestrator = Orchestrator.start(plan, store, run_id="memory", engine=engine)
gc.collect()
print(f"started in {time.perf_counter() - started:.1f} s: peak RSS {peak()}, RSS {resident()}")
if top:
    current, highest = tracemalloc.get_traced_memory()
    print(f"traced heap after start {current / 2**20:.0f} MiB, peak {highest / 2**20:.0f} MiB")
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/orchestration/")[-1]
        print(f"  {stat.size / 2**20:7.1f} MiB {stat.count:>9} blocks  {where}:{frame.lineno}")
if run:
    summary = orchestrator.run_until_stopped()
    print(f"ran to {summary.state} in {time.perf_counter() - started:.1f} s: "
          f"peak RSS {peak()}, RSS {resident()}")
store.close()
"""


RESUME_CHILD = """
import sys, time
from pathlib import Path
from orchestration.engine.loop import Orchestrator
from orchestration.store import Store

def status(name):
    lines = Path("/proc/self/status").read_text().splitlines()
    kib = next(int(line.split()[1]) for line in lines if line.startswith(name + ":"))
    return f"{kib / 1024:.0f} MiB"

started = time.perf_counter()
store = Store.open(f"sqlite:///{Path(sys.argv[1]) / 'engine.db'}")
orchestrator = Orchestrator.resume(store, "memory", force=True)
print(f"resumed {len(orchestrator.tasks)} tasks in {time.perf_counter() - started:.1f} s: "
      f"peak RSS {status('VmHWM')}, RSS {status('VmRSS')}")
store.close()
"""

WRITER = """
import sys
from pathlib import Path
from bench.scheduler import random_dag, write
write(Path(sys.argv[1]), random_dag(int(sys.argv[2])), 8)
"""


def measure(folder: Path, top: int, run: bool) -> None:
    """One child process: a fresh interpreter, so its peak is the engine's alone."""
    (folder / "engine.db").unlink(missing_ok=True)
    argv = [sys.executable, "-c", CHILD, str(folder), str(top), "run" if run else "start"]
    subprocess.run(argv, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=0, help="also list the top allocators")
    parser.add_argument("--run", action="store_true", help="also run the plan to its end")
    parser.add_argument("--resume", action="store_true", help="also resume the started run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-memory-") as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-c", WRITER, str(folder), str(args.tasks)], check=True)
        measure(folder, 0, args.run)
        if args.resume:
            subprocess.run([sys.executable, "-c", RESUME_CHILD, str(folder)], check=True)
        if args.top:
            print("under tracemalloc:")
            measure(folder, args.top, False)


if __name__ == "__main__":
    main()
