"""Who may call the server: one secret token, sent as a bearer header or traded for a session.

A session is a signed cookie (HttpOnly, SameSite=Strict) holding an id, an expiry and the
reviewer's name; its key is derived from the token, so a new token ends every session. A write
made with a session cookie must carry the session's CSRF token (a form field or a header); a
bearer call needs none, as a browser never adds that header by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestration.core.errors import OrchestrationError
from orchestration.web.errors import ApiError

logger = logging.getLogger(__name__)

TOKEN_BYTES = 32  # 256 bits of randomness; printed as 43 URL-safe characters
MIN_TOKEN_CHARS = 16  # a token file holding less than this is refused
TOKEN_FILE_NAME = "dashboard-token"
SESSION_COOKIE = "orch_session"
LOGIN_CSRF_COOKIE = "orch_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_NAME_CHARS = 64
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NAME_ALLOWED = re.compile(r"[^\w .@+-]")

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="The dashboard token (printed by `orch serve` on first start).",
)


# ---- the token file ---------------------------------------------------------------------------


def default_token_file() -> Path:
    """`$XDG_CONFIG_HOME/orchestration/dashboard-token`, else under ~/.config."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "orchestration" / TOKEN_FILE_NAME


@dataclass(frozen=True, slots=True)
class TokenSource:
    token: str
    path: Path
    created: bool  # True: new, so print it once


def load_or_create_token(path: Path, *, rotate: bool = False) -> TokenSource:
    """The token kept in `path`; a new one (mode 0600) when there is none or `rotate` is set."""
    if path.exists() and not rotate:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise OrchestrationError(f"cannot read the token file {path}: {error}") from None
        if len(token) < MIN_TOKEN_CHARS:
            raise OrchestrationError(
                f"the token file {path} holds no usable token (at least {MIN_TOKEN_CHARS} "
                "characters); delete it or start with --rotate-token"
            )
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "token file %s is readable by others (mode %o); chmod 600 it", path, mode
            )
        return TokenSource(token, path, created=False)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that existed
    except OSError as error:
        raise OrchestrationError(f"cannot write the token file {path}: {error}") from None
    return TokenSource(token, path, created=True)


# ---- sessions and CSRF tokens -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    expires: float  # Unix time
    name: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, once authenticated."""

    kind: str  # bearer | session
    name: str  # who resolves breakpoints: the session's name, or "api"
    rate_key: str
    session: Session | None = None


def clean_name(raw: str) -> str:
    """A reviewer's name as stored with resolutions: printable, short, never empty."""
    name = _NAME_ALLOWED.sub("", raw).strip()[:MAX_NAME_CHARS]
    return name or "reviewer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionExpired(Exception):
    pass


class Authenticator:
    """Checks the token, signs and reads session cookies, and makes and checks CSRF tokens."""

    def __init__(
        self, token: str, session_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._token = token.encode("utf-8")
        self._key = hmac.new(self._token, b"orchestration dashboard sessions", "sha256").digest()
        self.session_seconds = session_seconds
        self._clock = clock
        # Rate limits are kept per token; the token itself is never used as a dictionary key.
        self.token_key = "token:" + hashlib.sha256(self._token).hexdigest()[:16]

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8"), self._token)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), "sha256").digest())

    def new_session(self, name: str, *, expires: float | None = None) -> str:
        """A cookie value for a new session of `name`."""
        body = {
            "sid": secrets.token_urlsafe(16),
            "exp": self._clock() + self.session_seconds if expires is None else expires,
            "name": clean_name(name),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._sign(payload)}"

    def read_session(self, cookie: str) -> Session | None:
        """The session a cookie holds; None if forged or malformed; SessionExpired when old."""
        payload, _, signature = cookie.partition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = json.loads(_unb64(payload))
            session = Session(str(body["sid"]), float(body["exp"]), clean_name(str(body["name"])))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.expires <= self._clock():
            raise SessionExpired
        return session

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf:" + session.sid)

    def csrf_ok(self, session: Session, value: str) -> bool:
        return bool(value) and hmac.compare_digest(value, self.csrf_token(session))


# ---- the request dependencies -----------------------------------------------------------------


def client_address(request: Request) -> str:
    """The peer's address: what failed authentications and event streams are counted by."""
    return request.client.host if request.client else "unknown"


def _too_many_failures(wait: float) -> ApiError:
    return ApiError(
        429,
        f"too many failed authentications from this address: wait {wait:.0f}s",
        headers={"Retry-After": str(max(1, round(wait + 0.5)))},
    )


def check_failure_limit(request: Request) -> None:
    """429 while this address has used up its failed token checks.

    Checked before the token is, and for a right one too: answering a right token differently
    from a wrong one would let the guessing go on at full speed. A session cookie is not checked
    here: it is signed, so nothing can be guessed with it, and a signed-in reviewer goes on
    working while someone else on the same address guesses tokens.
    """
    wait = request.app.state.auth_failures.blocked_for(client_address(request))
    if wait > 0:
        raise _too_many_failures(wait)


def _token_failed(request: Request) -> None:
    request.app.state.auth_failures.record_failure(client_address(request))


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller, from the bearer header or the session cookie; 401 or 429 (ApiError) if none.

    Reads headers only, never the body: `gate.CredentialsFirst` calls it before a body is read.
    """
    auth: Authenticator = request.app.state.auth
    if request.headers.get("authorization") is not None:
        check_failure_limit(request)
        if credentials is None or not auth.token_matches(credentials.credentials):
            _token_failed(request)
            raise ApiError(
                401,
                "invalid token: send the token `orch serve` printed as 'Authorization: Bearer "
                "TOKEN'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Principal("bearer", "api", auth.token_key)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            session = auth.read_session(cookie)
        except SessionExpired:
            raise ApiError(
                401, "the session has expired: log in again", code="session_expired"
            ) from None
        if session is not None:
            return Principal("session", session.name, auth.token_key, session)
        raise ApiError(401, "invalid session cookie: log in again")
    raise ApiError(
        401,
        "authentication required: send 'Authorization: Bearer TOKEN' or log in at /login",
        headers={"WWW-Authenticate": "Bearer"},
    )


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site.

    Sec-Fetch-Site is what current browsers send; Origin is checked too when it names a site
    (a privacy setting may send `null` for the page's own forms).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return site is not None or origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _check_csrf(request: Request, principal: Principal) -> None:
    if request.method not in UNSAFE_METHODS or principal.session is None:
        return
    if not same_origin(request):
        raise ApiError(403, "cross-site request refused")
    value = request.headers.get(CSRF_HEADER, "")
    content_type = request.headers.get("content-type", "")
    if not value and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # cached: the endpoint reads the same form
        field = form.get(CSRF_FIELD)
        value = field if isinstance(field, str) else ""
    auth: Authenticator = request.app.state.auth
    if not auth.csrf_ok(principal.session, value):
        raise ApiError(403, "missing or wrong CSRF token: reload the page and try again")


async def require_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Authenticate, rate-limit and CSRF-check one request; its caller for the endpoint."""
    principal = authenticate(request, credentials)
    wait = request.app.state.limiter.acquire(principal.rate_key)
    if wait > 0:
        raise ApiError(
            429,
            f"too many requests for this token: wait {wait:.1f}s",
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )
    await _check_csrf(request, principal)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
