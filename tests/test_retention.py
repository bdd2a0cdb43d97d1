"""Retention: which runs `orch prune` deletes (never one with work left), deleting every row of
them on SQLite and PostgreSQL, plan retention, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.core.lifecycle import Move
from orchestration.core.models import (
    BreakpointRecord,
    DecisionRecord,
    EventRecord,
    QualityRecord,
    RunRecord,
    RunSetting,
    TaskRecord,
    TaskSpec,
)
from orchestration.resilience.dead_letters import capture_dead_letter
from orchestration.resilience.interventions import intervene
from orchestration.resilience.retention import choose, prune
from orchestration.store import Batch, Store

NOW = datetime(2025, 6, 1, tzinfo=UTC)
DAY = 86_400.0
LAUNCH = "from orchestration.cli.root import main; main()"


def run_record(
    run_id: str,
    state: str,
    finished_days_ago: float | None,
    retention: dict[str, Any] | None = None,
) -> RunRecord:
    spec: dict[str, Any] = {
        "version": 1,
        "name": "p",
        "tasks": [{"id": "a", "action": {"kind": "shell", "run": ["true"]}}],
    }
    if retention is not None:
        spec["retention"] = retention
    finished = NOW - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
    created = NOW - timedelta(days=100)
    plan = {"spec": spec, "path": "/p.yaml", "workdir": "/w", "rule_files": []}
    return RunRecord(
        run_id, "p", "/p.yaml", "/w", state, created, finished or created, finished, plan
    )


def add_run(store: Store, run: RunRecord) -> None:
    """A run with a row in every table that holds a run's rows."""
    a = TaskSpec.model_validate({"id": "a", "action": {"kind": "shell", "run": ["true"]}})
    store.create_run(run, [TaskRecord(run.id, "a", "running", a)])
    at = run.created_at
    bp = BreakpointRecord(0, run.id, "a", "r", "after", "high", "pause", "m", "resolved", at)
    store.commit(
        run.id,
        Batch(
            moves=[Move("a", "running", "failed", "fail", "broke", "engine")],
            breakpoints=[bp],
            decisions=[DecisionRecord(run.id, "a", 1, "retry", "r", "why", {}, at)],
            quality=[QualityRecord(run.id, "a", 1, 0.5, False, {}, [], at)],
            events=[EventRecord(run.id, "step", "a", {"attempt": 1}, at)],
            settings=[RunSetting(run.id, "rule", "r", False, "ann", "", at)],
        ),
    )
    assert capture_dead_letter(store, run.id, "a") is not None
    intervene(store, run.id, "skip", task_id="a", actor="ann", reason="gone", now=at)
    assert store.get_run(run.id).finished_at == run.finished_at  # a skip reopens nothing


# ---- choosing -------------------------------------------------------------------------------------


def test_only_finished_runs_past_their_retention_are_chosen() -> None:
    runs = [
        run_record("old-done", "completed", 40),
        run_record("new-done", "completed", 5),
        run_record("old-failed", "failed", 40),
        run_record("old-cancelled", "cancelled", 40),
        run_record("running", "running", None),
        run_record("paused", "paused", None),
        run_record("plan-keeps", "completed", 40, {"keep_days": 90}),
        run_record("plan-short", "completed", 3, {"keep_days": 2}),
        run_record("plan-keeps-failed", "failed", 40, {"keep_failed": True}),
    ]
    chosen = {
        c.run.id: c for c in choose(runs, older_than_seconds=30 * DAY, keep_failed=False, now=NOW)
    }
    assert {r for r, c in chosen.items() if c.prune} == {
        "old-done",
        "old-failed",
        "old-cancelled",
        "plan-short",
    }
    assert chosen["running"].why == "not finished (running)"
    assert "within 90d (its plan's retention.keep_days)" in chosen["plan-keeps"].why
    assert "past 2d (its plan's retention.keep_days)" in chosen["plan-short"].why
    assert chosen["plan-keeps-failed"].why == "failed, kept (its plan's retention.keep_failed)"
    assert chosen["old-done"].finished_before == NOW - timedelta(days=30)

    keep_failed = choose(runs, older_than_seconds=30 * DAY, keep_failed=True, now=NOW)
    assert "old-failed" not in {c.run.id for c in keep_failed if c.prune}
    ignoring = choose(
        runs, older_than_seconds=30 * DAY, keep_failed=False, now=NOW, ignore_plan_retention=True
    )
    assert {"plan-keeps", "plan-keeps-failed"} <= {c.run.id for c in ignoring if c.prune}
    assert "plan-short" not in {c.run.id for c in ignoring if c.prune}
    # without --older-than only plans that set a retention are pruned
    only_plans = choose(runs, older_than_seconds=None, keep_failed=False, now=NOW)
    assert {c.run.id for c in only_plans if c.prune} == {"plan-short"}


