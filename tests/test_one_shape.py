"""One shape per record: each `--json` of the CLI prints what the API answers for the same record.

Two real runs share one SQLite store: `failing` (dead letters, an opened circuit breaker, a
cancelled task) and `r1` (paused at two breakpoints, one answered from the command line, one task
paused by a person). Each command's JSON is compared with the API's response, key by key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import orch, orch_json
from tests.test_web_api import Dashboard, make_client, paused_run
from tests.test_web_resilience import RUN as FAILED
from tests.test_web_resilience import failed_run

PAUSED = "r1"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    directory = tmp_path_factory.mktemp("one-shape")
    url = f"sqlite:///{directory / 'state.db'}"
    (directory / "failing").mkdir()
    (directory / "paused").mkdir()
    failed_run(directory / "failing", url)
    paused_run(directory / "paused", url, PAUSED)
    first = orch_json("breakpoints", "list", "--run", PAUSED, "--db", url)["breakpoints"][0]
    answered = orch(
        "breakpoints", "resolve", str(first["id"]), "--skip", "--note", "not needed", "--db", url
    )
    assert answered.returncode == 0, answered.stderr
    paused = orch("task", "pause", PAUSED, "after", "--reason", "hold it", "--db", url)
    assert paused.returncode == 0, paused.stderr
    reset = orch("breakers", "reset", "flaky", "--reason", "fixed the host", "--db", url)
    assert reset.returncode == 0, reset.stderr
    for client in make_client(url):
        yield Dashboard(client, url)


def cli(dash: Dashboard, *args: str) -> Any:
    return orch_json(*args, "--db", dash.url)


def api(dash: Dashboard, path: str, **query: str) -> Any:
    answer = dash.get(f"/api/v1{path}", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def steady(data: Any) -> Any:
    """The same data with the figures that grow with the clock for an unfinished run (its wall
    time against the budget) set aside: two reads a moment apart differ there by design."""
    if isinstance(data, list):
        return [steady(item) for item in data]
    if not isinstance(data, dict):
        return data
    shown = {key: steady(value) for key, value in data.items()}
    if "plan_path" in shown and shown.get("finished_at") is None and shown.get("spent"):
        shown["spent"]["seconds"] = "(grows)"
        shown["spent"]["budget"]["max_wall_seconds"] = "(grows)"
    return shown


def same(cli_data: Any, api_data: Any) -> None:
    assert steady(cli_data) == steady(api_data)


def test_a_run_and_its_tasks_are_one_shape(both: Dashboard) -> None:
    for run in (FAILED, PAUSED):
        shown = cli(both, "status", run)
        same(shown, api(both, f"/runs/{run}"))
        assert {"engine", "live", "open_breakpoints", "spent", "interrupted"} <= set(shown["run"])
        assert {"title", "tags", "risk", "spent"} <= set(shown["tasks"][0])
    listed = cli(both, "status", "--all")
    same(listed, api(both, "/runs"))
    assert {r["id"] for r in listed["runs"]} == {FAILED, PAUSED}
    assert [r["counts"] for r in listed["runs"] if r["id"] == FAILED] == [
        {"failed": 2, "cancelled": 1}
    ]


def test_a_task_in_detail_is_one_shape(both: Dashboard) -> None:
    inspected = cli(both, "task", "inspect", FAILED, "build")
    same(inspected["task"], api(both, f"/runs/{FAILED}/tasks/build")["task"])
    assert inspected["task"]["dependents"] == ["ship"]
    assert inspected["task"]["spent"]["attempts"] == 2
    for task in ("a", "after"):
        same(
            cli(both, "task", "history", PAUSED, task),
            api(both, f"/runs/{PAUSED}/tasks/{task}/history"),
        )
    explained = cli(both, "explain", FAILED, "build")
    same(explained, api(both, f"/runs/{FAILED}/tasks/build/explain"))
    assert [d["attempt"] for d in explained["decisions"]] == [1, 2]
    assert "explanation" not in explained["decisions"][0]["figures"]


def test_breakpoints_are_one_shape(both: Dashboard) -> None:
    listed = cli(both, "breakpoints", "list", "--all")
    same(listed, api(both, "/breakpoints", state="all"))
    states = sorted(bp["state"] for bp in listed["breakpoints"])
    assert states == ["open", "resolved"]
    for bp in listed["breakpoints"]:
        shown = cli(both, "breakpoints", "show", str(bp["id"]))
        same(shown["breakpoint"], api(both, f"/breakpoints/{bp['id']}")["breakpoint"])
        assert shown["breakpoint"]["context"]["task_id"] == bp["task"]


def test_dead_letters_breakers_and_interventions_are_one_shape(both: Dashboard) -> None:
    letters = cli(both, "dlq", "list", "--state", "all")
    same(letters, api(both, "/dead-letters", state="all"))
    assert sorted(d["task"] for d in letters["dead_letters"]) == ["build", "lint"]
    for letter in letters["dead_letters"]:
        same(
            cli(both, "dlq", "show", str(letter["id"])),
            api(both, f"/dead-letters/{letter['id']}"),
        )
    breakers = cli(both, "breakers", "list")
    same(breakers, api(both, "/breakers"))
    assert breakers["breakers"][0]["last_reset"]["reason"] == "fixed the host"
    done = cli(both, "report", PAUSED, "--interventions")
    same(done, api(both, f"/runs/{PAUSED}/interventions"))
    assert [(i["action"], i["task"], i["reason"]) for i in done["interventions"]] == [
        ("pause", "after", "hold it")
    ]
