"""End to end: event triggers through `orch events emit`, run events, adding tasks; the daemon."""

from __future__ import annotations

import signal
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from orchestration.core.trigger_records import ADDING, FiringRecord
from orchestration.store import Store
from tests.helpers import PY, StderrWatch, orch, orch_in_background, orch_json, write_plan
from tests.trigger_helpers import (
    finished_run,
    firings,
    held_plan,
    marker_plan,
    run_ids,
    wait_until,
)

DAEMON_EXIT_S = 120  # seconds the daemon may take to drain and exit


def emit(db: str, name: str, data: str, *extra: str) -> dict:
    return dict(orch_json("events", "emit", name, "--data", data, "--db", db, *extra))


def test_an_event_starts_the_plan_with_its_data_as_params_once_per_key(
    tmp_path: Path, sqlite_url: str
) -> None:
    plan = marker_plan(
        tmp_path,
        on={
            "event": "issue",
            "when": "data['action'] == 'labeled' and data['label'] == 'agent'",
            "params": {"who": "data['user']"},
        },
    )
    done = orch("schedule", "add", "agent-issues", "--plan", str(plan), "--db", sqlite_url)
    assert done.returncode == 0, done.stderr
    data = '{"action": "labeled", "label": "agent", "user": "ada"}'
    first = emit(sqlite_url, "issue", data, "--key", "issue-7")
    [firing] = first["event"]["firings"]
    assert first["duplicate"] is False and firing["params"] == {"who": "ada"}
    again = emit(sqlite_url, "issue", data, "--key", "issue-7")
    assert again["duplicate"] is True and again["event"]["id"] == first["event"]["id"]
    other = emit(sqlite_url, "issue", '{"action": "labeled", "label": "bug", "user": "bob"}')
    assert other["event"]["firings"] == []
    assert finished_run(sqlite_url, firing["run_id"]).state == "completed"
    assert (tmp_path / "out-ada.txt").read_text() == "ada"
    listed = orch_json("events", "list", "--db", sqlite_url)["events"]
    with Store.open(sqlite_url) as store:
        stored = store.triggers.trigger_events()
        by_event = {f.event_id: f.run_id for f in store.triggers.firings()}
    assert [(e["id"], e["key"]) for e in listed] == [(e.id, e.key) for e in stored]
    assert [[f["run_id"] for f in e["firings"]] for e in listed] == [
        [by_event[e.id]] if e.id in by_event else [] for e in stored
    ]
    assert run_ids(sqlite_url) == [firing["run_id"]]


def test_a_breakpoint_in_one_run_starts_another_plan(tmp_path: Path, sqlite_url: str) -> None:
    code = "raise SystemExit(1)"
    failing = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "build",
            "tasks": [
                {
                    "id": "compile",
                    "action": {"kind": "shell", "run": [PY, "-c", code]},
                    "retry": {"max_attempts": 1},
                }
            ],
            "on": {"event": "go"},
        },
        "build.yaml",
    )
    fixer = marker_plan(
        tmp_path,
        name="fixer",
        on={
            "event": "breakpoint_raised",
            "when": "data['plan'] == 'build' and data['rule'] == 'consecutive_failures'",
            "params": {"who": "data['task_id']"},
        },
    )
    for name, plan in (("build", failing), ("fixer", fixer)):
        assert (
            orch("schedule", "add", name, "--plan", str(plan), "--db", sqlite_url).returncode == 0
        )
    now = datetime.now(UTC).isoformat()
    assert orch("schedule", "tick", "--at", now, "--db", sqlite_url).returncode == 0  # cursors
    [started] = emit(sqlite_url, "go", "{}")["event"]["firings"]

    def paused() -> bool:
        with Store.open(sqlite_url) as store:
            try:
                return store.get_run(started["run_id"]).state == "paused"
            except Exception:
                return False

    wait_until(paused, "the build run to pause at its breakpoint")
    fired = orch_json("schedule", "tick", "--at", now, "--db", sqlite_url)["firings"]
    [fix] = [f for f in fired if f["schedule"] == "fixer"]
    assert fix["params"] == {"who": "compile"}
    assert finished_run(sqlite_url, fix["run_id"]).state == "completed"
    assert (tmp_path / "out-compile.txt").read_text() == "compile"
    assert orch_json("schedule", "tick", "--at", now, "--db", sqlite_url)["firings"] == []
    events = orch_json("events", "list", "--db", sqlite_url)["events"]
    names = [e["name"] for e in events]
    assert {"go", "breakpoint_raised", "run_finished", "task_completed"} <= set(names)
    assert [len(e["firings"]) for e in events if e["name"] == "breakpoint_raised"] == [1]


