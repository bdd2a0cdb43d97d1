"""A run's health: score, parts, per-agent figures, waves and anomalies (as `orch health`)."""

from __future__ import annotations

from fastapi import APIRouter

from orchestration.engine.fleet_health import run_health
from orchestration.shapes.fleet import HealthOut
from orchestration.web.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/runs/{run_id:id}/health", response_model=HealthOut)
def get_health(run_id: str, store: StoreDep) -> HealthOut:
    """The run's health score 0-100 and its parts, agents, waves and anomalies."""
    report: HealthOut = run_health(store, run_id)
    return report
