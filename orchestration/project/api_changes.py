"""Public-API breaking changes of a step's Python packages, found by griffe from two git trees.

The old side is read out of the step's `before` tree with `git archive` into a private temporary
folder, the new side out of its `after` tree: the work tree itself is never read for this, nor
written. Only packages the step touched are loaded, and only statically (no import of user code).
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from orchestration.core.safe_git import run_git

logger = logging.getLogger(__name__)

ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
LOADED_FROM = re.compile(r"^\S*?orch-api-[^/]+/(old|new)/")

GIT_TIMEOUT_SECONDS = 60
MAX_BREAKAGES = 50  # listed per step; more are counted in the last entry
SKIPPED_TOP_DIRS = frozenset(
    {"tests", "test", "docs", "examples", "scripts", "benchmarks", "bench"}
)


def touched_packages(changed_files: Iterable[str]) -> dict[str, str]:
    """Top-level Python packages (name -> folder of their parent) the changed files belong to.

    `src/pkg/mod.py` gives `pkg` under `src`; `pkg/mod.py` gives `pkg` under the root. Private
    (`_x`) and test or documentation folders are not public API.
    """
    found: dict[str, str] = {}
    for name in changed_files:
        path = PurePosixPath(name)
        if path.suffix not in (".py", ".pyi") or len(path.parts) < 2:
            continue
        parts = path.parts[1:] if path.parts[0] == "src" else path.parts
        root = "src" if path.parts[0] == "src" else ""
        package = parts[0]
        if len(parts) < 2 or package in SKIPPED_TOP_DIRS or package.startswith((".", "_")):
            continue
        found[package] = root
    return found


def breaking_changes(
    workdir: Path, before_tree: str, after_tree: str, changed: Iterable[str]
) -> tuple[str, ...]:
    """One line per breaking change of the public API between the two trees, e.g.
    `mypkg.client.get(timeout): parameter was removed`. Empty when no package was touched."""
    packages = touched_packages(changed)
    if not packages:
        return ()
    try:
        import griffe
    except ImportError:  # pragma: no cover - griffe is a dependency
        return ()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="orch-api-") as tmp:
        for package, root in sorted(packages.items()):
            old = _load(griffe, workdir, before_tree, root, package, Path(tmp) / "old")
            new = _load(griffe, workdir, after_tree, root, package, Path(tmp) / "new")
            if old is None:
                continue  # a new package breaks nothing
            if new is None:
                lines.append(f"{package}: package was removed")
                continue
            try:
                for breakage in griffe.find_breaking_changes(old, new):
                    lines.append(_describe(breakage))
            except Exception as error:  # griffe on odd code: no signal rather than a crash
                logger.warning("API comparison of %s failed: %s", package, error)
    if len(lines) > MAX_BREAKAGES:
        lines = [*lines[: MAX_BREAKAGES - 1], f"... and {len(lines) - MAX_BREAKAGES + 1} more"]
    return tuple(lines)


def _load(
    griffe: object, workdir: Path, tree: str, root: str, package: str, into: Path
) -> object | None:
    folder = f"{root}/{package}" if root else package
    if not _extract(workdir, tree, folder, into):
        return None
    search = into / root if root else into
    if not (search / package).is_dir():
        return None
    try:
        return griffe.load(  # type: ignore[attr-defined]
            package, search_paths=[search], allow_inspection=False, resolve_aliases=False
        )
    except Exception as error:
        logger.warning("griffe could not load %s from %s: %s", package, tree, error)
        return None


def _extract(workdir: Path, tree: str, folder: str, into: Path) -> bool:
    """Write `folder` of `tree` under `into` (git archive: no index, no work tree involved)."""
    try:
        completed = run_git(
            workdir, "archive", "--format=tar", tree, "--", folder, timeout=GIT_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("git archive of %s failed: %s", folder, error)
        return False
    if completed.returncode != 0:
        return False  # the folder is not in that tree
    # run_git reads text with surrogateescape: encoding it back gives the archive's exact bytes
    data = completed.stdout.encode("utf-8", errors="surrogateescape")
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return True


def _describe(breakage: object) -> str:
    """griffe's own one-line explanation, without the temporary folder it was loaded from."""
    try:
        text = breakage.explain()  # type: ignore[attr-defined]
    except Exception:  # an explanation is a courtesy; the breakage itself still counts
        text = f"{getattr(getattr(breakage, 'obj', None), 'path', '?')}: changed"
    text = ANSI_CODE.sub("", " ".join(str(text).split()))
    return LOADED_FROM.sub("", text)  # `/tmp/orch-api-x/new/src/pkg/m.py:3: ...` -> `src/pkg/...`
