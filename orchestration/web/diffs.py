"""The changes in a step's files, as a unified diff, read from the run's git working directory.

The store keeps a step's changed files and its `git diff --stat`, not the patch itself, so the
review shows the files as they are now against the last commit (HEAD). Like the engine's
snapshots it stages into a private index, which leaves the user's index and branch alone.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestration.core.safe_git import run_git

logger = logging.getLogger(__name__)

MAX_DIFF_CHARS = 200_000  # a longer diff is cut here
GIT_TIMEOUT_SECONDS = 10
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree
BASIS = (
    "the step's files as they are now in the working directory, against its last commit (HEAD); "
    "changes made to these files by earlier or later steps show here too"
)


@dataclass(frozen=True, slots=True)
class WorkingDiff:
    text: str
    truncated: bool
    basis: str = BASIS


def _git(
    workdir: Path, args: Sequence[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return run_git(workdir, *args, extra_env=env, timeout=GIT_TIMEOUT_SECONDS, errors="replace")


def working_diff(workdir: Path, files: Sequence[str]) -> WorkingDiff | None:
    """The diff of `files` (relative to `workdir`), or None without git or on any failure."""
    if not files or not (workdir / ".git").exists():
        return None
    pathspecs = [f":(literal){name}" for name in files]
    try:
        with tempfile.TemporaryDirectory(prefix="orch-web-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            head = _git(workdir, ["rev-parse", "--verify", "-q", "HEAD^{tree}"], env)
            base = head.stdout.strip() if head.returncode == 0 else EMPTY_TREE
            staged = _git(workdir, ["add", "-A", "--", ".", ":(exclude).orchestration"], env)
            if staged.returncode != 0:
                logger.info("git add failed in %s: %s", workdir, staged.stderr.strip())
                return None
            diff = _git(
                workdir,
                ["diff", "--cached", "--no-color", "--no-ext-diff", base, "--", *pathspecs],
                env,
            )
    except (OSError, subprocess.SubprocessError) as error:
        logger.info("no diff for %s: %s", workdir, error)
        return None
    if diff.returncode != 0:
        logger.info("git diff failed in %s: %s", workdir, diff.stderr.strip())
        return None
    text = diff.stdout
    truncated = len(text) > MAX_DIFF_CHARS
    return WorkingDiff(text[:MAX_DIFF_CHARS], truncated)
