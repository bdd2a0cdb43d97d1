"""Work trees across machines: what a worker's clone costs per attempt against a shared workdir.

    python -m bench.remote_trees [--tasks 20] [--files 2000] [--concurrency 2]
    python -m bench.remote_trees --steps 4 [--files 2000]

A git repository of `--files` small files and a bare copy as the shared repository; a conductor
(`orch submit`, SQLite) and one `orch worker` run `--tasks` shell tasks that each write one file,
once with `--workdir-mode shared` (the task worktree made in the workdir's repository) and once
with `--workdir-mode clone` (fetch, worktree, commit, push; the conductor fetches, checks and
merges the commit). Timed from the conductor's start to its exit. `--steps N` instead times
each git step of N attempts in this process: the conductor's offer, the worker's fetch and
checkout, its commit and push, the conductor's fetch and checks, and the merge.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestration.core.yamlfile import dump_plan
from orchestration.project.remote_trees import Clones, TreePublisher, work_author, work_message
from orchestration.project.worktrees import RunWorktrees


def _git(cwd: Path, *args: str) -> None:
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True)


def _repository(root: Path, files: int) -> tuple[Path, Path]:
    repo, shared = root / "repo", root / "shared.git"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        (repo / f"file{i:05}.txt").write_text(f"{i}\n" * 64)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "start")
    _git(root, "clone", "-q", "--bare", str(repo), str(shared))
    return repo, shared


def _once(root: Path, mode: str, tasks: int, concurrency: int, repo: Path, shared: Path) -> float:
    steps = [
        {"id": f"t{i}", "action": {"kind": "shell", "run": ["sh", "-c", f"echo {i} > out{i}.txt"]}}
        for i in range(tasks)
    ]
    settings = {"executor": "workers", "max_workers": concurrency, "repository": str(shared)}
    plan = {"version": 1, "name": f"bench-{mode}", "workdir": str(repo), "concurrency": settings}
    plan_file = root / f"{mode}.yaml"
    plan_file.write_text(dump_plan({**plan, "defaults": {"validators": []}, "tasks": steps}))
    url = f"sqlite:///{root / f'{mode}.db'}"
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    orch = [sys.executable, "-m", "orchestration"]
    worker_argv = [*orch, "worker", "--db", url, "--workdir-mode", mode, "-c", str(concurrency)]
    worker_argv += ["--clones", str(root / "clones")]
    worker = subprocess.Popen(worker_argv, env=env, stderr=subprocess.DEVNULL)
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [*orch, "submit", str(plan_file), "--db", url, "-q", "--run-id", mode],
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed: {done.stderr}")
    return elapsed


def _timed(shown: list[str], label: str, call: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    result = call(*args)
    shown.append(f"{label} {time.perf_counter() - started:.3f}")
    return result


def _steps(root: Path, attempts: int, repo: Path, shared: Path) -> None:
    worktrees = RunWorktrees.open(repo, "steps")
    assert worktrees is not None
    publisher, clones = TreePublisher(worktrees, str(shared)), Clones(root / "clones")
    for n in range(attempts):
        task, shown = f"t{n}", []
        offer = _timed(shown, "offer", publisher.offer, task, 1)
        checkout = _timed(shown, "fetch+checkout", clones.check_out, offer, "steps", task, 1)
        (checkout.workdir / f"out{n}.txt").write_text("work\n")
        author, message = work_author(task, 1, "bench"), work_message("steps", task, 1, task, "b")
        commit = _timed(shown, "commit+push", clones.hand_back, checkout, offer, author, message)
        _timed(shown, "take", publisher.take, task, offer, commit, [f"out{n}.txt"])
        _timed(shown, "merge", worktrees.merge, task, task)
        print(f"attempt {n}: " + ", ".join(shown) + " (s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="time each git step of N attempts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-trees-") as folder:
        root = Path(folder)
        repo, shared = _repository(root, args.files)
        if args.steps:
            _steps(root, args.steps, repo, shared)
            return
        print(f"{args.tasks} tasks, repository of {args.files} files, worker -c {args.concurrency}")
        for mode in ("shared", "clone"):
            seconds = _once(root, mode, args.tasks, args.concurrency, repo, shared)
            print(f"{mode:>6}: {seconds:6.1f} s run, {seconds / args.tasks:5.2f} s per task")


if __name__ == "__main__":
    main()
