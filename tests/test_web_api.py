"""The dashboard's REST API and pages through FastAPI's TestClient, on real runs in real stores.

Runs are made by the real engine in-process, paused at breakpoints; `orch serve` itself is
started as a subprocess for the bind check and the token file.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 behind its TestClient; httpx still works the same
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from orchestration import hookimpl
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.extension import Notifier
from orchestration.pluginhost.hooks import Plugins, load_plugins
from orchestration.pluginhost.webhooks import verify_signature
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.auth import SESSION_COOKIE
from orchestration.web.config import ServerConfig
from tests.helpers import PY, shell_task, write_plan

TOKEN = "test-token-0123456789abcdefghij"
SERVER_START_SECONDS = 30

REVIEW_RULES = (
    "breakpoints:\n"
    "  - name: needs_review\n"
    "    at: before\n"
    "    when: \"'review-me' in tags\"\n"
    "    priority: 99\n"
    "    severity: high\n"
    "    action: pause\n"
    '    message: "{task_id} must be reviewed first"\n'
)


# ---- runs made by the real engine -----------------------------------------------------------


def paused_run(directory: Path, url: str, run_id: str = "r1") -> None:
    """A run with two tasks paused before they start (`a`, `b`), one done, one waiting."""
    (directory / "review.yaml").write_text(REVIEW_RULES)
    plan = write_plan(
        directory,
        {
            "version": 1,
            "name": "review",
            "rules": ["review.yaml"],
            "tasks": [
                shell_task("free", "pass", title="Runs at once"),
                shell_task("a", "pass", tags=["review-me"]),
                shell_task("b", "pass", tags=["review-me"]),
                shell_task("after", "pass", depends_on=["a", "b"]),
            ],
        },
    )
    run_plan(plan, url, run_id, expect="paused")


def run_plan(plan: Path, url: str, run_id: str, expect: str) -> None:
    loaded = load_plan(plan)
    with Store.open(url) as store:
        orchestrator = Orchestrator.start(loaded, store, run_id=run_id, engine=build_engine(loaded))
        orchestrator.engine.plugins.muted.add("console")
        assert orchestrator.run_until_stopped().state == expect


def resume_run(url: str, run_id: str) -> str:
    with Store.open(url) as store:
        orchestrator = Orchestrator.resume(store, run_id)
        orchestrator.engine.plugins.muted.add("console")
        return orchestrator.run_until_stopped().state


@dataclass
class Dashboard:
    client: TestClient
    url: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=bearer(), **kwargs)

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.client.post(path, headers=bearer(), json=body)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_client(url: str, plugins: Plugins | None = None, **config: Any) -> Iterator[TestClient]:
    with Store.open(url) as store:
        server = ServerConfig(db_url=url, token=TOKEN, **config)
        app = create_app(server, store=store, plugins=plugins)
        with TestClient(app, follow_redirects=False) as client:
            yield client


@pytest.fixture
def dash(tmp_path: Path, sqlite_url: str) -> Iterator[Dashboard]:
    paused_run(tmp_path, sqlite_url)
    for client in make_client(sqlite_url, stream_poll_seconds=0.05):
        yield Dashboard(client, sqlite_url)


def login(client: TestClient, name: str = "alice") -> str:
    """Sign in through the form; returns the CSRF token the pages carry."""
    form = client.get("/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    done = client.post(
        "/login", data={"token": TOKEN, "name": name, "next": "/runs", "csrf_token": csrf[1]}
    )
    assert done.status_code == 303 and done.headers["location"] == "/runs"
    page = client.get("/runs")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None
    return found[1]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


# ---- authentication ----------------------------------------------------------------------------


def test_no_token_wrong_token_and_bad_schemes_are_401_json(dash: Dashboard) -> None:
    missing = dash.client.get("/api/v1/runs")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert error_of(missing)["code"] == "unauthorized"
    assert "Authorization: Bearer" in error_of(missing)["message"]
    for header in (f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN):
        wrong = dash.client.get("/api/v1/runs", headers={"Authorization": header})
        assert wrong.status_code == 401, header
        assert error_of(wrong)["code"] == "unauthorized"
    assert dash.get("/api/v1/runs").status_code == 200


def test_pages_send_a_stranger_to_the_login_form_and_static_files_are_open(
    dash: Dashboard,
) -> None:
    page = dash.client.get("/runs/r1?x=1")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fruns%2Fr1%3Fx%3D1&why=required"
    assert dash.client.get("/static/app.js").status_code == 200
    assert dash.client.get("/api/v1/openapi.json").status_code == 401


def test_login_form_gives_a_strict_httponly_session_for_pages_and_api(dash: Dashboard) -> None:
    form = dash.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    wrong = dash.client.post(
        "/login", data={"token": "nope", "name": "x", "next": "/", "csrf_token": csrf[1]}
    )
    assert wrong.status_code == 401 and "That token is not right" in wrong.text
    form = dash.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    done = dash.client.post(
        "/login",
        data={
            "token": TOKEN,
            "name": "Alice <b>",
            "next": "//evil.example/",
            "csrf_token": csrf[1],
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/runs"
    cookie = next(
        c for c in done.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    runs = dash.client.get("/runs")
    assert runs.status_code == 200 and "r1" in runs.text and "Alice b" in runs.text
    assert dash.client.get("/api/v1/runs").json()["runs"][0]["id"] == "r1"
    assert dash.client.get("/login").status_code == 303  # signed in already


def test_login_form_is_protected_against_cross_site_posts(dash: Dashboard) -> None:
    data = {"token": TOKEN, "name": "x", "next": "/runs"}
    no_cookie = dash.client.post("/login", data={**data, "csrf_token": "made-up"})
    assert no_cookie.status_code == 403
    form = dash.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    mismatch = dash.client.post("/login", data={**data, "csrf_token": csrf[1] + "x"})
    assert mismatch.status_code == 403
    cross = dash.client.post(
        "/login",
        data={**data, "csrf_token": csrf[1]},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and "another site" in cross.text


def test_an_expired_or_forged_session_must_log_in_again(dash: Dashboard) -> None:
    auth = dash.client.app.state.auth  # type: ignore[attr-defined]
    dash.client.cookies.set(SESSION_COOKIE, auth.new_session("alice", expires=time.time() - 1))
    api = dash.client.get("/api/v1/runs")
    assert api.status_code == 401 and error_of(api)["code"] == "session_expired"
    page = dash.client.get("/runs")
    assert page.status_code == 303 and page.headers["location"].endswith("why=expired")
    assert "session has expired" in dash.client.get(page.headers["location"]).text
    fresh = auth.new_session("alice")
    dash.client.cookies.set(SESSION_COOKIE, fresh[:-2] + ("AA" if fresh[-2:] != "AA" else "BB"))
    forged = dash.client.get("/api/v1/runs")
    assert forged.status_code == 401 and "invalid session" in error_of(forged)["message"]


def test_logout_ends_the_session(dash: Dashboard) -> None:
    csrf = login(dash.client)
    assert dash.client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    out = dash.client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert dash.client.get("/runs").status_code == 303


# ---- CSRF ----------------------------------------------------------------------------------------


def test_cookie_writes_need_the_csrf_token_bearer_writes_do_not(dash: Dashboard) -> None:
    csrf = login(dash.client)
    (first, second) = dash.get("/api/v1/breakpoints").json()["breakpoints"]
    path = f"/api/v1/breakpoints/{first['id']}/resolve"
    body = {"resolution": "approve", "note": "fine"}
    missing = dash.client.post(path, json=body)
    assert missing.status_code == 403 and error_of(missing)["code"] == "forbidden"
    wrong = dash.client.post(path, json=body, headers={"X-CSRF-Token": csrf[:-1]})
    assert wrong.status_code == 403
    cross = dash.client.post(
        path, json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert cross.status_code == 403 and "cross-site" in error_of(cross)["message"]
    good = dash.client.post(path, json=body, headers={"X-CSRF-Token": csrf})
    assert good.status_code == 200, good.text
    assert good.json()["breakpoint"]["resolved_by"] == "alice"
    by_bearer = dash.client.post(
        f"/api/v1/breakpoints/{second['id']}/resolve",
        json={"resolution": "skip"},
        headers=bearer(),
    )
    assert by_bearer.status_code == 200 and by_bearer.json()["breakpoint"]["resolved_by"] == "api"


def test_the_review_form_needs_its_csrf_token(dash: Dashboard) -> None:
    csrf = login(dash.client)
    bp = dash.get("/api/v1/breakpoints").json()["breakpoints"][0]["id"]
    form = {"action": "approve", "note": "ok"}
    refused = dash.client.post(f"/breakpoints/{bp}/resolve", data=form)
    assert refused.status_code == 403 and "CSRF" in refused.text
    cross = dash.client.post(
        f"/breakpoints/{bp}/resolve",
        data={**form, "csrf_token": csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert dash.get(f"/api/v1/breakpoints/{bp}").json()["breakpoint"]["state"] == "open"
    done = dash.client.post(f"/breakpoints/{bp}/resolve", data={**form, "csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/breakpoints/{bp}?done=1"
    page = dash.client.get(done.headers["location"])
    assert "Resolved: approve" in page.text and "orch resume r1" in page.text


# ---- malformed bodies, unknown ids, conflicts ----------------------------------------------------


def test_malformed_bodies_are_400_or_422_with_a_clear_message(dash: Dashboard) -> None:
    bp = dash.get("/api/v1/breakpoints").json()["breakpoints"][0]["id"]
    path = f"/api/v1/breakpoints/{bp}/resolve"
    not_json = dash.client.post(
        path,
        content=b"{resolution: approve",
        headers={**bearer(), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400 and error_of(not_json)["code"] == "bad_request"
    assert "not valid JSON" in error_of(not_json)["message"]
    cases = [
        ({"resolution": "maybe"}, "resolution"),
        ({}, "resolution"),
        ({"resolution": "approve", "colour": "red"}, "colour"),
        ({"resolution": "approve", "note": 5}, "note"),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        bad = dash.post(path, body)
        assert bad.status_code == 422, body
        error = error_of(bad)
        assert error["code"] == "unprocessable" and field in error["message"], error
        assert error["problems"]
    empty = dash.post("/api/v1/breakpoints/resolve", {"items": []})
    assert empty.status_code == 422 and "items" in error_of(empty)["message"]
    no_body = dash.client.post(path, headers=bearer())
    assert no_body.status_code == 422
    assert dash.get(f"/api/v1/breakpoints/{bp}").json()["breakpoint"]["state"] == "open"


def test_unknown_ids_are_404_and_bad_ids_422(dash: Dashboard) -> None:
    expectations = {
        "/api/v1/runs/nope": "run 'nope' not found",
        "/api/v1/runs/nope/tasks": "run 'nope' not found",
        "/api/v1/runs/r1/tasks/nope": "task 'nope' not found in run 'r1'",
        "/api/v1/runs/r1/tasks/nope/history": "task 'nope' not found",
        "/api/v1/runs/r1/transitions?task=nope": "task 'nope' not found",
        "/api/v1/runs/nope/events": "run 'nope' not found",
        "/api/v1/runs/nope/events/stream": "run 'nope' not found",
        "/api/v1/breakpoints/999": "breakpoint 999 not found",
        "/api/v1/breakpoints?run=nope": "run 'nope' not found",
        "/api/v1/no/such/thing": "no such page or endpoint",
    }
    for path, message in expectations.items():
        response = dash.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"
        assert message in error_of(response)["message"], path
    resolved = dash.post("/api/v1/breakpoints/999/resolve", {"resolution": "approve"})
    assert resolved.status_code == 404
    for path in (
        "/api/v1/breakpoints/abc",
        "/api/v1/breakpoints/0",
        f"/api/v1/breakpoints/{2**63}",
    ):
        assert dash.get(path).status_code == 422, path
    assert dash.get("/api/v1/breakpoints?state=closed").status_code == 422
    assert dash.get("/api/v1/runs/r1/events/stream?after=x:y").status_code == 400
    csrf = login(dash.client)
    assert csrf
    page = dash.client.get("/runs/nope")
    assert page.status_code == 404 and "run &#39;nope&#39; not found" in page.text


def test_resolving_twice_is_a_409_conflict(dash: Dashboard) -> None:
    bp = dash.get("/api/v1/breakpoints").json()["breakpoints"][0]["id"]
    first = dash.post(f"/api/v1/breakpoints/{bp}/resolve", {"resolution": "reject"})
    assert first.status_code == 200 and first.json()["task_state"] == "cancelled"
    again = dash.post(f"/api/v1/breakpoints/{bp}/resolve", {"resolution": "approve"})
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"
    assert "already resolved (reject by api)" in error_of(again)["message"]


def test_batch_resolve_reports_each_item(dash: Dashboard) -> None:
    a, b = (bp["id"] for bp in dash.get("/api/v1/breakpoints").json()["breakpoints"])
    items = [
        {"id": a, "resolution": "approve", "note": "batch", "actor": "bob"},
        {"id": 999, "resolution": "approve"},
        {"id": b, "resolution": "retry", "answer": "use JSON"},
        {"id": a, "resolution": "skip"},
    ]
    done = dash.post("/api/v1/breakpoints/resolve", {"items": items})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["resolved"], body["failed"]) == (2, 2)
    outcomes = [(r["id"], r["ok"], (r["error"] or {}).get("code")) for r in body["results"]]
    assert outcomes == [
        (a, True, None),
        (999, False, "not_found"),
        (b, True, None),
        (a, False, "conflict"),
    ]
    assert body["results"][0]["result"]["breakpoint"]["resolved_by"] == "bob"
    assert "orch resume r1" in body["results"][0]["result"]["next"]
    task_b = dash.get("/api/v1/runs/r1/tasks/b").json()["task"]
    assert (task_b["state"], task_b["answer"]) == ("ready", "use JSON")
    too_many = dash.post(
        "/api/v1/breakpoints/resolve",
        {"items": [{"id": 1, "resolution": "skip"}] * 201},
    )
    assert too_many.status_code == 422


# ---- what the API reads --------------------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_resolve_through_the_api_then_resume_completes_the_run(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    paused_run(tmp_path, url)
    for client in make_client(url):
        runs = client.get("/api/v1/runs", headers=bearer()).json()["runs"]
        assert [(r["id"], r["state"], r["live"], r["open_breakpoints"]) for r in runs] == [
            ("r1", "paused", False, 2)
        ]
        assert runs[0]["counts"] == {"completed": 1, "blocked": 2, "pending": 1}
        detail = client.get("/api/v1/runs/r1", headers=bearer()).json()
        assert [t["id"] for t in detail["tasks"]] == ["free", "a", "b", "after"]
        assert detail["tasks"][3]["depends_on"] == ["a", "b"]
        listed = client.get("/api/v1/breakpoints?run=r1", headers=bearer()).json()["breakpoints"]
        assert [(bp["task"], bp["rule"], bp["state"]) for bp in listed] == [
            ("a", "needs_review", "open"),
            ("b", "needs_review", "open"),
        ]
        shown = client.get(f"/api/v1/breakpoints/{listed[0]['id']}", headers=bearer()).json()
        assert shown["breakpoint"]["context"]["tags"] == ["review-me"]
        assert shown["rule"]["when"] == "'review-me' in tags" and shown["step"] is None
        assert [o["resolution"] for o in shown["options"]] == ["approve", "retry", "skip", "reject"]
        items = [{"id": bp["id"], "resolution": "approve", "note": "ok"} for bp in listed]
        body = client.post("/api/v1/breakpoints/resolve", json={"items": items}, headers=bearer())
        assert body.json()["resolved"] == 2
    assert resume_run(url, "r1") == "completed"
    for client in make_client(url):
        run = client.get("/api/v1/runs/r1", headers=bearer()).json()["run"]
        assert (run["state"], run["counts"]) == ("completed", {"completed": 4})
        history = client.get("/api/v1/runs/r1/tasks/a/history", headers=bearer()).json()
        unblock = next(t for t in history["transitions"] if t["trigger"] == "unblock")
        assert (
            unblock["actor"] == "api" and unblock["from"] == "blocked" and "ok" in unblock["reason"]
        )
        resolved = client.get("/api/v1/breakpoints?state=resolved", headers=bearer()).json()
        assert len(resolved["breakpoints"]) == 2


def test_runs_tasks_history_decisions_quality_and_explain(dash: Dashboard) -> None:
    resume_all(dash)
    task = dash.get("/api/v1/runs/r1/tasks/free").json()["task"]
    assert task["title"] == "Runs at once" and task["spec"]["action"]["kind"] == "shell"
    moves = dash.get("/api/v1/runs/r1/transitions?task=free").json()["transitions"]
    assert [m["trigger"] for m in moves] == ["release", "start", "succeed"]
    assert set(moves[0]) == {"id", "task", "from", "to", "trigger", "reason", "actor", "at"}
    newer = dash.get(f"/api/v1/runs/r1/transitions?after={moves[0]['id']}").json()["transitions"]
    assert all(m["id"] > moves[0]["id"] for m in newer)
    decisions = dash.get("/api/v1/runs/r1/decisions?task=free").json()["decisions"]
    assert [d["decision"] for d in decisions] == ["proceed"] and decisions[0]["reason"]
    quality = dash.get("/api/v1/runs/r1/quality?task=free").json()["quality"]
    assert quality[0]["gate_passed"] is True and quality[0]["checks"]
    explained = dash.get("/api/v1/runs/r1/tasks/after/explain").json()
    assert explained["priority"]["base"] == 5 and explained["decisions"][0]["decision"] == "proceed"
    events = dash.get("/api/v1/runs/r1/events?limit=2").json()
    assert events["events"][0]["kind"] == "run_started" and len(events["events"]) == 2
    rest = dash.get(f"/api/v1/runs/r1/events?after={events['last_id']}").json()["events"]
    assert rest[-1]["kind"] == "run_finished" and rest[-1]["data"]["state"] == "completed"


def resume_all(dash: Dashboard) -> None:
    for bp in dash.get("/api/v1/breakpoints").json()["breakpoints"]:
        assert dash.post(
            f"/api/v1/breakpoints/{bp['id']}/resolve", {"resolution": "approve"}
        ).is_success
    assert resume_run(dash.url, "r1") == "completed"


def test_the_event_stream_sends_new_events_and_moves_and_resumes_from_its_cursor(
    dash: Dashboard,
) -> None:
    stream = "/api/v1/runs/r1/events/stream"
    quiet = dash.get(f"{stream}?max_seconds=0.3")
    assert quiet.status_code == 200 and quiet.headers["content-type"].startswith(
        "text/event-stream"
    )
    assert "retry: 1000" in quiet.text and "event:" not in quiet.text  # nothing new yet
    everything = parse_sse(dash.get(f"{stream}?after=0:0&max_seconds=0.3").text)
    kinds = [(m["event"], json.loads(m["data"]).get("kind")) for m in everything]
    assert kinds[0] == ("event", "run_started") and ("transition", None) in kinds
    cursor = everything[-1]["id"]
    bp = dash.get("/api/v1/breakpoints").json()["breakpoints"][0]["id"]
    dash.post(f"/api/v1/breakpoints/{bp}/resolve", {"resolution": "approve"})
    new = parse_sse(
        dash.client.get(
            f"{stream}?max_seconds=0.3", headers={**bearer(), "Last-Event-ID": cursor}
        ).text
    )
    assert [
        (m["event"], json.loads(m["data"]).get("kind") or json.loads(m["data"])["trigger"])
        for m in new
    ] == [
        ("event", "breakpoint_resolved"),
        ("transition", "unblock"),
    ]


def parse_sse(text: str) -> list[dict[str, str]]:
    messages = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            messages.append(fields)
    return messages


def test_rate_limit_per_token_answers_429_with_retry_after(tmp_path: Path, sqlite_url: str) -> None:
    paused_run(tmp_path, sqlite_url)
    for client in make_client(sqlite_url, rate_per_second=0.01, rate_burst=3):
        answers = [client.get("/api/v1/runs", headers=bearer()).status_code for _ in range(3)]
        assert answers == [200, 200, 200]
        limited = client.get("/api/v1/runs/r1", headers=bearer())
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert error_of(limited)["code"] == "rate_limited"
        assert client.get("/api/v1/runs").status_code == 401  # no token: refused before counting


def test_openapi_document_and_security_headers(dash: Dashboard) -> None:
    document = dash.get("/api/v1/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    assert "/api/v1/breakpoints/{breakpoint_id}/resolve" in spec["paths"]
    assert "/api/v1/runs/{run_id}/events/stream" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "429" in spec["paths"]["/api/v1/runs"]["get"]["responses"]
    headers = dash.get("/api/v1/runs").headers
    assert (
        headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in headers["content-security-policy"]
    )
    assert headers["x-content-type-options"] == "nosniff"


def test_a_resolution_is_sent_as_a_signed_webhook(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    paused_run(tmp_path, sqlite_url)
    with ThreadingHTTPServer(("127.0.0.1", 0), Receiver) as receiver:
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        monkeypatch.setenv("ORCH_WEBHOOK_URL", f"http://127.0.0.1:{receiver.server_port}/hook")
        monkeypatch.setenv("ORCH_WEBHOOK_SECRET", "s3cret")
        monkeypatch.setenv("ORCH_WEBHOOK_KINDS", "breakpoint_resolved")
        for client in make_client(sqlite_url):
            bp = client.get("/api/v1/breakpoints", headers=bearer()).json()["breakpoints"][0]
            body = {"resolution": "approve", "note": "looks right"}
            resolved = client.post(
                f"/api/v1/breakpoints/{bp['id']}/resolve", json=body, headers=bearer()
            )
            assert resolved.status_code == 200
            headers, raw = received.get(timeout=10)
        receiver.shutdown()
    assert headers["X-Orch-Event"] == "breakpoint_resolved"
    assert verify_signature("s3cret", raw, headers["X-Orch-Signature"], headers["X-Orch-Timestamp"])
    payload = json.loads(raw)
    assert (payload["kind"], payload["run_id"], payload["task_id"]) == (
        "breakpoint_resolved",
        "r1",
        "a",
    )
    assert payload["data"]["resolution"] == "approve" and payload["data"]["actor"] == "api"
    assert payload["data"]["task_state"] == "ready" and payload["data"]["run_live"] is False
    assert payload["message"].endswith("approve by api: looks right")


def test_a_resolution_in_the_dashboard_reaches_the_plugins_hook_and_notifiers(
    tmp_path: Path, sqlite_url: str
) -> None:
    heard: queue.Queue[tuple[str, Any]] = queue.Queue()

    class Listener:
        @hookimpl
        def on_breakpoint_resolved(
            self, run_id: str, breakpoint_id: int, resolution: str, actor: str
        ) -> None:
            heard.put(("hook", (run_id, breakpoint_id, resolution, actor)))

        @hookimpl
        def register_notifiers(self) -> list[Notifier]:
            return [Notifier("listener", lambda n: heard.put(("notified", n)))]

    paused_run(tmp_path, sqlite_url)
    plugins = load_plugins(entry_points=False, extra=[Listener()])
    plugins.muted.add("console")
    for client in make_client(sqlite_url, plugins=plugins):
        csrf = login(client, "alice")
        bp = client.get("/api/v1/breakpoints").json()["breakpoints"][0]
        page = client.post(
            f"/breakpoints/{bp['id']}/resolve",
            data={"action": "skip", "note": "not needed", "csrf_token": csrf},
        )
        assert page.status_code == 303
        first, second = heard.get(timeout=10), heard.get(timeout=10)
    by_kind = dict([first, second])
    assert by_kind["hook"] == ("r1", bp["id"], "skip", "alice")
    notification = by_kind["notified"]
    assert (notification.kind, notification.task_id) == ("breakpoint_resolved", "a")
    assert notification.data["resolution"] == "skip" and notification.data["note"] == "not needed"


def test_only_the_served_host_names_are_answered_and_cookies_can_be_secure(
    tmp_path: Path, sqlite_url: str
) -> None:
    paused_run(tmp_path, sqlite_url)
    served = ("127.0.0.1", "[::1]", "localhost")
    for client in make_client(sqlite_url, allowed_hosts=served, secure_cookies=True):
        renamed = client.get("http://rebound.example:8765/api/v1/runs", headers=bearer())
        assert (
            renamed.status_code == 400 and "unexpected Host header" in error_of(renamed)["message"]
        )
        for base in ("http://127.0.0.1:8765", "http://localhost", "http://[::1]:8765"):
            assert client.get(f"{base}/api/v1/runs", headers=bearer()).status_code == 200, base
        form = client.get("http://127.0.0.1/login")
        assert "Secure" in form.headers["set-cookie"]


def test_pages_render_the_run_the_graph_the_timeline_and_the_review(dash: Dashboard) -> None:
    login(dash.client)
    runs = dash.client.get("/runs")
    assert "1 completed" in runs.text and "2 waiting" in runs.text
    run = dash.client.get("/runs/r1")
    assert run.status_code == 200
    assert 'class="node state-blocked" data-task="a"' in run.text
    assert 'class="node state-completed" data-task="free"' in run.text
    assert 'class="timeline"' in run.text and "free attempt 1" in run.text
    assert 'data-stream="/api/v1/runs/r1/events/stream?after=' in run.text
    assert dash.client.get("/runs/r1/live").text.count('id="run-state"') == 1
    bp = dash.get("/api/v1/breakpoints").json()["breakpoints"][0]["id"]
    review = dash.client.get(f"/breakpoints/{bp}")
    assert "a must be reviewed first" in review.text and "needs_review" in review.text
    for action in ("approve", "retry", "skip", "reject", "answer"):
        assert f'name="action" value="{action}"' in review.text
    task = dash.client.get("/runs/r1/tasks/free")
    assert task.status_code == 200 and "effective priority" in task.text
    listing = dash.client.get("/breakpoints")
    assert listing.text.count('class="review-link"') == 2


def test_an_answer_needs_text_and_is_passed_on(dash: Dashboard) -> None:
    csrf = login(dash.client)
    bp = dash.get("/api/v1/breakpoints").json()["breakpoints"][0]["id"]
    empty = dash.client.post(
        f"/breakpoints/{bp}/resolve", data={"action": "answer", "csrf_token": csrf}
    )
    assert empty.status_code == 422 and "write the answer first" in empty.text
    given = dash.client.post(
        f"/breakpoints/{bp}/resolve",
        data={"action": "answer", "answer": "keep it in JSON", "csrf_token": csrf},
    )
    assert given.status_code == 303
    task = dash.get("/api/v1/runs/r1/tasks/a").json()["task"]
    assert (task["state"], task["answer"]) == ("ready", "keep it in JSON")
    resolved = dash.get(f"/api/v1/breakpoints/{bp}").json()["breakpoint"]
    assert (resolved["resolution"], resolved["resolved_by"]) == ("retry", "alice")


def test_retry_with_changed_parameters_from_the_api_and_the_page(dash: Dashboard) -> None:
    csrf = login(dash.client)
    a, b = (bp["id"] for bp in dash.get("/api/v1/breakpoints").json()["breakpoints"])
    fixed = dash.post(
        f"/api/v1/breakpoints/{a}/resolve", {"resolution": "retry", "params": {"id": "x"}}
    )
    assert fixed.status_code == 422 and "cannot change" in error_of(fixed)["message"]
    with_skip = dash.post(
        f"/api/v1/breakpoints/{a}/resolve", {"resolution": "skip", "params": {"title": "x"}}
    )
    assert with_skip.status_code == 400 and "goes with --retry" in error_of(with_skip)["message"]
    params = {"timeout_seconds": 30, "title": "Reviewed"}
    done = dash.post(f"/api/v1/breakpoints/{a}/resolve", {"resolution": "retry", "params": params})
    assert done.status_code == 200, done.text
    assert done.json()["breakpoint"]["params"] == params
    spec = dash.get("/api/v1/runs/r1/tasks/a").json()["task"]["spec"]
    assert (spec["timeout_seconds"], spec["title"]) == (30, "Reviewed")
    form = {
        "action": "retry",
        "params": "timeout_seconds=45\n\ntitle=From the page",
        "csrf_token": csrf,
    }
    posted = dash.client.post(f"/breakpoints/{b}/resolve", data=form)
    assert posted.status_code == 303
    spec = dash.get("/api/v1/runs/r1/tasks/b").json()["task"]["spec"]
    assert (spec["timeout_seconds"], spec["title"]) == (45, "From the page")
    assert "<code>timeout_seconds=45</code>" in dash.client.get(posted.headers["location"]).text


def test_an_after_step_review_shows_files_diff_validators_decision_and_rule(
    tmp_path: Path, sqlite_url: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "README.md").write_text("project\n")
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    code = "open('auth.py', 'w').write('def check_password(given, stored):\\n    return given == stored\\n')"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "secure",
            "workdir": "work",
            "defaults": {"validators": ["python_syntax"]},
            "tasks": [shell_task("login", code, tags=["security"], title="Add password check")],
        },
    )
    run_plan(plan, sqlite_url, "s1", expect="paused")
    for client in make_client(sqlite_url):
        (bp,) = client.get("/api/v1/breakpoints", headers=bearer()).json()["breakpoints"]
        assert (bp["rule"], bp["at"]) == ("security_sensitive_change", "after")
        review = client.get(f"/api/v1/breakpoints/{bp['id']}", headers=bearer()).json()
        assert review["step"]["changed_files"] == ["auth.py"] and review["step"]["exit_code"] == 0
        assert "auth.py" in review["step"]["diff_stat"]
        assert "+def check_password(given, stored):" in review["diff"]["text"]
        assert "python_syntax" in [c["name"] for c in review["quality"]["checks"]]
        assert review["decisions"][0]["decision"] == "proceed"
        assert "security" in review["rule"]["when"] and review["rule"]["doc"]
        assert (
            client.get(f"/api/v1/breakpoints/{bp['id']}?diff=false", headers=bearer()).json()[
                "diff"
            ]
            is None
        )
        csrf = login(client)
        assert csrf
        page = client.get(f"/breakpoints/{bp['id']}").text
        assert '<span class="add">+def check_password(given, stored):</span>' in page
        assert "python_syntax" in page and "security_sensitive_change" in page


def git(directory: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)


# ---- the server process --------------------------------------------------------------------------


def serve_argv() -> list[str]:
    """`orch serve` once the CLI mounts it; until then the same code via `-m orchestration.web`."""
    from orchestration.cli.root import app

    names = {command.name for command in app.registered_commands}
    if "serve" in names:
        return [PY, "-m", "orchestration", "serve"]
    return [PY, "-m", "orchestration.web"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str
    token_file: Path
    banner: str

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()


def start_server(db_url: str, token_file: Path, *extra: str) -> Server:
    """Start the real server on a free port and wait until it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    process = subprocess.Popen(
        [
            *serve_argv(),
            "--db",
            db_url,
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            *extra,
        ],
        env={**env, "NO_COLOR": "1", "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.communicate()[0]}")
        try:
            if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return Server(process, base, token_file, "")


def stop_server(server: Server) -> str:
    server.process.send_signal(signal.SIGINT)
    try:
        output, _ = server.process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        output, _ = server.process.communicate()
    return output


def test_serve_refuses_a_public_address_without_allow_remote(
    tmp_path: Path, sqlite_url: str
) -> None:
    refused = subprocess.run(
        [
            *serve_argv(),
            "--db",
            sqlite_url,
            "--host",
            "0.0.0.0",
            "--token-file",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0" in refused.stderr and "--allow-remote" in refused.stderr
    assert not (tmp_path / "t").exists()


def test_serve_creates_a_0600_token_prints_it_once_and_serves_the_api(
    tmp_path: Path, sqlite_url: str
) -> None:
    paused_run(tmp_path, sqlite_url)
    token_file = tmp_path / "config" / "dashboard-token"
    first = start_server(sqlite_url, token_file)
    try:
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        token = first.token
        assert len(token) >= 40
        answer = httpx.get(f"{first.base}/api/v1/runs", headers=bearer(token), timeout=5)
        assert answer.json()["runs"][0]["id"] == "r1"
        assert httpx.get(f"{first.base}/api/v1/runs", timeout=5).status_code == 401
    finally:
        printed = stop_server(first)
    assert f"the dashboard is at {first.base}/" in printed
    assert token in printed and "shown this once" in printed
    second = start_server(sqlite_url, token_file)
    printed_again = stop_server(second)
    assert token not in printed_again and f"token kept in {token_file}" in printed_again
    assert second.token == token
