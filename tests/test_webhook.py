"""The webhook notifier against a real HTTP server on 127.0.0.1: body, signature, retries, limits."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestration.extension import Notification
from orchestration.pluginhost import hooks, webhooks
from orchestration.pluginhost.webhooks import (
    WebhookConfig,
    WebhookConfigError,
    WebhookDeliveryError,
    WebhookSender,
    config_from_env,
    notification_payload,
    retry_wait,
    verify_signature,
)
from orchestration.plugins import webhook
from tests.helpers import orch, shell_task, write_plan

SECRET = "s3cret-key"
FAST = {"backoff_base": 0.01}  # keeps retries quick; the limits are what the tests look at
NOTE = Notification(
    "breakpoint_raised",
    "run-1",
    "needs_review (high)",
    "guarded must be reviewed first",
    "high",
    "guarded",
    {"rule": "needs_review", "figures": [1, 2.5]},
)
ENV_NAMES = (
    webhooks.ENV_URL,
    webhooks.ENV_SECRET,
    webhooks.ENV_TIMEOUT,
    webhooks.ENV_RETRIES,
    webhooks.ENV_KINDS,
)


# ---- a real receiver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hold_seconds: float = 0.0  # the server waits this long (or until the test ends) to answer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def signed_with(self, secret: str) -> bool:
        return verify_signature(
            secret,
            self.body,
            self.headers.get("x-orch-signature"),
            self.headers["x-orch-timestamp"],
        )


class Receiver:
    """Answers POSTs with scripted replies (the last one repeats) and records every request."""

    def __init__(self) -> None:
        self.url = ""
        self.replies: list[Reply] = [Reply()]
        self.requests: list[Received] = []
        self.release = threading.Event()  # set at teardown: held replies end at once
        self._lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def record(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self.replies[min(len(self.requests), len(self.replies)) - 1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.receiver.record(Received(self.path, headers, body))
        if reply.hold_seconds:
            self.server.receiver.release.wait(reply.hold_seconds)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads: nothing outlives a test

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed its socket before the late answer: expected here


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = _Server(receiver)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def no_webhook_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plugins_with_webhook() -> hooks.Plugins:
    """Hermetic plugins plus this one (unless the lead already made it a bundled default)."""
    bundled = "orchestration.plugins.webhook" in hooks.DEFAULT_PLUGINS
    return hooks.load_plugins(entry_points=False, extra=() if bundled else (webhook,))


# ---- what is sent -------------------------------------------------------------------------------


def test_posts_the_notification_as_json_signed_over_timestamp_and_body(
    receiver: Receiver,
) -> None:
    WebhookSender(receiver.url, SECRET).send(notification_payload(NOTE), event=NOTE.kind)

    [request] = receiver.requests
    assert request.path == "/hook"
    assert json.loads(request.body) == {
        "kind": "breakpoint_raised",
        "run_id": "run-1",
        "task_id": "guarded",
        "title": "needs_review (high)",
        "message": "guarded must be reviewed first",
        "severity": "high",
        "data": {"rule": "needs_review", "figures": [1, 2.5]},
    }
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "orchestration-webhook/1"
    assert headers["x-orch-event"] == "breakpoint_raised"
    assert len(headers["x-orch-delivery"]) == 32
    assert abs(int(headers["x-orch-timestamp"]) - time.time()) < 60
    assert headers["x-orch-signature"].startswith("sha256=")
    assert request.signed_with(SECRET)
    assert not request.signed_with("wrong-secret")


def test_a_signature_does_not_verify_for_another_body_time_or_a_stale_timestamp(
    receiver: Receiver,
) -> None:
    WebhookSender(receiver.url, SECRET).send({"kind": "run_finished"})
    [request] = receiver.requests
    signature, stamp = request.headers["x-orch-signature"], request.headers["x-orch-timestamp"]
    assert verify_signature(SECRET, request.body, signature, stamp)
    assert not verify_signature(SECRET, request.body + b" ", signature, stamp)
    assert not verify_signature(SECRET, request.body, signature, str(int(stamp) + 1))
    later = int(stamp) + 10 * 60
    assert not verify_signature(SECRET, request.body, signature, stamp, now=later)
    assert verify_signature(SECRET, request.body, signature, stamp, max_age_seconds=None, now=later)
    assert not verify_signature(SECRET, request.body, None, stamp)
    assert not verify_signature(SECRET, request.body, signature, "yesterday")
    assert not verify_signature(SECRET, request.body, "sha256=ünïcode", stamp)


def test_without_a_secret_requests_are_not_signed(receiver: Receiver) -> None:
    WebhookSender(receiver.url).send({"kind": "run_finished"})
    [request] = receiver.requests
    assert "x-orch-signature" not in request.headers
    assert request.headers["x-orch-event"] == "run_finished"


def test_credentials_in_the_url_become_basic_auth_and_the_query_is_kept(
    receiver: Receiver,
) -> None:
    url = receiver.url.replace("http://", "http://alice:pa%40ss@") + "?channel=ops"
    WebhookSender(url).send({"kind": "run_finished"})
    [request] = receiver.requests
    assert request.path == "/hook?channel=ops"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"alice:pa@ss").decode()


# ---- retries --------------------------------------------------------------------------------------


def test_server_errors_are_retried_with_the_same_delivery_id(receiver: Receiver) -> None:
    receiver.script(Reply(500), Reply(503), Reply(200))
    WebhookSender(receiver.url, SECRET, retries=3, **FAST).send(notification_payload(NOTE))
    assert len(receiver.requests) == 3
    assert len({r.headers["x-orch-delivery"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    assert all(r.signed_with(SECRET) for r in receiver.requests)


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("0.05", 0.05), ("30", 0.2), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.01)],
    ids=["seconds", "capped", "date-falls-back-to-backoff"],
)
def test_429_honours_retry_after_up_to_a_cap(
    receiver: Receiver, retry_after: str, expected_wait: float
) -> None:
    receiver.script(Reply(429, {"Retry-After": retry_after}), Reply(200))
    waits: list[float] = []
    sender = WebhookSender(receiver.url, retries=2, max_retry_after=0.2, sleep=waits.append, **FAST)
    sender.send({"kind": "run_finished"})
    assert len(receiver.requests) == 2
    assert waits == [expected_wait]


def test_a_client_error_is_final_and_reported_with_the_servers_words(receiver: Receiver) -> None:
    receiver.script(Reply(400, body=b"missing field 'run'"))
    with pytest.raises(WebhookDeliveryError) as raised:
        WebhookSender(receiver.url, retries=3, **FAST).send({"kind": "run_finished"})
    assert len(receiver.requests) == 1
    assert raised.value.status == 400 and raised.value.attempts == 1
    assert str(raised.value) == (
        f"webhook POST to {receiver.url} failed after 1 try: HTTP 400 Bad Request: "
        "missing field 'run'"
    )


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.script(Reply(302, {"Location": "http://127.0.0.1:9/elsewhere"}))
    with pytest.raises(WebhookDeliveryError, match="HTTP 302"):
        WebhookSender(receiver.url, retries=3, **FAST).send({"kind": "run_finished"})
    assert len(receiver.requests) == 1


def test_after_the_last_retry_the_error_names_url_status_and_tries(receiver: Receiver) -> None:
    receiver.script(Reply(502))
    with pytest.raises(WebhookDeliveryError) as raised:
        WebhookSender(receiver.url + "?token=abc", SECRET, retries=2, **FAST).send({"kind": "x"})
    assert len(receiver.requests) == 3
    message = str(raised.value)
    assert f"webhook POST to {receiver.url} failed after 3 tries: HTTP 502" in message
    assert "token" not in message and SECRET not in message


def test_a_slow_server_times_out_within_bounded_time(receiver: Receiver) -> None:
    receiver.script(Reply(hold_seconds=10))
    started = time.monotonic()
    with pytest.raises(WebhookDeliveryError, match="2 tries: no response: timed out"):
        WebhookSender(receiver.url, timeout=0.2, retries=1, **FAST).send({"kind": "x"})
    assert time.monotonic() - started < 8  # not the 10 s the server holds each request
    assert len(receiver.requests) == 2


def test_the_deadline_bounds_a_whole_delivery(receiver: Receiver) -> None:
    receiver.script(Reply(hold_seconds=10))
    sender = WebhookSender(receiver.url, timeout=0.2, retries=10, deadline=0.5, **FAST)
    started = time.monotonic()
    with pytest.raises(WebhookDeliveryError, match="timed out"):
        sender.send({"kind": "x"})
    assert time.monotonic() - started < 8  # not 11 tries, nor one 10 s hold
    # Tries of 0.2 s within a 0.5 s deadline: a busy machine may fit only one of them.
    assert 1 <= len(receiver.requests) <= 3


def test_connection_refused_is_retried_then_reported_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    url = f"http://alice:hunter2@127.0.0.1:{port}/hook?token=abc"
    with caplog.at_level(logging.DEBUG), pytest.raises(WebhookDeliveryError) as raised:
        WebhookSender(url, SECRET, retries=2, **FAST).send({"kind": "x"})
    message = str(raised.value)
    assert message == (
        f"webhook POST to http://127.0.0.1:{port}/hook failed after 3 tries: "
        "no response: connection refused"
    )
    assert raised.value.status is None
    logged = caplog.text + message + repr(WebhookSender(url, SECRET))
    assert len(caplog.records) == 2  # one line per retry
    for leaked in (SECRET, "hunter2", "token"):
        assert leaked not in logged


@pytest.mark.parametrize(
    ("status", "retry_after", "tries_done", "expected"),
    [
        (None, None, 1, 0.5),  # no response: back off
        (500, None, 2, 1.0),
        (503, None, 5, 4.0),  # capped
        (429, 2.0, 1, 2.0),
        (429, 60.0, 1, 5.0),  # Retry-After capped
        (408, None, 1, 0.5),
        (400, None, 1, None),
        (404, None, 1, None),
        (301, None, 1, None),
        (200, None, 1, None),
    ],
)
def test_retry_decisions(
    status: int | None, retry_after: float | None, tries_done: int, expected: float | None
) -> None:
    result = webhooks.TryResult(status, "", retry_after)
    assert retry_wait(result, tries_done, backoff_base=0.5) == expected


# ---- configuration and registration ---------------------------------------------------------------


def test_configuration_from_the_environment() -> None:
    assert config_from_env({}) is None
    assert config_from_env({webhooks.ENV_URL: "  "}) is None
    assert config_from_env({webhooks.ENV_URL: "https://hooks.example/x"}) == WebhookConfig(
        "https://hooks.example/x"
    )
    config = config_from_env(
        {
            webhooks.ENV_URL: "http://127.0.0.1:8080/x",
            webhooks.ENV_SECRET: SECRET,
            webhooks.ENV_TIMEOUT: "2.5",
            webhooks.ENV_RETRIES: "0",
            webhooks.ENV_KINDS: "breakpoint_raised, run_finished,",
        }
    )
    assert config == WebhookConfig(
        "http://127.0.0.1:8080/x",
        SECRET,
        2.5,
        0,
        frozenset({"breakpoint_raised", "run_finished"}),
    )
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (webhooks.ENV_URL, "ftp://example.com/x", "must be an http:// or https:// URL"),
        (webhooks.ENV_URL, "hooks.example.com/x", "must be an http:// or https:// URL"),
        (webhooks.ENV_URL, "http://example.com:port/x", "must be an http:// or https:// URL"),
        (webhooks.ENV_SECRET, "", "must not be empty"),
        (webhooks.ENV_TIMEOUT, "soon", "must be a number of seconds above 0 and at most 9"),
        (webhooks.ENV_TIMEOUT, "0", "must be a number of seconds"),
        (webhooks.ENV_TIMEOUT, "30", "must be a number of seconds"),
        (webhooks.ENV_TIMEOUT, "nan", "must be a number of seconds"),
        (webhooks.ENV_RETRIES, "-1", "must be a whole number from 0 to 10"),
        (webhooks.ENV_RETRIES, "2.5", "must be a whole number"),
        (webhooks.ENV_RETRIES, "11", "must be a whole number"),
        (webhooks.ENV_KINDS, "breakpoint raised", "must be a comma-separated list of kinds"),
    ],
)
def test_bad_values_name_the_variable_and_what_was_expected(
    variable: str, value: str, expected: str
) -> None:
    environ = {webhooks.ENV_URL: "http://127.0.0.1:1/x", variable: value}
    with pytest.raises(WebhookConfigError) as raised:
        config_from_env(environ)
    assert isinstance(raised.value, ValueError)
    message = str(raised.value)
    assert message.startswith(f"field '{variable}': {expected}")
    assert "got" in message


def test_a_bad_url_is_shown_without_its_credentials() -> None:
    with pytest.raises(WebhookConfigError) as raised:
        config_from_env({webhooks.ENV_URL: "ftp://bob:hunter2@example.com/x?key=1"})
    assert "hunter2" not in str(raised.value) and "key=1" not in str(raised.value)


def test_without_a_url_no_notifier_is_registered() -> None:
    plugins = plugins_with_webhook()
    assert "webhook" not in {n.name for n in plugins.notifiers}
    assert plugins.problems == []


def test_a_bad_setting_is_reported_as_a_plugin_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webhooks.ENV_URL, "http://127.0.0.1:1/x")
    monkeypatch.setenv(webhooks.ENV_RETRIES, "many")
    plugins = plugins_with_webhook()
    assert "webhook" not in {n.name for n in plugins.notifiers}
    assert any(webhooks.ENV_RETRIES in problem for problem in plugins.problems)


def test_the_engine_sends_only_the_configured_kinds(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(webhooks.ENV_URL, receiver.url)
    monkeypatch.setenv(webhooks.ENV_SECRET, SECRET)
    monkeypatch.setenv(webhooks.ENV_KINDS, "breakpoint_raised")
    plugins = plugins_with_webhook()
    plugins.muted.add("console")
    plugins.notify(Notification("run_finished", "run-1", "run completed", "3 tasks done"))
    plugins.notify(NOTE)
    [request] = receiver.requests
    assert request.headers["x-orch-event"] == "breakpoint_raised"
    assert json.loads(request.body)["task_id"] == "guarded"
    assert request.signed_with(SECRET)


def test_a_failing_webhook_is_logged_by_the_engine_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(webhooks.ENV_URL, f"http://127.0.0.1:{closed_port()}/x")
    monkeypatch.setenv(webhooks.ENV_SECRET, SECRET)
    monkeypatch.setenv(webhooks.ENV_RETRIES, "0")
    plugins = plugins_with_webhook()
    plugins.muted.add("console")
    plugins.notify(NOTE)
    assert "plugin webhook failed" in caplog.text
    assert "connection refused" in caplog.text
    assert SECRET not in caplog.text


def test_every_variable_is_documented() -> None:
    for name in ENV_NAMES:
        assert name in (webhooks.__doc__ or "")
        assert f"| `{name}` |" in webhooks.CONFIGURATION_DOC


# ---- end to end -----------------------------------------------------------------------------------


def webhook_plugin_installed() -> bool:
    plugins = hooks.load_plugins()
    loaded = {getattr(p, "__name__", "") for _, p in plugins.manager.list_name_plugin()}
    return "orchestration.plugins.webhook" in loaded


def test_orch_run_posts_a_signed_breakpoint(receiver: Receiver, tmp_path: Path) -> None:
    if not webhook_plugin_installed():
        pytest.skip(
            "orchestration.plugins.webhook is not loaded by `orch`: add the entry point "
            'webhook = "orchestration.plugins.webhook" to pyproject.toml and reinstall'
        )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "hooked",
            "tasks": [shell_task("design", "pass", tags=["architecture"])],
        },
    )
    environment = {webhooks.ENV_URL: receiver.url, webhooks.ENV_SECRET: SECRET}
    paused = orch(
        "run",
        str(plan),
        "--run-id",
        "wh-1",
        "--db",
        f"sqlite:///{tmp_path / 'state.db'}",
        "--quiet",
        env=environment,
        timeout=60,
    )
    assert paused.returncode == 3, paused.stderr
    raised = [r for r in receiver.requests if r.headers["x-orch-event"] == "breakpoint_raised"]
    assert len(raised) == 1, receiver.requests
    payload = json.loads(raised[0].body)
    assert (payload["kind"], payload["run_id"], payload["task_id"]) == (
        "breakpoint_raised",
        "wh-1",
        "design",
    )
    assert payload["title"].startswith("architecture_decision")
    assert raised[0].signed_with(SECRET)
