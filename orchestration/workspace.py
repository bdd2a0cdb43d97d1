"""What a step changed in the working directory: files and lines, from git trees or snapshots."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.safe_git import run_git

logger = logging.getLogger(__name__)

SKIP_DIRS = frozenset(
    {".git", ".orchestration", "__pycache__", ".venv", "node_modules", ".mypy_cache"}
)
MAX_SNAPSHOT_FILES = 20_000
GIT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a working directory at one moment: a git tree id, or file fingerprints."""

    tree: str | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Changes:
    files: tuple[str, ...]
    lines_changed: int
    diff_stat: str = ""


def is_git_repo(workdir: Path) -> bool:
    return (workdir / ".git").exists()


def _git(workdir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return run_git(workdir, *args, extra_env=env, timeout=GIT_TIMEOUT_SECONDS, check=True).stdout


def _git_tree(workdir: Path, ignore: frozenset[str]) -> str:
    # A private index file records the working tree without touching the user's index or branch.
    with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        excludes = [f":(exclude,literal){name}" for name in sorted(ignore)]
        _git(workdir, "add", "-A", "--", ".", ":(exclude).orchestration", *excludes, env=env)
        return _git(workdir, "write-tree", env=env).strip()


def _file_fingerprints(workdir: Path, ignore: frozenset[str]) -> dict[str, str]:
    # Size and nanosecond mtime, as make does: reading every file twice per step would cost
    # more than the step on a large tree. os.scandir and plain strings, since this runs twice
    # per step and pathlib's overhead shows.
    files: dict[str, str] = {}
    pending = [(str(workdir), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            relative = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIP_DIRS:
                        pending.append((entry.path, relative + "/"))
                    continue
                if relative in ignore:
                    continue
                info = entry.stat()
            except OSError:
                continue
            files[relative] = f"{info.st_size}:{info.st_mtime_ns}"
            if len(files) >= MAX_SNAPSHOT_FILES:
                return files
    return files


def snapshot(workdir: Path, ignore: frozenset[str] = frozenset()) -> Snapshot:
    """Record the working directory so that `changes_since` can tell what a step did.

    `ignore` names files (relative to workdir) that are not the step's work, e.g. the store.
    """
    if is_git_repo(workdir):
        try:
            return Snapshot(tree=_git_tree(workdir, ignore))
        except (subprocess.SubprocessError, OSError) as error:
            logger.warning(
                "git snapshot of %s failed (%s); using file fingerprints", workdir, error
            )
    return Snapshot(files=_file_fingerprints(workdir, ignore))


def _git_changes(workdir: Path, before: str, after: str) -> Changes:
    numstat = _git(workdir, "diff", "--numstat", "--no-renames", before, after)
    files, lines = [], 0
    for row in numstat.splitlines():
        added, deleted, path = row.split("\t", 2)
        files.append(path)
        if added != "-":  # binary files show '-'
            lines += int(added) + int(deleted)
    stat = _git(workdir, "diff", "--stat", "--no-renames", before, after)
    return Changes(tuple(files), lines, stat.strip())


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def changes_since(workdir: Path, before: Snapshot, ignore: frozenset[str] = frozenset()) -> Changes:
    """Files and lines changed since `before` (lines are exact with git, estimated without)."""
    return changes_between(workdir, before, snapshot(workdir, ignore))


def changes_between(workdir: Path, before: Snapshot, after: Snapshot) -> Changes:
    """Files and lines that differ between two snapshots of `workdir`."""
    if before.tree and after.tree:
        return _git_changes(workdir, before.tree, after.tree)
    changed = sorted(
        path
        for path in set(before.files) | set(after.files)
        if before.files.get(path) != after.files.get(path)
    )
    # Without git there is no old content to diff against: count the lines of what is there now.
    lines = sum(_count_lines(workdir / path) for path in changed)
    return Changes(tuple(changed), lines)


def store_files_in(workdir: Path, database: Path | None) -> frozenset[str]:
    """The SQLite store's files (and their WAL companions) when they sit inside the workdir."""
    if database is None:
        return frozenset()
    try:
        relative = database.resolve().relative_to(workdir.resolve()).as_posix()
    except ValueError:
        return frozenset()
    return frozenset(relative + suffix for suffix in ("", "-wal", "-shm", "-journal"))
