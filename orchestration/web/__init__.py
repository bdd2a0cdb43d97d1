"""The review dashboard and REST API (`orch serve`): FastAPI over the same store as the engine."""

from __future__ import annotations

from orchestration.web import paths  # noqa: F401  the `id` route convertors, before any route
