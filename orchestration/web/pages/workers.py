"""The workers page: each worker process, its attempts under way and its figures."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestration.shapes.records import worker_out
from orchestration.web.deps import StoreDep
from orchestration.web.pages.common import render

router = APIRouter(include_in_schema=False)


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, store: StoreDep) -> HTMLResponse:
    found = [worker_out(w) for w in store.workers()]
    return render(request, "workers.html", {"workers": found, "now": datetime.now(UTC)})
