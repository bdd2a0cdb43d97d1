"""What a step changed in the working directory: files and lines, from git trees or snapshots."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.core.safe_git import run_git
from orchestration.project.tree_watch import TreeWatch

logger = logging.getLogger(__name__)

SKIP_DIRS = frozenset(
    {".git", ".orchestration", "__pycache__", ".venv", "node_modules", ".mypy_cache"}
)
MAX_SNAPSHOT_FILES = 20_000
GIT_TIMEOUT_SECONDS = 60
INDEX_FOLDER = "orchestration"  # under the git dir: the private indexes snapshots keep
# The untracked cache lets `git add -A` skip reading folders whose mtime has not changed.
SNAPSHOT_CONFIG = ("-c", "core.untrackedCache=true")
_INDEX_LOCKS: dict[Path, threading.Lock] = {}
_INDEX_LOCKS_GUARD = threading.Lock()


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


def _gitignored(workdir: Path, paths: Sequence[str]) -> set[str]:
    """Which of `paths` git ignores (an exclude pathspec naming one makes `git add` fail)."""
    found = run_git(
        workdir,
        "check-ignore",
        "-z",
        "--stdin",
        input="\0".join(paths),
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,  # exit 1: none is ignored
    )
    return set(found.stdout.split("\0")) - {""}


def _write_tree(workdir: Path, index: Path, ignore: frozenset[str]) -> str:
    env = {"GIT_INDEX_FILE": str(index)}
    # Excluded rather than added and removed: the store may be large to hash. A path git
    # ignores already is left out of the pathspec (naming an ignored path makes `git add` fail).
    candidates = [".orchestration", *sorted(ignore)]
    ignored = _gitignored(workdir, candidates)
    excludes = [f":(exclude,literal){path}" for path in candidates if path not in ignored]
    _git(workdir, *SNAPSHOT_CONFIG, "add", "-A", "--", ".", *excludes, env=env)
    return _git(workdir, "write-tree", env=env).strip()


def _git_tree(workdir: Path, ignore: frozenset[str]) -> str:
    # A private index file records the working tree without touching the user's index or branch.
    with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
        return _write_tree(workdir, Path(tmp) / "index", ignore)


def snapshot_index(workdir: Path, key: str) -> Path | None:
    """Where snapshots of `workdir` under `key` (a run id) keep their private index, or None
    outside a git work tree.

    The file lives in the work tree's own git dir (`.git/orchestration/<key>.index`; a linked
    worktree has its own), never in the work tree. Kept from one snapshot to the next, its stat
    data lets `git add -A` hash only the files whose size or mtime changed.
    """
    if not is_git_repo(workdir):
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).lstrip(".")
    try:
        path = _git(workdir, "rev-parse", "--git-path", f"{INDEX_FOLDER}/{safe}.index").strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return (workdir / path).absolute()


def discard_snapshot_index(index: Path | None) -> None:
    """Remove a private snapshot index (at the end of its run); a missing one is fine."""
    if index is not None:
        index.unlink(missing_ok=True)


def _index_lock(index: Path) -> threading.Lock:
    with _INDEX_LOCKS_GUARD:
        return _INDEX_LOCKS.setdefault(index, threading.Lock())


def _seed_index(workdir: Path, index: Path) -> None:
    """Start a private index as a copy of the user's: its stat data spares hashing every
    tracked file on the first snapshot. copy2 keeps the mtime, which git's racy-file check
    needs; the user's file is only read."""
    index.parent.mkdir(parents=True, exist_ok=True)
    user_index = Path(_git(workdir, "rev-parse", "--git-path", "index").strip())
    user_index = user_index if user_index.is_absolute() else workdir / user_index
    if user_index.is_file():
        shutil.copy2(user_index, index)


def _kept_tree(
    workdir: Path, index: Path, ignore: frozenset[str], watch: TreeWatch | None = None
) -> str:
    """The work tree as a tree id, through the kept private `index` (seeded when missing).

    With a `watch`, only the paths it reports changed are read again; when it cannot say, or
    before its first full look, the whole tree is (tree_watch explains why it is safe).
    """
    with _index_lock(index):  # the watch's changes too: two callers must not split a change
        changed = watch.changes() if watch is not None else None
        if watch is not None and changed is not None and watch.last_tree and index.exists():
            tree = _updated_tree(workdir, index, changed, ignore) if changed else watch.last_tree
        else:
            tree = _full_tree(workdir, index, ignore)
        if watch is not None:
            watch.last_tree = tree
        return tree


