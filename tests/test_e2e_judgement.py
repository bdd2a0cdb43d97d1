"""The default judgement end to end: a test-first red step retries by itself, and a task out of
attempts fails (branches and trigger rules go on) or waits for a human, as `when_exhausted` says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestration.store import Store
from tests.helpers import PY, orch, orch_json, shell_task, write_plan

SAMPLE = Path(__file__).resolve().parent / "sample_project"
FAST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
NO_WAIT = {"max_attempts": 2, "base_seconds": 0, "jitter": False}

# Attempt 1 writes the tests and a stub that fails them; attempt 2 implements the function.
TEST_FIRST = """
import os, pathlib
pathlib.Path('tests/check_power.py').write_text(
    'from calc.extra import power\\n\\n\\ndef test_square():\\n    assert power(3, 2) == 9\\n\\n\\n'
    'def test_zero():\\n    assert power(5, 0) == 1\\n'
)
body = 'raise NotImplementedError' if os.environ['ORCH_ATTEMPT'] == '1' else 'return a**b'
pathlib.Path('calc/extra.py').write_text(f'def power(a, b):\\n    {body}\\n')
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    workdir = tmp_path / "project"
    shutil.copytree(SAMPLE, workdir, ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / ".gitignore").write_text(".orchestration/\n__pycache__/\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "sample"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=workdir,
            check=True,
            capture_output=True,
        )
    return workdir


def test_a_red_test_first_step_retries_with_feedback_by_itself(project: Path) -> None:
    plan = write_plan(
        project,
        {
            "version": 1,
            "name": "tdd",
            "defaults": {"retry": NO_WAIT, "validators": [{"name": "pytest"}]},
            "tasks": [{"id": "power", "action": {"kind": "shell", "run": [PY, "-c", TEST_FIRST]}}],
        },
    )
    ran = orch("run", str(plan), env=FAST, cwd=project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert orch_json("breakpoints", "list", "--all", cwd=project)["breakpoints"] == []
    run_id = orch_json("status", cwd=project)["run"]["id"]
    store = Store.open(f"sqlite:///{project / '.orchestration' / 'state.db'}")
    try:
        decisions = [d.action for d in store.decisions(run_id, "power")]
        steps = [e.data for e in store.events(run_id) if e.kind == "step"]
        task = store.task(run_id, "power")
    finally:
        store.close()
    assert (task.state, task.attempts) == ("completed", 2)
    assert decisions == ["retry", "proceed"]
    first = steps[0]
    assert first["tests_new_failing"] == 2 and first["tests_regressed"] == []


def failing_plan(directory: Path, **task: Any) -> Path:
    return write_plan(
        directory,
        {
            "version": 1,
            "name": "exhausted",
            "defaults": {"retry": NO_WAIT},
            "tasks": [
                shell_task("deploy", "raise SystemExit(1)", **task),
                shell_task(
                    "roll-back",
                    "open('rolled-back', 'w').close()",
                    depends_on=["deploy"],
                    trigger="one_failed",
                ),
                shell_task("announce", "pass", depends_on=["deploy"]),
            ],
        },
    )


def states(directory: Path) -> dict[str, tuple[str, int]]:
    status = orch_json("status", cwd=directory)
    return {t["id"]: (t["state"], t["attempts"]) for t in status["tasks"]}


def test_when_exhausted_fail_fails_the_task_and_the_failure_path_runs(tmp_path: Path) -> None:
    plan = failing_plan(tmp_path, when_exhausted="fail")
    ran = orch("run", str(plan), cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # finished, with a failure
    assert states(tmp_path) == {
        "deploy": ("failed", 2),
        "roll-back": ("completed", 1),
        "announce": ("cancelled", 0),
    }
    assert (tmp_path / "rolled-back").exists()
    assert orch_json("breakpoints", "list", "--all", cwd=tmp_path)["breakpoints"] == []
    dead = orch_json("dlq", "list", cwd=tmp_path)["dead_letters"]
    assert [d["task"] for d in dead] == ["deploy"]


def test_when_exhausted_defaults_to_a_human(tmp_path: Path) -> None:
    plan = failing_plan(tmp_path)
    ran = orch("run", str(plan), cwd=tmp_path)
    assert ran.returncode == 3, ran.stdout + ran.stderr  # paused for a human
    assert states(tmp_path)["deploy"] == ("blocked", 2)
    assert states(tmp_path)["roll-back"][0] == "pending"
    (bp,) = orch_json("breakpoints", "list", cwd=tmp_path)["breakpoints"]
    assert bp["task"] == "deploy"
    assert not (tmp_path / "rolled-back").exists()


def test_a_plan_wide_when_exhausted_applies_to_its_tasks(tmp_path: Path) -> None:
    plan = failing_plan(tmp_path)
    text = plan.read_text().replace("defaults:\n", "defaults:\n  when_exhausted: fail\n", 1)
    plan.write_text(text)
    assert orch("run", str(plan), cwd=tmp_path).returncode == 1
    assert states(tmp_path)["roll-back"] == ("completed", 1)


def test_an_unknown_when_exhausted_is_a_plan_error(tmp_path: Path) -> None:
    plan = failing_plan(tmp_path, when_exhausted="retry-forever")
    checked = orch("validate", str(plan), cwd=tmp_path)
    assert checked.returncode == 2
    assert "when_exhausted" in checked.stderr and "escalate" in checked.stderr
