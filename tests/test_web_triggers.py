"""The API for triggers: schedules CRUD, events with the token, HMAC-signed forge webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.trigger_helpers import finished_run, marker_plan

TOKEN = "test-token-0123456789abcdefghij"
SECRET = "forge-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    with Store.open(sqlite_url) as store:
        app = create_app(
            ServerConfig(db_url=sqlite_url, token=TOKEN, webhook_secret=SECRET), store=store
        )
        with TestClient(app, follow_redirects=False) as test_client:
            yield test_client


def test_schedules_crud_matches_the_store(
    client: TestClient, tmp_path: Path, sqlite_url: str
) -> None:
    plan = marker_plan(tmp_path)
    body = {"name": "nightly", "plan": str(plan), "cron": "0 2 * * 1-5", "tz": "Europe/Berlin"}
    assert client.post("/api/v1/schedules", json=body).status_code == 401  # the token is needed
    made = client.post("/api/v1/schedules", json=body, headers=AUTH)
    assert made.status_code == 201, made.text
    assert made.json()["next"]["local"].endswith(("+01:00", "+02:00"))
    again = client.post("/api/v1/schedules", json=body, headers=AUTH)
    assert again.status_code == 409
    bad = client.post(
        "/api/v1/schedules", json={**body, "name": "b", "cron": "0 2 * *"}, headers=AUTH
    )
    assert bad.status_code == 422 and "needs 5" in bad.text
    assert client.post("/api/v1/schedules/nightly/disable", headers=AUTH).json()["enabled"] is False
    listed = client.get("/api/v1/schedules", headers=AUTH).json()["schedules"]
    with Store.open(sqlite_url) as store:
        stored = store.triggers.schedule("nightly")
    assert [(s["name"], s["cron"], s["enabled"]) for s in listed] == [
        (stored.name, stored.cron, stored.enabled)
    ]
    nxt = client.get("/api/v1/schedules/nightly/next?count=3", headers=AUTH).json()
    assert len(nxt["occurrences"]) == 3
    assert client.delete("/api/v1/schedules/nightly", headers=AUTH).status_code == 204
    assert client.get("/api/v1/schedules/nightly", headers=AUTH).status_code == 404


def add_event_schedule(client: TestClient, plan: Path) -> None:
    body = {
        "name": "on-push",
        "plan": str(plan),
        "on": {
            "event": "push",
            "when": "data['ref'] == 'refs/heads/main'",
            "params": {"who": "data['pusher']['name']"},
        },
    }
    made = client.post("/api/v1/schedules", json=body, headers=AUTH)
    assert made.status_code == 201, made.text


def test_an_event_with_the_token_starts_the_plan_once_per_key(
    client: TestClient, tmp_path: Path, sqlite_url: str
) -> None:
    add_event_schedule(client, marker_plan(tmp_path))
    body = {"data": {"ref": "refs/heads/main", "pusher": {"name": "ada"}}, "key": "k1"}
    sent = client.post("/api/v1/events/push", json=body, headers=AUTH)
    assert sent.status_code == 201, sent.text
    [firing] = sent.json()["event"]["firings"]
    assert firing["outcome"] == "launched" and firing["params"] == {"who": "ada"}
    assert client.post("/api/v1/events/push", json=body, headers=AUTH).json()["duplicate"] is True
    assert finished_run(sqlite_url, firing["run_id"]).state == "completed"
    assert (tmp_path / "out-ada.txt").read_text() == "ada"
    listed = client.get("/api/v1/trigger-events", headers=AUTH).json()["events"]
    assert [(e["name"], e["source"], len(e["firings"])) for e in listed] == [("push", "api", 1)]


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_signed_forge_webhook_starts_the_plan_and_a_redelivery_does_not(
    client: TestClient, tmp_path: Path, sqlite_url: str
) -> None:
    add_event_schedule(client, marker_plan(tmp_path))
    payload = json.dumps({"ref": "refs/heads/main", "pusher": {"name": "bob"}}).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1",
        "Content-Type": "application/json",
    }
    wrong = client.post(
        "/api/v1/webhooks/push",
        content=payload,
        headers={**headers, "X-Hub-Signature-256": signed(payload, "nope")},
    )
    assert wrong.status_code == 401
    unsigned = client.post("/api/v1/webhooks/push", content=payload, headers=headers)
    assert unsigned.status_code == 401
    good = client.post(
        "/api/v1/webhooks/push",
        content=payload,
        headers={**headers, "X-Hub-Signature-256": signed(payload)},
    )
    assert good.status_code == 201, good.text
    event = good.json()["event"]
    assert event["source"] == "webhook" and event["data"]["forge_event"] == "push"
    [firing] = event["firings"]
    again = client.post(
        "/api/v1/webhooks/push",
        content=payload,
        headers={**headers, "X-Hub-Signature-256": signed(payload)},
    )
    assert again.json()["duplicate"] is True and again.json()["event"]["id"] == event["id"]
    assert finished_run(sqlite_url, firing["run_id"]).state == "completed"
    assert (tmp_path / "out-bob.txt").read_text() == "bob"
    with Store.open(sqlite_url) as store:
        assert len(store.list_runs()) == 1


def test_webhooks_are_off_without_a_secret(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store:
        app = create_app(ServerConfig(db_url=sqlite_url, token=TOKEN), store=store)
        with TestClient(app) as plain:
            answer = plain.post(
                "/api/v1/webhooks/push",
                content=b"{}",
                headers={"X-Hub-Signature-256": signed(b"{}")},
            )
    assert answer.status_code == 403 and "ORCH_WEBHOOK_SECRET" in answer.text
