"""What a run spent (cost, tokens, attempts, time) against its budget, on every surface: each
figure that `orch status`, `orch report`, `orch runs inspect`, the REST API and the run page
show is checked against the store's own records."""

from __future__ import annotations

import stat
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from orchestration.core.durations import format_duration
from orchestration.resilience.spending import agent_of, money_text
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import PY, orch, orch_json, write_plan

TOKEN = "test-token-0123456789abcdefghij"
LIMITS = {"max_cost": 10, "max_tokens": 100_000, "max_attempts": 20, "max_wall_seconds": 3600}


def reporting(cost: float, tokens: int, *, fail_first: bool = False) -> str:
    """Python code that reports `cost` and `tokens`; with fail_first, its first attempt fails."""
    code = (
        "import json, os, pathlib\n"
        "pathlib.Path(os.environ['ORCH_RESULT']).write_text("
        f"json.dumps({{'cost': {cost}, 'tokens': {tokens}}}))\n"
    )
    if fail_first:
        code += (
            "marker = pathlib.Path('tried-' + os.environ['ORCH_TASK_ID'])\n"
            "if not marker.exists():\n"
            "    marker.write_text('')\n"
            "    raise SystemExit(1)\n"
        )
    return code


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run of three tasks: two shell tasks run by python (one needed a retry) and an agent
    task run by an executable `fake-agent`, each reporting cost and tokens."""
    workdir = tmp_path_factory.mktemp("spending")
    agent = workdir / "fake-agent"
    agent.write_text(f"#!{PY}\n" + reporting(1.5, 30_000))
    agent.chmod(agent.stat().st_mode | stat.S_IEXEC)
    plan = write_plan(
        workdir,
        {
            "version": 1,
            "name": "spending",
            "budget": LIMITS,
            "defaults": {
                "validators": [],
                "retry": {"max_attempts": 3, "base_seconds": 0, "jitter": False},
            },
            "tasks": [
                {
                    "id": "cheap",
                    "action": {"kind": "shell", "run": [PY, "-c", reporting(0.25, 1200)]},
                },
                {
                    "id": "flaky",
                    "action": {
                        "kind": "shell",
                        "run": [PY, "-c", reporting(0.5, 800, fail_first=True)],
                    },
                },
                {
                    "id": "agent-step",
                    "action": {
                        "kind": "agent",
                        "prompt": "do it",
                        "command": [str(agent), "{prompt}"],
                    },
                },
            ],
        },
    )
    ran = orch("run", str(plan), cwd=workdir)
    assert ran.returncode == 0, ran.stderr
    return workdir, orch_json("status", cwd=workdir)["run"]["id"]


def from_store(workdir: Path, run_id: str) -> dict[str, Any]:
    """The figures summed straight from the stored records, independently of the code shown."""
    with Store.open(f"sqlite:///{workdir / '.orchestration' / 'state.db'}") as store:
        run = store.get_run(run_id)
        tasks = {t.task_id: t for t in store.tasks(run_id)}
        per_task = {
            t: {"cost": 0.0, "tokens": 0, "attempts": tasks[t].attempts, "seconds": 0.0}
            for t in tasks
        }
        for event in store.events(run_id):
            if event.kind != "step":
                continue
            figures = per_task[event.task_id]
            figures["cost"] += event.data["result"].get("cost", 0)
            figures["tokens"] += event.data["result"].get("tokens", 0)
            figures["seconds"] += event.data["duration_seconds"]
        assert run.finished_at is not None
        agents: dict[str, dict[str, float]] = {}
        for task_id, figures in per_task.items():
            into = agents.setdefault(agent_of(tasks[task_id].spec), dict.fromkeys(figures, 0))
            for key, value in figures.items():
                into[key] += value
    return {
        "cost": sum(f["cost"] for f in per_task.values()),
        "tokens": sum(f["tokens"] for f in per_task.values()),
        "attempts": sum(f["attempts"] for f in per_task.values()),
        "seconds": (run.finished_at - run.created_at).total_seconds(),
        "tasks": per_task,
        "agents": agents,
    }


def same(shown: dict[str, Any], expected: dict[str, Any]) -> None:
    assert shown["cost"] == pytest.approx(expected["cost"])
    assert shown["tokens"] == expected["tokens"]
    assert shown["attempts"] == expected["attempts"]
    assert shown["seconds"] == pytest.approx(expected["seconds"], abs=0.002)


def same_budget(budget: dict[str, Any], expected: dict[str, Any]) -> None:
    for limit, figure in (
        ("max_cost", "cost"),
        ("max_tokens", "tokens"),
        ("max_attempts", "attempts"),
    ):
        assert budget[limit]["limit"] == LIMITS[limit]
        assert budget[limit]["used"] == pytest.approx(expected[figure])
        assert budget[limit]["share"] == pytest.approx(expected[figure] / LIMITS[limit], abs=1e-4)
    assert budget["max_wall_seconds"]["limit"] == LIMITS["max_wall_seconds"]


def test_the_store_holds_what_the_actions_reported(finished_run: tuple[Path, str]) -> None:
    expected = from_store(*finished_run)
    assert expected["cost"] == pytest.approx(0.25 + 2 * 0.5 + 1.5)  # flaky reported twice
    assert expected["tokens"] == 1200 + 2 * 800 + 30_000
    assert expected["tasks"]["flaky"]["attempts"] == 2 and expected["attempts"] == 4
    assert set(expected["agents"]) == {Path(PY).name, "fake-agent"}


def test_status_json_per_run_and_per_task(finished_run: tuple[Path, str]) -> None:
    workdir, run_id = finished_run
    expected = from_store(workdir, run_id)
    status = orch_json("status", run_id, cwd=workdir)
    same(status["run"]["spent"], expected)
    same_budget(status["run"]["spent"]["budget"], expected)
    for task in status["tasks"]:
        same(task["spent"], expected["tasks"][task["id"]])
    (listed,) = orch_json("status", "--all", cwd=workdir)["runs"]
    same(listed["spent"], expected)


def test_status_table_shows_each_task_and_the_budget_line(finished_run: tuple[Path, str]) -> None:
    workdir, run_id = finished_run
    expected = from_store(workdir, run_id)
    shown = orch("status", run_id, cwd=workdir).stdout
    budget = next(line for line in shown.splitlines() if line.startswith("spent:"))
    assert f"cost {money_text(expected['cost'])} of 10 ({expected['cost'] / 10:.0%})" in budget
    assert f"tokens {expected['tokens']:,} of 100,000" in budget
    assert f"attempts {expected['attempts']} of 20" in budget
    for task_id, figures in expected["tasks"].items():
        row = next(line for line in shown.splitlines() if f" {task_id} " in line)
        assert f" {money_text(figures['cost'])} " in row and f" {figures['tokens']:,} " in row


def test_report_runs_inspect_and_report_by_agent(finished_run: tuple[Path, str]) -> None:
    workdir, run_id = finished_run
    expected = from_store(workdir, run_id)
    report = orch_json("report", run_id, "--by", "agent", cwd=workdir)
    same(report["spent"], expected)
    same_budget(report["spent"]["budget"], expected)
    assert set(report["agents"]) == set(expected["agents"])
    for name, figures in expected["agents"].items():
        assert report["agents"][name]["cost"] == pytest.approx(figures["cost"])
        assert report["agents"][name]["tokens"] == figures["tokens"]
        assert report["agents"][name]["attempts"] == figures["attempts"]
        assert report["agents"][name]["seconds"] == pytest.approx(figures["seconds"], abs=0.002)
    table = orch("report", run_id, "--by", "agent", cwd=workdir).stdout
    fake = next(line for line in table.splitlines() if "fake-agent" in line)
    assert money_text(expected["agents"]["fake-agent"]["cost"]) in fake and "30,000" in fake
    inspected = orch_json("runs", "inspect", run_id, cwd=workdir)
    same(inspected["spent"], expected)
    for task_id, figures in expected["tasks"].items():
        same(inspected["tasks"][task_id], figures)
    for task_id, figures in expected["tasks"].items():
        one = orch_json("task", "inspect", run_id, task_id, cwd=workdir)["task"]["spent"]
        same(one, figures)
    wrong = orch("report", run_id, "--by", "colour", cwd=workdir)
    assert wrong.returncode == 2 and "--by agent" in wrong.stderr


def test_rest_api_and_run_page(finished_run: tuple[Path, str]) -> None:
    workdir, run_id = finished_run
    expected = from_store(workdir, run_id)
    url = f"sqlite:///{workdir / '.orchestration' / 'state.db'}"
    with Store.open(url) as store:
        app = create_app(ServerConfig(db_url=url, token=TOKEN), store=store)
        with TestClient(app, follow_redirects=False) as client:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            detail = client.get(f"/api/v1/runs/{run_id}", headers=auth).json()
            tasks = client.get(f"/api/v1/runs/{run_id}/tasks", headers=auth).json()["tasks"]
            page = client.get(f"/runs/{run_id}/live", headers=auth).text
    same(detail["run"]["spent"], expected)
    same_budget(detail["run"]["spent"]["budget"], expected)
    for task in [*detail["tasks"], *tasks]:
        same(task["spent"], expected["tasks"][task["id"]])
    assert f"cost {money_text(expected['cost'])} of 10" in page
    for task_id, figures in expected["tasks"].items():
        row = page[page.index(f'<tr data-task="{task_id}"') :]
        row = row[: row.index("</tr>")]
        assert f'<td class="spent-cost">{money_text(figures["cost"])}</td>' in row
        assert f'<td class="spent-tokens">{figures["tokens"]:,}</td>' in row
        assert f'<td class="spent-time">{format_duration(figures["seconds"])}</td>' in row


def test_a_running_run_counts_wall_time_until_now() -> None:
    from orchestration.core.models import RunRecord
    from orchestration.resilience.spending import compute_spending

    started = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run = RunRecord("r", "p", "/p", "/w", "running", started, started, plan_json={})
    spending = compute_spending(run, [], [], [], datetime(2026, 1, 1, 12, 30, tzinfo=UTC))
    assert spending.run.seconds == 1800
    assert spending.budget()["max_cost"] == {"limit": None, "used": 0, "share": None}
