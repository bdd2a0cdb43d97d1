"""End to end: `orch schedule` with `tick --at` driving time, real runs in real stores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestration.core.trigger_records import STARTING, FiringRecord
from orchestration.store import Store
from tests.helpers import PY, orch, orch_json
from tests.trigger_helpers import (
    finished_run,
    firings,
    held_plan,
    marker_plan,
    run_ids,
    wait_until,
)


def next_at(db: str, name: str, count: int = 1) -> list[datetime]:
    shape = orch_json("schedule", "next", name, "--count", str(count), "--db", db)
    return [datetime.fromisoformat(o["at"]) for o in shape["occurrences"]]


def tick(db: str, at: datetime) -> list[dict]:
    return list(orch_json("schedule", "tick", "--at", at.isoformat(), "--db", db)["firings"])


def add(db: str, name: str, plan: Path, *args: str) -> None:
    done = orch("schedule", "add", name, "--plan", str(plan), "--db", db, *args)
    assert done.returncode == 0, done.stderr


def test_an_occurrence_fires_once_and_the_figures_match_the_store(
    tmp_path: Path, sqlite_url: str
) -> None:
    plan = marker_plan(tmp_path)
    add(
        sqlite_url,
        "nightly",
        plan,
        "--cron",
        "0 2 * * 1-5",
        "--tz",
        "Europe/Berlin",
        "--params",
        '{"who": "cron"}',
    )
    [at] = next_at(sqlite_url, "nightly")
    assert at.astimezone(ZoneInfo("Europe/Berlin")).hour == 2
    assert tick(sqlite_url, at - timedelta(seconds=1)) == []
    [fired] = tick(sqlite_url, at)
    assert (fired["kind"], fired["outcome"], fired["occurrence"]) == (
        "cron",
        "launched",
        at.isoformat().replace("+00:00", "Z"),
    )
    assert tick(sqlite_url, at) == [] and tick(sqlite_url, at + timedelta(seconds=30)) == []
    run = finished_run(sqlite_url, fired["run_id"])
    assert run.state == "completed"
    assert (tmp_path / "out-cron.txt").read_text() == "cron"
    tick(sqlite_url, at + timedelta(seconds=40))  # notes that the run appeared
    [shape] = orch_json("schedule", "list", "--db", sqlite_url)["schedules"]
    assert run.finished_at is not None
    assert shape["stats"] == {
        "runs": 1,
        "failures": 0,
        "mean_duration_seconds": pytest.approx((run.finished_at - run.created_at).total_seconds()),
        "last_outcome": "completed",
        "last_fired_at": fired["fired_at"],
    }
    assert run_ids(sqlite_url) == [fired["run_id"]]


def test_catch_up_fires_every_missed_occurrence_in_the_window_through_the_queue(
    tmp_path: Path, sqlite_url: str
) -> None:
    plan = marker_plan(tmp_path)
    add(
        sqlite_url,
        "often",
        plan,
        "--cron",
        "*/10 * * * *",
        "--catch-up",
        "1500",
        "--overlap",
        "queue",
    )
    first = next_at(sqlite_url, "often", 6)
    now = first[5] + timedelta(minutes=1)  # occurrences 3, 4, 5 lie within 25 minutes
    fired = tick(sqlite_url, now)
    assert [(f["occurrence"], f["outcome"]) for f in fired] == [
        (first[3].isoformat().replace("+00:00", "Z"), "launched"),
        (first[4].isoformat().replace("+00:00", "Z"), "queued"),
        (first[5].isoformat().replace("+00:00", "Z"), "queued"),
    ]
    for _ in range(2):  # each tick after the previous run finished starts the next one
        finished_run(
            sqlite_url,
            [f for f in firings(sqlite_url) if f.outcome in ("launched", "started")][-1].run_id
            or "",
        )
        started = tick(sqlite_url, now)
        assert [f["outcome"] for f in started] == ["launched"]
    finished_run(sqlite_url, firings(sqlite_url)[-1].run_id or "")
    tick(sqlite_url, now)
    stored = firings(sqlite_url, "often")
    assert [f.outcome for f in stored] == ["started", "started", "started"]
    assert sorted(f.run_id or "" for f in stored) == run_ids(sqlite_url)
    assert len({f.key for f in stored}) == 3


def test_a_firing_stored_before_a_crash_is_launched_once_under_its_run_id(
    tmp_path: Path, sqlite_url: str
) -> None:
    plan = marker_plan(tmp_path)
    add(sqlite_url, "nightly", plan, "--cron", "0 2 * * *")
    [at] = next_at(sqlite_url, "nightly")
    gone = subprocess.run(
        [PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)  # a launcher that died after storing the firing
    with Store.open(sqlite_url) as store:
        stored = store.triggers.insert_firing(
            FiringRecord(
                key=f"cron:nightly:{at.isoformat()}",
                schedule="nightly",
                kind="cron",
                due_at=at,
                outcome=STARTING,
                fired_at=at,
                updated_at=at,
                occurrence=at,
                run_id="nightly-crashed-1",
                holder=f"{socket.gethostname()}:{dead_pid}",
            )
        )
    assert stored is not None
    assert tick(sqlite_url, at) == []  # the occurrence is fired already: not again
    assert finished_run(sqlite_url, "nightly-crashed-1").state == "completed"
    tick(sqlite_url, at + timedelta(seconds=5))
    tick(sqlite_url, at + timedelta(seconds=10))
    assert run_ids(sqlite_url) == ["nightly-crashed-1"]
    assert [f.outcome for f in firings(sqlite_url)] == ["started"]


def test_two_scheduler_processes_fire_each_occurrence_once(tmp_path: Path, db_url: str) -> None:
    plan = marker_plan(tmp_path)
    names = [f"s{i}" for i in range(5)]
    for name in names:
        add(db_url, name, plan, "--cron", "0 3 * * *")
    [at] = next_at(db_url, names[0])
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    argv = [
        PY,
        "-m",
        "orchestration",
        "schedule",
        "tick",
        "--at",
        at.isoformat(),
        "--db",
        db_url,
        "--json",
    ]
    both = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    fired = [f for out, _ in outputs for f in json.loads(out)["firings"]]
    assert sorted(f["schedule"] for f in fired) == names  # each fired by exactly one process
    for f in fired:
        assert finished_run(db_url, f["run_id"]).state == "completed"
    stored = firings(db_url)
    assert len(stored) == 5 and len({f.key for f in stored}) == 5
    assert run_ids(db_url) == sorted(f["run_id"] for f in fired)


def test_overlap_skip_records_why_and_cancel_previous_cancels(
    tmp_path: Path, sqlite_url: str
) -> None:
    gate = tmp_path / "gate"
    plan = held_plan(tmp_path, gate)
    add(sqlite_url, "skipper", plan, "--cron", "*/5 * * * *", "--overlap", "skip")
    add(sqlite_url, "canceller", plan, "--cron", "*/5 * * * *", "--overlap", "cancel_previous")
    first, second = next_at(sqlite_url, "skipper", 2)
    started = {f["schedule"]: f["run_id"] for f in tick(sqlite_url, first)}

    def running(run_id: str) -> bool:
        with Store.open(sqlite_url) as store:
            try:
                return any(t.state == "running" for t in store.tasks(run_id))
            except Exception:
                return False

    for run_id in started.values():
        wait_until(lambda r=run_id: running(r), f"run {run_id} to be working")
    later = {f["schedule"]: f for f in tick(sqlite_url, second)}
    assert later["skipper"]["outcome"] == "skipped"
    assert later["skipper"]["reason"] == f"run {started['skipper']} was still active"
    assert later["canceller"]["outcome"] == "launched"
    assert finished_run(sqlite_url, started["canceller"]).state == "cancelled"
    gate.touch()
    assert finished_run(sqlite_url, started["skipper"]).state == "completed"
    assert finished_run(sqlite_url, later["canceller"]["run_id"]).state == "completed"


def test_a_run_that_never_starts_is_recorded_and_counted(tmp_path: Path, sqlite_url: str) -> None:
    plan = marker_plan(tmp_path)
    add(sqlite_url, "nightly", plan, "--cron", "0 2 * * *")
    plan.write_text("version: 1\nname: broken\ntasks: []\n")  # broken after it was scheduled
    [at] = next_at(sqlite_url, "nightly")
    assert [f["outcome"] for f in tick(sqlite_url, at)] == ["launched"]

    def exited() -> bool:
        [firing] = firings(sqlite_url)
        try:
            os.kill(firing.pid or 0, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(exited, "the launched process to exit")
    tick(sqlite_url, at + timedelta(seconds=1))
    [firing] = firings(sqlite_url)
    assert firing.outcome == "failed_to_start"
    assert "exited without starting the run" in firing.reason and "tasks" in firing.reason
    shown = orch_json("schedule", "show", "nightly", "--db", sqlite_url)
    assert shown["stats"]["failures"] == 1 and shown["stats"]["runs"] == 0
    assert shown["stats"]["last_outcome"] == "failed_to_start"
    assert shown["firings"][0]["reason"] == firing.reason
    assert run_ids(sqlite_url) == []


def test_schedule_commands_enable_disable_remove_and_explain_bad_input(
    tmp_path: Path, sqlite_url: str
) -> None:
    plan = marker_plan(tmp_path)
    add(sqlite_url, "nightly", plan, "--cron", "0 2 * * *")
    [at] = next_at(sqlite_url, "nightly")
    assert orch("schedule", "disable", "nightly", "--db", sqlite_url).returncode == 0
    assert tick(sqlite_url, at) == []
    assert orch("schedule", "enable", "nightly", "--db", sqlite_url).returncode == 0
    assert orch("schedule", "remove", "nightly", "--db", sqlite_url).returncode == 0
    assert orch_json("schedule", "list", "--db", sqlite_url)["schedules"] == []
    missing = orch("schedule", "show", "nightly", "--db", sqlite_url)
    assert missing.returncode == 2 and "schedule 'nightly' not found" in missing.stderr
    bad = orch(
        "schedule",
        "add",
        "x",
        "--plan",
        str(plan),
        "--cron",
        "0 2 * * *",
        "--tz",
        "Nowhere/Town",
        "--db",
        sqlite_url,
    )
    assert bad.returncode == 2 and "field 'tz': unknown time zone 'Nowhere/Town'" in bad.stderr
    none = orch("schedule", "add", "x", "--plan", str(plan), "--db", sqlite_url)
    assert none.returncode == 2 and "no --cron and no event trigger" in none.stderr
    unknown = orch(
        "schedule",
        "add",
        "x",
        "--plan",
        str(plan),
        "--cron",
        "0 2 * * *",
        "--params",
        '{"whom": 1}',
        "--db",
        sqlite_url,
    )
    assert unknown.returncode == 2 and "unknown parameter(s) whom" in unknown.stderr
    assert str(plan) in unknown.stderr
    when = orch(
        "schedule",
        "add",
        "x",
        "--plan",
        str(plan),
        "--on",
        "push",
        "--when",
        "data[",
        "--db",
        sqlite_url,
    )
    assert when.returncode == 2 and "schedule x" in when.stderr and "on.when" in when.stderr
    assert orch_json("schedule", "list", "--db", sqlite_url)["schedules"] == []


def test_a_schedule_file_is_applied(tmp_path: Path, sqlite_url: str) -> None:
    marker_plan(tmp_path)
    (tmp_path / "schedules.yaml").write_text(
        "schedules:\n"
        "  - name: nightly\n"
        "    plan: nightly.yaml\n"
        "    cron: '0 2 * * 1-5'\n"
        "    tz: Europe/Berlin\n"
        "    jitter_seconds: 120\n"
        "  - name: on-label\n"
        "    plan: nightly.yaml\n"
        "    on: {event: issue, when: \"data['label'] == 'agent'\"}\n"
    )
    done = orch("schedule", "apply", str(tmp_path / "schedules.yaml"), "--db", sqlite_url)
    assert done.returncode == 0, done.stderr
    shapes = {s["name"]: s for s in orch_json("schedule", "list", "--db", sqlite_url)["schedules"]}
    assert shapes["nightly"]["jitter_seconds"] == 120 and shapes["nightly"]["tz"] == "Europe/Berlin"
    assert shapes["on-label"]["on"][0]["event"] == "issue"
    assert shapes["on-label"]["plan"] == str(tmp_path / "nightly.yaml")
    (tmp_path / "bad.yaml").write_text(
        "schedules:\n  - name: x\n    plan: nightly.yaml\n    cron: 1\n    extra: 2\n"
    )
    bad = orch("schedule", "apply", str(tmp_path / "bad.yaml"), "--db", sqlite_url)
    assert bad.returncode == 2
    assert "schedules[0]: field 'extra': unknown field" in bad.stderr
