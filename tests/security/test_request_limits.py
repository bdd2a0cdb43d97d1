"""Request bodies against the real `orch serve`: refused unread without credentials, and capped.

A stranger (any web page, by a form post) sends a big body to a write endpoint: the server must
answer 401 from the headers alone, without reading the body or growing. A signed-in caller's body
above the limit is refused with 413 as soon as the limit is passed, whether it declared its size
or streamed it in chunks.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.test_web_api import Server, bearer, paused_run, start_server, stop_server

MIB = 1024 * 1024
LIMIT = MIB  # the server's --max-body-bytes in these tests
BIG = 200 * MIB  # the size of the attack
CHUNK = b"x" * (64 * 1024)
ENDPOINT = "/api/v1/breakpoints/1/resolve"
ALLOWED_GROWTH = 40 * MIB  # the server's memory may move a little; the body is 200 MiB


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    paused_run(tmp_path, sqlite_url)
    started = start_server(
        sqlite_url, tmp_path / "token", "--max-body-bytes", str(LIMIT), "--auth-failures", "1000"
    )
    try:
        yield started
    finally:
        stop_server(started)


def raw_request(server: Server, head: str, body_part: bytes) -> tuple[int, str]:
    """Send the head and only a part of the body, then read the answer: (status, raw text).

    An answer that arrives now was given without the rest of the body: the server cannot have
    read what was never sent.
    """
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + body_part)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    text = received.decode("latin-1")
    return int(text.split(" ", 2)[1]), text


def head(server: Server, length: int | None, token: str | None = None) -> str:
    host = server.base.removeprefix("http://")
    lines = [f"POST {ENDPOINT} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n\r\n"


def big_body() -> Iterator[bytes]:
    for _ in range(BIG // len(CHUNK)):
        yield CHUNK


def rss(server: Server) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


def test_a_big_body_without_a_token_is_refused_from_the_headers_alone(server: Server) -> None:
    status, _ = raw_request(server, head(server, BIG), CHUNK)
    assert status == 401
    # a streamed body says nothing of its size: only the missing credentials refuse it
    status, _ = raw_request(server, head(server, None), b"10000\r\n" + CHUNK)
    assert status == 401
    # a wrong token is no better than none
    wrong = head(server, None, token="wrong-token-0123456789")
    status, _ = raw_request(server, wrong, b"10000\r\n" + CHUNK)
    assert status == 401


def test_sending_the_whole_big_body_without_a_token_does_not_grow_the_server(
    server: Server,
) -> None:
    before = rss(server)
    with httpx.Client(timeout=120) as client:
        declared = client.post(
            server.base + ENDPOINT,
            content=big_body(),
            headers={"Content-Length": str(BIG), "Content-Type": "application/json"},
        )
        chunked = client.post(server.base + ENDPOINT, content=big_body())
    assert declared.status_code == 401 and chunked.status_code == 401
    assert chunked.json()["error"]["code"] == "unauthorized"
    grown = rss(server) - before
    assert grown < ALLOWED_GROWTH, f"the server grew by {grown / MIB:.0f} MiB"
    # and it still answers
    assert httpx.get(server.base + "/api/v1/runs", headers=bearer(server.token)).status_code == 200


def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(server: Server) -> None:
    status, answer = raw_request(server, head(server, BIG, token=server.token), CHUNK)
    assert status == 413 and "content-type: application/json" in answer.lower()


def test_a_streamed_body_over_the_limit_gets_413_and_one_under_it_is_read(
    server: Server,
) -> None:
    headers = {**bearer(server.token), "Content-Type": "application/json"}

    def chunks(total: int) -> Iterator[bytes]:
        sent = 0
        while sent < total:
            piece = CHUNK[: total - sent]
            sent += len(piece)
            yield piece

    before = rss(server)
    with httpx.Client(timeout=120) as client:
        over = client.post(server.base + ENDPOINT, content=chunks(20 * MIB), headers=headers)
        under = client.post(server.base + ENDPOINT, content=chunks(LIMIT // 2), headers=headers)
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "too_large"
    assert str(LIMIT) in over.json()["error"]["message"]
    assert under.status_code == 400  # read and parsed: not JSON, which says so
    assert rss(server) - before < ALLOWED_GROWTH