def _full_tree(workdir: Path, index: Path, ignore: frozenset[str]) -> str:
    if not index.exists():
        _seed_index(workdir, index)
    try:
        return _write_tree(workdir, index, ignore)
    except subprocess.CalledProcessError:
        # A seed git cannot use (a split index, another version) or a damaged file:
        # start again from an empty index, as a fresh snapshot would.
        index.unlink(missing_ok=True)
        return _write_tree(workdir, index, ignore)


def _updated_tree(workdir: Path, index: Path, changed: set[str], ignore: frozenset[str]) -> str:
    """The tree after re-reading only `changed` paths into the kept index (as `add -A` would:
    files git ignores stay out, deleted files leave the index)."""
    candidates = sorted(path for path in changed if path not in ignore)
    ignored = _gitignored(workdir, candidates) if candidates else set()
    paths = [path for path in candidates if path not in ignored]
    env = {"GIT_INDEX_FILE": str(index)}
    if paths:
        run_git(
            workdir, "update-index", "--add", "--remove", "-z", "--stdin",
            input="\0".join(paths), extra_env=env, timeout=GIT_TIMEOUT_SECONDS, check=True,
        )  # fmt: skip
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


def fingerprints(workdir: Path, ignore: frozenset[str] = frozenset()) -> dict[str, str]:
    """Each file's size and modification time: a cheap, read-only look at whether files changed."""
    return _file_fingerprints(workdir, ignore)


def snapshot(
    workdir: Path,
    ignore: frozenset[str] = frozenset(),
    *,
    index: Path | None = None,
    watch: TreeWatch | None = None,
) -> Snapshot:
    """Record the working directory so that `changes_since` can tell what a step did.

    `ignore` names files (relative to workdir) that are not the step's work, e.g. the store.
    `index` (from `snapshot_index`) is a private index kept between snapshots, so a large tree
    costs a stat per file instead of a hash per file; without it each snapshot starts afresh.
    `watch` (tree_watch.start_watch, with `index`) narrows that to the files the OS reported.
    """
    if is_git_repo(workdir):
        try:
            if index is not None:
                return Snapshot(tree=_kept_tree(workdir, index, ignore, watch))
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
        if before.tree == after.tree:  # same tree id, same content: no diff to ask git for
            return Changes((), 0)
        return _git_changes(workdir, before.tree, after.tree)
    changed = sorted(
        path
        for path in set(before.files) | set(after.files)
        if before.files.get(path) != after.files.get(path)
    )
    # Without git there is no old content to diff against: count the lines of what is there now.
    lines = sum(_count_lines(workdir / path) for path in changed)
    return Changes(tuple(changed), lines)


def restore_from_tree(workdir: Path, tree: str, files: Sequence[str]) -> None:
    """Put `files` back as the git tree `tree` (a snapshot's) has them; remove those it lacks.

    The tree is read into a private index and checked out from there with `checkout-index`:
    the user's index, branch and every other file stay as they are.
    """
    with tempfile.TemporaryDirectory(prefix="orch-restore-") as tmp:
        env = {
            **os.environ,
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            "GIT_LITERAL_PATHSPECS": "1",
        }
        _git(workdir, "read-tree", tree, env=env)
        listed = _git(workdir, "ls-files", "-z", "--", *files, env=env) if files else ""
        present = [path for path in listed.split("\0") if path]
        if present:
            _git(workdir, "checkout-index", "-f", "--", *present, env=env)
    for path in sorted(set(files) - set(present)):
        (workdir / path).unlink(missing_ok=True)


def store_files_in(workdir: Path, database: Path | None) -> frozenset[str]:
    """The SQLite store's files (and their WAL companions) when they sit inside the workdir."""
    if database is None:
        return frozenset()
    try:
        relative = database.resolve().relative_to(workdir.resolve()).as_posix()
    except ValueError:
        return frozenset()
    return frozenset(relative + suffix for suffix in ("", "-wal", "-shm", "-journal"))
