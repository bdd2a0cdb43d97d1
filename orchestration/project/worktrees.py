"""Isolated work trees: each task works in a git worktree of its own; accepted work merges into
the run's integration branch `orchestration/<run>` without touching the user's tree or index."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.core.errors import OrchestrationError, PlanError
from orchestration.core.models import Plan
from orchestration.project.checkpoints import IDENTITY, GitError, _git, ref_component

logger = logging.getLogger(__name__)

BRANCH_PREFIX = "orchestration/"  # the integration branch: refs/heads/orchestration/<run>
WORKTREE_FOLDER = "orchestration/worktrees"  # under the repository's common git dir
PROTECTED = ":(exclude,glob)**/.orchestration/**"  # the engine's own files are never merged
MAX_DIFF_CHARS = 20_000  # per side of a conflicting file, as shown at the breakpoint


@dataclass(frozen=True, slots=True)
class ConflictedFile:
    """One file both sides changed: what each did to it since the task's base."""

    path: str
    integration_diff: str  # base -> the integration branch (work accepted meanwhile)
    task_diff: str  # base -> the task's work

    def to_json(self) -> dict[str, str]:
        return {
            "path": self.path,
            "integration_diff": self.integration_diff,
            "task_diff": self.task_diff,
        }


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What merging one task's work did: merged (the new tip), or the conflicts found."""

    merged: bool
    tip: str  # the integration branch's commit after (merged) or as it stays (conflict)
    task_commit: str | None  # the task's work as a commit; None when it changed nothing
    conflicts: tuple[ConflictedFile, ...] = ()
    failed_check: str | None = None  # validate_after_merge: why the merged result failed

    def context(self, worktree: Path, branch: str) -> dict[str, Any]:
        """What a `merge_conflict` breakpoint stores, for the terminal and the review page."""
        return {
            "merge_conflicts": [c.to_json() for c in self.conflicts],
            "merge_check": self.failed_check,
            "merge_worktree": str(worktree),
            "integration_branch": branch,
            "integration_tip": self.tip,
            "task_commit": self.task_commit,
        }


MergedCheck = Callable[[Path], "str | None"]  # a merged tree's workdir -> why it fails, or None


