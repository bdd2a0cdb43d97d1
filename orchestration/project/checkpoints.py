"""Git checkpoints: the working tree kept as commits under refs/orchestration/<run>/<task>."""

from __future__ import annotations

import hashlib
import logging
import shutil
import string
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.core.errors import NotFoundError, OrchestrationError
from orchestration.core.safe_git import run_git

logger = logging.getLogger(__name__)

REF_ROOT = "refs/orchestration"
TIP_NAME = "_tip"  # the run's latest known working-tree state: the next checkpoint's parent
SAFETY_PREFIX = "_before_rollback_"  # the state saved before each rollback, so it can be undone
PROTECTED_DIR = ".orchestration"  # the engine's own files: never recorded, never restored
GIT_TIMEOUT_SECONDS = 120
MAX_REF_COMPONENT = 200  # characters; file systems allow 255 bytes per loose ref file name
GITLINK_MODE = "160000"  # a submodule or nested repository: never written or removed
TRAILER_PREFIX = "Orchestration-"
RECORD_END = "\x01"  # ends each for-each-ref record; control characters are kept out of messages

IDENTITY = {
    "GIT_AUTHOR_NAME": "orchestration",
    "GIT_AUTHOR_EMAIL": "orchestration@localhost",
    "GIT_COMMITTER_NAME": "orchestration",
    "GIT_COMMITTER_EMAIL": "orchestration@localhost",
}
_REF_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")
# One engine may checkpoint from several worker threads; the ref update also compares the tip,
# so a second process racing on the same run fails loudly instead of forking the history.
_LOCK = threading.Lock()


class GitError(OrchestrationError):
    """A git command failed; carries the command, its exit code and what git said."""

    def __init__(self, command: Sequence[str], returncode: int | None, stderr: str) -> None:
        shown = " ".join(["git", *command])
        status = f"exit {returncode}" if returncode is not None else "timed out"
        detail = stderr.strip() or "(no message)"
        super().__init__(f"`{shown}` failed ({status}): {detail}")
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr


class CheckpointNotFound(NotFoundError):
    """No checkpoint of that task in the run; `available` names the ones that exist."""

    def __init__(self, run_id: str, task_id: str, available: Sequence[str]) -> None:
        listed = ", ".join(available) if available else "none"
        super().__init__(f"run '{run_id}' has no checkpoint for '{task_id}'; checkpoints: {listed}")
        self.available = list(available)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One recorded working tree, with its diff stats against the state before it."""

    run_id: str
    task_id: str  # a task id, or `_before_rollback_<n>` for a safety checkpoint
    sha: str
    ref: str
    created_at: datetime
    parent: str | None  # the previous checkpoint of the run, else the HEAD commit then, else None
    files_changed: int
    insertions: int
    deletions: int
    message: str
    attempt: int | None = None
    sequence: int = 0  # creation order within the run, from 1
    kind: str = "task"  # task | safety
    head: str | None = None  # the user's HEAD commit when the checkpoint was made

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "task": self.task_id,
            "kind": self.kind,
            "sequence": self.sequence,
            "attempt": self.attempt,
            "sha": self.sha,
            "ref": self.ref,
            "parent": self.parent,
            "head": self.head,
            "created_at": self.created_at.isoformat(),
            "files_changed": self.files_changed,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a rollback did; paths are relative to the workdir."""

    checkpoint: Checkpoint
    safety: Checkpoint  # the state just before the rollback: restore it to undo
    restored: tuple[str, ...]  # written with the checkpoint's content (modified or re-created)
    removed: tuple[str, ...]  # added after the checkpoint, now deleted
    skipped: tuple[str, ...]  # differ, but protected: .orchestration/, excluded, nested repos


@dataclass(frozen=True, slots=True)
class _Repo:
    workdir: Path
    prefix: str  # the workdir inside the repository, "" at its top or "sub/dir/"
    index: Path  # the user's index file, copied (never written) to seed a private one


@dataclass(frozen=True, slots=True)
class _Stored:
    name: str  # the ref's last component
    sha: str
    created_at: datetime
    parent: str | None
    message: str
    trailers: dict[str, str]


# ---- git ------------------------------------------------------------------------------------


