"""Helpers of the trigger tests: plans that write a marker, waiting on the store for runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestration.core.models import RunRecord
from orchestration.core.trigger_records import FiringRecord
from orchestration.store import Store
from tests.helpers import PY, held_code, write_plan

RUN_WAIT_S = 180  # seconds a launched run may take to finish before the test fails


def marker_plan(directory: Path, name: str = "nightly", **extra: Any) -> Path:
    """A plan whose one task writes `out-{who}.txt` (parameter `who`, default `world`)."""
    code = "import pathlib; pathlib.Path('out-{who}.txt').write_text('{who}')"
    plan = {
        "version": 1,
        "name": name,
        "params": {"who": "world"},
        "tasks": [{"id": "write", "action": {"kind": "shell", "run": [PY, "-c", code]}}],
        **extra,
    }
    return write_plan(directory, plan, f"{name}.yaml")


def held_plan(directory: Path, gate: Path, name: str = "held", **extra: Any) -> Path:
    """A plan whose task waits for `gate` (the test creates it); grace 0.2 s on SIGTERM."""
    plan = {
        "version": 1,
        "name": name,
        "concurrency": {"shutdown_grace_seconds": 0.2},
        "tasks": [{"id": "hold", "action": {"kind": "shell", "run": [PY, "-c", held_code(gate)]}}],
        **extra,
    }
    return write_plan(directory, plan, f"{name}.yaml")


def wait_until(check: Callable[[], Any], what: str, timeout: float = RUN_WAIT_S) -> Any:
    """Poll `check` until it returns something true (a condition the test controls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def finished_run(url: str, run_id: str) -> RunRecord:
    def check() -> RunRecord | None:
        with Store.open(url) as store:
            try:
                run = store.get_run(run_id)
            except Exception:
                return None
            return run if run.state in ("completed", "failed", "cancelled") else None

    result: RunRecord = wait_until(check, f"run {run_id} to finish")
    return result


def firings(url: str, schedule: str | None = None) -> list[FiringRecord]:
    with Store.open(url) as store:
        return store.triggers.firings(schedule)


def run_ids(url: str) -> list[str]:
    with Store.open(url) as store:
        return sorted(r.id for r in store.list_runs())
