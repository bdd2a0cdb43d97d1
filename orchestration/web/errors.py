"""Errors as JSON `{"error": {"code", "message"}}` for the API; a page or the login for people."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestration.core.errors import NotFoundError, OrchestrationError, StoreError, TaskStateError
from orchestration.resilience.overrides import OverrideError
from orchestration.store import StoreConflict

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
MACHINE_PATHS = frozenset({"/metrics"})  # read by programs: errors as JSON, never a login page
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success, with the status, a stable code and a message for people."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def status_of(error: OrchestrationError) -> int:
    """The HTTP status for an engine error.

    Unknown ids 404, changed parameters that cannot apply 422, lost races and wrong states 409.
    """
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, OverrideError):
        return 422
    if isinstance(error, StoreConflict | TaskStateError):
        return 409
    if isinstance(error, StoreError):
        return 503
    return 400


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX) or request.url.path in MACHINE_PATHS


def error_response(request: Request, error: ApiError) -> Response:
    """The answer to `error`: JSON under /api/, else a page (a 401 sends people to the login)."""
    if _wants_json(request):
        return JSONResponse(
            error_body(error.code, error.message), status_code=error.status, headers=error.headers
        )
    if error.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        reason = "expired" if error.code == "session_expired" else "required"
        return RedirectResponse(f"/login?next={quote(target, safe='')}&why={reason}", 303)
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": error.status, "message": error.message, "user": None},
        status_code=error.status,
        headers=error.headers,
    )


def _validation_message(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    problems = []
    for item in exc.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        problems.append({"field": where, "message": str(item.get("msg", ""))})
    if any(item.get("type") == "json_invalid" for item in exc.errors()):
        return 400, "the request body is not valid JSON", problems
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    return 422, f"{first['field']}: {first['message']}", problems


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page or endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 413:
            limit = request.app.state.config.max_body_bytes
            message = f"the request body is larger than this server's limit of {limit} bytes"
        headers = dict(exc.headers or {})
        return error_response(request, ApiError(exc.status_code, message, headers=headers))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        status, message, problems = _validation_message(exc)
        if _wants_json(request):
            body = error_body(CODES[status], message, problems=problems)
            return JSONResponse(body, status_code=status)
        return error_response(request, ApiError(status, message))

    @app.exception_handler(OrchestrationError)
    async def on_engine_error(request: Request, exc: OrchestrationError) -> Response:
        return error_response(request, ApiError(status_of(exc), str(exc)))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        message = f"internal error ({type(exc).__name__}); nothing stored was lost"
        return error_response(request, ApiError(500, message))
