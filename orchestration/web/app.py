"""The FastAPI application: the API, the pages, static files, security headers, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration import __version__
from orchestration.operations.metrics import metrics_registry
from orchestration.pluginhost.hooks import Plugins
from orchestration.store import Store
from orchestration.web.announcer import ResolutionAnnouncer
from orchestration.web.api import PREFIX, api_router, trigger_events
from orchestration.web.auth import Authenticator, require_principal
from orchestration.web.config import ServerConfig
from orchestration.web.errors import error_body, install_error_handlers
from orchestration.web.gate import BodyLimit, CredentialsFirst
from orchestration.web.metrics import router as metrics_router
from orchestration.web.pages import page_router
from orchestration.web.pages.common import make_templates
from orchestration.web.paths import EncodedPaths
from orchestration.web.ratelimit import FailedAuthLimiter, RateLimiter
from orchestration.web.streams import StreamHub

STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
DESCRIPTION = (
    "The REST API of `orch serve`: runs, tasks, transition history, breakpoints (list, show "
    "with context, resolve one or many), decisions and their explanations, quality results, "
    "and a server-sent-events stream of a run's new events.\n\n"
    "Authenticate with `Authorization: Bearer TOKEN` (the token `orch serve` printed), or with "
    "the session cookie of the dashboard's login form; a write with the cookie must send the "
    'page\'s CSRF token in `X-CSRF-Token`. Errors are `{"error": {"code", "message"}}`.'
)


class SecurityHeaders:
    """Adds the headers every answer carries (a plain ASGI middleware: streams pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class AllowedHosts:
    """Refuses a Host header other than the served names.

    So a site whose name was pointed at 127.0.0.1 (DNS rebinding) cannot talk to the dashboard
    through a visitor's browser.
    """

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...]) -> None:
        self.app = app
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            host = headers.get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.hosts:
                body = error_body("bad_request", f"unexpected Host header '{host[:100]}'")
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    config: ServerConfig, *, store: Store | None = None, plugins: Plugins | None = None
) -> FastAPI:
    """The app over `store` (opened from `config.db_url` when not given, closed at shutdown).

    Resolutions are announced to `plugins` (the installed ones unless given): the
    `on_breakpoint_resolved` hook and every notifier, the ORCH_WEBHOOK_* webhook among them.
    """
    relay = ResolutionAnnouncer(plugins) if plugins is not None else ResolutionAnnouncer.from_env()
    owned = store is None
    opened = store if store is not None else Store.open(config.db_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            relay.close()
            if owned:
                opened.close()

    app = FastAPI(
        title="orchestration",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # Swagger UI would load scripts from a CDN: the JSON document is served
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.store = opened
    app.state.announcer = relay
    app.state.auth = Authenticator(config.token, config.session_seconds)
    app.state.limiter = RateLimiter(config.rate_per_second, config.rate_burst)
    app.state.auth_failures = FailedAuthLimiter(config.auth_failures_per_minute)
    app.state.streams = StreamHub(opened, config.stream_poll_seconds, config.streams_per_client)
    app.state.templates = make_templates()
    app.state.metrics = metrics_registry(opened)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(CredentialsFirst)  # before the size: a stranger learns nothing more
    app.add_middleware(SecurityHeaders)
    app.add_middleware(EncodedPaths)  # an id holding `/` stays one path segment
    if config.allowed_hosts:
        app.add_middleware(AllowedHosts, hosts=config.allowed_hosts)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router())
    app.include_router(trigger_events.webhook_router)  # signed by HMAC, not by the API token
    app.include_router(page_router())
    app.include_router(metrics_router)

    @app.get(
        f"{PREFIX}/openapi.json",
        include_in_schema=False,
        dependencies=[Depends(require_principal)],
    )
    def openapi_document() -> dict[str, Any]:
        return app.openapi()

    return app
