"""Fetch python-humanize's source release from the package index and make it a project to work on.

The sdist ships the library's own test suite. The library becomes a git repository of its own
(the session's work tree) with its own virtual environment holding its test dependencies, which
orchestration's environment does not have: the `pytest` validator runs the suite there.

    python prepare.py [--dest DIR]      # DIR defaults to ./work next to this file
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from pathlib import Path

LIBRARY = "humanize"
VERSION = "4.17.0"  # pinned, so the story of the session (which tests a change breaks) holds
TEST_DEPENDENCIES = ["pytest>=9", "freezegun", "pytest-benchmark"]
GIT_IDENTITY = ["-c", "user.name=example", "-c", "user.email=example@example.com"]
IGNORED = ".venv/\n.orchestration/\n__pycache__/\n*.egg-info/\n"


def download_sdist(into: Path) -> Path:
    """The source release, as pip fetches it from the configured package index."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"{LIBRARY}=={VERSION}", "--dest", str(into)],
        check=True,
    )  # fmt: skip
    (archive,) = into.glob(f"{LIBRARY}-{VERSION}.tar.gz")
    return archive


def unpack(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    unpacked, project = dest / f"{LIBRARY}-{VERSION}", dest / LIBRARY
    unpacked.rename(project)
    return project


def make_repository(project: Path) -> None:
    (project / ".gitignore").write_text(IGNORED, encoding="utf-8")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", f"{LIBRARY} {VERSION}"]):
        subprocess.run(["git", *GIT_IDENTITY, *args], cwd=project, check=True)


def make_environment(project: Path) -> None:
    """The project's own venv: its test dependencies, none of orchestration's."""
    venv.create(project / ".venv", with_pip=True)
    python = project / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *TEST_DEPENDENCIES], check=True)


def prepare(dest: Path) -> Path:
    project = dest / LIBRARY
    if (project / ".git").is_dir() and (project / ".venv").is_dir():
        print(f"{project} is ready (remove it to start afresh)")
        return project
    if project.exists():
        shutil.rmtree(project)  # a half-prepared tree from an interrupted run
    dest.mkdir(parents=True, exist_ok=True)
    print(f"fetching {LIBRARY} {VERSION} from the package index...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        project = unpack(download_sdist(Path(tmp)), dest)
    make_repository(project)
    print("creating its virtual environment with its test dependencies...", flush=True)
    make_environment(project)
    print(f"ready: {project}")
    return project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent / "work")
    prepare(parser.parse_args().dest.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
