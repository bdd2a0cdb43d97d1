"""Guessing the token against the real `orch serve`: failed checks per client address are limited.

After the allowed failures in a minute the address gets 429 with Retry-After for every bearer
token it presents (a right one too: answering it differently would keep the guessing going);
a signed-in browser session and the requests made before the limit was reached are not affected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_web_api import Server, bearer, start_server, stop_server

FAILURES = 5  # the server's --auth-failures in these tests


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    started = start_server(sqlite_url, tmp_path / "token", "--auth-failures", str(FAILURES))
    try:
        yield started
    finally:
        stop_server(started)


def logged_in(server: Server) -> httpx.Client:
    client = httpx.Client(base_url=server.base, follow_redirects=False, timeout=10)
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    done = client.post(
        "/login",
        data={"token": server.token, "name": "ann", "next": "/runs", "csrf_token": csrf[1]},
    )
    assert done.status_code == 303
    return client


def test_wrong_tokens_are_limited_per_address_and_right_ones_count_nothing(
    server: Server,
) -> None:
    browser = logged_in(server)
    with httpx.Client(base_url=server.base, timeout=10) as client:
        for _ in range(3 * FAILURES):  # successes take nothing from the allowance
            assert client.get("/api/v1/runs", headers=bearer(server.token)).status_code == 200
        wrong = [
            client.get("/api/v1/runs", headers=bearer(f"wrong-{n}-0123456789")).status_code
            for n in range(FAILURES)
        ]
        assert wrong == [401] * FAILURES
        limited = client.get("/api/v1/runs", headers=bearer("wrong-again-0123456789"))
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # the right token is answered the same while the address waits: no oracle
        assert client.get("/api/v1/runs", headers=bearer(server.token)).status_code == 429
        # and so is a guess through the login form
        form = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        guess = client.post(
            "/login", data={"token": "guess-0123456789", "csrf_token": csrf[1], "next": "/runs"}
        )
        assert guess.status_code == 429
        # a request without credentials guesses nothing: it is still told to authenticate
        assert client.get("/api/v1/runs").status_code == 401
    # the reviewer signed in before goes on working
    try:
        assert browser.get("/api/v1/runs").status_code == 200
        assert browser.get("/runs").status_code == 200
    finally:
        browser.close()


def test_wrong_tokens_in_the_login_form_count_too(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=10) as client:
        codes = []
        for n in range(FAILURES + 1):
            form = client.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf is not None
            data = {"token": f"guess-{n}-0123456789", "csrf_token": csrf[1], "next": "/runs"}
            codes.append(client.post("/login", data=data).status_code)
        assert codes == [401] * FAILURES + [429]
        assert client.get("/api/v1/runs", headers=bearer(server.token)).status_code == 429
