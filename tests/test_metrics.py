"""`/metrics` scraped while a real run works (held by a gate file and a breakpoint), checked
against the store; the collector's queue wait checked with a fixed clock."""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from orchestration.operations.metrics import (
    StoreCollector,
    metrics_registry,
)
from orchestration.pluginhost.hooks import load_plugins
from orchestration.resilience.run_launch import launch_run
from orchestration.resilience.spending import spending_of
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import held_code, shell_task, wait_for_file, write_plan

TOKEN = "test-token-0123456789abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_LIMIT_S = 120
RULES = (
    "breakpoints:\n"
    "  - name: look_first\n"
    "    at: before\n"
    "    when: \"'review-me' in tags\"\n"
    "    action: pause\n"
    '    message: "look at {task_id}"\n'
)
PAID = (
    "import json, os; json.dump({'cost': 0.25, 'tokens': 1200}, "
    "open(os.environ['ORCH_RESULT'], 'w'))"
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    plugins = load_plugins(entry_points=False)
    with Store.open(sqlite_url) as store:
        app = create_app(ServerConfig(db_url=sqlite_url, token=TOKEN), store=store, plugins=plugins)
        with TestClient(app, follow_redirects=False) as test_client:
            yield test_client


def held_run(tmp_path: Path, url: str) -> tuple[Path, int]:
    """A run in its own process: `paid` done, `look` at a breakpoint, `held` running until the
    gate exists, `r1` and `r2` ready behind it (one worker)."""
    gate, started = tmp_path / "gate", tmp_path / "started"
    (tmp_path / "rules.yaml").write_text(RULES)
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "metrics",
            "rules": ["rules.yaml"],
            "concurrency": {"max_workers": 1},
            "tasks": [
                shell_task("paid", PAID, priority=9),
                shell_task("look", "pass", tags=["review-me"], priority=8),
                shell_task("held", held_code(gate, started), priority=7, depends_on=["paid"]),
                shell_task("r1", "pass", priority=1),
                shell_task("r2", "pass", priority=1),
            ],
        },
    )
    launched = launch_run(plan, db_url=url, run_id="m1", log_path=tmp_path / "run.log")
    wait_for_file(started)
    return gate, launched.pid


def wait_for_process(pid: int) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def test_metrics_during_a_run_match_the_store(
    client: TestClient, sqlite_url: str, tmp_path: Path
) -> None:
    assert client.get("/metrics").status_code == 401
    gate, pid = held_run(tmp_path, sqlite_url)
    try:
        answer = client.get("/metrics", headers=AUTH)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        found = samples(answer.text)
        with Store.open(sqlite_url) as store:
            counts = store.task_state_counts("m1")["m1"]
            spent = spending_of(store, "m1", store.get_run("m1").updated_at)
            open_bps = store.breakpoints("m1", state="open")
            ready = [t for t in store.tasks("m1") if t.state == "ready"]
        assert counts.get("running") == 1 and counts.get("blocked") == 1
        for state in ("pending", "ready", "running", "blocked", "completed", "failed"):
            assert found[("orch_tasks", (("run", "m1"), ("state", state)))] == counts.get(state, 0)
        assert (
            found[("orch_run_info", (("plan", "metrics"), ("run", "m1"), ("state", "running")))]
            == 1
        )
        run = (("run", "m1"),)
        assert found[("orch_queue_depth", run)] == len(ready) == 2
        assert found[("orch_queue_wait_seconds", run)] >= 0
        assert found[("orch_breakpoints_open", run)] == len(open_bps) == 1
        assert found[("orch_attempts_total", run)] == spent.run.attempts == 2
        assert found[("orch_cost_total", run)] == pytest.approx(spent.run.cost) == 0.25
        assert found[("orch_tokens_total", run)] == spent.run.tokens == 1200
        assert found[("orch_task_attempt_seconds_count", run)] == 1  # `paid` ended
        assert found[("orch_breakpoint_answer_seconds_count", run)] == 0
    finally:
        gate.touch()
        cancelled = client.post("/api/v1/runs/m1/cancel", headers=AUTH, json={"reason": "done"})
        assert cancelled.status_code == 200, cancelled.text
        wait_for_process(pid)


def test_queue_wait_breakers_and_schedule_lag_with_a_fixed_clock(
    sqlite_url: str, tmp_path: Path
) -> None:
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan

    plan = write_plan(
        tmp_path / "p",
        {"version": 1, "name": "q", "tasks": [shell_task("a", "pass"), shell_task("b", "pass")]},
    )
    loaded = load_plan(plan)
    with Store.open(sqlite_url) as store:
        orchestrator = Orchestrator.start(loaded, store, run_id="q", engine=build_engine(loaded))
        orchestrator.flush()
        moves = {m.task_id: m.at for m in store.transitions("q") if m.dest == "ready"}
        assert set(moves) == {"a", "b"}
        now = max(moves.values()) + timedelta(seconds=42)
        store.update_breaker("shell:git", lambda _current: _breaker("shell:git", "open"))

        _fired_late(store, plan, now, seconds=7.5)
        found = samples(_exposition(store, now))
    expected_wait = (now - min(moves.values())).total_seconds()
    assert found[("orch_queue_wait_seconds", (("run", "q"),))] == pytest.approx(expected_wait)
    assert found[("orch_queue_depth", (("run", "q"),))] == 2
    assert found[("orch_breaker_state", (("key", "shell:git"), ("state", "open")))] == 1
    assert found[("orch_breaker_state", (("key", "shell:git"), ("state", "closed")))] == 0
    assert found[("orch_schedule_lag_seconds", (("schedule", "nightly"),))] == 7.5
    assert isinstance(StoreCollector(store).clock(), type(now))


def _fired_late(store: Store, plan: Path, now: Any, seconds: float) -> None:
    """A schedule `nightly` whose two occurrences fired on time, then `seconds` late."""
    from orchestration.core.trigger_records import FiringRecord, ScheduleRecord

    store.triggers.add_schedule(
        ScheduleRecord(
            name="nightly",
            plan_path=str(plan),
            cron="0 2 * * *",
            tz="UTC",
            params={},
            overlap="skip",
            catch_up_seconds=3600.0,
            jitter_seconds=0.0,
            triggers=[],
            enabled=True,
            created_at=now,
            updated_at=now,
        )
    )
    for late, due in ((0.0, now - timedelta(days=1)), (seconds, now)):
        fired = due + timedelta(seconds=late)
        store.triggers.insert_firing(
            FiringRecord(
                key=f"cron:nightly:{due.isoformat()}",
                schedule="nightly",
                kind="cron",
                due_at=due,
                outcome="started",
                fired_at=fired,
                updated_at=fired,
            )
        )


def _breaker(key: str, state: str) -> Any:
    from orchestration.core.models import BreakerRecord

    return BreakerRecord(key, state, reason="test")


def _exposition(store: Store, now: Any) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics_registry(store, clock=lambda: now)).decode()
