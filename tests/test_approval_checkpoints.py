"""An accepted git step keeps its checkpoint ref however it is approved: through a running
engine, with `orch breakpoints resolve` then `orch resume`, or from the dashboard then resume."""

from __future__ import annotations

import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import PY, orch, orch_json, write_plan

TOKEN = "test-token-0123456789abcdefghij"
GIT_IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
REVIEW_AFTER = (
    "breakpoints:\n"
    "  - name: review_after\n"
    "    at: after\n"
    "    when: \"'review' in tags\"\n"
    "    priority: 99\n"
    "    action: pause\n"
    '    message: "{task_id} wants a look"\n'
)
WAIT_SECONDS = 120


def git(workdir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=workdir, check=True, capture_output=True, text=True
    )
    return done.stdout


def write_file(path: str, text: str) -> list[str]:
    return [PY, "-c", f"import pathlib; pathlib.Path({path!r}).write_text({text!r})"]


def checkpoint_refs(workdir: Path) -> list[str]:
    listed = git(workdir, "for-each-ref", "--format=%(refname)", "refs/orchestration/")
    tasks = (line.rsplit("/", 1)[-1] for line in listed.split())
    return sorted(name for name in tasks if not name.startswith("_"))  # `_tip`: the chain's end


def project(tmp_path: Path, *, hold: bool = False) -> Path:
    """A git project with a plan: `m` changes a file and pauses after its step for review;
    with `hold`, a second task keeps the engine running until the file `release` appears."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / ".gitignore").write_text(".orchestration/\nrelease\n")
    (workdir / "review.yaml").write_text(REVIEW_AFTER)
    tasks = [
        {
            "id": "m",
            "tags": ["review"],
            "action": {"kind": "shell", "run": write_file("m.txt", "m")},
        }
    ]
    if hold:
        wait = (
            "import pathlib, time\n"
            f"end = time.time() + {WAIT_SECONDS}\n"
            "while not pathlib.Path('release').exists() and time.time() < end:\n"
            "    time.sleep(0.05)\n"
        )
        tasks.append({"id": "hold", "action": {"kind": "shell", "run": [PY, "-c", wait]}})
    write_plan(
        workdir,
        {
            "version": 1,
            "name": "approvals",
            "rules": ["review.yaml"],
            "defaults": {"validators": [], "retry": {"max_attempts": 1}},
            "tasks": tasks,
        },
    )
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-q", "-m", "start")
    return workdir


def url_of(workdir: Path) -> str:
    return f"sqlite:///{workdir / '.orchestration' / 'state.db'}"


def open_breakpoint(workdir: Path) -> dict:
    (bp,) = orch_json("breakpoints", "list", cwd=workdir)["breakpoints"]
    assert bp["task"] == "m"
    return bp


def test_approved_with_the_cli_while_no_engine_runs_gets_its_checkpoint_on_resume(
    tmp_path: Path,
) -> None:
    workdir = project(tmp_path)
    ran = orch("run", "plan.yaml", cwd=workdir)
    assert ran.returncode == 3, ran.stderr
    assert checkpoint_refs(workdir) == []
    bp = open_breakpoint(workdir)

    resolved = orch("breakpoints", "resolve", str(bp["id"]), "--approve", cwd=workdir)
    assert resolved.returncode == 0, resolved.stderr
    resumed = orch("resume", bp["run"], cwd=workdir)

    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_refs(workdir) == ["m"]
    (listed,) = orch_json("checkpoints", bp["run"], cwd=workdir)["checkpoints"]
    assert listed["files_changed"] == 1  # m.txt, as the reviewer accepted it
    again = orch("resume", bp["run"], cwd=workdir)
    assert again.returncode == 0 and checkpoint_refs(workdir) == ["m"]  # taken once


def test_approved_from_the_dashboard_gets_its_checkpoint_on_resume(tmp_path: Path) -> None:
    workdir = project(tmp_path)
    assert orch("run", "plan.yaml", cwd=workdir).returncode == 3
    bp = open_breakpoint(workdir)
    url = url_of(workdir)

    with Store.open(url) as store:
        app = create_app(ServerConfig(db_url=url, token=TOKEN), store=store)
        with TestClient(app, follow_redirects=False) as client:
            done = client.post(
                f"/api/v1/breakpoints/{bp['id']}/resolve",
                json={"resolution": "approve", "note": "looks right"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
    assert done.status_code == 200, done.text
    assert checkpoint_refs(workdir) == []
    resumed = orch("resume", bp["run"], cwd=workdir)

    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_refs(workdir) == ["m"]


def test_approved_while_an_engine_runs_gets_its_checkpoint_from_that_engine(
    tmp_path: Path,
) -> None:
    workdir = project(tmp_path, hold=True)
    plan = load_plan(workdir / "plan.yaml")
    url = url_of(workdir)
    (workdir / ".orchestration").mkdir()
    outcome: list[str] = []
    with Store.open(url) as store:
        orchestrator = Orchestrator.start(plan, store, run_id="r1", engine=build_engine(plan))
        orchestrator.engine.plugins.muted.add("console")
        engine = threading.Thread(
            target=lambda: outcome.append(orchestrator.run_until_stopped().state)
        )
        engine.start()
        try:
            bp = wait_for(lambda: next(iter(store.breakpoints("r1", state="open")), None))
            resolved = orch("breakpoints", "resolve", str(bp.id), "--approve", cwd=workdir)
            assert resolved.returncode == 0, resolved.stderr
            assert "picks it up by itself" in resolved.stdout
            wait_for(lambda: checkpoint_refs(workdir) == ["m"])
        finally:
            (workdir / "release").write_text("")
            engine.join(WAIT_SECONDS)
    assert outcome == ["completed"]
    assert checkpoint_refs(workdir) == ["hold", "m"]


def wait_for(probe, timeout: float = WAIT_SECONDS):  # type: ignore[no-untyped-def]
    """Poll what the engine stores until `probe` gives something (the engine works in a thread)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail("the engine did not get there in time")
