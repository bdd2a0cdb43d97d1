"""The JSONL event log: every stored state change, decision, breakpoint and event exactly once,
daily files, retention by a fixed clock, and `orch events follow` as a user runs it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestration.core.models import EventRecord
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.operations.event_log import (
    CURSOR_FILE,
    Cursor,
    EventLogFiles,
    export_once,
    read_new,
)
from orchestration.store import Batch, Store
from tests.helpers import orch, shell_task, write_plan

RULES = (
    "breakpoints:\n"
    "  - name: look_first\n"
    "    at: before\n"
    "    when: \"'review-me' in tags\"\n"
    "    action: pause\n"
    '    message: "look at {task_id}"\n'
)


def paused_run(directory: Path, url: str, run_id: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(RULES)
    plan = write_plan(
        directory,
        {
            "version": 1,
            "name": "logged",
            "rules": ["rules.yaml"],
            "tasks": [
                shell_task("ok", "pass"),
                shell_task("bad", "raise SystemExit(3)", retry={"max_attempts": 1}),
                shell_task("look", "pass", tags=["review-me"]),
            ],
        },
    )
    loaded = load_plan(plan)
    with Store.open(url) as store:
        orchestrator = Orchestrator.start(loaded, store, run_id=run_id, engine=build_engine(loaded))
        orchestrator.engine.plugins.muted.add("console")
        orchestrator.run_until_stopped()


def lines_of(directory: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("events-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_every_stored_record_is_logged_once_and_a_restart_repeats_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    paused_run(tmp_path / "p", sqlite_url, "r1")
    out = tmp_path / "log"
    with Store.open(sqlite_url) as store:
        files = EventLogFiles(out)
        written = export_once(store, files)
        moves = store.transitions("r1")
        decisions = store.decisions("r1")
        breakpoints = store.breakpoints("r1")
        events = store.events("r1")
        assert export_once(store, EventLogFiles(out)) == 0  # a restarted follower: cursor kept
    logged = lines_of(out)
    assert written == len(logged) == len(moves) + len(decisions) + len(breakpoints) + len(events)
    by_type: dict[object, list[dict[str, object]]] = {}
    for entry in logged:
        by_type.setdefault(entry["type"], []).append(entry)
    changes = by_type["state_change"]
    assert [(e["task"], e["from"], e["to"], e["trigger"]) for e in changes] == [
        (m.task_id, m.source, m.dest, m.trigger) for m in moves
    ]
    assert all(e["ts"] == m.at.isoformat() for e, m in zip(changes, moves, strict=True))
    assert [(e["task"], e["action"]) for e in by_type["decision"]] == [
        (d.task_id, d.action) for d in decisions
    ]
    assert [(e["breakpoint"], e["task"], e["rule"], e["state"]) for e in by_type["breakpoint"]] == [
        (b.id, b.task_id, b.rule, b.state) for b in breakpoints
    ]
    assert ("look", "look_first", "open") in [(b.task_id, b.rule, b.state) for b in breakpoints]
    assert sorted(e["kind"] for e in by_type["event"]) == sorted(e.kind for e in events)
    assert len({e["id"] for e in logged}) == len(logged)
    assert [e["ts"] for e in logged] == sorted(e["ts"] for e in logged)
    assert json.loads((out / CURSOR_FILE).read_text())["transition"] == moves[-1].id


def test_files_rotate_by_day_and_old_ones_are_deleted(tmp_path: Path) -> None:
    files = EventLogFiles(tmp_path, retention_days=2)
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    entries = [
        {"ts": (now - timedelta(days=age)).isoformat(), "type": "event", "n": age}
        for age in (0, 1, 2, 3, 5)
    ]
    assert files.write(entries) == 5
    names = sorted(p.name for p in tmp_path.glob("events-*.jsonl"))
    assert names == [
        "events-2026-03-05.jsonl",
        "events-2026-03-07.jsonl",
        "events-2026-03-08.jsonl",
        "events-2026-03-09.jsonl",
        "events-2026-03-10.jsonl",
    ]
    removed = files.prune(now)
    assert sorted(p.name for p in removed) == names[:2]
    assert [e["n"] for e in lines_of(tmp_path)] == [2, 1, 0]


def test_follow_prints_one_run_as_json_lines(sqlite_url: str, tmp_path: Path) -> None:
    paused_run(tmp_path / "a", sqlite_url, "ra")
    paused_run(tmp_path / "b", sqlite_url, "rb")
    done = orch("events", "follow", "--run", "ra", "--once", "--db", sqlite_url)
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    with Store.open(sqlite_url) as store:
        expected = read_new(store, Cursor(), "ra")
    assert printed == json.loads(json.dumps(expected, default=str))
    assert {e["run"] for e in printed} == {"ra"} and len(printed) > 10
    flag = orch("events", "--follow", "--run", "ra", "--once", "--db", sqlite_url)
    assert flag.returncode == 0, flag.stderr
    assert [json.loads(line) for line in flag.stdout.splitlines()] == printed
    written = orch("events", "follow", "--to", str(tmp_path / "out"), "--once", "--db", sqlite_url)
    assert written.returncode == 0, written.stderr
    assert {e["run"] for e in lines_of(tmp_path / "out")} == {"ra", "rb"}


def test_the_journal_follows_every_table_after_a_cursor_on_both_stores(
    db_url: str, tmp_path: Path
) -> None:
    paused_run(tmp_path / "p", db_url, "j1")
    with Store.open(db_url) as store:
        cursor = Cursor()
        first = read_new(store, cursor, "j1")
        assert read_new(store, cursor, "j1") == []
        moves = store.transitions("j1")
        assert [e["id"] for e in first if e["type"] == "state_change"] == [
            f"transition:{m.id}" for m in moves
        ]
        at_end = Cursor.at_end(store)
        assert at_end.after == cursor.after
        page = store.journal("transition", 0, 2)
        assert [row_id for row_id, _ in page] == [m.id for m in moves[:2]]


def test_the_shipper_writes_in_the_background_and_once_more_when_stopped(
    sqlite_url: str, tmp_path: Path
) -> None:
    from orchestration.operations.event_log import EventLogShipper

    paused_run(tmp_path / "p", sqlite_url, "s1")
    with Store.open(sqlite_url) as store:
        shipper = EventLogShipper(store, EventLogFiles(tmp_path / "log"), poll_seconds=3600)
        shipper.start()  # writes what is stored at once, then waits for the next poll
        at = store.get_run("s1").updated_at
        store.commit("s1", Batch(events=[EventRecord("s1", "late", None, {"n": 1}, at)]))
        shipper.stop()  # ...and what came since, before it returns
        total = len(read_new(store, Cursor(), "s1"))
    logged = lines_of(tmp_path / "log")
    assert len(logged) == total
    assert "late" in {e.get("kind") for e in logged}
    assert len({e["id"] for e in logged}) == total
