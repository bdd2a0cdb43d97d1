"""Alembic migrations: every revision upgrades to head, and head matches the models exactly."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from orchestration.core.errors import StoreError
from orchestration.core.models import RunRecord
from orchestration.store import Store
from orchestration.store.db import (
    alembic_config,
    create_store_engine,
    head_revision,
    newest_migration,
)
from orchestration.store.schema import metadata

PROCESS_TIMEOUT_S = 120  # seconds a child process may take before the test fails
STORE_TABLES = {
    "runs",
    "tasks",
    "transitions",
    "breakpoints",
    "decisions",
    "quality_results",
    "events",
    "run_settings",
    "work_items",
    "workers",
    "circuit_breakers",
    "dead_letters",
    "interventions",
    "run_plans",
    "schedules",
    "trigger_firings",
    "trigger_events",
    "trigger_cursors",
}


@contextmanager
def connection(url: str) -> Iterator[Connection]:
    """One transaction on the store's kind of engine (SQLite pragmas and BEGIN IMMEDIATE)."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def migrate(url: str, target: str, *, down: bool = False) -> None:
    with connection(url) as conn:
        config = alembic_config(conn)
        if down:
            command.downgrade(config, target)
        else:
            command.upgrade(config, target)


def revision_of(url: str) -> str | None:
    with connection(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_diff(url: str) -> list[Any]:
    with connection(url) as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def table_names(url: str) -> set[str]:
    with connection(url) as conn:
        return set(inspect(conn).get_table_names())


def all_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_open_upgrades_an_empty_database_to_head(db_url: str) -> None:
    with Store.open(db_url):
        pass
    assert revision_of(db_url) == head_revision()
    assert table_names(db_url) >= STORE_TABLES
    assert schema_diff(db_url) == []


@pytest.mark.parametrize("start", all_revisions())
def test_every_revision_upgrades_to_head(db_url: str, start: str) -> None:
    migrate(db_url, start)
    assert revision_of(db_url) == start
    with Store.open(db_url):
        pass
    assert revision_of(db_url) == head_revision()
    assert schema_diff(db_url) == []


def test_downgrade_to_base_and_back(db_url: str) -> None:
    with Store.open(db_url):
        pass
    migrate(db_url, "base", down=True)
    assert revision_of(db_url) is None
    assert not STORE_TABLES & table_names(db_url)
    with Store.open(db_url):
        pass
    assert revision_of(db_url) == head_revision()
    assert schema_diff(db_url) == []


def test_moving_the_plans_out_of_runs_keeps_them_and_every_runs_rows(db_url: str) -> None:
    migrate(db_url, "0003")
    now = datetime.now(UTC).replace(tzinfo=None)
    plan = '{"spec": {"name": "demo", "tasks": []}, "path": "/p.yaml"}'
    with connection(db_url) as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, plan_name, plan_path, workdir, state, created_at, "
                "updated_at, plan_json) VALUES ('r1', 'demo', '/p.yaml', '/w', 'paused', :now, "
                ":now, :plan)"
            ),
            {"now": now, "plan": plan},
        )
        conn.execute(
            text(
                "INSERT INTO tasks (run_id, task_id, seq, state, spec, attempts, priority, "
                "feedback, answer, last_error_kind, updated_at) VALUES ('r1', 'a', 0, 'ready', "
                """'{"id": "a", "action": {"kind": "shell", "run": ["true"]}}', 0, 5, '', '', """
                "'none', :now)"
            ),
            {"now": now},
        )
    migrate(db_url, "0004")
    with Store.open(db_url) as store:
        run = store.get_run("r1")
        assert run.plan_json == {"spec": {"name": "demo", "tasks": []}, "path": "/p.yaml"}
        assert [t.task_id for t in store.tasks("r1")] == ["a"]  # the runs table was not rebuilt
    migrate(db_url, "0003", down=True)
    with connection(db_url) as conn:
        stored = conn.execute(text("SELECT plan_json FROM runs WHERE id = 'r1'")).scalar()
    assert "demo" in str(stored)


def test_reopening_keeps_data(db_url: str) -> None:
    now = datetime.now(UTC)
    run = RunRecord("r1", "demo", "/p.yaml", "/w", "running", now, now, plan_json={"k": [1]})
    with Store.open(db_url) as first:
        first.create_run(run, [])
    with Store.open(db_url) as second:
        assert second.get_run("r1") == run


def test_a_newer_schema_is_refused(db_url: str) -> None:
    with Store.open(db_url):
        pass
    with connection(db_url) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(StoreError, match=r"revision 'from_the_future'.*upgrade orchestration"):
        Store.open(db_url)


def _open_store(url: str, barrier: Any, reports: Any) -> None:
    try:
        barrier.wait(PROCESS_TIMEOUT_S)
        with Store.open(url) as opened:
            reports.put("ok" if opened.integrity_ok() else "corrupt")
    except Exception as exc:
        reports.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_concurrent_first_open_of_one_file(sqlite_url: str) -> None:
    workers = 4
    context = multiprocessing.get_context("spawn")
    reports, barrier = context.Queue(), context.Barrier(workers)
    processes = [
        context.Process(target=_open_store, args=(sqlite_url, barrier, reports))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [reports.get(timeout=PROCESS_TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(PROCESS_TIMEOUT_S)
            process.close()
        reports.close()
        reports.join_thread()
    assert outcomes == ["ok"] * workers
    assert revision_of(sqlite_url) == head_revision()


def test_the_newest_migration_file_is_alembics_head() -> None:
    # Opening an up-to-date store compares with newest_migration() to skip importing alembic.
    assert newest_migration() == head_revision()