def _git(
    cwd: Path,
    *args: str,
    index: Path | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    ok_codes: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[str]:
    extra = dict(env or {})
    if index is not None:
        extra["GIT_INDEX_FILE"] = str(index)
    try:
        completed = run_git(cwd, *args, extra_env=extra, input=stdin, timeout=GIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise GitError(args, None, f"no answer within {GIT_TIMEOUT_SECONDS} s") from None
    except OSError as error:
        raise GitError(args, None, f"cannot run git: {error}") from None
    if completed.returncode not in ok_codes:
        raise GitError(args, completed.returncode, completed.stderr)
    return completed


def _open_repo(workdir: Path) -> _Repo | None:
    if not workdir.is_dir():
        return None
    try:
        completed = _git(
            workdir, "rev-parse", "--is-inside-work-tree", "--show-prefix", "--git-path", "index"
        )
    except GitError as error:
        if "not a git repository" not in error.stderr:
            logger.warning("no git checkpoints in %s: %s", workdir, error)
        return None
    lines = completed.stdout.splitlines()
    if len(lines) < 3 or lines[0] != "true":
        return None
    return _Repo(workdir.absolute(), lines[1], workdir.absolute() / lines[2])


def _require_repo(workdir: Path) -> _Repo:
    repo = _open_repo(workdir)
    if repo is None:
        raise OrchestrationError(
            f"workdir {workdir} is not inside a git work tree; checkpoints need git"
        )
    return repo


def is_git_worktree(path: Path) -> bool:
    """Whether `path` is a directory inside a git working tree (checkpoints are possible)."""
    return _open_repo(Path(path)) is not None


# ---- names ----------------------------------------------------------------------------------


def _check_id(kind: str, identifier: str) -> None:
    if not identifier or any(ord(ch) < 32 or ord(ch) == 127 for ch in identifier):
        raise OrchestrationError(f"{kind} id {identifier!r} cannot name a checkpoint")


def ref_component(identifier: str) -> str:
    """`identifier` as one valid ref name component: kept as it is when safe, else with the
    unsafe characters percent-encoded (distinct ids give distinct components).

    A leading '_' is encoded too: names starting with '_' are the engine's own refs. A very
    long result is cut and ends in a digest; the true id is kept in the commit's trailers.
    """
    out: list[str] = []
    last = len(identifier) - 1
    for i, ch in enumerate(identifier):
        dot_unsafe = ch == "." and (
            i in (0, last) or identifier[i - 1] == "." or identifier[i:] == ".lock"
        )
        if ch in _REF_SAFE and not dot_unsafe and not (i == 0 and ch == "_"):
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    encoded = "".join(out)
    if len(encoded) <= MAX_REF_COMPONENT:
        return encoded
    # Too long for a file name: a readable head and a digest ("%%" never appears otherwise).
    digest = hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:16]
    return f"{encoded[:150].rstrip('.')}%%{digest}"


def run_refs(run_id: str) -> str:
    """The ref folder holding a run's checkpoints, ending in '/'."""
    _check_id("run", run_id)
    return f"{REF_ROOT}/{ref_component(run_id)}/"


# ---- reading stored checkpoints -------------------------------------------------------------


def _parse_message(contents: str) -> tuple[str, dict[str, str]]:
    body, _, last = contents.strip().rpartition("\n\n")
    trailers: dict[str, str] = {}
    for line in last.splitlines():
        key, sep, value = line.partition(": ")
        if not (sep and key.startswith(TRAILER_PREFIX)):
            return contents.strip(), {}
        trailers[key.removeprefix(TRAILER_PREFIX).lower()] = value
    return body.strip(), trailers


def _read_refs(repo: _Repo, run_id: str) -> list[_Stored]:
    fields = "%(refname)%00%(objectname)%00%(committerdate:iso-strict)%00%(parent)%00%(contents)"
    output = _git(repo.workdir, "for-each-ref", f"--format={fields}%01", run_refs(run_id)).stdout
    folder = run_refs(run_id)
    stored = []
    for record in output.split(RECORD_END + "\n"):
        if not record.strip():
            continue
        ref, sha, date, parents, contents = record.split("\x00", 4)
        message, trailers = _parse_message(contents)
        stored.append(
            _Stored(
                name=ref.removeprefix(folder),
                sha=sha,
                created_at=datetime.fromisoformat(date),
                parent=parents.split()[0] if parents.strip() else None,
                message=message,
                trailers=trailers,
            )
        )
    return stored


def _stats(repo: _Repo, shas: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Files changed, insertions and deletions of each commit against its parent (one call)."""
    if not shas:
        return {}
    output = _git(
        repo.workdir,
        "log",
        "--no-walk=unsorted",
        "--root",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--numstat",
        "--format=%x00%H",
        "--stdin",
        stdin="\n".join(shas) + "\n",
    ).stdout
    stats: dict[str, tuple[int, int, int]] = {}
    for chunk in output.split("\x00")[1:]:
        sha, _, rest = chunk.partition("\n")
        files = insertions = deletions = 0
        for row in rest.splitlines():
            parts = row.split("\t", 2)
            if len(parts) != 3:
                continue
            files += 1
            if parts[0] != "-":  # binary files count as changed, without lines
                insertions += int(parts[0])
                deletions += int(parts[1])
        stats[sha.strip()] = (files, insertions, deletions)
    return stats


def _checkpoint(run_id: str, folder: str, item: _Stored, stats: tuple[int, int, int]) -> Checkpoint:
    trailers = item.trailers
    attempt = trailers.get("attempt", "")
    return Checkpoint(
        run_id=run_id,
        task_id=trailers.get("task", item.name),
        sha=item.sha,
        ref=folder + item.name,
        created_at=item.created_at,
        parent=item.parent,
        files_changed=stats[0],
        insertions=stats[1],
        deletions=stats[2],
        message=item.message,
        attempt=int(attempt) if attempt.isdigit() else None,
        sequence=int(trailers.get("sequence", "0") or 0),
        kind=trailers.get("kind", "task"),
        head=None if trailers.get("head", "none") == "none" else trailers["head"],
    )


def _listed(repo: _Repo, run_id: str, stored: list[_Stored]) -> list[Checkpoint]:
    items = [s for s in stored if s.name != TIP_NAME]
    items.sort(key=lambda s: (int(s.trailers.get("sequence", "0") or 0), s.created_at))
    stats = _stats(repo, [s.sha for s in items])
    folder = run_refs(run_id)
    return [_checkpoint(run_id, folder, s, stats.get(s.sha, (0, 0, 0))) for s in items]


def list_checkpoints(workdir: Path, run_id: str) -> list[Checkpoint]:
    """A run's checkpoints in creation order (the latest of each task, and safety ones).

    Empty when the workdir is not in a git work tree.
    """
    repo = _open_repo(Path(workdir))
    if repo is None:
        return []
    return _listed(repo, run_id, _read_refs(repo, run_id))


def last_checkpoint(
    workdir: Path, run_id: str, approved_only: set[str] | None = None
) -> Checkpoint | None:
    """The run's latest task checkpoint, or the latest of a task in `approved_only`."""
    for checkpoint in reversed(list_checkpoints(workdir, run_id)):
        if checkpoint.kind != "task":
            continue
        if approved_only is None or checkpoint.task_id in approved_only:
            return checkpoint
    return None


# ---- recording ------------------------------------------------------------------------------


def _clean_text(text: str) -> str:
    return "".join(ch for ch in text if ch in "\n\t" or ord(ch) >= 32).strip()


def _head(repo: _Repo) -> str | None:
    completed = _git(
        repo.workdir, "rev-parse", "-q", "--verify", "HEAD^{commit}", ok_codes=(0, 1, 128)
    )
    return (completed.stdout.strip() or None) if completed.returncode == 0 else None


def _excludable(repo: _Repo, exclude: Iterable[str]) -> list[str]:
    """The excluded paths git would otherwise add: naming an ignored path, even to exclude
    it, makes `git add` fail, and `.orchestration/` is left out anyway."""
    names = sorted(n for n in exclude if n.split("/", 1)[0] != PROTECTED_DIR)
    if not names:
        return []
    ignored = _git(
        repo.workdir,
        "check-ignore",
        "--no-index",
        "--stdin",
        stdin="\n".join(names) + "\n",
        ok_codes=(0, 1),
    ).stdout.split("\n")
    return [name for name in names if name not in ignored]


def _worktree_tree(repo: _Repo, index: Path, exclude: Iterable[str]) -> str:
    """The workdir's files as a tree, through a private copy of the user's index."""
    if repo.index.is_file():
        # The copy keeps the index's stat data (only changed files are hashed again) and its
        # mtime, which git needs to detect files changed within its timestamp granularity.
        shutil.copy2(repo.index, index)
    excludes = [f":(exclude,literal){name}" for name in _excludable(repo, exclude)]
    protected = f":(exclude,glob)**/{PROTECTED_DIR}/**"
    _git(repo.workdir, "add", "-A", "--", ".", protected, *excludes, index=index)
    return _git(repo.workdir, "write-tree", index=index).stdout.strip()


def _record(
    repo: _Repo,
    run_id: str,
    *,
    name: str,
    task_id: str,
    kind: str,
    message: str,
    attempt: int | None,
    exclude: Iterable[str],
    stored: list[_Stored],
    tip_to: str | None = None,
    tree: str | None = None,
) -> _Stored:
    """Commit the working tree as checkpoint `name` and move the run's tip.

    The tip moves to the new commit, or to `tip_to` (a rollback's target) when given.
    """
    folder = run_refs(run_id)
    tip = next((s.sha for s in stored if s.name == TIP_NAME), None)
    head = _head(repo)
    parent = tip or head
    sequence = 1 + max((int(s.trailers.get("sequence", "0") or 0) for s in stored), default=0)
    trailers = {
        "Run": run_id,
        "Task": task_id,
        "Kind": kind,
        "Sequence": str(sequence),
        "Head": head or "none",
    }
    if attempt is not None:
        trailers["Attempt"] = str(attempt)
    text = _clean_text(message).replace(RECORD_END, "") or f"checkpoint {task_id}"
    body = text + "\n\n" + "".join(f"{TRAILER_PREFIX}{k}: {v}\n" for k, v in trailers.items())
    if tree is None:
        with tempfile.TemporaryDirectory(prefix="orch-checkpoint-") as tmp:
            tree = _worktree_tree(repo, Path(tmp) / "index", exclude)
    parents = ["-p", parent] if parent else []
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = f"{int(now.timestamp())} +0000"
    dates = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    sha = _git(
        repo.workdir,
        "commit-tree",
        tree,
        *parents,
        "--no-gpg-sign",
        "-F",
        "-",
        stdin=body,
        env={**IDENTITY, **dates},
    ).stdout.strip()
    verb = "create" if kind == "safety" else "update"
    tip_line = (
        f"update {folder}{TIP_NAME} {tip_to or sha} {tip}"
        if tip
        else f"create {folder}{TIP_NAME} {tip_to or sha}"
    )
    # One transaction: the checkpoint ref and the tip move together or not at all.
    _git(repo.workdir, "update-ref", "--stdin", stdin=f"{verb} {folder}{name} {sha}\n{tip_line}\n")
    recorded = {key.lower(): value for key, value in trailers.items()}
    return _Stored(name, sha, now, parent, text, recorded)


def _one(repo: _Repo, run_id: str, item: _Stored) -> Checkpoint:
    stats = _stats(repo, [item.sha]).get(item.sha, (0, 0, 0))
    return _checkpoint(run_id, run_refs(run_id), item, stats)


def create_checkpoint(
    workdir: Path,
    run_id: str,
    task_id: str,
    message: str = "",
    *,
    attempt: int | None = None,
    exclude: Iterable[str] = (),
    tree: str | None = None,
) -> Checkpoint | None:
    """Record the working tree as checkpoint `refs/orchestration/<run>/<task>`.

    `tree` (a tree-ish, e.g. `<commit>^{tree}`) records those files instead of the working
    tree's: in worktree isolation, the run's integration branch after the task merged.

    Tracked and untracked files are recorded, ignored ones and `.orchestration/` are not; so
    are not the paths in `exclude` (relative to the workdir, e.g. the store's files). The
    user's HEAD, branch, index and stash are never touched. A task checkpointed again (a
    retry) moves its ref; the earlier commit stays in the run's history as an ancestor.
    Returns None when the workdir is not in a git work tree.
    """
    repo = _open_repo(Path(workdir))
    if repo is None:
        return None
    _check_id("task", task_id)
    with _LOCK:
        stored = _read_refs(repo, run_id)
        item = _record(
            repo,
            run_id,
            name=ref_component(task_id),
            task_id=task_id,
            kind="task",
            message=message,
            attempt=attempt,
            exclude=exclude,
            stored=stored,
            tree=tree,
        )
        checkpoint = _one(repo, run_id, item)
    logger.debug("checkpoint %s of %s/%s", item.sha[:10], run_id, task_id)
    return checkpoint


# ---- restoring ------------------------------------------------------------------------------


def _protected(path: str, exclude: frozenset[str]) -> bool:
    return path in exclude or PROTECTED_DIR in path.split("/")


def _tree_changes(repo: _Repo, source: str, target: str) -> list[tuple[str, str, str, str]]:
    """(old mode, new mode, status, path) for each file differing under the workdir."""
    output = _git(
        repo.workdir, "diff-tree", "-r", "-z", "--no-renames", "--relative", source, target
    ).stdout
    fields = output.split("\x00")
    changes = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, _old, _new, status = meta[1:].split(" ")
        changes.append((old_mode, new_mode, status[0], path))
    return changes


def _remove(workdir: Path, path: str) -> bool:
    target = workdir / path
    if target.is_dir() and not target.is_symlink():
        return False
    target.unlink(missing_ok=True)
    # Drop the folders this emptied, up to the workdir; a folder with anything left stays.
    for folder in target.parents:
        if folder == workdir or workdir not in folder.parents:
            break
        try:
            folder.rmdir()
        except OSError:
            break
    return True


def restore_checkpoint(
    workdir: Path, run_id: str, task_id: str, *, exclude: Iterable[str] = ()
) -> RestoreResult:
    """Make the workdir's files exactly those of a checkpoint, saving the current state first.

    Files changed since are rewritten, files added since are deleted; ignored files, the
    `.orchestration/` folder, `exclude`d paths, nested repositories and `.git` are left alone.
    HEAD, the branch and the index do not move: `git status` then shows the restored state as
    working-tree changes, as after editing the files by hand. The state before the rollback is
    saved as checkpoint `_before_rollback_<n>` (in `RestoreResult.safety`), which this
    function restores like any other to undo the rollback.
    """
    repo = _require_repo(Path(workdir))
    skip = frozenset(exclude)
    with _LOCK:
        stored = _read_refs(repo, run_id)
        checkpoints = _listed(repo, run_id, stored)
        target = next((c for c in reversed(checkpoints) if c.task_id == task_id), None)
        if target is None:
            raise CheckpointNotFound(run_id, task_id, [c.task_id for c in checkpoints])
        numbers = [c.task_id.removeprefix(SAFETY_PREFIX) for c in checkpoints if c.kind == "safety"]
        number = 1 + max((int(n) for n in numbers if n.isdigit()), default=0)
        safety_name = f"{SAFETY_PREFIX}{number}"
        saved = _record(
            repo,
            run_id,
            name=safety_name,
            task_id=safety_name,
            kind="safety",
            message=f"before rollback to {task_id}",
            attempt=None,
            exclude=skip,
            stored=stored,
            tip_to=target.sha,
        )
        try:
            changes = _tree_changes(repo, saved.sha, target.sha)
            restored, removed, skipped = _apply(repo, changes, skip)
            _write_files(repo, target.sha, restored)
        except (OrchestrationError, OSError) as error:
            raise OrchestrationError(
                f"rollback of run '{run_id}' to '{task_id}' stopped half-way: {error}. The files "
                f"as they were before are saved as checkpoint '{safety_name}'"
            ) from error
        safety = _one(repo, run_id, saved)
    logger.info(
        "restored %s to checkpoint %s/%s: %d written, %d removed; undo with %s",
        workdir,
        run_id,
        task_id,
        len(restored),
        len(removed),
        safety_name,
    )
    return RestoreResult(target, safety, tuple(restored), tuple(removed), tuple(skipped))


def _write_files(repo: _Repo, commit: str, paths: list[str]) -> None:
    """Write `paths` (relative to the workdir) as they are in `commit`, modes and links too."""
    if not paths:
        return
    with tempfile.TemporaryDirectory(prefix="orch-restore-") as tmp:
        index = Path(tmp) / "index"
        _git(repo.workdir, "read-tree", commit, index=index)
        listed = "".join(f"{p}\x00" for p in paths)
        _git(repo.workdir, "checkout-index", "-f", "-z", "--stdin", index=index, stdin=listed)


def _apply(
    repo: _Repo, changes: list[tuple[str, str, str, str]], skip: frozenset[str]
) -> tuple[list[str], list[str], list[str]]:
    """Delete what the target lacks now; return (to write, removed, skipped)."""
    restored: list[str] = []
    removed: list[str] = []
    skipped: list[str] = []
    for old_mode, new_mode, status, path in changes:
        if _protected(path, skip) or GITLINK_MODE in (old_mode, new_mode):
            skipped.append(path)
        elif status == "D":
            (removed if _remove(repo.workdir, path) else skipped).append(path)
        else:
            restored.append(path)
    return restored, removed, skipped
