"""Worker processes: where each runs, what it holds now and how its attempts went."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from orchestration.shapes.records import WorkerOut, worker_out
from orchestration.web.deps import StoreDep

router = APIRouter(tags=["workers"])


class WorkersOut(BaseModel):
    workers: list[WorkerOut]


@router.get("/workers", response_model=WorkersOut)
def list_workers(store: StoreDep) -> WorkersOut:
    """Every worker process recorded, by name: as `orch workers --json`."""
    return WorkersOut(workers=[worker_out(w) for w in store.workers()])