class RunWorktrees:
    """The worktrees and the integration branch of one run in one repository."""

    def __init__(self, top: Path, prefix: str, common_dir: Path, run_id: str) -> None:
        self.top = top  # the user's work tree's top folder (only read: git runs there)
        self.prefix = prefix  # the plan's workdir inside the repository, "" or "sub/dir/"
        self.run_id = run_id
        self.branch = BRANCH_PREFIX + ref_component(run_id)
        self.ref = "refs/heads/" + self.branch
        self.root = common_dir / WORKTREE_FOLDER / ref_component(run_id)
        self._lock = threading.Lock()  # one merge or worktree change at a time
        # task id -> the commit a worker elsewhere handed back (remote_trees): merged as itself
        self.handed: dict[str, str] = {}

    @classmethod
    def open(cls, workdir: Path, run_id: str) -> RunWorktrees | None:
        """The run's worktrees, or None when `workdir` is not in a git repository with a commit."""
        try:
            lines = _git(
                Path(workdir),
                "rev-parse",
                "--show-toplevel",
                "--show-prefix",
                "--git-common-dir",
                "--verify",
                "HEAD^{commit}",
            ).stdout.splitlines()
        except GitError:
            return None
        top = Path(lines[0])
        common = Path(lines[2])
        common = common if common.is_absolute() else (Path(workdir) / common).resolve()
        return cls(top, lines[1], common, run_id)

    # ---- the integration branch ---------------------------------------------------------

    def tip(self) -> str | None:
        done = _git(self.top, "rev-parse", "-q", "--verify", self.ref, ok_codes=(0, 1))
        return done.stdout.strip() or None

    def ensure_branch(self) -> str:
        """The integration branch's tip; created at the user's HEAD commit on first use."""
        tip = self.tip()
        if tip is not None:
            return tip
        head = _git(self.top, "rev-parse", "--verify", "HEAD^{commit}").stdout.strip()
        # Create only: a concurrent creation by another thread or process fails here, not later.
        zero = "0" * len(head)
        _git(self.top, "update-ref", "-m", f"orchestration run {self.run_id}", self.ref, head, zero)
        return head

    # ---- one task's worktree ------------------------------------------------------------

    def path_of(self, task_id: str) -> Path:
        return self.root / ref_component(task_id)

    def workdir_of(self, task_id: str) -> Path:
        """Where the task's actions run: the plan's workdir inside the task's worktree."""
        return self.path_of(task_id) / self.prefix

    def prepare(self, task_id: str) -> Path:
        """The task's worktree, made at the integration tip when it has none (a retry keeps
        the previous attempt's work, as in a shared tree)."""
        return self.prepare_fresh(task_id)[0]

    def prepare_fresh(self, task_id: str) -> tuple[Path, str | None]:
        """`prepare`, and the tree it was checked out at when made now (else None)."""
        path = self.path_of(task_id)
        made = None
        with self._lock:
            if not (path / ".git").exists():
                if path.exists():  # left half-made by a crash
                    shutil.rmtree(path)
                    _git(self.top, "worktree", "prune")
                tip = self.ensure_branch()
                path.parent.mkdir(parents=True, exist_ok=True)
                _git(self.top, "worktree", "add", "--detach", "--quiet", str(path), tip)
                made = _git(self.top, "rev-parse", f"{tip}^{{tree}}").stdout.strip()
        return self.workdir_of(task_id), made

    def discard(self, task_id: str) -> None:
        """Remove the task's worktree (its next attempt starts anew from the integration tip)."""
        path = self.path_of(task_id)
        with self._lock:
            self.handed.pop(task_id, None)
            if (path / ".git").exists():
                _git(self.top, "worktree", "remove", "--force", str(path))
            elif path.exists():
                shutil.rmtree(path)
            _git(self.top, "worktree", "prune")

    def adopt(self, task_id: str, commit: str) -> None:
        """Take the commit a worker on another machine handed back as the task's work: it
        merges as itself, and is checked out only if a human has to resolve it."""
        path = self.path_of(task_id)
        with self._lock:
            if (path / ".git").exists():
                _git(self.top, "worktree", "remove", "--force", str(path))
            elif path.exists():
                shutil.rmtree(path)
            _git(self.top, "worktree", "prune")
            self.handed[task_id] = commit

    def unmerged(self) -> list[str]:
        """The paths of the run's task worktrees still there (work not merged)."""
        if not self.root.is_dir():
            return []
        return sorted(str(p) for p in self.root.iterdir() if (p / ".git").exists())

    def has_worktree(self, task_id: str) -> bool:
        """Whether the task has work to merge: its worktree, or a commit handed back."""
        return (self.path_of(task_id) / ".git").exists() or task_id in self.handed

    # ---- merging ------------------------------------------------------------------------

    def merge(
        self,
        task_id: str,
        message: str,
        *,
        task_wins: bool = False,
        check: MergedCheck | None = None,
    ) -> MergeOutcome:
        """Merge the task's worktree into the integration branch (no work tree is written).

        With `task_wins`, files that conflict take the task's version (a human resolved them
        in the task's worktree and approved). `check` is given a worktree checked out at a
        merge commit (not a fast-forward) before the branch moves; the reason it returns
        stops the merge. A clean merge removes the task's worktree.
        """
        path = self.path_of(task_id)
        with self._lock:
            if not (path / ".git").exists() and task_id in self.handed:
                return self._merge_handed(path, task_id, message, check)
            if not (path / ".git").exists():
                raise OrchestrationError(f"task '{task_id}' has no worktree at {path} to merge")
            outcome = self._merge(path, task_id, message, task_wins=task_wins, check=check)
            if outcome.merged:
                _git(self.top, "worktree", "remove", "--force", str(path))
                self.handed.pop(task_id, None)
        return outcome

    def _merge(
        self,
        path: Path,
        task_id: str,
        message: str,
        *,
        task_wins: bool,
        check: MergedCheck | None,
    ) -> MergeOutcome:
        base = _git(path, "rev-parse", "HEAD").stdout.strip()
        # The worktree's own index is the engine's (never the user's): stage all the task did.
        _git(path, "add", "-A", "--", ".", PROTECTED)
        tree = _git(path, "write-tree").stdout.strip()
        tip = self.ensure_branch()
        if tree == _git(path, "rev-parse", f"{base}^{{tree}}").stdout.strip():
            return MergeOutcome(True, tip, None)  # nothing to merge
        body = self._body(task_id, message)
        work = self._handed_as(task_id, base, tree) or _commit(path, tree, [base], body)
        return self._merge_work(task_id, base, tip, work, body, task_wins=task_wins, check=check)

    def _body(self, task_id: str, message: str) -> str:
        return f"{message}\n\nOrchestration-Run: {self.run_id}\nOrchestration-Task: {task_id}\n"

    def _merge_handed(
        self, path: Path, task_id: str, message: str, check: MergedCheck | None
    ) -> MergeOutcome:
        """Merge the commit a worker handed back (no worktree: nothing was checked out). When
        it does not merge, its worktree is made for the human to resolve it in."""
        work = self.handed[task_id]
        base = _git(self.top, "rev-parse", f"{work}^").stdout.strip()
        tip = self.ensure_branch()
        body = self._body(task_id, message)
        outcome = self._merge_work(task_id, base, tip, work, body, task_wins=False, check=check)
        if outcome.merged:
            del self.handed[task_id]
        else:
            self._check_out_handed(path, base, work)
        return outcome

    def _check_out_handed(self, path: Path, base: str, commit: str) -> None:
        """The task's worktree: HEAD at the base, index and files the commit's (written once)."""
        if path.exists():
            shutil.rmtree(path)
        _git(self.top, "worktree", "prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(self.top, "worktree", "add", "--detach", "--no-checkout", "--quiet", str(path), base)
        _git(path, "read-tree", "-u", "--reset", commit)

    def _merge_work(
        self,
        task_id: str,
        base: str,
        tip: str,
        work: str,
        body: str,
        *,
        task_wins: bool,
        check: MergedCheck | None,
    ) -> MergeOutcome:
        """Merge the task's commit `work` (made on `base`) into the branch at `tip`."""
        if tip == base:
            self._move_tip(work, tip)
            return MergeOutcome(True, work, work)
        merged, conflicted = self._merge_tree(tip, work)
        if conflicted and not task_wins:
            sides = tuple(self._sides(base, tip, work, name) for name in conflicted)
            return MergeOutcome(False, tip, work, sides)
        if conflicted:
            merged = self._take_task_side(merged, work, conflicted)
        commit = _commit(self.top, merged, [tip, work], f"Merge task {task_id}\n\n{body}")
        failed = self._checked(commit, task_id, check) if check is not None else None
        if failed is not None:
            return MergeOutcome(False, tip, work, failed_check=failed)
        self._move_tip(commit, tip)
        return MergeOutcome(True, commit, work)

    def _handed_as(self, task_id: str, base: str, tree: str) -> str | None:
        """The commit a worker handed back for the task when the worktree still holds exactly
        it on its base (a human's edits since make a commit of their own)."""
        handed = self.handed.get(task_id)
        if handed is None:
            return None
        shown = _git(self.top, "rev-parse", f"{handed}^{{tree}}", f"{handed}^@").stdout.split()
        return handed if shown == [tree, base] else None

    def _checked(self, commit: str, task_id: str, check: MergedCheck) -> str | None:
        """Run `check` on a throwaway worktree of the merge commit."""
        path = self.root / f"_merged_{ref_component(task_id)}"
        if path.exists():
            shutil.rmtree(path)
        _git(self.top, "worktree", "prune")
        _git(self.top, "worktree", "add", "--detach", "--quiet", str(path), commit)
        try:
            return check(path / self.prefix)
        finally:
            _git(self.top, "worktree", "remove", "--force", str(path))

    def _merge_tree(self, tip: str, work: str) -> tuple[str, list[str]]:
        done = _git(
            self.top,
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--no-messages",
            tip,
            work,
            ok_codes=(0, 1),
        )
        fields = done.stdout.split("\x00")
        names = [name for name in fields[1:] if name] if done.returncode == 1 else []
        return fields[0].strip(), sorted(set(names))

    def _sides(self, base: str, tip: str, work: str, name: str) -> ConflictedFile:
        def diff(commit: str) -> str:
            text = _git(self.top, "diff", "--no-ext-diff", base, commit, "--", name).stdout
            return text[:MAX_DIFF_CHARS]

        return ConflictedFile(name, diff(tip), diff(work))

    def _take_task_side(self, merged: str, work: str, names: list[str]) -> str:
        """The merged tree with the conflicting files as the task's commit has them."""
        index = self.root / "resolve.index"
        index.parent.mkdir(parents=True, exist_ok=True)
        index.unlink(missing_ok=True)
        try:
            _git(self.top, "read-tree", merged, index=index)
            listed = _git(self.top, "ls-tree", "-r", "-z", "--full-tree", work, "--", *names)
            entries = {}
            for row in listed.stdout.split("\x00"):
                if row:
                    meta, name = row.split("\t", 1)
                    mode, _kind, sha = meta.split(" ")
                    entries[name] = f"{mode} {sha}\t{name}"
            for name in names:
                if name not in entries:  # the task deleted it
                    _git(self.top, "update-index", "--force-remove", "--", name, index=index)
            if entries:
                stdin = "".join(line + "\x00" for line in entries.values())
                _git(self.top, "update-index", "-z", "--index-info", index=index, stdin=stdin)
            return _git(self.top, "write-tree", index=index).stdout.strip()
        finally:
            index.unlink(missing_ok=True)

    def _move_tip(self, new: str, old: str) -> None:
        # Compare-and-swap: a tip moved by anyone else since it was read fails loudly.
        _git(self.top, "update-ref", "-m", f"orchestration run {self.run_id}", self.ref, new, old)

    def merge_command(self) -> str:
        """What the user types to take the run's work into their branch."""
        return f"git merge {self.branch}"


def _commit(cwd: Path, tree: str, parents: list[str], message: str) -> str:
    args = [arg for parent in parents for arg in ("-p", parent)]
    return _git(
        cwd, "commit-tree", tree, *args, "--no-gpg-sign", "-F", "-", stdin=message, env=IDENTITY
    ).stdout.strip()


def task_worktree(workdir: Path, run_id: str, task_id: str) -> Path | None:
    """Where a task of a run works in isolation, while its worktree exists (not yet merged)."""
    worktrees = RunWorktrees.open(workdir, run_id)
    if worktrees is None or not worktrees.has_worktree(task_id):
        return None
    return worktrees.workdir_of(task_id)


def open_isolation(plan: Plan, run_id: str) -> RunWorktrees | None:
    """The run's worktrees when its tasks work in isolation, None when they share the workdir.

    `isolation: worktree` needs a git repository with a commit; unset, it is chosen when the
    workdir is in one and tasks may run at the same time (max_workers > 1, or worker processes:
    a worker on another machine works in a clone and hands back a commit, see remote_trees).
    """
    chosen = plan.spec.isolation
    concurrency = plan.spec.concurrency
    alone = concurrency.max_workers < 2 and concurrency.executor != "workers"
    if chosen == "shared" or (chosen is None and alone):
        return None
    worktrees = RunWorktrees.open(Path(plan.workdir), run_id)
    if worktrees is None and chosen == "worktree":
        raise PlanError(
            f"isolation: worktree needs the workdir {plan.workdir} to be in a git repository "
            "with at least one commit; use isolation: shared otherwise",
            file=plan.path,
            field="isolation",
        )
    return worktrees
