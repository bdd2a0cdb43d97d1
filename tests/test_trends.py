"""Trends across runs of one plan: figures per run from a real store, the direction of each change,
and `orch report` (with --trends) on real runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.errors import NotFoundError
from orchestration.core.models import (
    BreakpointRecord,
    QualityRecord,
    RunRecord,
    TaskRecord,
    TaskSpec,
)
from orchestration.store import Batch, Store
from orchestration.views.trends import change, plan_trends, run_figures
from tests.helpers import PY, orch, write_plan

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


def spec(task_id: str) -> TaskSpec:
    return TaskSpec.model_validate({"id": task_id, "action": {"kind": "shell", "run": ["true"]}})


def pause(run_id: str, task_id: str, created: datetime, action: str = "pause") -> BreakpointRecord:
    return BreakpointRecord(
        0, run_id, task_id, "risky", "after", "high", action, "look", "open", created
    )


def stored_run(
    store: Store,
    run_id: str,
    created: datetime,
    tasks: list[tuple[str, str, int]],
    scores: list[tuple[float, bool]],
    plan: str = "web",
) -> None:
    """tasks: (id, state, attempts); scores: (score, gate passed) of the run's attempts."""
    run = RunRecord(run_id, plan, "/p/plan.yaml", "/w", "running", created, created)
    records = [TaskRecord(run_id, t, state, spec(t), attempts=n) for t, state, n in tasks]
    store.create_run(run, records)
    quality = [
        QualityRecord(run_id, tasks[0][0], i + 1, score, passed, {}, [], created)
        for i, (score, passed) in enumerate(scores)
    ]
    store.commit(run_id, Batch(quality=quality))


