"""Work trees across machines: a worker clones the run's repository, works on the offered base
and hands its work back as a commit, which the conductor checks and merges like a task worktree.

Refs (none under a run's checkpoint folder `refs/orchestration/<run>/`; a leading `_` is never
a run id's component): `refs/orchestration/_base/<run>/<task>/<attempt>` holds the commit an
attempt starts from, `refs/orchestration/_work/<run>/<task>/<attempt>` the commit it hands back.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.safe_git import run_git
from orchestration.project.checkpoints import IDENTITY, GitError, _git, ref_component
from orchestration.project.worktrees import PROTECTED, RunWorktrees

logger = logging.getLogger(__name__)

BASE_REFS = "refs/orchestration/_base"
WORK_REFS = "refs/orchestration/_work"
TRANSFER_TIMEOUT_SECONDS = 600.0  # a first clone of a large repository takes a while


class RefusedWork(OrchestrationError):
    """A commit a worker handed back that the conductor will not merge (the task is retried)."""


@dataclass(frozen=True, slots=True)
class TreeOffer:
    """Where an attempt's work tree comes from and where its commit goes: in the payload."""

    repository: str  # a URL or path every worker can reach
    base: str  # the commit the attempt starts from
    base_ref: str  # a ref of `repository` holding `base` while the integration branch moves on
    work_ref: str  # where the worker pushes its commit
    prefix: str  # the plan's workdir inside the repository, "" or "sub/dir/"

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeOffer:
        return cls(**{key: str(data[key]) for key in cls.__dataclass_fields__})


def attempt_ref(root: str, run_id: str, task_id: str, attempt: int) -> str:
    return f"{root}/{ref_component(run_id)}/{ref_component(task_id)}/{attempt}"


