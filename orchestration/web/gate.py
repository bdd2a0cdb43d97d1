"""What a request passes before its body is read: credentials from its headers, then its size.

FastAPI reads and parses a request's body before it runs the endpoint's dependencies, so the
authentication dependency alone let anyone (any web page, by a form post) make the server read
and keep a body of any size before answering 401. `CredentialsFirst` checks the credentials from
the headers and answers 401 (or 429) without reading a byte of the body; `BodyLimit` answers 413
for a declared size over the limit at once, and for a streamed body as soon as it passes it.
Both are plain ASGI middlewares, so their answers are the app's JSON errors with its headers.
"""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration.web.auth import UNSAFE_METHODS, authenticate, bearer_scheme
from orchestration.web.errors import ApiError, error_response

OPEN_WRITES = frozenset({"/login"})  # the only path that takes a body without credentials
SIGNED_WRITES = "/api/v1/webhooks/"  # forge webhooks: checked by their HMAC signature instead
TOO_LARGE = 413


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit; FastAPI passes HTTPExceptions on."""

    def __init__(self) -> None:
        super().__init__(TOO_LARGE, "request body too large")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app sees it
    return None


def carries_body(scope: Scope) -> bool:
    """Whether the request says it sends a body (or may: a write method)."""
    if scope["method"] in UNSAFE_METHODS:
        return True
    if any(name == b"transfer-encoding" for name, _ in scope.get("headers", [])):
        return True
    length = declared_length(scope)
    return length is not None and length > 0


class CredentialsFirst:
    """Refuses a request with a body and without valid credentials, before reading the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in OPEN_WRITES
            or path.startswith(SIGNED_WRITES)
            or not carries_body(scope)
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: reading the body here would be a bug
        try:
            authenticate(request, await bearer_scheme(request))
        except ApiError as refusal:
            await error_response(request, refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body over `max_bytes`: by its Content-Length unread, or counted as it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await _too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:  # read outside an endpoint's error handling (none today)
            if started:
                raise
            await _too_large(scope, receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope)
    limit = request.app.state.config.max_body_bytes
    message = f"the request body is larger than this server's limit of {limit} bytes"
    await error_response(request, ApiError(TOO_LARGE, message))(scope, receive, send)