def test_the_figures_of_one_run(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        stored_run(
            store,
            "r1",
            T0,
            [("a", "completed", 3), ("b", "failed", 2), ("c", "cancelled", 0), ("d", "pending", 0)],
            [(0.2, False), (0.6, False), (1.0, True), (0.4, False)],
        )
        ids = store.commit(
            "r1",
            Batch(
                breakpoints=[
                    pause("r1", "a", T0),
                    pause("r1", "b", T0 + timedelta(minutes=1)),
                    pause("r1", "b", T0, action="auto"),
                ]
            ),
        )
        store.commit(
            "r1",
            Batch(
                resolutions=[
                    (ids[0], "approve", "", "alice", T0 + timedelta(minutes=10)),
                    (ids[1], "retry", "", "bob", T0 + timedelta(minutes=21)),
                    (ids[2], "auto", "", "engine", T0),
                ]
            ),
        )
        figures = run_figures(store, store.get_run("r1"))
    finally:
        store.close()
    assert (figures.tasks, figures.completed, figures.failed, figures.cancelled) == (4, 1, 1, 1)
    assert figures.attempts == 5 and figures.attempts_per_task == 2.5  # over the 2 tasks that ran
    assert figures.scored_attempts == 4
    assert figures.mean_quality == pytest.approx(0.55)
    assert figures.gate_pass_rate == 0.25
    assert (figures.breakpoints, figures.auto_breakpoints) == (2, 1)
    assert figures.mean_seconds_to_resolution == pytest.approx((600 + 1200) / 2)
    assert figures.as_dict()["started_at"] == T0.isoformat()


def test_a_run_with_nothing_measured_has_no_rates(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        stored_run(store, "empty", T0, [("a", "pending", 0)], [])
        figures = run_figures(store, store.get_run("empty"))
    finally:
        store.close()
    assert figures.mean_quality is None and figures.gate_pass_rate is None
    assert figures.attempts_per_task is None and figures.mean_seconds_to_resolution is None


@pytest.mark.parametrize(
    ("before", "after", "higher_is_better", "direction", "verdict"),
    [
        (0.5, 0.8, True, "up", "better"),
        (0.8, 0.5, True, "down", "worse"),
        (3.0, 1.0, False, "down", "better"),
        (1.0, 3.0, False, "up", "worse"),
        (0.800, 0.805, True, "flat", "same"),  # within 1%
        (0.0, 0.0, False, "flat", "same"),
        (None, 0.5, True, None, None),
        (0.5, None, True, None, None),
    ],
)
def test_the_direction_and_verdict_of_a_change(
    before: float | None,
    after: float | None,
    higher_is_better: bool,
    direction: str | None,
    verdict: str | None,
) -> None:
    moved = change("m", before, after, higher_is_better)
    assert (moved.direction, moved.verdict) == (direction, verdict)


def test_plan_trends_are_oldest_first_for_that_plan_only(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        # stored out of order; another plan's run in between
        stored_run(store, "late", T0 + timedelta(days=2), [("a", "completed", 1)], [(1.0, True)])
        stored_run(store, "early", T0, [("a", "completed", 3)], [(0.2, False)] * 2 + [(0.9, True)])
        stored_run(store, "else", T0 + timedelta(days=1), [("a", "failed", 1)], [(0, False)], "api")
        trends = plan_trends(store, "web")
        assert [r.run_id for r in trends.runs] == ["early", "late"]
        assert trends.changes[0]["mean_quality"].direction is None
        assert (
            trends.overall["mean_quality"].verdict,
            trends.overall["gate_pass_rate"].verdict,
            trends.overall["attempts_per_task"].verdict,
        ) == ("better", "better", "better")
        assert trends.overall["attempts_per_task"].direction == "down"
        assert [r.run_id for r in plan_trends(store, "web", last=1).runs] == ["late"]
        with pytest.raises(NotFoundError, match="no runs of plan 'nope'"):
            plan_trends(store, "nope")
        data = json.loads(json.dumps(trends.as_dict()))
        assert data["runs"][1]["changes"]["gate_pass_rate"] == {
            "from": pytest.approx(1 / 3, abs=1e-4),
            "to": 1.0,
            "direction": "up",
            "verdict": "better",
        }
    finally:
        store.close()


# ---- orch report, on real runs ----------------------------------------------------------------


def flaky_plan(directory: Path, fails_first: bool) -> Path:
    """Two tasks; `build` fails its first attempt in the first version of the plan."""
    code = (
        "import os, sys; sys.exit(1 if os.environ['ORCH_ATTEMPT'] == '1' else 0)"
        if fails_first
        else "pass"
    )
    return write_plan(
        directory,
        {
            "version": 1,
            "name": "shop",
            "defaults": {"retry": {"max_attempts": 3, "base_seconds": 0, "jitter": False}},
            "tasks": [
                {"id": "build", "action": {"kind": "shell", "run": [PY, "-c", code]}},
                {
                    "id": "test",
                    "depends_on": ["build"],
                    "action": {"kind": "shell", "run": [PY, "-c", "pass"]},
                },
            ],
        },
    )


@pytest.fixture
def two_runs(tmp_path: Path) -> list[str]:
    db = ["--db", f"sqlite:///{tmp_path / 'state.db'}"]
    for run, fails in (("shop-1", True), ("shop-2", False)):
        plan = flaky_plan(tmp_path / run, fails)
        done = orch("run", str(plan), "--run-id", run, *db, "--quiet")
        assert done.returncode == 0, done.stderr
    return db


def test_orch_report_trends_json_shows_each_run_and_the_direction(
    two_runs: list[str],
) -> None:
    shown = orch("report", "--trends", "--plan", "shop", "--json", *two_runs)
    assert shown.returncode == 0, shown.stderr
    trends = json.loads(shown.stdout)["trends"]
    assert trends["plan"] == "shop"
    first, second = trends["runs"]
    assert (first["run"], second["run"]) == ("shop-1", "shop-2")
    assert first["tasks"] == 2 and first["completed"] == 2 and first["failed"] == 0
    assert first["attempts"] == 3 and first["attempts_per_task"] == 1.5
    assert first["gate_pass_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert second["attempts_per_task"] == 1.0 and second["gate_pass_rate"] == 1.0
    assert trends["overall"]["attempts_per_task"] == {
        "from": 1.5,
        "to": 1.0,
        "direction": "down",
        "verdict": "better",
    }
    assert trends["overall"]["gate_pass_rate"]["verdict"] == "better"
    assert trends["overall"]["failed"]["verdict"] == "same"
    # without --plan, the plan of the given (or newest) run
    by_run = json.loads(orch("report", "shop-1", "--trends", "--json", *two_runs).stdout)
    assert [r["run"] for r in by_run["trends"]["runs"]] == ["shop-1", "shop-2"]


def test_orch_report_trends_table_has_arrows_and_a_summary(two_runs: list[str]) -> None:
    shown = orch("report", "--trends", *two_runs)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "plan 'shop': 2 runs, oldest first" in text
    assert text.index("shop-1") < text.index("shop-2")
    assert "1.00 ↓" in text  # attempts per task fell from 1.50
    assert "100% ↑" in text  # gate pass rate rose from 67%
    assert "first run to last:" in text
    assert "attempts/task ↓ better" in text and "gate pass ↑ better" in text


def test_orch_report_of_one_run(two_runs: list[str]) -> None:
    data = json.loads(orch("report", "shop-1", "--json", *two_runs).stdout)
    assert data["run"]["run"] == "shop-1" and data["run"]["attempts"] == 3
    newest = json.loads(orch("report", "--json", *two_runs).stdout)
    assert newest["run"]["run"] == "shop-2"
    text = orch("report", "shop-1", *two_runs).stdout
    assert "run shop-1 of plan 'shop'" in text and "67%" in text


def test_orch_report_names_a_plan_without_runs(two_runs: list[str]) -> None:
    shown = orch("report", "--trends", "--plan", "nothing-here", *two_runs)
    assert shown.returncode == 2
    assert "no runs of plan 'nothing-here'" in shown.stderr


def test_plan_name_is_read_from_the_store_not_the_file(tmp_path: Path) -> None:
    """Runs of two plan files that share a name are one history; figures need no plan file."""
    db = ["--db", f"sqlite:///{tmp_path / 'state.db'}"]
    plan = flaky_plan(tmp_path / "one", False)
    assert orch("run", str(plan), "--run-id", "x-1", *db, "--quiet").returncode == 0
    plan.unlink()
    data: dict[str, Any] = json.loads(orch("report", "--trends", "--json", *db).stdout)
    assert [r["run"] for r in data["trends"]["runs"]] == ["x-1"]
    assert "nothing to compare yet" in orch("report", "--trends", *db).stdout