# ---- deleting ----------------------------------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


def test_prune_deletes_every_row_of_old_finished_runs_only(store: Store) -> None:
    add_run(store, run_record("old", "completed", 40))
    add_run(store, run_record("young", "completed", 2))
    add_run(store, run_record("paused", "paused", None))
    expected = {
        "runs": 1,
        "run_plans": 1,
        "tasks": 1,
        "transitions": 2,  # fail, skip
        "breakpoints": 1,
        "decisions": 1,
        "quality_results": 1,
        "events": 2,  # step, intervention
        "run_settings": 1,
        "dead_letters": 1,
        "interventions": 1,
    }
    assert store.run_row_counts("old") == expected
    choices = choose(store.list_runs(), older_than_seconds=30 * DAY, keep_failed=False, now=NOW)
    dry = prune(store, choices, dry_run=True)
    assert dry.pruned == ["old"] and dict(dry.rows) == expected
    assert store.get_run("old").state == "completed"
    seen: list[str] = []
    done = prune(store, choices, progress=lambda choice, rows: seen.append(choice.run.id))
    assert done.pruned == seen == ["old"] and dict(done.rows) == expected
    assert {r.id for r in store.list_runs()} == {"young", "paused"}
    assert store.run_row_counts("old") == dict.fromkeys(expected, 0)
    assert store.run_row_counts("young")["dead_letters"] == 1  # others untouched


def test_a_run_resumed_after_it_was_chosen_is_left_alone(store: Store) -> None:
    add_run(store, run_record("old", "completed", 40))
    choices = choose(store.list_runs(), older_than_seconds=30 * DAY, keep_failed=False, now=NOW)
    store.commit("old", Batch(run_state="running"))  # `orch resume` got there first
    result = prune(store, choices)
    assert result.pruned == [] and result.changed == ["old"]
    assert store.get_run("old").state == "running"
    assert store.prune_run("nope", NOW) is None


def test_cli_prune(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store:
        add_run(store, run_record("old", "failed", 40))
        add_run(store, run_record("paused", "paused", None))

    def orch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", LAUNCH, "prune", *args, "--db", sqlite_url],
            capture_output=True,
            text=True,
            timeout=120,
            env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )

    bad = orch("--older-than", "a while")
    assert bad.returncode == 2 and "--older-than: expected a duration" in bad.stderr
    kept = json.loads(orch("--older-than", "30d", "--keep-failed", "--json").stdout)
    assert kept["pruned"] == [] and {k["run"] for k in kept["kept"]} == {"old", "paused"}
    dry = orch("--older-than", "30d", "--dry-run")
    assert dry.returncode == 0 and "would delete run old (failed" in dry.stdout
    done = json.loads(orch("--older-than", "30d", "--json").stdout)
    assert (
        done["pruned"] == ["old"]
        and done["rows"]["dead_letters"] == 1
        and done["rows"]["runs"] == 1
    )
    with Store.open(sqlite_url) as store:
        assert [r.id for r in store.list_runs()] == ["paused"]
