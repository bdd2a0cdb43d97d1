"""Resilience through the real engine: dead letters captured and resubmitted, circuit breakers
that make tasks wait without burning attempts, and a human pausing a live run."""

from __future__ import annotations

from pathlib import Path

from orchestration.store import Store
from tests.helpers import (
    StderrWatch,
    held_code,
    orch,
    orch_in_background,
    orch_json,
    shell_task,
    wait_for_file,
    write_plan,
)

RETRY_THEN_FAIL = """
breakpoints:
  - {name: consecutive_failures, enabled: false}
  - {name: consecutive_failures_before, enabled: false}
decisions:
  - {when: "not gate_passed", decide: retry}
  - {decide: proceed}
"""


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def test_a_task_that_fails_for_good_lands_in_the_dlq_and_a_resubmission_finishes_the_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text(RETRY_THEN_FAIL)
    code = "import os,sys; print('flag is', os.environ.get('FLAG')); sys.exit(0 if os.environ.get('FLAG') == 'on' else 3)"
    failing = shell_task("build", code, retry={"max_attempts": 2, "base_seconds": 0})
    failing["action"]["env"] = {"FLAG": "off"}
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "dlq",
            "rules": ["rules.yaml"],
            "tasks": [failing, shell_task("ship", "pass", depends_on=["build"])],
        },
    )
    assert orch("run", str(plan), "--quiet", *db_args(tmp_path)).returncode == 1
    (letter,) = orch_json("dlq", "list", *db_args(tmp_path))["dead_letters"]
    assert (letter["task"], letter["attempts_count"], letter["state"]) == ("build", 2, "open")
    shown = orch_json("dlq", "show", str(letter["id"]), *db_args(tmp_path))
    story = shown.get("dead_letter", shown)
    assert len(story["attempts"]) == 2 and "flag is off" in story["attempts"][-1]["output_tail"]
    run_id = letter["run"]
    states = {t["id"]: t["state"] for t in orch_json("status", run_id, *db_args(tmp_path))["tasks"]}
    assert states == {"build": "failed", "ship": "cancelled"}
    resubmitted = orch(
        "dlq",
        "resubmit",
        str(letter["id"]),
        "--set",
        "action.env.FLAG=on",
        "--reason",
        "flag fixed",
        *db_args(tmp_path),
    )
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert orch("resume", run_id, "--quiet", *db_args(tmp_path)).returncode == 0
    states = {t["id"]: t["state"] for t in orch_json("status", run_id, *db_args(tmp_path))["tasks"]}
    assert states == {"build": "completed", "ship": "completed"}  # the dependent followed


def test_an_open_breaker_makes_tasks_wait_without_burning_attempts(tmp_path: Path) -> None:
    marker = tmp_path / "service-up"
    # The "service" fails until the marker exists; the first two calls create it after failing.
    code = (
        "import pathlib,sys; m=pathlib.Path(sys.argv[1]); n=pathlib.Path(sys.argv[1] + '.n');"
        "c=int(n.read_text()) if n.exists() else 0; n.write_text(str(c+1));"
        "sys.exit(0 if c >= 2 else 1)"
    )
    tasks = [
        {
            "id": f"call{i}",
            "breaker": "service",
            "retry": {"max_attempts": 3, "base_seconds": 0, "jitter": False},
            "action": {
                "kind": "shell",
                "run": [__import__("sys").executable, "-c", code, str(marker)],
            },
        }
        for i in range(4)
    ]
    (tmp_path / "rules.yaml").write_text(RETRY_THEN_FAIL)
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "brk",
            "rules": ["rules.yaml"],
            "breakers": {
                "min_calls": 2,
                "failure_rate": 0.5,
                "window_seconds": 60,
                "recovery_seconds": 1,
            },
            "tasks": tasks,
        },
    )
    completed = orch("run", str(plan), "--quiet", *db_args(tmp_path), timeout=120)
    assert completed.returncode == 0, completed.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run_id = store.list_runs()[0].id
        waits = [e for e in store.events(run_id) if e.kind == "breaker_wait"]
        assert waits and waits[0].data["key"] == "service"
        total = sum(t.attempts for t in store.tasks(run_id))
        assert total == 6  # 2 failures opened it; then one probe and three successes
    finally:
        store.close()
    listed = orch_json("breakers", "list", *db_args(tmp_path))["breakers"]
    assert [(b["key"], b["state"]) for b in listed] == [("service", "closed")]


def test_pausing_a_live_run_lets_running_actions_finish_and_resume_continues(
    tmp_path: Path,
) -> None:
    gate, started = tmp_path / "release-a", tmp_path / "a-started"
    tasks = [
        shell_task("a", held_code(gate, started), priority=9),
        shell_task("b", "pass", depends_on=["a"]),
        shell_task("c", "pass", depends_on=["b"]),
    ]
    plan = write_plan(tmp_path, {"version": 1, "name": "pz", "tasks": tasks})
    process = orch_in_background("run", str(plan), *db_args(tmp_path))
    engine = StderrWatch(process)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        wait_for_file(started)
        run_id = store.list_runs()[0].id
        paused = orch(
            "runs", "pause", run_id, "--reason", "lunch", "--actor", "ann", *db_args(tmp_path)
        )
        assert paused.returncode == 0, paused.stderr
        engine.wait_for("run paused by ann")  # taken in while `a` still works
        gate.touch()
        engine.finish()
        assert process.returncode == 3  # paused for a human
        assert store.task(run_id, "a").state == "completed"  # the running action finished
        assert store.task(run_id, "b").attempts == 0  # nothing new started
        resumed = orch("resume", run_id, "--quiet", *db_args(tmp_path))
        assert resumed.returncode == 0, resumed.stderr
        assert all(t.state == "completed" for t in store.tasks(run_id))
        listed = orch_json("report", run_id, "--interventions", *db_args(tmp_path))["interventions"]
        assert [(e["action"], e["actor"]) for e in listed][:1] == [("pause", "ann")]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        store.close()
