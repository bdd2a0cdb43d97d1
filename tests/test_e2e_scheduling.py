"""Scheduling end to end: risk gate, dry run, error classes, named retries, explain, guards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.core.models import ErrorRules
from orchestration.engine.actions import ActionOutcome, classify_error
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store
from tests.helpers import orch, orch_json, shell_task, write_plan

QUIET_RULES = (
    "breakpoints:\n"
    "  - {name: consecutive_failures, enabled: false}\n"
    "  - {name: consecutive_failures_before, enabled: false}\n"
)


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def test_the_risk_gate_holds_high_risk_low_confidence_work_until_approved(tmp_path: Path) -> None:
    marker = tmp_path / "ran"  # outside the workdir: the step changes no file there
    (tmp_path / "work").mkdir()
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "gate",
            "workdir": "work",
            "tasks": [
                shell_task("safe", "pass"),
                shell_task(  # after running, the agent reports it is sure of the result
                    "risky",
                    f"import json, os; open({str(marker)!r}, 'w').close(); "
                    "json.dump({'confidence': 0.95}, open(os.environ['ORCH_RESULT'], 'w'))",
                    risk="high",
                    confidence=0.5,
                ),
                shell_task("sure", "pass", risk="high", confidence=0.9),
            ],
        },
    )
    paused = orch("run", str(plan), "--run-id", "g", "--quiet", *db_args(tmp_path))
    assert paused.returncode == 3, paused.stderr
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    assert bp["task"] == "risky" and bp["rule"] == "risk_gate" and "0.50" in bp["message"]
    assert not marker.exists()
    orch("breakpoints", "resolve", str(bp["id"]), "--approve", *db_args(tmp_path))
    resumed = orch("resume", "g", "--quiet", *db_args(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert marker.exists()


def test_dry_run_records_high_risk_tasks_without_running_them(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "dry",
            "tasks": [
                shell_task("deploy", "open('deployed', 'w').close()", risk="high", confidence=0.4),
                shell_task("check", "open('checked', 'w').close()", depends_on=["deploy"]),
            ],
        },
    )
    done = orch("run", str(plan), "--run-id", "d", "--dry-run", "--quiet", *db_args(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "deployed").exists() and (tmp_path / "checked").exists()
    tasks = {t["id"]: t for t in orch_json("status", "d", *db_args(tmp_path))["tasks"]}
    assert tasks["deploy"]["outcome"] == "dry_run" and tasks["check"]["outcome"] == "succeeded"


def test_permanent_errors_by_exit_code_and_pattern_are_not_retried(tmp_path: Path) -> None:
    (tmp_path / "quiet.yaml").write_text(QUIET_RULES)
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "errors",
            "rules": ["quiet.yaml"],
            "defaults": {
                "retry": "aggressive",
                "errors": {
                    "permanent_exit_codes": [3],
                    "permanent_patterns": ["(?i)license expired"],
                },
            },
            "tasks": [
                shell_task("code", "raise SystemExit(3)"),
                shell_task("pattern", "print('LICENSE EXPIRED'); raise SystemExit(1)"),
            ],
        },
    )
    paused = orch("run", str(plan), "--run-id", "e", "--quiet", *db_args(tmp_path))
    assert paused.returncode == 3  # escalated to a human after one attempt each
    tasks = {t["id"]: t for t in orch_json("status", "e", *db_args(tmp_path))["tasks"]}
    assert tasks["code"]["attempts"] == 1 and tasks["pattern"]["attempts"] == 1
    rules = {
        b["task"]: b["rule"]
        for b in orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    }
    assert rules == {"code": "decision:escalate", "pattern": "decision:escalate"}


def test_error_classification_order() -> None:
    rules = ErrorRules(transient_patterns=["(?i)try again"], permanent_exit_codes=[2])

    def outcome(code: int | None, output: str = "", timed_out: bool = False) -> ActionOutcome:
        return ActionOutcome(code, timed_out, 0.0, output, {}, "transient")

    assert classify_error(outcome(0), rules) == "none"
    assert classify_error(outcome(2, "try again"), rules) == "permanent"  # exit code first
    assert classify_error(outcome(1, "please TRY AGAIN later"), rules) == "transient"
    assert classify_error(outcome(124), rules) == "timeout"
    assert classify_error(outcome(9, timed_out=True), rules) == "timeout"
    assert classify_error(outcome(None), rules) == "permanent"
    assert classify_error(outcome(127), ErrorRules()) == "permanent"  # command not found


def test_named_retry_policy_sets_the_attempts(tmp_path: Path) -> None:
    (tmp_path / "quiet.yaml").write_text(
        QUIET_RULES
        + "decisions:\n  - {when: 'not gate_passed', decide: retry}\n  - {decide: proceed}\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "named",
            "rules": ["quiet.yaml"],
            "tasks": [
                shell_task(
                    "x",
                    "raise SystemExit(1)",
                    retry={"max_attempts": 2, "base_seconds": 0, "jitter": False},
                )
            ],
        },
    )
    assert load_plan(plan).retry_policy(load_plan(plan).spec.tasks[0]).max_attempts == 2
    done = orch("run", str(plan), "--run-id", "n", "--quiet", *db_args(tmp_path))
    assert done.returncode == 1
    assert orch_json("status", "n", *db_args(tmp_path))["tasks"][0]["attempts"] == 2
    bad = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "bad",
            "defaults": {"retry": "sometimes"},
            "tasks": [shell_task("x", "pass")],
        },
        name="bad.yaml",
    )
    invalid = orch("validate", str(bad))
    assert invalid.returncode == 2 and "unknown retry policy 'sometimes'" in invalid.stderr


def test_explain_shows_the_priority_and_the_decisions(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "why",
            "tasks": [shell_task("root", "pass", priority="high")]
            + [shell_task(f"c{i}", "pass", depends_on=["root"]) for i in range(3)],
        },
    )
    assert orch("run", str(plan), "--run-id", "w", "--quiet", *db_args(tmp_path)).returncode == 0
    explained = orch_json("explain", "w", "root", *db_args(tmp_path))
    assert explained["priority"]["base"] == 8 and explained["priority"]["dependents"] == 3
    assert explained["priority"]["blocking_boost"] == pytest.approx(2.0)
    assert [d["decision"] for d in explained["decisions"]] == ["proceed"]
    text = orch("explain", "w", "root", *db_args(tmp_path))
    assert text.returncode == 0 and "effective priority" in text.stdout and "proceed" in text.stdout


def test_a_resource_guard_holds_new_work(tmp_path: Path) -> None:
    plan = load_plan(
        write_plan(
            tmp_path,
            {
                "version": 1,
                "name": "guard",
                "concurrency": {"guards": {"max_memory_percent": 0.01}},
                "tasks": [shell_task("a", "pass")],
            },
        )
    )
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        orchestrator = Orchestrator.start(
            plan, store, run_id="r", engine=build_engine(plan, load_plugins(entry_points=False))
        )
        assert orchestrator.tick() == 0
        assert store.task("r", "a").state == "ready"
        assert any(e.kind == "resource_guard" for e in store.events("r"))
    finally:
        store.close()


def test_missed_deadlines_are_recorded_and_paused_runs_say_what_waits(tmp_path: Path) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    (tmp_path / "r.yaml").write_text(
        "breakpoints:\n  - {name: hold, at: before, when: \"task_id == 'gate'\", action: pause,\n"
        "     priority: 1, severity: low, message: hold}\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "late",
            "rules": ["r.yaml"],
            "tasks": [
                shell_task("gate", "pass", deadline=past),
                shell_task("next", "pass", depends_on=["gate"]),
            ],
        },
    )
    paused = orch("run", str(plan), "--run-id", "l", "--quiet", *db_args(tmp_path))
    assert paused.returncode == 3
    assert "next waits for gate (blocked)" in paused.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        missed = [e for e in store.events("l") if e.kind == "deadline_missed"]
    finally:
        store.close()
    assert [e.task_id for e in missed] == ["gate"]
