"""The dashboard's dead letters, circuit breakers and interventions: API and pages, on real runs.

A real `orch run` (a subprocess) leaves a run with two tasks failed for good: both land in the
dead letter queue, and one of them opened its circuit breaker. Interventions are tried on the
paused run of tests/test_web_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import orch, shell_task, write_plan
from tests.test_web_api import (
    Dashboard,
    bearer,
    error_of,
    login,
    make_client,
    paused_run,
    start_server,
    stop_server,
)
from tests.test_web_browser import WAIT_MS, log_in
from tests.test_web_browser import browser as browser  # the fixture, used by name

RUN = "failing"
# No breakpoint on failures: a task that fails its last attempt fails for good (the DLQ).
FAIL_FOR_GOOD = """
breakpoints:
  - {name: consecutive_failures, enabled: false}
  - {name: consecutive_failures_before, enabled: false}
decisions:
  - {when: "not gate_passed", decide: retry}
  - {decide: proceed}
"""


def failed_run(directory: Path, url: str) -> None:
    """`build` (breaker `flaky`, opened by its two failures) and `lint` fail; `ship` waits on
    `build` and is cancelled."""
    (directory / "rules.yaml").write_text(FAIL_FOR_GOOD)
    retry = {"max_attempts": 2, "base_seconds": 0}
    build = shell_task("build", "raise SystemExit(3)", retry=retry, breaker="flaky")
    plan = write_plan(
        directory,
        {
            "version": 1,
            "name": "dlq",
            "rules": ["rules.yaml"],
            "breakers": {"min_calls": 2, "failure_rate": 0.5, "recovery_seconds": 600},
            "tasks": [
                build,
                shell_task("lint", "print('lint says no'); raise SystemExit(4)", retry=retry),
                shell_task("ship", "pass", depends_on=["build"]),
            ],
        },
    )
    done = orch("run", str(plan), "--quiet", "--run-id", RUN, "--db", url, cwd=directory)
    assert done.returncode == 1, done.stderr


@pytest.fixture
def failed(tmp_path: Path, sqlite_url: str) -> Iterator[Dashboard]:
    failed_run(tmp_path, sqlite_url)
    for client in make_client(sqlite_url):
        yield Dashboard(client, sqlite_url)


@pytest.fixture
def paused(tmp_path: Path, sqlite_url: str) -> Iterator[Dashboard]:
    paused_run(tmp_path, sqlite_url)
    for client in make_client(sqlite_url):
        yield Dashboard(client, sqlite_url)


def letters(dash: Dashboard, **query: str) -> dict[str, dict[str, Any]]:
    found = dash.get("/api/v1/dead-letters", params=query)
    assert found.status_code == 200, found.text
    return {d["task"]: d for d in found.json()["dead_letters"]}


def task_state(dash: Dashboard, run: str, task: str) -> str:
    return str(dash.get(f"/api/v1/runs/{run}/tasks/{task}").json()["task"]["state"])


def post_raw(dash: Dashboard, path: str, content: bytes) -> Any:
    headers = {**bearer(), "Content-Type": "application/json"}
    return dash.client.post(path, content=content, headers=headers)


# ---- dead letters ------------------------------------------------------------------------------


def test_dead_letters_are_listed_shown_and_resubmitted_in_their_run(failed: Dashboard) -> None:
    found = letters(failed, run=RUN)
    assert set(found) == {"build", "lint"}
    build = found["build"]
    assert (build["run"], build["state"], build["attempts_count"]) == (RUN, "open", 2)
    assert letters(failed, state="resubmitted") == {}
    shown = failed.get(f"/api/v1/dead-letters/{found['lint']['id']}")
    assert shown.status_code == 200
    story = shown.json()["dead_letter"]
    assert len(story["attempts"]) == 2 and "lint says no" in story["attempts"][-1]["output_tail"]
    assert story["spec"]["id"] == "lint"

    fix = {"action.run": ["python3", "-c", "pass"]}
    done = failed.post(
        f"/api/v1/dead-letters/{build['id']}/resubmit", {"params": fix, "reason": "fixed"}
    )
    assert done.status_code == 200, done.text
    out = done.json()
    assert out["dead_letter"]["state"] == "resubmitted" and out["new_run"] is None
    assert out["dead_letter"]["resolved_by"] == "api"
    intervention = out["intervention"]
    assert (intervention["action"], intervention["state"]) == ("retry", "applied")
    assert intervention["params"]["sets"] == fix and intervention["reason"] == "fixed"
    assert f"orch resume {RUN}" in out["next"]
    assert task_state(failed, RUN, "build") != "failed"
    assert set(letters(failed, state="resubmitted")) == {"build"}

    again = failed.post(f"/api/v1/dead-letters/{build['id']}/resubmit", {})
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"


def test_resubmitting_in_a_new_run_and_in_a_batch(failed: Dashboard) -> None:
    found = letters(failed)
    alone = failed.post(f"/api/v1/dead-letters/{found['lint']['id']}/resubmit", {"new_run": True})
    assert alone.status_code == 200, alone.text
    new_run = alone.json()["new_run"]
    assert new_run and f"orch resume {new_run}" in alone.json()["next"]
    assert [t["id"] for t in failed.get(f"/api/v1/runs/{new_run}/tasks").json()["tasks"]] == [
        "lint"
    ]

    batch = failed.post(
        "/api/v1/dead-letters/resubmit",
        {"items": [{"id": found["build"]["id"]}, {"id": 99999}, {"id": found["lint"]["id"]}]},
    )
    assert batch.status_code == 200, batch.text
    out = batch.json()
    assert (out["resubmitted"], out["failed"]) == (1, 2)
    ok, unknown, done_already = out["results"]
    assert ok["ok"] and ok["result"]["intervention"]["action"] == "retry"
    assert not unknown["ok"] and unknown["error"]["code"] == "not_found"
    assert not done_already["ok"] and done_already["error"]["code"] == "conflict"


def test_dead_letter_errors_are_json(failed: Dashboard) -> None:
    unknown = failed.get("/api/v1/dead-letters/99999")
    assert unknown.status_code == 404 and "99999" in error_of(unknown)["message"]
    assert failed.post("/api/v1/dead-letters/99999/resubmit", {}).status_code == 404
    assert failed.get("/api/v1/dead-letters", params={"run": "nope"}).status_code == 404
    assert failed.get("/api/v1/dead-letters", params={"state": "odd"}).status_code == 422
    assert failed.get("/api/v1/dead-letters/0").status_code == 422
    letter = letters(failed)["build"]["id"]
    path = f"/api/v1/dead-letters/{letter}/resubmit"
    not_json = post_raw(failed, path, b"{params: 1")
    assert not_json.status_code == 400 and error_of(not_json)["code"] == "bad_request"
    for body in ({"params": "x=1"}, {"new_run": "maybe"}, {"colour": "red"}):
        wrong = failed.post(path, body)
        assert wrong.status_code == 422 and error_of(wrong)["code"] == "unprocessable", body
    bad_field = failed.post(path, {"params": {"no_such_field": 1}})
    assert bad_field.status_code in (400, 422) and set(bad_field.json()) == {"error"}
    assert letters(failed)["build"]["state"] == "open"  # nothing was stored
    for items in ([], [{"id": letter}] * 201, [{"id": 0}]):
        too = failed.post("/api/v1/dead-letters/resubmit", {"items": items})
        assert too.status_code == 422, items


# ---- circuit breakers ----------------------------------------------------------------------------


def test_breakers_are_listed_and_reset(failed: Dashboard) -> None:
    (flaky,) = failed.get("/api/v1/breakers").json()["breakers"]
    assert (flaky["key"], flaky["state"], flaky["failures"]) == ("flaky", "open", 2)
    assert flaky["last_reset"] is None
    reset = failed.post("/api/v1/breakers/flaky/reset", {"reason": "service is back"})
    assert reset.status_code == 200, reset.text
    breaker = reset.json()["breaker"]
    assert breaker["state"] == "closed"
    assert breaker["last_reset"]["by"] == "api"
    assert breaker["last_reset"]["reason"] == "service is back"
    listed = failed.get("/api/v1/breakers").json()["breakers"]
    assert [(b["key"], b["state"]) for b in listed] == [("flaky", "closed")]
    unknown = failed.post("/api/v1/breakers/nope/reset", {})
    assert (
        unknown.status_code == 404 and "no circuit breaker 'nope'" in error_of(unknown)["message"]
    )
    assert post_raw(failed, "/api/v1/breakers/flaky/reset", b"[").status_code == 400
    assert failed.post("/api/v1/breakers/flaky/reset", {"reason": 5}).status_code == 422


# ---- interventions -------------------------------------------------------------------------------


def test_interventions_on_a_run_and_its_tasks(paused: Dashboard) -> None:
    path = "/api/v1/runs/r1/interventions"
    pause = paused.post(path, {"action": "pause", "reason": "lunch", "actor": "bob"})
    assert pause.status_code == 200, pause.text
    record = pause.json()["intervention"]
    assert (record["action"], record["task"], record["actor"], record["state"]) == (
        "pause",
        None,
        "bob",
        "applied",
    )
    twice = paused.post(path, {"action": "pause"})
    assert twice.status_code == 400 and "already paused" in error_of(twice)["message"]
    assert paused.post(path, {"action": "resume"}).status_code == 200

    held = paused.post(path, {"action": "pause", "task": "after"})
    assert held.status_code == 200, held.text
    assert task_state(paused, "r1", "after") == "blocked"
    assert paused.post(path, {"action": "resume", "task": "after"}).status_code == 200
    assert task_state(paused, "r1", "after") != "blocked"
    no_reason = paused.post(path, {"action": "skip", "task": "after"})
    assert no_reason.status_code == 422 and "reason" in error_of(no_reason)["message"]
    skipped = paused.post(path, {"action": "skip", "task": "after", "reason": "not needed"})
    assert skipped.status_code == 200, skipped.text
    assert task_state(paused, "r1", "after") == "completed"

    cancel = paused.post(path, {"action": "cancel", "reason": "enough"})
    assert cancel.status_code == 200 and cancel.json()["run_state"] == "cancelled"
    listed = paused.get(path).json()["interventions"]
    assert [(i["action"], i["task"]) for i in listed] == [
        ("pause", None),
        ("resume", None),
        ("pause", "after"),
        ("resume", "after"),
        ("skip", "after"),
        ("cancel", None),
    ]
    assert [
        i["action"] for i in paused.get(path, params={"task": "after"}).json()["interventions"]
    ] == [
        "pause",
        "resume",
        "skip",
    ]


def test_intervention_errors_are_json(paused: Dashboard) -> None:
    path = "/api/v1/runs/r1/interventions"
    assert paused.post("/api/v1/runs/nope/interventions", {"action": "pause"}).status_code == 404
    assert paused.get("/api/v1/runs/nope/interventions").status_code == 404
    unknown_task = paused.post(path, {"action": "pause", "task": "nope"})
    assert unknown_task.status_code == 404 and error_of(unknown_task)["code"] == "not_found"
    for body in (
        {"action": "explode"},
        {},
        {"action": "rerun"},  # a task only
        {"action": "pause", "task": "after", "params": {"timeout_seconds": 5}},
        {"action": "pause", "downstream": True, "task": "after"},
        {"action": "pause", "extra": 1},
    ):
        wrong = paused.post(path, body)
        assert wrong.status_code == 422 and error_of(wrong)["code"] == "unprocessable", body
    assert post_raw(paused, path, b"{action").status_code == 400
    assert paused.get(path).json()["interventions"] == []  # nothing was stored


# ---- authentication and the pages ---------------------------------------------------------------


def test_every_new_endpoint_needs_the_token(failed: Dashboard) -> None:
    calls = [
        ("GET", "/api/v1/dead-letters"),
        ("GET", "/api/v1/dead-letters/1"),
        ("POST", "/api/v1/dead-letters/1/resubmit"),
        ("POST", "/api/v1/dead-letters/resubmit"),
        ("GET", "/api/v1/breakers"),
        ("POST", "/api/v1/breakers/flaky/reset"),
        ("GET", f"/api/v1/runs/{RUN}/interventions"),
        ("POST", f"/api/v1/runs/{RUN}/interventions"),
    ]
    for method, path in calls:
        refused = failed.client.request(method, path, json={})
        assert refused.status_code == 401 and error_of(refused)["code"] == "unauthorized", path
        wrong = failed.client.request(method, path, json={}, headers=bearer("wrong-token-xxxx"))
        assert wrong.status_code == 401, path
    assert letters(failed)["build"]["state"] == "open"
    assert failed.get("/api/v1/breakers").json()["breakers"][0]["state"] == "open"


def test_the_pages_act_as_the_signed_in_user_with_their_csrf_token(failed: Dashboard) -> None:
    csrf = login(failed.client, name="alice")
    build = letters(failed)["build"]["id"]
    api = failed.client.post(f"/api/v1/dead-letters/{build}/resubmit", json={})
    assert api.status_code == 403  # a cookie-authenticated API write without X-CSRF-Token

    listing = failed.client.get("/dead-letters")
    assert listing.status_code == 200 and f'href="/dead-letters/{build}"' in listing.text
    assert 'href="/dead-letters"' in listing.text and 'href="/breakers"' in listing.text  # nav
    page = failed.client.get(f"/dead-letters/{build}")
    assert page.status_code == 200 and 'id="resubmit-form"' in page.text
    form = {"reason": "flag fixed", "params": 'action.run=["python3", "-c", "pass"]'}
    refused = failed.client.post(f"/dead-letters/{build}/resubmit", data=form)
    assert refused.status_code == 403 and letters(failed)["build"]["state"] == "open"
    bad_params = failed.client.post(
        f"/dead-letters/{build}/resubmit", data={"params": "no equals sign", "csrf_token": csrf}
    )
    assert bad_params.status_code == 422 and letters(failed)["build"]["state"] == "open"
    done = failed.client.post(f"/dead-letters/{build}/resubmit", data={**form, "csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/dead-letters/{build}?done=1"
    shown = failed.client.get(done.headers["location"])
    assert "Resubmitted" in shown.text and f"orch resume {RUN}" in shown.text
    story = failed.get(f"/api/v1/dead-letters/{build}").json()["dead_letter"]
    assert story["resolved_by"] == "alice" and story["note"] == "flag fixed"

    breakers = failed.client.get("/breakers")
    assert "state-failed" in breakers.text and ">Reset</button>" in breakers.text
    reset = {"key": "flaky", "reason": "back up"}
    assert failed.client.post("/breakers/reset", data=reset).status_code == 403
    done = failed.client.post("/breakers/reset", data={**reset, "csrf_token": csrf})
    assert done.status_code == 303
    (flaky,) = failed.get("/api/v1/breakers").json()["breakers"]
    assert flaky["state"] == "closed" and flaky["last_reset"]["by"] == "alice"

    run_page = failed.client.get(f"/runs/{RUN}")
    assert "Pause run" in run_page.text and "Cancel run" in run_page.text
    task_page = failed.client.get(f"/runs/{RUN}/tasks/lint")
    assert ">Skip</button>" in task_page.text and ">Retry</button>" in task_page.text
    skip = {"action": "skip", "task": "lint"}
    assert failed.client.post(f"/runs/{RUN}/interventions", data=skip).status_code == 403
    no_reason = failed.client.post(f"/runs/{RUN}/interventions", data={**skip, "csrf_token": csrf})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    skipped = failed.client.post(
        f"/runs/{RUN}/interventions", data={**skip, "reason": "lint later", "csrf_token": csrf}
    )
    assert skipped.status_code == 303, skipped.text
    result = failed.client.get(skipped.headers["location"])
    assert 'id="intervention-notice"' in result.text and "lint later" in result.text
    (last,) = failed.get(f"/api/v1/runs/{RUN}/interventions", params={"task": "lint"}).json()[
        "interventions"
    ]
    assert (last["action"], last["actor"], last["reason"]) == ("skip", "alice", "lint later")


def test_the_openapi_document_lists_the_new_endpoints(failed: Dashboard) -> None:
    paths = json.loads(failed.get("/api/v1/openapi.json").text)["paths"]
    for path in (
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/{dead_letter_id}",
        "/api/v1/dead-letters/{dead_letter_id}/resubmit",
        "/api/v1/dead-letters/resubmit",
        "/api/v1/breakers",
        "/api/v1/breakers/{key}/reset",
        "/api/v1/runs/{run_id}/interventions",
    ):
        assert path in paths, sorted(paths)


# ---- in a real browser -----------------------------------------------------------------------


@pytest.mark.slow
def test_resubmit_and_reset_in_the_browser(browser: Any, tmp_path: Path, sqlite_url: str) -> None:
    failed_run(tmp_path, sqlite_url)
    server = start_server(sqlite_url, tmp_path / "token")
    try:
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # the Reset button asks first
        log_in(page, server, "carol")
        page.click("nav a[href='/dead-letters']")
        page.click("tr:has-text('build') a.review-link")
        page.wait_for_selector("#resubmit-form")
        page.fill("textarea[name=params]", 'action.run=["python3", "-c", "pass"]')
        page.fill("textarea[name=reason]", "fixed in the browser")
        page.click("#resubmit-form button[type=submit]")
        page.wait_for_selector("#resubmitted-notice", timeout=WAIT_MS)
        assert page.inner_text("#dl-state") == "resubmitted"
        page.click("nav a[href='/breakers']")
        assert page.inner_text("td .badge") == "open"
        page.click("button:has-text('Reset')")
        page.wait_for_selector("#reset-notice", timeout=WAIT_MS)
        assert page.inner_text("td .badge") == "closed"
    finally:
        stop_server(server)
