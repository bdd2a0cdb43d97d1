"""Learning from outcomes: Beta statistics per action kind and tag, calibrated confidence, and the
statistics rebuilt from a real store across runs of one plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.models import EventRecord, QualityRecord, RunRecord, TaskRecord, TaskSpec
from orchestration.engine.learning import OutcomeStats, outcome_stats_from_store
from orchestration.store import Batch, Store
from tests.helpers import PY, orch, write_plan

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def test_with_no_outcomes_the_rate_is_the_prior_mean_and_confidence_is_untouched() -> None:
    stats = OutcomeStats()
    assert stats.success_rate("agent") == 0.5
    assert stats.success_rate("agent", ["db"]) == 0.5
    assert stats.attempts("agent") == 0
    assert stats.calibrated_confidence(0.83, "agent", ["db"]) == 0.83
    assert OutcomeStats(alpha=3, beta=1).success_rate("agent") == 0.75


def test_the_kind_rate_is_the_beta_posterior_mean() -> None:
    stats = OutcomeStats()
    for success in (True, True, True, False):
        stats.update("shell", [], success)
    assert stats.attempts("shell") == 4
    assert stats.success_rate("shell") == pytest.approx((1 + 3) / (2 + 4))
    assert stats.success_rate("agent") == 0.5  # other kinds are separate


def test_a_tag_with_few_outcomes_barely_moves_the_kind_rate_and_many_dominate() -> None:
    stats = OutcomeStats()
    for _ in range(20):
        stats.update("agent", ["docs"], True)
    stats.update("agent", ["db"], False)
    kind = stats.kind_rate("agent")  # 21 outcomes, 20 passed: 21 / 23
    assert kind == pytest.approx(21 / 23)
    one_failure = stats.success_rate("agent", ["db"])
    assert one_failure == pytest.approx((0 + 5 * kind) / (1 + 5))
    assert 0.7 < one_failure < kind
    for _ in range(40):
        stats.update("agent", ["db"], False)
    assert stats.success_rate("agent", ["db"]) < 0.15
    # a tag without outcomes adds nothing: the rate is the kind's
    assert stats.success_rate("agent", ["never-seen"]) == stats.kind_rate("agent")


def test_several_tags_are_weighted_by_their_outcomes() -> None:
    stats = OutcomeStats()
    for _ in range(30):
        stats.update("agent", ["docs"], True)
    for _ in range(10):
        stats.update("agent", ["db"], False)
    p = stats.kind_rate("agent")
    docs = (30 + 5 * p) / (30 + 5)
    db = (0 + 5 * p) / (10 + 5)
    both = stats.success_rate("agent", ["docs", "db", "docs"])  # a repeated tag counts once
    assert both == pytest.approx((30 * docs + 10 * db) / 40)


def test_an_overconfident_agent_is_marked_down_by_its_track_record() -> None:
    stats = OutcomeStats()
    for i in range(20):
        stats.update("agent", ["api"], i % 2 == 0, confidence=0.9)  # says 0.9, passes half
    rate = stats.success_rate("agent", ["api"])
    bias = 0.9 - rate
    weight = 20 / (20 + 10)
    assert stats.calibrated_confidence(0.9, "agent", ["api"]) == pytest.approx(0.9 - weight * bias)
    assert stats.calibrated_confidence(0.9, "agent", ["api"]) < 0.7
    assert stats.calibrated_confidence(0.1, "agent", ["api"]) == 0.0  # clamped
    learned = stats.learned("agent", ["api"], 0.9).context()
    assert learned["historical_attempts"] == 20
    assert learned["historical_success_rate"] == pytest.approx(rate, abs=1e-4)
    assert learned["calibrated_confidence"] < 0.7


def test_a_well_calibrated_agent_keeps_its_own_figure() -> None:
    stats = OutcomeStats()
    for i in range(40):
        stats.update("agent", [], i % 4 != 0, confidence=0.74)  # says ~0.74, passes 75%
    # the posterior mean (1 + 30) / (2 + 40) = 0.738 matches the mean report: no correction
    assert stats.calibrated_confidence(0.6, "agent") == pytest.approx(0.6, abs=0.01)


def test_a_bad_prior_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        OutcomeStats(alpha=0)


# ---- rebuilt from a real store ----------------------------------------------------------------


def spec(
    task_id: str, kind: str = "shell", tags: list[str] | None = None, **extra: Any
) -> TaskSpec:
    action: dict[str, Any] = {"kind": "shell", "run": ["true"]}
    if kind == "agent":
        action = {"kind": "agent", "prompt": "p", "command": ["x", "{prompt}"]}
    return TaskSpec.model_validate({"id": task_id, "action": action, "tags": tags or [], **extra})


def stored_run(
    store: Store, run_id: str, plan: str, created: datetime, attempts: list[tuple[Any, ...]]
) -> None:
    """attempts: (task spec, attempt, gate passed, confidence or None, dry run)."""
    specs = {a[0].id: a[0] for a in attempts}
    run = RunRecord(run_id, plan, f"/p/{plan}.yaml", "/w", "completed", created, created)
    store.create_run(run, [TaskRecord(run_id, t, "completed", s) for t, s in specs.items()])
    batch = Batch()
    for task, attempt, passed, confidence, dry in attempts:
        batch.quality.append(
            QualityRecord(run_id, task.id, attempt, 1.0 if passed else 0.0, passed, {}, [], created)
        )
        data: dict[str, Any] = {"attempt": attempt, "result": {"dry_run": True} if dry else {}}
        if confidence is not None:
            data["confidence"] = confidence
        batch.events.append(EventRecord(run_id, "step", task.id, data, created))
    store.commit(run_id, batch)


def test_stats_are_rebuilt_from_every_run_of_the_plan_and_only_that_plan(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        coder = spec("code", "agent", ["api"], confidence=0.6)
        script = spec("lint", "shell")
        stored_run(
            store,
            "r1",
            "web",
            T0,
            [
                (coder, 1, False, 0.9, False),
                (coder, 2, True, 0.9, False),
                (script, 1, True, None, False),
            ],
        )
        stored_run(
            store,
            "r2",
            "web",
            T0 + timedelta(days=1),
            [(coder, 1, False, None, False), (script, 1, True, None, True)],  # dry run: skipped
        )
        stored_run(store, "other", "not-web", T0, [(coder, 1, True, 1.0, False)])
        stats = outcome_stats_from_store(store, "web")
        assert stats.attempts("agent") == 3 and stats.attempts("shell") == 1
        agent = stats.kinds["agent"]
        assert (agent.successes, agent.failures) == (1, 2)
        # confidences from the step events; the task's planner confidence when there is none
        assert agent.confidence_sum == pytest.approx(0.9 + 0.9 + 0.6)
        assert stats.tags[("agent", "api")].count == 3
        assert stats.success_rate("agent", ["api"]) < 0.5
        without = outcome_stats_from_store(store, "web", exclude_runs=["r2"])
        assert without.attempts("agent") == 2
        assert outcome_stats_from_store(store, "nobody").attempts("agent") == 0
        assert outcome_stats_from_store(store, "web", alpha=9, beta=1).kind_rate("shell") == (
            pytest.approx(10 / 11)
        )
    finally:
        store.close()


def test_stats_learn_from_real_runs_of_a_plan(tmp_path: Path) -> None:
    """Two real runs: a task that fails its first attempt and passes its second, each time."""
    db = f"sqlite:///{tmp_path / 'state.db'}"
    for run in ("learn-1", "learn-2"):
        work = tmp_path / run
        plan = write_plan(
            work,
            {
                "version": 1,
                "name": "learn",
                "defaults": {"retry": {"max_attempts": 3, "base_seconds": 0, "jitter": False}},
                "tasks": [
                    {
                        "id": "flaky",
                        "tags": ["net"],
                        "action": {
                            "kind": "shell",
                            "run": [
                                PY,
                                "-c",
                                "import os, sys; sys.exit(0 if os.environ['ORCH_ATTEMPT'] != '1' "
                                "else 1)",
                            ],
                        },
                    }
                ],
            },
        )
        done = orch("run", str(plan), "--run-id", run, "--db", db, "--quiet")
        assert done.returncode == 0, done.stderr
    store = Store.open(db)
    try:
        stats = outcome_stats_from_store(store, "learn")
    finally:
        store.close()
    assert stats.attempts("shell") == 4
    assert stats.kinds["shell"].successes == 2
    assert stats.success_rate("shell", ["net"]) == pytest.approx(0.5)
    # the shell task reports no confidence: the planner's 1.0 was used for all four
    assert stats.kinds["shell"].confidence_sum == pytest.approx(4.0)
    assert stats.calibrated_confidence(1.0, "shell", ["net"]) == pytest.approx(1.0 - (4 / 14) * 0.5)
