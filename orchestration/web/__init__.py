"""The review dashboard and REST API (`orch serve`): FastAPI over the same store as the engine."""

from __future__ import annotations
