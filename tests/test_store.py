"""The store on real SQLite files and a real PostgreSQL: round trips, batches, races."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.errors import NotFoundError, StoreError
from orchestration.core.lifecycle import Move
from orchestration.core.models import (
    BreakpointRecord,
    DecisionRecord,
    EventRecord,
    QualityRecord,
    RunRecord,
    TaskRecord,
    TaskSpec,
)
from orchestration.store import Batch, Store, StoreConflict, resolve_db_url

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
RUN = "run-1"
PROCESS_TIMEOUT_S = 120  # seconds a child process may take before the test fails


def spec(task_id: str, **extra: Any) -> TaskSpec:
    return TaskSpec.model_validate(
        {"id": task_id, "action": {"kind": "shell", "run": ["true"]}, **extra}
    )


def run_record(run_id: str = RUN, created: datetime = T0) -> RunRecord:
    return RunRecord(
        id=run_id,
        plan_name="demo",
        plan_path="/plans/demo.yaml",
        workdir="/work",
        state="running",
        created_at=created,
        updated_at=created,
        plan_json={"version": 1, "name": "demo", "tasks": [{"id": "a"}]},
    )


def task_record(task_id: str, state: str = "pending", run_id: str = RUN) -> TaskRecord:
    return TaskRecord(run_id=run_id, task_id=task_id, state=state, spec=spec(task_id))


def move(task_id: str, source: str, dest: str, trigger: str, actor: str = "engine") -> Move:
    return Move(task_id, source, dest, trigger, f"because {trigger}", actor)


def breakpoint_record(task_id: str = "a", rule: str = "risky") -> BreakpointRecord:
    return BreakpointRecord(
        id=0,
        run_id=RUN,
        task_id=task_id,
        rule=rule,
        at="before",
        severity="high",
        action="pause",
        message="needs a human",
        state="open",
        created_at=T0,
        context={"risk": "high", "files": ["a.py"]},
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def seeded(store: Store) -> Store:
    store.create_run(run_record(), [task_record("a"), task_record("b"), task_record("c")])
    return store


# ---- runs and tasks -----------------------------------------------------------------------------


def test_create_run_round_trip(store: Store) -> None:
    deadline = datetime(2030, 5, 6, 7, 8, tzinfo=UTC)
    rich = TaskSpec.model_validate(
        {
            "id": "build.1",
            "title": "Build ünïcode",
            "action": {"kind": "agent", "prompt": "do it", "env": {"K": "v"}},
            "depends_on": ["x"],
            "priority": "high",
            "deadline": deadline.isoformat(),
            "retry": {"max_attempts": 5, "backoff": "linear"},
            "validators": ["python_syntax", {"name": "command", "run": ["pytest"]}],
            "branches": [{"when": "score < 0.5", "spawn": [spec("fix").model_dump()]}],
        }
    )
    tasks = [
        TaskRecord(run_id=RUN, task_id="build.1", state="ready", spec=rich, priority=8),
        task_record("x"),
    ]
    store.create_run(run_record(), tasks)

    run = store.get_run(RUN)
    assert run == run_record()
    assert run.created_at.tzinfo is not None and run.created_at.utcoffset() == timedelta(0)
    loaded = store.tasks(RUN)
    assert [t.task_id for t in loaded] == ["build.1", "x"]
    assert loaded[0].spec == rich
    assert loaded[0].spec.deadline == deadline
    assert loaded[0].priority == 8 and loaded[0].state == "ready"
    assert loaded[0].updated_at == T0
    assert store.task(RUN, "x").spec == spec("x")


def test_tasks_keep_insertion_order(store: Store) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    store.create_run(run_record(), [task_record(n) for n in names])
    store.commit(RUN, Batch(new_tasks=[task_record("aaa"), task_record("omega")]))
    assert [t.task_id for t in store.tasks(RUN)] == [*names, "aaa", "omega"]


def test_duplicate_run_is_refused(seeded: Store) -> None:
    with pytest.raises(StoreError, match="run 'run-1' already exists"):
        seeded.create_run(run_record(), [task_record("z")])
    assert [t.task_id for t in seeded.tasks(RUN)] == ["a", "b", "c"]


def test_not_found_errors_name_the_id(seeded: Store) -> None:
    with pytest.raises(NotFoundError, match="run 'nope' not found"):
        seeded.get_run("nope")
    with pytest.raises(NotFoundError, match="task 'nope' not found in run 'run-1'"):
        seeded.task(RUN, "nope")
    with pytest.raises(NotFoundError, match="breakpoint 999 not found"):
        seeded.breakpoint(999)


def test_list_runs_newest_first(store: Store) -> None:
    assert store.latest_run() is None
    assert store.list_runs() == []
    for n, hours in (("old", 0), ("new", 2), ("mid", 1)):
        store.create_run(run_record(n, T0 + timedelta(hours=hours)), [])
    assert [r.id for r in store.list_runs()] == ["new", "mid", "old"]
    latest = store.latest_run()
    assert latest is not None and latest.id == "new"


def test_other_time_zones_come_back_as_utc(store: Store) -> None:
    local = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    store.create_run(run_record(created=local), [])
    run = store.get_run(RUN)
    assert run.created_at == T0
    assert run.created_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(store: Store) -> None:
    naive = run_record(created=T0.replace(tzinfo=None))
    with pytest.raises(StoreError, match="naive datetime"):
        store.create_run(naive, [])


# ---- commit: moves and history -----------------------------------------------------------------


def test_moves_update_tasks_and_record_history(seeded: Store) -> None:
    before = datetime.now(UTC)
    batch = Batch(
        moves=[
            move("a", "pending", "ready", "release"),
            move("a", "ready", "running", "start", actor="worker-7"),
            move("b", "pending", "ready", "release"),
        ]
    )
    assert seeded.commit(RUN, batch) == []

    assert seeded.task(RUN, "a").state == "running"
    assert seeded.task(RUN, "b").state == "ready"
    assert seeded.task(RUN, "c").state == "pending"
    updated = seeded.task(RUN, "a").updated_at
    assert updated is not None and updated >= before

    history = seeded.transitions(RUN)
    assert [(h.task_id, h.source, h.dest, h.trigger) for h in history] == [
        ("a", "pending", "ready", "release"),
        ("a", "ready", "running", "start"),
        ("b", "pending", "ready", "release"),
    ]
    second = history[1]
    assert (second.run_id, second.reason, second.actor) == (RUN, "because start", "worker-7")
    assert second.at >= before and second.at.utcoffset() == timedelta(0)
    assert history[0].id < history[1].id < history[2].id
    assert seeded.last_transition_id(RUN) == history[2].id
    assert [h.task_id for h in seeded.transitions(RUN, "a")] == ["a", "a"]
    assert [h.id for h in seeded.transitions(RUN, after_id=history[0].id)] == [
        history[1].id,
        history[2].id,
    ]


def test_last_transition_id_of_a_quiet_run_is_zero(seeded: Store) -> None:
    assert seeded.last_transition_id(RUN) == 0
    assert seeded.transitions(RUN) == []


def test_conflict_rolls_back_the_whole_batch(seeded: Store) -> None:
    seeded.commit(RUN, Batch(moves=[move("b", "pending", "ready", "release")]))
    doomed = Batch(
        moves=[
            move("a", "pending", "ready", "release"),
            move("b", "pending", "ready", "release"),  # b is already ready
        ],
        task_updates=[("a", {"attempts": 3})],
        new_tasks=[task_record("new")],
        breakpoints=[breakpoint_record()],
        decisions=[DecisionRecord(RUN, "a", 1, "proceed", "r", "ok", {}, T0)],
        quality=[QualityRecord(RUN, "a", 1, 0.9, True, {}, [], T0)],
        events=[EventRecord(RUN, "note", "a", {}, T0)],
        run_state="paused",
    )
    with pytest.raises(StoreConflict) as caught:
        seeded.commit(RUN, doomed)

    conflict = caught.value
    assert (conflict.task_id, conflict.expected, conflict.actual) == ("b", "pending", "ready")
    assert "task 'b'" in str(conflict) and "'ready'" in str(conflict)
    assert [(t.task_id, t.state, t.attempts) for t in seeded.tasks(RUN)] == [
        ("a", "pending", 0),
        ("b", "ready", 0),
        ("c", "pending", 0),
    ]
    assert len(seeded.transitions(RUN)) == 1
    assert seeded.breakpoints() == []
    assert seeded.decisions(RUN) == [] and seeded.quality(RUN) == [] and seeded.events(RUN) == []
    assert seeded.get_run(RUN).state == "running"


def test_conflict_on_a_missing_task(seeded: Store) -> None:
    with pytest.raises(StoreConflict) as caught:
        seeded.commit(RUN, Batch(moves=[move("ghost", "pending", "ready", "release")]))
    assert caught.value.actual == "<missing>"


def test_task_updates(seeded: Store) -> None:
    retry_at = T0 + timedelta(minutes=5)
    values = {
        "attempts": 2,
        "outcome": "skipped",
        "next_attempt_at": retry_at,
        "feedback": "lint failed",
        "answer": "use v2",
        "last_error_kind": "transient",
        "priority": 9,
    }
    seeded.commit(RUN, Batch(task_updates=[("a", values)]))
    task = seeded.task(RUN, "a")
    assert {name: getattr(task, name) for name in values} == values
    assert task.state == "pending"

    with pytest.raises(StoreError, match="cannot update field"):
        seeded.commit(RUN, Batch(task_updates=[("a", {"state": "completed"})]))
    with pytest.raises(NotFoundError, match="task 'ghost' not found"):
        seeded.commit(RUN, Batch(task_updates=[("ghost", {"attempts": 1})]))


def test_tasks_changing_different_fields_share_one_update_and_keep_the_others(
    seeded: Store,
) -> None:
    retry_at = T0 + timedelta(minutes=5)
    first = {"attempts": 4, "next_attempt_at": retry_at, "feedback": "again"}
    seeded.commit(RUN, Batch(task_updates=[("a", first)]))
    new_spec = spec("b", title="renamed")
    seeded.commit(
        RUN,
        Batch(
            task_updates=[
                ("a", {"next_attempt_at": None, "outcome": "succeeded"}),
                ("b", {"attempts": 1, "spec": new_spec}),
                ("c", {"feedback": "", "priority": 7}),
            ]
        ),
    )
    a, b, c = (seeded.task(RUN, t) for t in "abc")
    assert (a.attempts, a.next_attempt_at, a.feedback, a.outcome) == (4, None, "again", "succeeded")
    assert (b.attempts, b.spec, b.outcome, b.next_attempt_at) == (1, new_spec, None, None)
    assert (c.feedback, c.priority, c.attempts) == ("", 7, 0)
    with pytest.raises(NotFoundError, match="task 'ghost' not found"):
        seeded.commit(
            RUN, Batch(task_updates=[("a", {"attempts": 5}), ("ghost", {"outcome": "x"})])
        )
    assert seeded.task(RUN, "a").attempts == 4  # the batch was rolled back


def test_run_state_sets_finished_at(seeded: Store) -> None:
    seeded.commit(RUN, Batch(run_state="completed"))
    run = seeded.get_run(RUN)
    assert run.state == "completed" and run.finished_at is not None
    assert run.updated_at > T0
    seeded.commit(RUN, Batch(run_state="running"))
    assert seeded.get_run(RUN).finished_at is None


def test_empty_batch_is_false_and_writes_nothing(seeded: Store) -> None:
    assert not Batch()
    assert Batch(run_state="paused")
    assert Batch(events=[EventRecord(RUN, "x", None, {}, T0)])
    assert seeded.commit(RUN, Batch()) == []


# ---- breakpoints, decisions, quality, events ----------------------------------------------------


def test_breakpoints_insert_and_resolve(seeded: Store) -> None:
    ids = seeded.commit(RUN, Batch(breakpoints=[breakpoint_record("a"), breakpoint_record("b")]))
    assert len(ids) == 2 and ids[0] < ids[1]
    first = seeded.breakpoint(ids[0])
    assert first == BreakpointRecord(**{**_fields(breakpoint_record("a")), "id": ids[0]})

    resolved_at = T0 + timedelta(hours=1)
    seeded.commit(RUN, Batch(resolutions=[(ids[0], "approve", "looks fine", "alice", resolved_at)]))
    done = seeded.breakpoint(ids[0])
    assert (done.state, done.resolution, done.note) == ("resolved", "approve", "looks fine")
    assert (done.resolved_by, done.resolved_at) == ("alice", resolved_at)

    assert [b.id for b in seeded.breakpoints(state="open")] == [ids[1]]
    assert [b.id for b in seeded.breakpoints(RUN)] == ids
    assert seeded.breakpoints("other-run") == []

    with pytest.raises(StoreConflict, match="already resolved"):
        seeded.commit(RUN, Batch(resolutions=[(ids[0], "reject", "", "bob", resolved_at)]))
    with pytest.raises(NotFoundError, match="breakpoint 12345 not found"):
        seeded.commit(RUN, Batch(resolutions=[(12345, "reject", "", "bob", resolved_at)]))


def _fields(record: BreakpointRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


def test_decisions_round_trip(seeded: Store) -> None:
    made = [
        DecisionRecord(RUN, "a", 1, "retry", "flaky", "timeout", {"score": 0.4, "n": 2}, T0),
        DecisionRecord(RUN, "b", 1, "proceed", "default", "ok", {}, T0),
    ]
    seeded.commit(RUN, Batch(decisions=made))
    assert seeded.decisions(RUN) == made
    assert seeded.decisions(RUN, "a") == made[:1]


def test_quality_round_trip(seeded: Store) -> None:
    checks = [{"name": "python_syntax", "stage": "syntax", "passed": True, "score": 1.0}]
    made = [
        QualityRecord(RUN, "a", 1, 0.85, True, {"syntax": 1.0, "testing": 0.7}, checks, T0),
        QualityRecord(RUN, "a", 2, 0.25, False, {}, [], T0),
    ]
    seeded.commit(RUN, Batch(quality=made))
    assert seeded.quality(RUN) == made
    assert seeded.quality(RUN, "b") == []


def test_events_round_trip_and_polling(seeded: Store) -> None:
    made = [
        EventRecord(RUN, "run_started", None, {"plan": "demo"}, T0),
        EventRecord(RUN, "task_note", "a", {"text": "hi", "n": [1, 2]}, T0),
    ]
    seeded.commit(RUN, Batch(events=made))
    stored = seeded.events(RUN)
    assert [(e.kind, e.task_id, e.data, e.at) for e in stored] == [
        (e.kind, e.task_id, e.data, e.at) for e in made
    ]
    assert seeded.events(RUN, after_id=stored[0].id) == stored[1:]


def test_integrity_check(seeded: Store) -> None:
    assert seeded.integrity_ok()


# ---- opening, URLs and SQLite settings ---------------------------------------------------------


def test_resolve_db_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_DB", raising=False)
    plan_dir = tmp_path / "plan"
    default = resolve_db_url(None, plan_dir)
    assert default == f"sqlite:///{plan_dir.resolve()}/.orchestration/state.db"
    assert (plan_dir / ".orchestration").is_dir()
    monkeypatch.setenv("ORCH_DB", "sqlite:////from/env.db")
    assert resolve_db_url(None, plan_dir) == "sqlite:////from/env.db"
    assert resolve_db_url("sqlite:////explicit.db", plan_dir) == "sqlite:////explicit.db"


def test_resolve_db_url_searches_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_DB", raising=False)
    state = tmp_path / ".orchestration" / "state.db"
    state.parent.mkdir()
    state.touch()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert resolve_db_url(None, None) == f"sqlite:///{state.resolve()}"
    state.unlink()
    assert resolve_db_url(None, None) == f"sqlite:///{deep.resolve()}/.orchestration/state.db"


def test_open_creates_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y" / "state.db"
    with Store.open(f"sqlite:///{path}") as opened:
        assert opened.dialect == "sqlite"
    assert path.is_file()


def test_open_failure_masks_the_password() -> None:
    url = "postgresql+psycopg://orch:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert "cannot open the store at postgresql+psycopg://orch:***@127.0.0.1:1/nowhere" in message
    assert "s3cret" not in message


def test_open_refuses_an_unknown_synchronous_level(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown SQLite synchronous level 'sometimes'"):
        Store.open(f"sqlite:///{tmp_path / 's.db'}?synchronous=sometimes")


@pytest.mark.parametrize(
    ("query", "env", "expected"), [("", None, 1), ("?synchronous=full", None, 2), ("", "FULL", 2)]
)
def test_sqlite_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str, env: str | None, expected: int
) -> None:
    if env is None:
        monkeypatch.delenv("ORCH_SQLITE_SYNCHRONOUS", raising=False)
    else:
        monkeypatch.setenv("ORCH_SQLITE_SYNCHRONOUS", env)
    with Store.open(f"sqlite:///{tmp_path / 's.db'}{query}") as opened:
        pragmas = _pragmas(opened, "journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    assert pragmas == ["wal", expected, 1, 30000]
    with sqlite3.connect(tmp_path / "s.db") as raw:  # WAL is recorded in the file itself
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def _pragmas(opened: Store, *names: str) -> list[Any]:
    with opened._engine.connect() as conn:  # the store's own connection settings
        return [conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in names]


# ---- several processes on one database ---------------------------------------------------------


def _release_tasks(url: str, task_ids: list[str], barrier: Barrier, reports: Any) -> None:
    try:
        with Store.open(url) as opened:
            barrier.wait(PROCESS_TIMEOUT_S)
            for task_id in task_ids:
                opened.commit(RUN, Batch(moves=[move(task_id, "pending", "ready", "release")]))
        reports.put("done")
    except Exception as exc:
        reports.put(f"{type(exc).__name__}: {exc}")


def _claim_tasks(url: str, task_ids: list[str], barrier: Barrier, results: Any) -> None:
    try:
        with Store.open(url) as opened:
            for task_id in task_ids:
                barrier.wait(PROCESS_TIMEOUT_S)
                claim = Batch(moves=[move(task_id, "ready", "running", "start")])
                try:
                    opened.commit(RUN, claim)
                    results.put((task_id, "won"))
                except StoreConflict as conflict:
                    results.put((task_id, f"conflict:{conflict.actual}"))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _run_processes(target: Any, arg_lists: list[tuple[Any, ...]], expected: int) -> list[Any]:
    """Start one spawned process per argument tuple; return what they put on the queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    barrier = context.Barrier(len(arg_lists))
    processes = [context.Process(target=target, args=(*a, barrier, queue)) for a in arg_lists]
    for process in processes:
        process.start()
    items = []
    try:
        for _ in range(expected):
            items.append(queue.get(timeout=PROCESS_TIMEOUT_S))
    finally:
        for process in processes:
            process.join(PROCESS_TIMEOUT_S)
            process.close()
        queue.close()
        queue.join_thread()
    return items


