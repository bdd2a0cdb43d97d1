"""Acting through the API: start a run (uploaded or stored plan), add tasks, pause/resume/cancel.

Runs started by the API are real `orch run` processes on a real SQLite file; a task held by a gate
file the test creates keeps a run working while tasks are added.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from orchestration.pluginhost.hooks import load_plugins
from orchestration.resilience.runs import run_is_live
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import held_code, shell_task, wait_for_file, write_plan

TOKEN = "test-token-0123456789abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_LIMIT_S = 120
ACTION_ROUTES = {
    ("post", "/api/v1/runs"): ("RunStartIn", "RunStartedOut"),
    ("post", "/api/v1/runs/{run_id}/tasks"): ("TasksAddIn", "TasksAddedOut"),
    ("post", "/api/v1/runs/{run_id}/pause"): ("RunActionIn", "InterventionDoneOut"),
    ("post", "/api/v1/runs/{run_id}/resume"): ("RunActionIn", "InterventionDoneOut"),
    ("post", "/api/v1/runs/{run_id}/cancel"): ("RunActionIn", "InterventionDoneOut"),
    ("post", "/api/v1/runs/{run_id}/interventions"): ("InterventionIn", "InterventionDoneOut"),
}


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    plugins = load_plugins(entry_points=False)
    plugins.muted.add("console")
    with Store.open(sqlite_url) as store:
        config = ServerConfig(db_url=sqlite_url, token=TOKEN, launch_dir=str(tmp_path / "l"))
        app = create_app(config, store=store, plugins=plugins)
        with TestClient(app, follow_redirects=False) as test_client:
            yield test_client


def wait_until(url: str, check: Any, what: str) -> None:
    """Poll the store until `check(store)` holds (the launched process works at its own pace)."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    with Store.open(url) as store:
        while not check(store):
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.05)


def run_state(store: Store, run_id: str) -> str | None:
    try:
        return store.get_run(run_id).state
    except Exception:
        return None


def test_openapi_lists_every_action_with_its_request_and_response_models(
    client: TestClient,
) -> None:
    assert client.get("/api/v1/openapi.json").status_code == 401
    document = client.get("/api/v1/openapi.json", headers=AUTH).json()
    schemas = document["components"]["schemas"]
    for (method, path), (request, response) in ACTION_ROUTES.items():
        operation = document["paths"][path][method]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"] == f"#/components/schemas/{request}", path
        ok = next(code for code in operation["responses"] if code.startswith("2"))
        answer = operation["responses"][ok]["content"]["application/json"]["schema"]
        assert answer["$ref"] == f"#/components/schemas/{response}", path
        assert {"401", "403", "422"} <= set(operation["responses"]), path
        assert request in schemas and response in schemas


def test_actions_need_the_token_and_a_cookie_write_needs_csrf(client: TestClient) -> None:
    assert client.post("/api/v1/runs", json={"plan": "x"}).status_code == 401
    assert client.post("/api/v1/runs/r/pause", json={}).status_code == 401
    assert client.post("/api/v1/runs/r/tasks", json={"tasks": [{}]}).status_code == 401


def test_a_bad_uploaded_plan_is_refused_with_the_field_and_nothing_starts(
    client: TestClient, tmp_path: Path
) -> None:
    plan = {"version": 1, "name": "bad", "tasks": [{"id": "a", "action": {"kind": "nope"}}]}
    answer = client.post(
        "/api/v1/runs", headers=AUTH, json={"plan": yaml.safe_dump(plan), "base_dir": str(tmp_path)}
    )
    assert answer.status_code in (400, 422)
    assert "nope" in answer.json()["error"]["message"]
    assert not (tmp_path / "l").exists() or not list((tmp_path / "l").glob("*.log"))
    both = client.post("/api/v1/runs", headers=AUTH, json={"plan": "x", "from_run": "r"})
    assert both.status_code == 422


