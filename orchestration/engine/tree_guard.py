"""Validators never change the work tree: a fingerprint before and after them, and a restore."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestration.core.models import TaskGate
from orchestration.engine.quality import QualityController, QualityReport
from orchestration.extension import CheckResult
from orchestration.project.workspace import (
    Snapshot,
    changes_between,
    fingerprints,
    restore_from_tree,
    snapshot,
)

logger = logging.getLogger(__name__)

VALIDATOR_MODIFIED_TREE = "validator_modified_tree"  # the failed check's name and its figure
# Without git, the attempt's changed files are copied into memory before the validators run,
# up to this much; a file a validator made is removed, but its change to another file that
# was there before can only be named.
MAX_KEPT_BYTES = 50_000_000
MAX_NAMED_FILES = 20


@dataclass(slots=True)
class TreeGuard:
    """The work tree as the agent's action left it, to compare with after the validators ran."""

    workdir: Path
    before: Snapshot
    ignore: frozenset[str]
    kept: dict[str, bytes | None] = field(default_factory=dict)  # without git: path -> content
    # Sizes and times before the validators: when they are the same after, nothing changed
    # and the full snapshot (git hashes every file) is skipped.
    marks: dict[str, str] = field(default_factory=dict)

    @classmethod
    def arm(
        cls, workdir: Path, after_action: Snapshot, changed: Sequence[str], ignore: frozenset[str]
    ) -> TreeGuard:
        """Guard the tree of `after_action` (the snapshot taken after the action)."""
        guard = cls(workdir, after_action, ignore, marks=fingerprints(workdir, ignore))
        if after_action.tree is None:
            guard.kept = _copies(workdir, changed)
        return guard

    def check(self) -> tuple[tuple[str, ...], tuple[str, ...], Snapshot]:
        """The files the validators changed, those that could not be restored, and the tree's
        snapshot now (after any restore)."""
        if fingerprints(self.workdir, self.ignore) == self.marks:
            return (), (), self.before
        now = snapshot(self.workdir, self.ignore)
        changed = changes_between(self.workdir, self.before, now).files
        if not changed:
            return (), (), now
        lost = self._restore(changed)
        return changed, lost, snapshot(self.workdir, self.ignore)

    def _restore(self, changed: Sequence[str]) -> tuple[str, ...]:
        if self.before.tree is not None:
            try:
                restore_from_tree(self.workdir, self.before.tree, changed)
                return ()
            except (subprocess.SubprocessError, OSError) as error:
                logger.error("could not restore %s from git: %s", self.workdir, error)
                return tuple(changed)
        lost = []
        for path in changed:
            if path not in self.kept and path in self.before.files:
                lost.append(path)
                continue
            # A file the fingerprints did not have was made by a validator: it goes.
            target, content = self.workdir / path, self.kept.get(path)
            try:
                if content is None:
                    target.unlink(missing_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
            except OSError as error:
                logger.error("could not restore %s: %s", target, error)
                lost.append(path)
        return tuple(lost)


def _copies(workdir: Path, files: Sequence[str]) -> dict[str, bytes | None]:
    """The content of each file (None: it does not exist), while the budget lasts."""
    kept: dict[str, bytes | None] = {}
    budget = MAX_KEPT_BYTES
    for path in files:
        target = workdir / path
        try:
            content = target.read_bytes() if target.is_file() else None
        except OSError:
            continue
        size = len(content or b"")
        if size > budget:
            continue
        budget -= size
        kept[path] = content
    return kept


def _named(files: Sequence[str]) -> str:
    shown = ", ".join(files[:MAX_NAMED_FILES])
    more = len(files) - MAX_NAMED_FILES
    return shown + (f" (and {more} more)" if more > 0 else "")


def modified_tree_check(
    changed: Sequence[str], lost: Sequence[str], validators: Sequence[str]
) -> CheckResult:
    """The failed check that reports validators changing the tree, naming the files."""
    ran = ", ".join(validators) or "none"
    message = (
        f"the validators ({ran}) changed the work tree: {_named(changed)}; validators must "
        "only read it (a formatter or `fix = true` in the project's config?)."
    )
    restored = [path for path in changed if path not in set(lost)]
    if restored:
        message += f" Restored to the agent's version: {_named(restored)}."
    if lost:
        message += f" Could not restore (no git history, or too large to keep): {_named(lost)}."
    figures = {VALIDATOR_MODIFIED_TREE: list(changed)}
    return CheckResult(VALIDATOR_MODIFIED_TREE, "quality", False, 0.0, message, figures)


def with_modified_tree(
    quality: QualityController,
    report: QualityReport,
    check: CheckResult,
    gate: TaskGate | None,
) -> QualityReport:
    """The report with `check` added; the gate fails whatever the weights say."""
    rescored = quality.score([*report.checks, check], gate)
    reason = f"{VALIDATOR_MODIFIED_TREE}: a validator changed the work tree"
    return replace(rescored, gate_passed=False, gate_failures=(*rescored.gate_failures, reason))
