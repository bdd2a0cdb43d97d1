"""The loop in-process on a real SQLite file: engine errors, liveness, restored figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.core.errors import OrchestrationError
from orchestration.engine import attempts, conclusion
from orchestration.engine.loop import Orchestrator, build_engine, run_is_live
from orchestration.engine.plan import load_plan
from orchestration.pluginhost.hooks import load_plugins
from orchestration.resilience.runs import STALE_RUN_SECONDS
from orchestration.store import Store
from tests.helpers import shell_task, write_plan


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def start(tmp_path: Path, store: Store, tasks: list[dict], **defaults: object) -> Orchestrator:
    plan = load_plan(
        write_plan(tmp_path, {"version": 1, "name": "p", "defaults": defaults, "tasks": tasks})
    )
    return Orchestrator.start(
        plan, store, run_id="r", engine=build_engine(plan, load_plugins(entry_points=False))
    )


def test_an_engine_error_in_every_attempt_stops_at_the_attempt_limit(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(attempts, "run_action", broken)
    monkeypatch.setattr(conclusion, "CRASH_RETRY_SECONDS", 0.0)  # no wait between tries
    orchestrator = start(tmp_path, store, [shell_task("a", "pass")], retry={"max_attempts": 2})
    summary = orchestrator.run_until_stopped()
    assert summary.state == "paused"
    (bp,) = store.breakpoints("r", state="open")
    assert bp.rule == "engine_error" and "disk on fire" in bp.message
    assert store.task("r", "a").attempts == 2


def test_a_live_run_cannot_be_resumed_twice(tmp_path: Path, store: Store) -> None:
    orchestrator = start(tmp_path, store, [shell_task("a", "pass")])
    orchestrator.tick()
    run = store.get_run("r")
    assert run.state == "running" and run_is_live(run, datetime.now(UTC))
    with pytest.raises(OrchestrationError, match="another engine"):
        Orchestrator.resume(store, "r")
    later = datetime.now(UTC) + timedelta(seconds=STALE_RUN_SECONDS + 1)
    assert not run_is_live(run, later)
    orchestrator.run_until_stopped()
    assert not run_is_live(store.get_run("r"), datetime.now(UTC))


def test_run_figures_continue_after_a_resume(tmp_path: Path, store: Store) -> None:
    failing = "raise SystemExit(1)"
    orchestrator = start(
        tmp_path,
        store,
        [shell_task("a", failing), shell_task("b", failing)],
        retry={"max_attempts": 1},
    )
    first = orchestrator.run_until_stopped()
    assert first.state == "paused"
    resumed = Orchestrator.resume(store, "r", force=True)
    assert resumed.tally.run_failures == 2 and resumed.tally.consecutive_failures == 2
    assert resumed.tally.task_seconds["a"] > 0
