"""The README's demo, run as a user runs it, and its documented interactive path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestration.cli.demo import copy_example, init_git
from tests.helpers import orch, orch_json

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_orch_demo_retries_with_feedback_pauses_and_completes(tmp_path: Path) -> None:
    done = orch("demo", "--dir", str(tmp_path / "demo"))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "architecture_decision" in output and "In demo mode the reviewer approves it" in output
    assert "implement attempt 1: retry" in output
    assert "test_sku_at_reorder_point_is_reordered" in output  # the feedback that was passed on
    assert "implement attempt 2: proceed" in output
    db = f"sqlite:///{tmp_path / 'demo' / '.orchestration' / 'state.db'}"
    status = orch_json("status", "--db", db)
    assert status["run"]["state"] == "completed"
    assert {t["id"]: t["attempts"] for t in status["tasks"]}["implement"] == 2
    history = orch_json("breakpoints", "list", "--all", "--db", db)["breakpoints"]
    assert [(b["task"], b["rule"], b["resolution"]) for b in history] == [
        ("design-storage", "architecture_decision", "approve")
    ]
    # the user's branch and index were never touched: the project's git log has one commit
    log = subprocess.run(
        ["git", "log", "--oneline"],
        cwd=tmp_path / "demo" / "project",
        capture_output=True,
        text=True,
    )
    assert len(log.stdout.splitlines()) == 1


@needs_git
def test_interactive_path_run_resolve_resume(tmp_path: Path) -> None:
    plan = copy_example(tmp_path / "session")
    assert init_git(tmp_path / "session" / "project")
    paused = orch("run", str(plan), "--run-id", "session-1", "--quiet")
    assert paused.returncode == 3, paused.stderr
    cwd = tmp_path / "session"
    open_bps = orch_json("breakpoints", "list", cwd=cwd)["breakpoints"]
    assert [b["rule"] for b in open_bps] == ["architecture_decision"]
    shown = orch("breakpoints", "show", str(open_bps[0]["id"]), cwd=cwd)
    assert shown.returncode == 0 and "design-storage" in shown.stdout
    resolved = orch(
        "breakpoints",
        "resolve",
        str(open_bps[0]["id"]),
        "--approve",
        "--note",
        "JSON file is fine",
        cwd=cwd,
    )
    assert resolved.returncode == 0, resolved.stderr
    finished = orch("resume", "session-1", "--quiet", cwd=cwd)
    assert finished.returncode == 0, finished.stderr
    tasks = orch_json("status", "session-1", cwd=cwd)["tasks"]
    assert {t["state"] for t in tasks} == {"completed"}
    assert (tmp_path / "session" / "project" / "inventory" / "reorder.py").is_file()
