"""The review dashboard and REST API (`orch serve`): FastAPI over the same store as the engine.

Imports views and every layer below; never the CLI nor a plugin.
"""

from __future__ import annotations

from orchestration.web import paths  # noqa: F401  the `id` route convertors, before any route
