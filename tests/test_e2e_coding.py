"""A coding session end to end on a real git project: the pytest baseline, a regression caught by
the real test suite, ruff on changed files, checkpoints, and a rejection that rolls back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PY, orch, orch_json, write_plan

SAMPLE = Path(__file__).resolve().parent / "sample_project"
GIT_IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
FAST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the sample needs no third-party pytest plugins


def git(workdir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=workdir, check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    workdir = tmp_path / "project"
    shutil.copytree(SAMPLE, workdir, ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / ".gitignore").write_text(".orchestration/\n__pycache__/\n")
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-q", "-m", "sample")
    return workdir


def write_file(path: str, text: str) -> list[str]:
    return [PY, "-c", f"import pathlib; pathlib.Path({path!r}).write_text({text!r})"]


GOOD = "def power(a: int, b: int) -> int:\n    return a**b\n"
UNUSED_IMPORT = "import os\n\n\ndef power(a: int, b: int) -> int:\n    return a**b\n"
BROKEN = (
    '"""A tiny calculator."""\n\n\ndef add(a: int, b: int) -> int:\n    return a - b\n\n\n'
    "def subtract(a: int, b: int) -> int:\n    return a - b\n\n\n"
    "def multiply(a: int, b: int) -> int:\n    return a * b\n"
)


def session(project: Path, extra_text: str = GOOD) -> Path:
    return write_plan(
        project,
        {
            "version": 1,
            "name": "coding",
            "defaults": {
                "retry": {"max_attempts": 1},
                "validators": ["python_syntax", "ruff", {"name": "pytest", "timeout_seconds": 120}],
            },
            "tasks": [
                {
                    "id": "power",
                    "action": {"kind": "shell", "run": write_file("calc/extra.py", extra_text)},
                },
                {
                    "id": "refactor_add",
                    "depends_on": ["power"],
                    "action": {"kind": "shell", "run": write_file("calc/__init__.py", BROKEN)},
                },
            ],
        },
    )


def test_a_regression_pauses_and_reject_with_rollback_restores_the_last_accepted_checkpoint(
    project: Path,
) -> None:
    plan = session(project)
    git(project, "add", "plan.yaml")
    git(project, "commit", "-q", "-m", "plan")
    head = git(project, "rev-parse", "HEAD")
    ran = orch("run", str(plan), env=FAST, cwd=project)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    (bp,) = orch_json("breakpoints", "list", cwd=project)["breakpoints"]
    assert (bp["rule"], bp["task"]) == ("breaking_test_failure", "refactor_add")
    shown = orch_json("breakpoints", "show", str(bp["id"]), cwd=project)["breakpoint"]
    assert any("test_add" in name for name in shown["context"]["tests_regressed"])
    assert shown["context"]["baseline_tests_failed"] == 0

    listed = orch_json("checkpoints", bp["run"], cwd=project)["checkpoints"]
    assert [c["task"] for c in listed] == ["power"]
    assert listed[0]["files_changed"] == 1

    rejected = orch("breakpoints", "resolve", str(bp["id"]), "--reject", "--rollback", cwd=project)
    assert rejected.returncode == 0, rejected.stderr
    assert "restored to the checkpoint after power" in rejected.stdout
    assert (
        "return a + b" in (project / "calc" / "__init__.py").read_text()
    )  # the regression is gone
    assert (project / "calc" / "extra.py").read_text() == GOOD  # the accepted work stays
    assert git(project, "rev-parse", "HEAD") == head  # the user's branch did not move


def test_ruff_reports_lint_only_in_the_files_a_step_changed(project: Path) -> None:
    (project / "calc" / "untouched.py").write_text(
        "import sys\n"
    )  # lint error the step did not make
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "old lint")
    plan = session(project, extra_text=UNUSED_IMPORT)
    orch("run", str(plan), env=FAST, cwd=project)
    status = orch_json("status", cwd=project)
    run_id = status["run"]["id"]
    history = orch("task", "history", run_id, "power", "--json", cwd=project)
    assert history.returncode == 0, history.stderr
    from orchestration.store import Store

    store = Store.open(f"sqlite:///{project / '.orchestration' / 'state.db'}")
    try:
        (quality,) = store.quality(run_id, "power")
    finally:
        store.close()
    (ruff,) = [c for c in quality.checks if c["name"] == "ruff"]
    assert not ruff["passed"] and ruff["figures"]["lint_errors"] == 1
    assert all("extra.py" in finding for finding in ruff["figures"]["lint_findings"])