def test_start_an_uploaded_plan_add_tasks_while_it_runs_then_start_it_again_from_the_store(
    client: TestClient, sqlite_url: str, tmp_path: Path
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    work = tmp_path / "project"
    work.mkdir()
    plan = {
        "version": 1,
        "name": "api-started",
        "workdir": "project",
        "tasks": [shell_task("held", held_code(gate, started))],
    }
    answer = client.post(
        "/api/v1/runs",
        headers=AUTH,
        json={"plan": yaml.safe_dump(plan), "base_dir": str(tmp_path), "run_id": "api-1"},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["run"] == "api-1" and body["pid"] > 0 and body["state"] == "starting"
    wait_for_file(started)
    with Store.open(sqlite_url) as store:
        run = store.get_run("api-1")
        assert run.workdir == str(work) and run.state == "running"
        assert run_is_live(run, run.updated_at)
    added = client.post(
        "/api/v1/runs/api-1/tasks",
        headers=AUTH,
        json={
            "tasks": [shell_task("held", "pass"), shell_task("after", "pass", depends_on=["held"])]
        },
    )
    assert added.status_code == 201, added.text
    assert added.json()["tasks"] == ["held-2", "after"] and added.json()["engine_live"]
    refused = client.post(
        "/api/v1/runs/api-1/tasks",
        headers=AUTH,
        json={"tasks": [shell_task("x", "pass", depends_on=["missing"])]},
    )
    assert refused.status_code == 400 and "missing" in refused.json()["error"]["message"]
    gate.touch()
    wait_until(sqlite_url, lambda s: run_state(s, "api-1") == "completed", "the run's end")
    with Store.open(sqlite_url) as store:
        states = {t.task_id: t.state for t in store.tasks("api-1")}
    assert states == {"held": "completed", "held-2": "completed", "after": "completed"}
    again = client.post("/api/v1/runs", headers=AUTH, json={"from_run": "api-1", "run_id": "api-2"})
    assert again.status_code == 202, again.text
    wait_until(sqlite_url, lambda s: run_state(s, "api-2") == "completed", "the second run")
    with Store.open(sqlite_url) as store:
        second = store.get_run("api-2")
        assert second.workdir == str(work)
        assert [t.task_id for t in store.tasks("api-2")] == ["held"]  # the plan, not added tasks
    assert Path(again.json()["log_file"]).is_file()
    duplicate = client.post(
        "/api/v1/runs", headers=AUTH, json={"from_run": "api-1", "run_id": "api-2"}
    )
    assert duplicate.status_code == 409


def test_pause_resume_and_cancel_a_run_no_engine_works_on(
    client: TestClient, sqlite_url: str, tmp_path: Path
) -> None:
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan

    plan = write_plan(
        tmp_path / "p",
        {"version": 1, "name": "idle", "tasks": [shell_task("a", "pass")]},
    )
    loaded = load_plan(plan)
    with Store.open(sqlite_url) as store:
        orchestrator = Orchestrator.start(loaded, store, run_id="idle", engine=build_engine(loaded))
        orchestrator.flush()
        store.release_run("idle", orchestrator.run.owner or "")
    paused = client.post("/api/v1/runs/idle/pause", headers=AUTH, json={"reason": "lunch"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["intervention"]["action"] == "pause"
    again = client.post("/api/v1/runs/idle/pause", headers=AUTH, json={})
    assert again.status_code == 400 and "already paused" in again.json()["error"]["message"]
    resumed = client.post("/api/v1/runs/idle/resume", headers=AUTH, json={"actor": "bob"})
    assert resumed.status_code == 200 and resumed.json()["intervention"]["actor"] == "bob"
    cancelled = client.post("/api/v1/runs/idle/cancel", headers=AUTH, json={"reason": "no"})
    assert cancelled.status_code == 200, cancelled.text
    # The run's engine is this test's process, still alive: the cancel waits for it as requested
    assert cancelled.json()["intervention"]["state"] == "requested"
    with Store.open(sqlite_url) as store:
        actions = [(i.action, i.state, i.actor) for i in store.interventions("idle")]
    assert actions == [
        ("pause", "applied", "api"),
        ("resume", "applied", "bob"),
        ("cancel", "requested", "api"),
    ]
    assert client.post("/api/v1/runs/nope/cancel", headers=AUTH, json={}).status_code == 404


def test_launch_command_passes_params_only_when_given_and_checks_the_run_id(
    tmp_path: Path,
) -> None:
    import sys

    from orchestration.core.errors import OrchestrationError
    from orchestration.resilience.run_launch import launch_run, run_command

    plan = tmp_path / "plan.yaml"
    bare = run_command(plan, "sqlite:///s.db", "r1")
    assert bare == [
        sys.executable, "-m", "orchestration", "run", str(plan),
        "--db", "sqlite:///s.db", "--run-id", "r1", "--quiet",
    ]  # fmt: skip
    with_params = run_command(plan, "sqlite:///s.db", "r1", {"b": 2, "a": "x y"})
    assert with_params[-2:] == ["--params", '{"a": "x y", "b": 2}']
    write_plan(tmp_path, {"version": 1, "name": "p", "tasks": [shell_task("a", "pass")]})
    with pytest.raises(OrchestrationError, match=r"run id '\.\./x' is not allowed"):
        launch_run(plan, db_url="sqlite:///s.db", run_id="../x")
    with pytest.raises(OrchestrationError, match="does not exist"):
        launch_run(tmp_path / "missing.yaml", db_url="sqlite:///s.db")


def test_a_signed_in_write_needs_the_csrf_token(client: TestClient, tmp_path: Path) -> None:
    import re

    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    done = client.post(
        "/login", data={"token": TOKEN, "name": "alice", "next": "/runs", "csrf_token": csrf[1]}
    )
    assert done.status_code == 303
    page = client.get("/runs")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None
    body = {"tasks": [shell_task("x", "pass")]}
    refused = client.post("/api/v1/runs/nope/tasks", json=body)
    assert refused.status_code == 403
    missing = client.post("/api/v1/runs/nope/tasks", json=body, headers={"X-CSRF-Token": found[1]})
    assert missing.status_code == 404  # past the CSRF check: the run does not exist
