"""A rollback leaves the store and the files in agreement, on a real git repository: every
completed task whose change it removes runs again (with its dependents), whether or not it
depends on the task rolled back to, and passes through its `before` breakpoints again."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import PY, orch, orch_json, write_plan

GIT_IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
PUBLIC_API = (
    "breakpoints:\n"
    "  - name: public_api_change\n"
    "    at: before\n"
    "    when: \"'public-api' in tags\"\n"
    "    priority: 99\n"
    "    action: pause\n"
    '    message: "{task_id} changes the public API"\n'
)


def git(workdir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=workdir, check=True, capture_output=True, text=True
    )
    return done.stdout


def writes(name: str) -> dict[str, object]:
    code = f"import pathlib; pathlib.Path({name!r}).write_text({name!r})"
    return {"kind": "shell", "run": [PY, "-c", code]}


def project(tmp_path: Path) -> Path:
    """base, then refactor (high priority) and uses-refactor; docstring-audit depends only on
    base, runs last (low priority, one worker) and pauses before it runs (public API)."""
    workdir = tmp_path / "lib"
    workdir.mkdir()
    (workdir / ".gitignore").write_text(".orchestration/\n")
    (workdir / "rules.yaml").write_text(PUBLIC_API)
    write_plan(
        workdir,
        {
            "version": 1,
            "name": "library",
            "rules": ["rules.yaml"],
            "concurrency": {"max_workers": 1},
            "defaults": {"validators": [], "retry": {"max_attempts": 1}},
            "tasks": [
                {"id": "base", "priority": "critical", "action": writes("base.txt")},
                {
                    "id": "refactor",
                    "priority": "high",
                    "depends_on": ["base"],
                    "action": writes("refactor.txt"),
                },
                {
                    "id": "uses-refactor",
                    "priority": "high",
                    "depends_on": ["refactor"],
                    "action": writes("uses.txt"),
                },
                {
                    "id": "docstring-audit",
                    "priority": "background",
                    "depends_on": ["base"],
                    "tags": ["public-api"],
                    "action": writes("docs.txt"),
                },
            ],
        },
    )
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-q", "-m", "start")
    return workdir


def approve_open_breakpoint(workdir: Path) -> dict:
    (bp,) = orch_json("breakpoints", "list", cwd=workdir)["breakpoints"]
    assert (bp["task"], bp["rule"]) == ("docstring-audit", "public_api_change")
    done = orch("breakpoints", "resolve", str(bp["id"]), "--approve", cwd=workdir)
    assert done.returncode == 0, done.stderr
    return bp


def states(workdir: Path, run_id: str) -> dict[str, str]:
    return {t["id"]: t["state"] for t in orch_json("status", run_id, cwd=workdir)["tasks"]}


def test_rollback_sends_back_every_task_whose_change_it_removed(tmp_path: Path) -> None:
    workdir = project(tmp_path)
    assert orch("run", "plan.yaml", cwd=workdir).returncode == 3
    run_id = approve_open_breakpoint(workdir)["run"]
    assert orch("resume", run_id, cwd=workdir).returncode == 0
    order = [c["task"] for c in orch_json("checkpoints", run_id, cwd=workdir)["checkpoints"]]
    assert order == ["base", "refactor", "uses-refactor", "docstring-audit"]

    refused = orch("rollback", run_id, "--to", "refactor", cwd=workdir)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert "docstring-audit" in refused.stderr and "uses-refactor" in refused.stderr
    assert (workdir / "docs.txt").exists()  # nothing happened
    assert set(states(workdir, run_id).values()) == {"completed"}

    rolled = orch("rollback", run_id, "--to", "refactor", "--yes", cwd=workdir)
    assert rolled.returncode == 0, rolled.stderr
    assert not (workdir / "docs.txt").exists() and not (workdir / "uses.txt").exists()
    assert (workdir / "refactor.txt").exists()
    now = states(workdir, run_id)
    assert now["base"] == now["refactor"] == "completed"
    # the store agrees with the files: neither removed change is called completed
    assert now["docstring-audit"] != "completed" and now["uses-refactor"] != "completed"
    assert "will run again" in rolled.stdout

    again = orch("resume", run_id, cwd=workdir)
    assert again.returncode == 3, again.stderr  # the public-API change is reviewed again
    approve_open_breakpoint(workdir)
    assert orch("resume", run_id, cwd=workdir).returncode == 0
    assert set(states(workdir, run_id).values()) == {"completed"}
    assert (workdir / "docs.txt").read_text() == "docs.txt"
    assert (workdir / "uses.txt").read_text() == "uses.txt"
    attempts = {t["id"]: t["attempts"] for t in orch_json("status", run_id, cwd=workdir)["tasks"]}
    assert attempts == {"base": 1, "refactor": 1, "uses-refactor": 2, "docstring-audit": 2}


def test_rollback_that_removes_nothing_leaves_task_states(tmp_path: Path) -> None:
    workdir = project(tmp_path)
    assert orch("run", "plan.yaml", cwd=workdir).returncode == 3
    run_id = approve_open_breakpoint(workdir)["run"]
    assert orch("resume", run_id, cwd=workdir).returncode == 0
    (workdir / "docs.txt").write_text("edited by hand")

    rolled = orch("rollback", run_id, "--to", "docstring-audit", "--yes", cwd=workdir)

    assert rolled.returncode == 0, rolled.stderr
    assert (workdir / "docs.txt").read_text() == "docs.txt"
    assert "no completed task's change was removed" in rolled.stdout
    assert set(states(workdir, run_id).values()) == {"completed"}