def test_an_event_adds_tasks_to_the_running_run(tmp_path: Path, sqlite_url: str) -> None:
    gate = tmp_path / "gate"
    plan = held_plan(
        tmp_path, gate, on=[{"event": "start"}, {"event": "more", "then": "add_tasks"}]
    )
    assert orch("schedule", "add", "held", "--plan", str(plan), "--db", sqlite_url).returncode == 0
    [started] = emit(sqlite_url, "start", "{}")["event"]["firings"]
    run_id = started["run_id"]

    def running() -> bool:
        with Store.open(sqlite_url) as store:
            try:
                return any(t.state == "running" for t in store.tasks(run_id))
            except Exception:
                return False

    wait_until(running, "the run to be working")
    [added] = emit(sqlite_url, "more", "{}")["event"]["firings"]
    assert (added["outcome"], added["run_id"], added["tasks"]) == (
        "added_tasks",
        run_id,
        ["hold-2"],
    )
    gate.touch()
    run = finished_run(sqlite_url, run_id)
    assert run.state == "completed"
    with Store.open(sqlite_url) as store:
        assert sorted(t.task_id for t in store.tasks(run_id)) == ["hold", "hold-2"]
    assert run_ids(sqlite_url) == [run_id]


def test_the_daemon_drains_on_sigterm_and_resumes_the_run_after_a_restart(
    tmp_path: Path, sqlite_url: str
) -> None:
    gate = tmp_path / "gate"
    plan = held_plan(tmp_path, gate, on={"event": "go"})
    assert orch("schedule", "add", "held", "--plan", str(plan), "--db", sqlite_url).returncode == 0
    daemon = orch_in_background("daemon", "--db", sqlite_url, "--interval", "0.1")
    watch = StderrWatch(daemon)
    watch.wait_for("SIGTERM stops it")
    emit(sqlite_url, "go", "{}", "--no-dispatch")  # the daemon fires it
    [firing] = wait_until(lambda: firings(sqlite_url), "the daemon to fire the trigger")
    run_id = firing.run_id or ""

    def running() -> bool:
        with Store.open(sqlite_url) as store:
            try:
                return any(t.state == "running" for t in store.tasks(run_id))
            except Exception:
                return False

    wait_until(running, "the run to be working")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=DAEMON_EXIT_S) == 0
    with Store.open(sqlite_url) as store:
        run = store.get_run(run_id)
        [task] = store.tasks(run_id)
    assert run.state == "paused" and task.state in ("ready", "retrying")  # drained, retried later
    gate.touch()
    second = orch_in_background("daemon", "--db", sqlite_url, "--interval", "0.1")
    StderrWatch(second)  # reads its output to the end, and closes the pipe
    try:
        assert finished_run(sqlite_url, run_id).state == "completed"
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=DAEMON_EXIT_S) == 0
    assert run_ids(sqlite_url) == [run_id]


def test_tasks_a_dead_dispatcher_was_adding_are_added_once(tmp_path: Path, sqlite_url: str) -> None:
    gate = tmp_path / "gate"
    plan = held_plan(
        tmp_path, gate, on=[{"event": "start"}, {"event": "more", "then": "add_tasks"}]
    )
    assert orch("schedule", "add", "held", "--plan", str(plan), "--db", sqlite_url).returncode == 0
    [started] = emit(sqlite_url, "start", "{}")["event"]["firings"]
    run_id = started["run_id"]
    wait_until(lambda: finished_or_running(sqlite_url, run_id), "the run to be working")
    event = emit(sqlite_url, "more", "{}", "--no-dispatch")["event"]
    gone = subprocess.run(
        [PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    now = datetime.now(UTC)
    with Store.open(sqlite_url) as store:
        stored = store.triggers.insert_firing(  # stored by a dispatcher that died at once
            FiringRecord(
                key=f"event:held:{event['id']}:1",
                schedule="held",
                kind="event",
                due_at=now,
                outcome=ADDING,
                fired_at=now,
                updated_at=now,
                event_id=event["id"],
                run_id=run_id,
                holder=f"{socket.gethostname()}:{int(gone.stdout)}",
            )
        )
    assert stored is not None
    for _ in range(2):
        assert orch("schedule", "tick", "--db", sqlite_url).returncode == 0
    [firing] = [f for f in firings(sqlite_url) if f.event_id == event["id"]]
    assert (firing.outcome, firing.tasks) == ("added_tasks", ["hold-2"])
    gate.touch()
    assert finished_run(sqlite_url, run_id).state == "completed"
    with Store.open(sqlite_url) as store:
        assert sorted(t.task_id for t in store.tasks(run_id)) == ["hold", "hold-2"]


def finished_or_running(url: str, run_id: str) -> bool:
    with Store.open(url) as store:
        try:
            return any(t.state == "running" for t in store.tasks(run_id))
        except Exception:
            return False
