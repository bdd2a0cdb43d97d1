"""Python actions run in the engine's own thread (`concurrency.inline_python`), in batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store
from tests.helpers import is_legal_path, write_plan


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def python_task(task_id: str, call: str, deps: list[str] | None = None, **args: object) -> dict:
    return {
        "id": task_id,
        "action": {"kind": "python", "call": f"tests.property_actions:{call}", "args": args},
        "depends_on": deps or [],
    }


def start(tmp_path: Path, store: Store, tasks: list[dict], workers: int = 4) -> Orchestrator:
    spec = {
        "version": 1,
        "name": "inline",
        "concurrency": {"max_workers": workers, "inline_python": True},
        "defaults": {"retry": {"max_attempts": 2, "base_seconds": 0, "jitter": False}},
        "tasks": tasks,
    }
    plan = load_plan(write_plan(tmp_path, spec))
    engine = build_engine(plan, load_plugins(entry_points=False))
    return Orchestrator.start(plan, store, run_id="r", engine=engine)


class CountingStore(Store):
    """The real store, counting its commits."""

    commits = 0

    def commit(self, run_id, batch, **options):  # type: ignore[no-untyped-def]
        CountingStore.commits += 1
        return super().commit(run_id, batch, **options)


def test_inline_attempts_run_in_dependency_order_with_few_commits(tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    tasks = [
        python_task(f"t{i}", "record", [f"t{i - 3}"] if i >= 3 else [], log=str(log), name=f"t{i}")
        for i in range(60)
    ]
    store = CountingStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    assert isinstance(store, CountingStore)
    try:
        orchestrator = start(tmp_path, store, tasks, workers=4)
        CountingStore.commits = 0
        summary = orchestrator.run_until_stopped()
        assert summary.state == "completed"
        order = log.read_text().split()
        assert sorted(order) == sorted(t["id"] for t in tasks)  # each ran exactly once
        for i in range(3, 60):
            assert order.index(f"t{i - 3}") < order.index(f"t{i}")
        # Starts and outcomes of a batch share commits: far fewer than two per task.
        assert CountingStore.commits < 60
        # Never more tasks running at once than max_workers, as the stored history shows.
        running, peak = 0, 0
        for move in store.transitions("r"):
            running += (move.dest == "running") - (move.source == "running")
            peak = max(peak, running)
        assert peak <= 4
        for task in tasks:
            history = [(m.source, m.dest, m.trigger) for m in store.transitions("r", task["id"])]
            assert is_legal_path(history)
    finally:
        store.close()


def test_ctrl_c_in_an_inline_action_stops_the_run_and_resume_retries_it(
    tmp_path: Path, store: Store
) -> None:
    marker = tmp_path / "interrupted"
    orchestrator = start(
        tmp_path,
        store,
        [python_task("a", "ok"), python_task("b", "interrupt_once", ["a"], marker=str(marker))],
    )
    with pytest.raises(KeyboardInterrupt):
        orchestrator.run_until_stopped()
    assert marker.exists()
    assert store.task("r", "a").state == "completed"
    assert store.task("r", "b").state == "running"  # as stored when Ctrl-C came
    resumed = Orchestrator.resume(store, "r", force=True)
    assert resumed.run_until_stopped().state == "completed"
    assert store.task("r", "b").attempts == 2


def test_sys_exit_in_an_inline_action_fails_the_attempt_not_the_engine(
    tmp_path: Path, store: Store
) -> None:
    orchestrator = start(tmp_path, store, [python_task("a", "exit_now"), python_task("b", "ok")])
    orchestrator.run_until_stopped()
    assert store.task("r", "b").state == "completed"
    assert store.task("r", "a").attempts == 2  # each attempt failed; the engine went on
    steps = [e for e in store.events("r") if e.kind == "step" and e.task_id == "a"]
    assert len(steps) == 2
    assert all("SystemExit: 4" in step.data["output_tail"] for step in steps)