@pytest.mark.slow
def test_four_processes_commit_concurrently(sqlite_url: str) -> None:
    per_process, workers = 100, 4
    names = [[f"w{w}-t{i}" for i in range(per_process)] for w in range(workers)]
    with Store.open(sqlite_url) as opened:
        opened.create_run(run_record(), [task_record(n) for group in names for n in group])

    args = [(sqlite_url, group) for group in names]
    reports = _run_processes(_release_tasks, args, expected=workers)

    assert reports == ["done"] * workers  # no "database is locked", no conflict
    with Store.open(sqlite_url) as opened:
        assert [t.state for t in opened.tasks(RUN)] == ["ready"] * (per_process * workers)
        assert len(opened.transitions(RUN)) == per_process * workers
        assert opened.integrity_ok()


@pytest.mark.slow
def test_two_processes_race_for_the_same_task(db_url: str) -> None:
    task_ids = [f"t{i}" for i in range(20)]
    with Store.open(db_url) as opened:
        opened.create_run(run_record(), [task_record(t, state="ready") for t in task_ids])

    args = [(db_url, task_ids), (db_url, task_ids)]
    results = _run_processes(_claim_tasks, args, expected=2 * len(task_ids))

    assert not [r for r in results if r[0] == "error"], results
    for task_id in task_ids:
        outcomes = sorted(outcome for name, outcome in results if name == task_id)
        assert outcomes == ["conflict:running", "won"], (task_id, outcomes)
    with Store.open(db_url) as opened:
        assert {t.state for t in opened.tasks(RUN)} == {"running"}
        assert len(opened.transitions(RUN)) == len(task_ids)
