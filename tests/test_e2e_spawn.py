"""A plan that grows while it runs: branches, spawn requests from actions, `orch task add`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from orchestration.store import Store
from tests.helpers import held_code, orch, orch_in_background, orch_json, shell_task, write_plan

STRICT = (
    "breakpoints:\n"
    "  - {name: consecutive_failures, enabled: false}\n"
    "decisions:\n"
    "  - {when: 'not gate_passed', decide: retry}\n"
    "  - {decide: proceed}\n"
)


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def states(tmp_path: Path, run_id: str) -> dict[str, str]:
    return {t["id"]: t["state"] for t in orch_json("status", run_id, *db_args(tmp_path))["tasks"]}


def events(tmp_path: Path, run_id: str, kind: str) -> list:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        return [e for e in store.events(run_id) if e.kind == kind]
    finally:
        store.close()


def test_branches_fire_on_failure_on_results_and_on_expressions(tmp_path: Path) -> None:
    (tmp_path / "strict.yaml").write_text(STRICT)
    result = "import json, os; json.dump({'size': 'big', 'labels': ['slow', 'db']}, open(os.environ['ORCH_RESULT'], 'w'))"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "branches",
            "rules": ["strict.yaml"],
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [
                shell_task(
                    "build",
                    "raise SystemExit(2)",
                    branches=[
                        {"on_failure": True, "spawn": [shell_task("diagnose", "pass")]},
                        {"on_success": True, "spawn": [shell_task("never", "pass")]},
                    ],
                ),
                shell_task(
                    "measure",
                    result,
                    branches=[
                        {
                            "result_equals": {"size": "big"},
                            "spawn": [
                                shell_task("split", "pass"),
                                shell_task("split-check", "pass", depends_on=["split"]),
                            ],
                        },
                        {
                            "result_contains": {"labels": "db"},
                            "spawn": [shell_task("tune-db", "pass")],
                        },
                        {
                            "when": "changed_files_count > 0",
                            "spawn": [shell_task("review", "pass")],
                        },
                    ],
                ),
            ],
        },
    )
    done = orch("run", str(plan), "--run-id", "b", "--quiet", *db_args(tmp_path))
    assert done.returncode == 1, done.stderr  # `build` failed
    assert states(tmp_path, "b") == {
        "build": "failed",
        "measure": "completed",
        "diagnose": "completed",
        "split": "completed",
        "split-check": "completed",
        "tune-db": "completed",
    }


def test_a_planning_action_adds_tasks_that_depend_on_each_other(tmp_path: Path) -> None:
    spawn = [
        {"id": "plan", "action": {"kind": "shell", "run": [sys.executable, "-c", "pass"]}},
        {
            "id": "step-2",
            "depends_on": ["plan"],
            "action": {"kind": "shell", "run": [sys.executable, "-c", "pass"]},
        },
    ]
    planner = (
        f"import json, os; json.dump({{'spawn': {spawn!r}}}, open(os.environ['ORCH_RESULT'], 'w'))"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "grow",
            "tasks": [shell_task("plan", planner)],  # a spawned 'plan' gets a new id
        },
    )
    done = orch("run", str(plan), "--run-id", "g", "--quiet", *db_args(tmp_path))
    assert done.returncode == 0, done.stderr
    assert states(tmp_path, "g") == {
        "plan": "completed",
        "plan-2": "completed",
        "step-2": "completed",
    }
    status = orch_json("status", "g", *db_args(tmp_path))
    assert {t["id"]: t["depends_on"] for t in status["tasks"]}["step-2"] == ["plan-2"]
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        moves = {m.task_id: m.id for m in store.transitions("g") if m.trigger == "start"}
        done_ids = {m.task_id: m.id for m in store.transitions("g") if m.dest == "completed"}
    finally:
        store.close()
    assert done_ids["plan-2"] < moves["step-2"]


def test_invalid_spawns_are_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    cases = {
        "unknown-dep": [
            {"id": "x", "depends_on": ["ghost"], "action": {"kind": "shell", "run": ["true"]}}
        ],
        "cycle": [
            {"id": "p", "depends_on": ["q"], "action": {"kind": "shell", "run": ["true"]}},
            {"id": "q", "depends_on": ["p"], "action": {"kind": "shell", "run": ["true"]}},
        ],
        "invalid": [
            {"id": "bad", "priority": "urgent", "action": {"kind": "shell", "run": ["true"]}}
        ],
        "not-a-list": {"id": "solo"},
    }
    tasks = [
        shell_task(
            name,
            f"import json, os; json.dump({{'spawn': {spec!r}}}, open(os.environ['ORCH_RESULT'], 'w'))",
        )
        for name, spec in cases.items()
    ]
    plan = write_plan(tmp_path, {"version": 1, "name": "refuse", "tasks": tasks})
    done = orch("run", str(plan), "--run-id", "r", "--quiet", *db_args(tmp_path))
    assert done.returncode == 0, done.stderr
    assert set(states(tmp_path, "r")) == set(cases)  # nothing was added
    reasons = " | ".join(e.data["reason"] for e in events(tmp_path, "r", "tasks_refused"))
    assert "unknown task 'ghost'" in reasons and "cycle" in reasons
    assert "priority" in reasons and "expected a list" in reasons


def test_spawned_tasks_survive_a_restart(tmp_path: Path) -> None:
    (tmp_path / "hold.yaml").write_text(
        "breakpoints:\n  - {name: hold, at: before, when: \"'hold' in tags\", action: pause,\n"
        "     priority: 1, severity: low, message: hold}\n"
    )
    spawn = [
        {
            "id": "later",
            "tags": ["hold"],
            "action": {"kind": "shell", "run": [sys.executable, "-c", "pass"]},
        }
    ]
    planner = (
        f"import json, os; json.dump({{'spawn': {spawn!r}}}, open(os.environ['ORCH_RESULT'], 'w'))"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "persist",
            "rules": ["hold.yaml"],
            "tasks": [shell_task("planner", planner)],
        },
    )
    assert orch("run", str(plan), "--run-id", "p", "--quiet", *db_args(tmp_path)).returncode == 3
    assert states(tmp_path, "p") == {"planner": "completed", "later": "blocked"}
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    orch("breakpoints", "resolve", str(bp["id"]), "--approve", *db_args(tmp_path))
    assert orch("resume", "p", "--quiet", *db_args(tmp_path)).returncode == 0
    assert states(tmp_path, "p") == {"planner": "completed", "later": "completed"}


def test_orch_task_add_to_a_working_run_and_to_a_finished_one(tmp_path: Path) -> None:
    marker, gate = tmp_path / "slow-started", tmp_path / "release-slow"
    slow = held_code(gate, marker)  # works until the task is added
    plan = write_plan(tmp_path, {"version": 1, "name": "add", "tasks": [shell_task("slow", slow)]})
    process = orch_in_background("run", str(plan), "--run-id", "a", "--quiet", *db_args(tmp_path))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        json.dumps(
            [
                {
                    "id": "follow-up",
                    "depends_on": ["slow"],
                    "action": {"kind": "shell", "run": [sys.executable, "-c", "pass"]},
                },
            ]
        )
    )
    added = orch("task", "add", "a", "--file", str(extra), *db_args(tmp_path))
    assert added.returncode == 0, added.stderr
    assert "picks them up by itself" in added.stdout
    gate.touch()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert states(tmp_path, "a") == {"slow": "completed", "follow-up": "completed"}

    # the run is over: a new task waits for `orch resume`; a taken id gets a suffix
    again = orch("task", "add", "a", "--file", str(extra), *db_args(tmp_path))
    assert (
        again.returncode == 0 and "follow-up-2" in again.stdout and "orch resume a" in again.stdout
    )
    assert orch("resume", "a", "--quiet", *db_args(tmp_path)).returncode == 0
    assert states(tmp_path, "a")["follow-up-2"] == "completed"

    bad = tmp_path / "bad.yaml"
    bad.write_text("- {id: z, depends_on: [nowhere], action: {kind: shell, run: ['true']}}\n")
    refused = orch("task", "add", "a", "--file", str(bad), *db_args(tmp_path))
    assert refused.returncode == 2 and "unknown task 'nowhere'" in refused.stderr
