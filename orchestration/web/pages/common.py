"""Rendering a page: the templates, their filters, and what every page gets (user, CSRF token)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from orchestration import __version__
from orchestration.web.auth import Authenticator, Principal
from orchestration.web.paths import url_segment

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATES = ("pending", "ready", "running", "blocked", "retrying", "completed", "failed", "cancelled")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def diff_line_class(line: str) -> str:
    if line.startswith(("+++", "---", "diff --git", "index ")):
        return "meta"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return ""


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters["when"] = _when
    templates.env.filters["seconds"] = _seconds
    templates.env.filters["diff_class"] = diff_line_class
    templates.env.filters["seg"] = url_segment  # an id in a link: `/runs/{{ run.id|seg }}`
    templates.env.globals["STATES"] = STATES
    templates.env.globals["version"] = __version__
    return templates


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page for the signed-in reviewer: adds their name and the CSRF token for forms."""
    principal: Principal | None = getattr(request.state, "principal", None)
    auth: Authenticator = request.app.state.auth
    csrf = auth.csrf_token(principal.session) if principal and principal.session else ""
    full = {"user": principal.name if principal else None, "csrf": csrf, **context}
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, full, status_code=status_code)
