"""Start-up wall time of `orch` commands, best of N (`python -m bench.startup --repeat 5`).

Each command runs as `python -m orchestration ...` in a fresh process, the way a user's shell
starts `orch`, with bytecode caching on (as after `pip install`, even where
PYTHONDONTWRITEBYTECODE is set) and one warm-up run first. `status` reads a store holding one
finished run of a one-task plan, made first.
The figures of the redesign are in docs/architecture.md (Start-up).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAN = """\
version: 1
name: startup
tasks:
  - id: t1
    action: {kind: shell, run: ["true"]}
"""


def seconds(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) time of `python -m orchestration argv`, which must succeed.

    The CPU time tells more on a busy machine, where the wall time includes waiting for a core.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestration", *argv],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def best_of(repeat: int, argv: list[str], cwd: Path) -> tuple[float, float]:
    """The best wall time and the best CPU time of `repeat` runs, after a warm-up run."""
    seconds(argv, cwd)  # writes the bytecode caches
    runs = [seconds(argv, cwd) for _ in range(repeat)]
    return min(wall for wall, _ in runs), min(cpu for _, cpu in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="Runs per command; the best counts.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-startup-") as tmp:
        directory = Path(tmp)
        (directory / "plan.yaml").write_text(PLAN)
        seconds(["run", "plan.yaml", "--quiet"], directory)  # the run `status` shows
        for argv in (["--help"], ["--version"], ["status"]):
            wall, cpu = best_of(args.repeat, argv, directory)
            shown = " ".join(argv)
            print(f"orch {shown:<10} best of {args.repeat}: wall {wall:.3f} s, cpu {cpu:.3f} s")


if __name__ == "__main__":
    main()
