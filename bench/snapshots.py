"""Workspace snapshot cost by repository size: `python -m bench.snapshots [--sizes 50 50000]`.

For each size it creates a git repository in a temporary folder (100 files per folder, all
committed), then times what one step costs the engine: a snapshot before, a snapshot after and
the diff between them, for an unchanged tree and for a one-file change. "watched" is the
engine's way: an OS file watch (tree_watch) says which files changed and only those are read
into the private index; "kept index" keeps that index without a watch (its stat data spares
hashing, but git still stats every file); "fresh index" builds a new private index per
snapshot, as the engine did first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestration.project.tree_watch import start_watch
from orchestration.project.workspace import Snapshot, changes_between, snapshot, snapshot_index

FILES_PER_FOLDER = 100
IDENTITY = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]


def make_repository(root: Path, files: int) -> Path:
    """A committed repository of `files` small text files, 100 per folder."""
    repo = root / f"repo-{files}"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    # No background `gc --auto` writing into the repository while it is timed or deleted.
    subprocess.run(["git", "config", "gc.auto", "0"], cwd=repo, check=True)
    for number in range(files):
        folder = repo / f"pkg{number // FILES_PER_FOLDER}"
        folder.mkdir(exist_ok=True)
        (folder / f"module{number}.py").write_text(f"VALUE = {number}\n" * 5)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *IDENTITY, "commit", "-qm", "files"], cwd=repo, check=True)
    return repo


def step_seconds(repo: Path, take: Callable[[], Snapshot], change: bool, repeat: int) -> float:
    """Median seconds of snapshot, (one-file edit), snapshot, diff."""
    edited = repo / "pkg0" / "module0.py"
    samples = []
    for round_number in range(repeat):
        started = time.perf_counter()
        before = take()
        if change:
            edited.write_text(f"VALUE = {round_number}\n")
        changes = changes_between(repo, before, take())
        samples.append(time.perf_counter() - started)
        assert bool(changes.files) == change, changes
    return statistics.median(samples)


def measure(repo: Path, repeat: int) -> dict[str, float]:
    index = snapshot_index(repo, "bench")
    assert index is not None
    watch = start_watch(repo, index.parent.parent)
    assert watch is not None, "no file watch here: the engine would take full snapshots"
    try:
        watched = lambda: snapshot(repo, index=index, watch=watch)  # noqa: E731
        watched()  # the first look is a full one, as on a run's first step
        figures = {
            "watched, unchanged": step_seconds(repo, watched, False, repeat),
            "watched, one file changed": step_seconds(repo, watched, True, repeat),
        }
    finally:
        watch.stop()
    kept = lambda: snapshot(repo, index=index)  # noqa: E731
    kept()  # seeded once per run, as the engine does on a run's first step
    fresh = lambda: snapshot(repo)  # noqa: E731
    return {
        **figures,
        "kept, unchanged": step_seconds(repo, kept, False, repeat),
        "kept, one file changed": step_seconds(repo, kept, True, repeat),
        "fresh, unchanged": step_seconds(repo, fresh, False, max(3, repeat // 4)),
        "fresh, one file changed": step_seconds(repo, fresh, True, max(3, repeat // 4)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 50_000])
    parser.add_argument("--repeat", type=int, default=15, help="steps timed per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(
        prefix="orch-bench-snapshots-", ignore_cleanup_errors=True
    ) as tmp:
        repos = {size: make_repository(Path(tmp), size) for size in args.sizes}
        results = {size: measure(repo, args.repeat) for size, repo in repos.items()}
    rows = list(next(iter(results.values())))
    print("one step: snapshot + snapshot + diff, median ms")
    print(f"{'index, tree':<26}" + "".join(f"{size:>12,} files" for size in args.sizes))
    for row in rows:
        print(f"{row:<26}" + "".join(f"{results[s][row] * 1000:>18.1f}" for s in args.sizes))
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        for row in rows[:2]:
            extra = (results[large][row] - results[small][row]) * 1000
            print(f"extra for {large:,} over {small:,} files, {row}: {extra:.1f} ms")


if __name__ == "__main__":
    main()
