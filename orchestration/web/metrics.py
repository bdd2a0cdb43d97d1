"""`GET /metrics`: the store's figures in Prometheus' text format, behind the API's token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from orchestration.web.auth import require_principal

router = APIRouter(dependencies=[Depends(require_principal)])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Every figure read from the store now (prometheus_client's exposition format).

    Prometheus sends the token as `authorization: {credentials: TOKEN}` in its scrape config.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = generate_latest(request.app.state.metrics)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
