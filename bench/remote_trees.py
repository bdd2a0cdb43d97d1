"""Work trees across machines: what a worker's clone costs per attempt against a shared workdir.

    python -m bench.remote_trees [--tasks 20] [--files 2000] [--concurrency 2]

A git repository of `--files` small files and a bare copy as the shared repository; a conductor
(`orch submit`, SQLite) and one `orch worker` run `--tasks` shell tasks that each write one file,
once with `--workdir-mode shared` (the task worktree made in the workdir's repository) and once
with `--workdir-mode clone` (fetch, worktree, commit, push; the conductor fetches, checks and
merges the commit). Timed from the conductor's start to its exit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestration.yamlfile import dump_plan


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-trees-") as folder:
        root = Path(folder)
        repo, shared = _repository(root, args.files)
        print(f"{args.tasks} tasks, repository of {args.files} files, worker -c {args.concurrency}")
        for mode in ("shared", "clone"):
            seconds = _once(root, mode, args.tasks, args.concurrency, repo, shared)
            print(f"{mode:>6}: {seconds:6.1f} s run, {seconds / args.tasks:5.2f} s per task")


if __name__ == "__main__":
    main()
