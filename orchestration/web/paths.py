"""Ids in URL paths: quoted whole in every link, and read back whole from a request's path.

A stored run id may hold any character (runs made before ids were slugs: `feature/login #42`).
Links quote each id as one path segment (`quote(id, safe="")`, the `seg` template filter). The
server decodes `%2F` to `/` before routing, which would split such an id in two; `EncodedPaths`
keeps an encoded `/` (and `%`) encoded for the router, and the `id` and `idpath` convertors
decode the matched value, so `/runs/feature%2Flogin%20%2342` reaches run `feature/login #42`.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

_KEPT_ENCODED = (b"%2f", b"%25")  # a slash or a percent sign inside one segment


def url_segment(value: object) -> str:
    """`value` as one URL path segment: every reserved character quoted, `/` too."""
    return quote(str(value), safe="")


class IdConvertor(Convertor[str]):
    """One path segment, decoded: the `{run_id:id}` of a route."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return url_segment(value)


class IdPathConvertor(Convertor[str]):
    """The rest of the path, decoded: the `{key:idpath}` of a route (a key may hold `/`)."""

    regex = ".+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="/")


register_url_convertor("id", IdConvertor())
register_url_convertor("idpath", IdPathConvertor())


def routing_path(raw_path: bytes) -> str:
    """The path to route on: each segment decoded, except `/` and `%`, which stay encoded."""
    segments = []
    for raw in raw_path.decode("latin-1").split("/"):
        segment = unquote(raw)
        segments.append(segment.replace("%", "%25").replace("/", "%2F"))
    return "/".join(segments)


class EncodedPaths:
    """Routes a path holding `%2F` or `%25` on its segments, not on its decoded slashes.

    Without either, the decoded path has no `%` and no extra `/`: it is routed as it is, and
    the convertors' decoding changes nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] in ("http", "websocket") else None
        if raw and any(marker in raw.lower() for marker in _KEPT_ENCODED):
            root = scope.get("root_path", "")
            path = routing_path(raw)
            scope = {**scope, "path": path if path.startswith(root) else root + path}
        await self.app(scope, receive, send)