def transfer(cwd: Path, *args: str) -> str:
    """A git call that reaches another repository (clone, fetch, push): transports allowed."""
    try:
        done = run_git(cwd, *args, transport=True, timeout=TRANSFER_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise GitError(args, None, f"no answer within {TRANSFER_TIMEOUT_SECONDS} s") from None
    except OSError as error:
        raise GitError(args, None, f"cannot run git: {error}") from None
    if done.returncode != 0:
        raise GitError(args, done.returncode, done.stderr)
    return done.stdout


# ---- the conductor ------------------------------------------------------------------------


class TreePublisher:
    """The conductor's side: publishes the bases attempts start from, takes their commits."""

    def __init__(self, worktrees: RunWorktrees, repository: str | None) -> None:
        self.worktrees = worktrees
        self.repository = repository  # None: the workdir's own repository
        self.url = repository or str(worktrees.top)
        self.published: set[str] = set()  # bases already under a ref of the repository
        self._lock = threading.Lock()

    def offer(self, task_id: str, attempt: int) -> TreeOffer:
        """The integration branch's tip as the attempt's base, under a ref of the repository
        (one per base: a push only when the branch has moved)."""
        run_id = self.worktrees.run_id
        base = self.worktrees.ensure_branch()
        base_ref = f"{BASE_REFS}/{ref_component(run_id)}/{base}"
        with self._lock:
            if base not in self.published:
                self._publish(base, base_ref)
                self.published.add(base)
        work_ref = attempt_ref(WORK_REFS, run_id, task_id, attempt)
        return TreeOffer(self.url, base, base_ref, work_ref, self.worktrees.prefix)

    def _publish(self, base: str, base_ref: str) -> None:
        top = self.worktrees.top
        if self.repository is None:
            _git(top, "update-ref", base_ref, base)
        else:
            transfer(top, "push", "--quiet", "--no-verify", self.repository, f"+{base}:{base_ref}")

    def take(self, task_id: str, offer: TreeOffer, commit: str, files: Sequence[str]) -> None:
        take_work(self.worktrees, task_id, offer, commit, files)

    def close(self) -> None:
        """Drop the base refs from the workdir's repository: no attempt is out any more. In a
        shared repository they stay (pruning there is its owner's)."""
        if self.repository is not None or not self.published:
            return
        folder = f"{BASE_REFS}/{ref_component(self.worktrees.run_id)}/"
        lines = "".join(f"delete {folder}{base}\n" for base in sorted(self.published))
        try:
            _git(self.worktrees.top, "update-ref", "--stdin", stdin=lines)
        except GitError as error:  # only refs left behind
            logger.warning("cannot drop the run's base refs: %s", error)
        self.published.clear()


def take_work(
    worktrees: RunWorktrees,
    task_id: str,
    offer: TreeOffer,
    commit: str,
    files: Sequence[str],
) -> None:
    """Fetch the commit a worker reported, check it, and make it the task's worktree.

    Refused: a ref that does not hold the reported commit, a commit whose parent is not the
    offered base, or one that changes a file the worker did not report (and so its
    validators did not see as changed).
    """
    if offer.repository != str(worktrees.top):
        transfer(
            worktrees.top,
            "fetch",
            "--quiet",
            "--no-tags",
            offer.repository,
            f"+{offer.work_ref}:{offer.work_ref}",
        )
    found = _git(
        worktrees.top,
        "rev-parse",
        "-q",
        "--verify",
        f"{offer.work_ref}^{{commit}}",
        ok_codes=(0, 1),
    ).stdout.strip()
    if found != commit:
        raise RefusedWork(f"{offer.work_ref} holds {found or 'nothing'}, not the reported {commit}")
    parents = _git(worktrees.top, "rev-parse", f"{commit}^@").stdout.split()
    if parents != [offer.base]:
        raise RefusedWork(
            f"commit {commit} of task '{task_id}' has parent(s) {', '.join(parents) or 'none'}, "
            f"not the base {offer.base} it was offered"
        )
    changed = _git(
        worktrees.top, "diff-tree", "-r", "-z", "--name-only", "--no-renames", offer.base, commit
    ).stdout.split("\x00")
    reported = _reported_names(files, offer.prefix)
    unseen = sorted(name for name in changed if name and name not in reported)
    if unseen:
        raise RefusedWork(
            f"commit {commit} of task '{task_id}' changes files the worker did not report: "
            + ", ".join(unseen[:10])
        )
    worktrees.adopt(task_id, commit)


def _reported_names(files: Sequence[str], prefix: str) -> set[str]:
    """The paths a worker reported, as the commit names them: git quotes unusual names in its
    diff output ("\\303\\251.txt"), and they may be relative to the workdir or to the top."""
    names = set()
    for name in files:
        if len(name) > 1 and name.startswith('"') and name.endswith('"'):
            raw = name[1:-1].encode("ascii", "backslashreplace").decode("unicode_escape")
            name = raw.encode("latin-1").decode("utf-8", "surrogateescape")
        names.update((name, prefix + name))
    return names


# ---- the worker ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkout:
    """One attempt's worktree in the worker's clone."""

    clone: Path
    path: Path  # the worktree's top
    workdir: Path  # the plan's workdir inside it
    tree: str  # the base's tree: the attempt's "before"


class Clones:
    """The worker's clones (one bare clone per repository) and its attempts' worktrees."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # one git change per clone at a time in this process

    def clone_of(self, repository: str) -> Path:
        digest = hashlib.sha256(repository.encode("utf-8")).hexdigest()[:16]
        return self.root / f"{digest}.git"

    @contextmanager
    def _locked(self, clone: Path) -> Iterator[None]:
        """This process's threads and other workers sharing the cache, one at a time."""
        clone.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(f"{clone}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def check_out(self, offer: TreeOffer, run_id: str, task_id: str, attempt: int) -> Checkout:
        """Fetch the offered base into the clone and make the attempt's worktree at it."""
        clone = self.clone_of(offer.repository)
        name = f"{ref_component(task_id)}.{attempt}"
        path = self.root / "worktrees" / clone.stem / ref_component(run_id) / name
        with self._locked(clone):
            if not (clone / "HEAD").exists():
                shutil.rmtree(clone, ignore_errors=True)  # left half-made by a crash
                transfer(self.root, "clone", "--bare", "--quiet", offer.repository, str(clone))
            transfer(
                clone,
                "fetch",
                "--quiet",
                "--no-tags",
                offer.repository,
                f"+{offer.base_ref}:{offer.base_ref}",
            )
            if path.exists():
                shutil.rmtree(path)
            _git(clone, "worktree", "prune")
        # Outside the lock: checking out a large tree takes a while; each attempt has its own.
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(clone, "worktree", "add", "--detach", "--quiet", str(path), offer.base)
        tree = _git(path, "rev-parse", f"{offer.base}^{{tree}}").stdout.strip()
        return Checkout(clone, path, path / offer.prefix, tree)

    def hand_back(
        self, checkout: Checkout, offer: TreeOffer, author: dict[str, str], message: str
    ) -> str | None:
        """Commit what the attempt left on its base and push it: the commit, None when the
        attempt changed nothing. The worktree is removed either way."""
        try:
            _git(checkout.path, "add", "-A", "--", ".", PROTECTED)
            tree = _git(checkout.path, "write-tree").stdout.strip()
            if tree == checkout.tree:
                return None
            commit = _git(
                checkout.path,
                "commit-tree",
                tree,
                "-p",
                offer.base,
                "--no-gpg-sign",
                "-F",
                "-",
                stdin=message,
                env={**IDENTITY, **author},
            ).stdout.strip()
            transfer(
                checkout.clone,
                "push",
                "--quiet",
                "--no-verify",
                offer.repository,
                f"+{commit}:{offer.work_ref}",
            )
            return commit
        finally:
            self.remove(checkout, offer)

    def remove(self, checkout: Checkout, offer: TreeOffer) -> None:
        with self._locked(checkout.clone):
            if checkout.path.exists():
                _git(checkout.clone, "worktree", "remove", "--force", str(checkout.path))
            _git(checkout.clone, "update-ref", "-d", offer.base_ref)


def work_message(run_id: str, task_id: str, attempt: int, title: str, worker: str) -> str:
    return (
        f"{title}\n\nOrchestration-Run: {run_id}\nOrchestration-Task: {task_id}\n"
        f"Orchestration-Attempt: {attempt}\nOrchestration-Worker: {worker}\n"
    )


def work_author(task_id: str, attempt: int, worker: str) -> dict[str, str]:
    """The commit's author is the task's attempt; its committer the worker that ran it."""
    return {
        "GIT_AUTHOR_NAME": f"{task_id} (attempt {attempt})",
        "GIT_AUTHOR_EMAIL": "orchestration@localhost",
        "GIT_COMMITTER_NAME": f"orchestration worker {worker}",
    }


def clone_wanted(mode: str, workdir: Path) -> bool:
    """Whether a worker in `mode` works in its own clone for a plan whose workdir is
    `workdir`: always (`clone`), never (`shared`), or when the path is not on this machine."""
    return mode == "clone" or (mode == "auto" and not workdir.exists())


class CloneTrees:
    """What the AttemptRunner asks of a run's worktrees, for attempts in a worker's clone:
    each attempt's worktree is made before the runner runs it (its base is per attempt)."""

    def __init__(self) -> None:
        self.prepared: dict[str, tuple[Path, str]] = {}  # task id -> (workdir, base tree)

    def prepare_fresh(self, task_id: str) -> tuple[Path, str | None]:
        return self.prepared.pop(task_id)


def run_in_clone(
    clones: Clones,
    trees: CloneTrees,
    payload: dict[str, Any],
    worker: str,
    execute: Any,
) -> tuple[Any, str | None]:
    """Run `execute()` (the attempt) in a worktree of the worker's clone at the offered base;
    its result and the commit handed back (None: it changed nothing)."""
    data = payload.get("tree")
    run_id, task_id, attempt = payload["run_id"], payload["task"]["id"], payload["attempt"]
    if not data:
        raise OrchestrationError(
            f"workdir {payload['workdir']} is not on this machine and run '{run_id}' offers no "
            "git work tree (its workdir is not a git repository): run it on local workers"
        )
    offer = TreeOffer.from_json(data)
    checkout = clones.check_out(offer, run_id, task_id, attempt)
    trees.prepared[task_id] = (checkout.workdir, checkout.tree)
    try:
        result = execute()
    except BaseException:
        trees.prepared.pop(task_id, None)
        clones.remove(checkout, offer)
        raise
    title = str(payload["task"].get("title") or task_id)
    message = work_message(run_id, task_id, attempt, title, worker)
    return result, clones.hand_back(checkout, offer, work_author(task_id, attempt, worker), message)
