"""The login form (token in, session cookie out) and logout; the only pages open to anyone."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestration.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Authenticator,
    SessionExpired,
    check_failure_limit,
    client_address,
    require_principal,
    same_origin,
)
from orchestration.web.errors import ApiError
from orchestration.web.pages.common import render

router = APIRouter(include_in_schema=False)

HOME = "/runs"


def safe_next(target: str | None) -> str:
    """Only a path on this server: never another site (`//evil`, `/\\evil`, `https:`)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return HOME
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or bool(request.app.state.config.secure_cookies)


def _signed_in(request: Request) -> bool:
    cookie = request.cookies.get(SESSION_COOKIE)
    auth: Authenticator = request.app.state.auth
    try:
        return bool(cookie) and auth.read_session(cookie or "") is not None
    except SessionExpired:
        return False


def _form(request: Request, *, next_: str, error: str = "", status: int = 200) -> HTMLResponse:
    value = secrets.token_urlsafe(16)
    response = render(
        request,
        "login.html",
        {"login_csrf": value, "next": next_, "error": error},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, why: str | None = None) -> Response:
    target = safe_next(next)
    if _signed_in(request):
        return RedirectResponse(target, 303)
    notes = {"expired": "Your session has expired: log in again."}
    return _form(request, next_=target, error=notes.get(why or "", ""))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    wait = request.app.state.limiter.acquire(f"login:{client_address(request)}")
    if wait > 0:
        raise ApiError(429, f"too many login attempts: wait {wait:.0f}s")
    check_failure_limit(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not same_origin(request) or not expected or not hmac.compare_digest(expected, csrf_token):
        raise ApiError(403, "the login form expired or came from another site: reload it")
    auth: Authenticator = request.app.state.auth
    if not auth.token_matches(token.strip()):
        request.app.state.auth_failures.record_failure(client_address(request))  # a guess
        return _form(request, next_=safe_next(next), error="That token is not right.", status=401)
    response = RedirectResponse(safe_next(next), 303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(name),
        max_age=int(auth.session_seconds),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", dependencies=[Depends(require_principal)])
def logout() -> Response:
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
