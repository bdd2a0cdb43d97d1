"""examples/real-repo end to end: a real library fetched from the package index, its own suite in
its own venv catching a scripted agent's regression, the retry fixing it, a milestone review."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.store import Store
from tests.helpers import orch, orch_json

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "real-repo"

pytestmark = pytest.mark.slow


def git(workdir: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=workdir, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def test_a_session_on_python_humanize(tmp_path: Path) -> None:
    example = tmp_path / "real-repo"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("work", "__pycache__"))
    prepared = subprocess.run(
        [sys.executable, "prepare.py"], cwd=example, capture_output=True, text=True, timeout=900
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    library = example / "work" / "humanize"
    head = git(library, "rev-parse", "HEAD")
    # orchestration's own interpreter lacks the library's test dependency: the suite can only
    # pass in the library's venv
    lacks = subprocess.run([sys.executable, "-c", "import freezegun"], capture_output=True)
    assert lacks.returncode != 0

    ran = orch("run", str(example / "plan.yaml"), cwd=example, timeout=1800)
    assert ran.returncode == 3, ran.stdout + ran.stderr  # the milestone waits for a human
    store = Store.open(f"sqlite:///{example / '.orchestration' / 'state.db'}")
    try:
        run_id = store.list_runs()[0].id
        steps = [e.data for e in store.events(run_id) if e.kind == "step"]
        fixed = store.task(run_id, "simplify-ordinal")
    finally:
        store.close()
    first, second = steps[0], steps[1]
    assert first["tests_regressed"], "the library's own suite caught the regression"
    assert any("ordinal" in test for test in first["tests_regressed"])
    assert first["tests_passed"] > 500  # the real suite ran, in the library's venv
    assert second["tests_regressed"] == [] and second["tests_failed"] == 0
    assert (fixed.state, fixed.attempts) == ("completed", 2)

    (bp,) = orch_json("breakpoints", "list", cwd=example)["breakpoints"]
    assert (bp["task"], bp["rule"]) == ("milestone", "milestone_completion")
    approved = orch("breakpoints", "resolve", str(bp["id"]), "--approve", cwd=example)
    assert approved.returncode == 0, approved.stderr
    resumed = orch("resume", run_id, cwd=example, timeout=1800)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    assert "value % 100 // 10 != 1" in (library / "src" / "humanize" / "number.py").read_text()
    assert git(library, "rev-parse", "HEAD") == head  # the library's branch did not move
    checkpoints = orch_json("checkpoints", run_id, cwd=example)["checkpoints"]
    assert {c["task"] for c in checkpoints} >= {"simplify-ordinal"}
