"""Credentials before the body: a request that carries a body is authenticated before it is read.

FastAPI reads and parses a request's body before it runs the endpoint's dependencies, so the
authentication dependency alone let anyone (any web page, by a form post) make the server read
and keep a body of any size before answering 401. This plain ASGI middleware checks the
credentials from the headers first and answers 401 (or 429) without reading a byte of the body.
The size of an accepted body is limited by FastAPI's `max_body_size` (413).
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration.web.auth import UNSAFE_METHODS, authenticate, bearer_scheme
from orchestration.web.errors import ApiError, error_response

OPEN_WRITES = frozenset({"/login"})  # the only path that takes a body without credentials


def carries_body(scope: Scope) -> bool:
    """Whether the request says it sends a body (or may: a write method)."""
    if scope["method"] in UNSAFE_METHODS:
        return True
    names = {name for name, _ in scope.get("headers", [])}
    return b"transfer-encoding" in names or b"content-length" in names


class CredentialsFirst:
    """Refuses a request with a body and without valid credentials, before reading the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_WRITES or not carries_body(scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: reading the body here would be a bug
        try:
            authenticate(request, await bearer_scheme(request))
        except ApiError as refusal:
            await error_response(request, refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)
