"""Hostile or broken input is a clear error (exit 2, or the right HTTP code), never a crash or hang.

Each case here used to end in exit 70 ("internal error"), an HTTP 500, a hang or a read until the
machine ran out of memory.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import orch, shell_task, write_plan

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

BOUND_S = 120  # a hang shows as a timeout here; a working guard answers in about a second
HUGE = "9" * 5000  # beyond Python's 4,300-digit limit for int(str)
DEEP_JSON = "[" * 100_000 + "]" * 100_000
TOKEN = "test-token-0123456789abcdefghij"


def one_line(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stderr.replace("\n", " ")


# ---- numbers with thousands of digits ------------------------------------------------------


def test_a_huge_integer_in_a_plan_is_a_clear_error(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: huge\ntasks:\n"
        f"  - id: a\n    priority: {HUGE}\n    action: {{kind: shell, run: ['true']}}\n"
    )
    done = orch("validate", str(plan), timeout=BOUND_S)
    assert done.returncode == 2, done.stderr
    assert f"{plan}:5" in one_line(done) and "digits" in done.stderr, done.stderr


def test_a_huge_integer_in_a_rule_file_is_a_clear_error(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"quality:\n  gate: {{min_score: {HUGE}}}\n")
    done = orch("rules", "check", str(rules), timeout=BOUND_S)
    assert done.returncode == 2, done.stderr
    assert f"{rules}:2" in one_line(done) and "digits" in done.stderr, done.stderr


# ---- JSON nested 100,000 deep -------------------------------------------------------------


def test_deep_json_context_for_rules_eval_is_a_clear_error(tmp_path: Path) -> None:
    context = tmp_path / "context.json"
    context.write_text(DEEP_JSON)
    done = orch("rules", "eval", "1 + 1", "--context", str(context), timeout=BOUND_S)
    assert done.returncode == 2 and str(context) in one_line(done), done.stderr
    assert "nested deeper" in done.stderr, done.stderr


def test_deep_json_contexts_for_rules_test_are_a_clear_error(tmp_path: Path) -> None:
    contexts = tmp_path / "contexts.jsonl"
    contexts.write_text('{"task_id": "a"}\n{"result": ' + DEEP_JSON + "}\n")
    done = orch("rules", "test", "--contexts", str(contexts), timeout=BOUND_S)
    assert done.returncode == 2 and f"{contexts}:2" in one_line(done), done.stderr
    assert "nested deeper" in done.stderr, done.stderr


# ---- files that are not files -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["validate", "{path}"],
        ["rules", "check", "{path}"],
        ["rules", "test", "--contexts", "{path}"],
        ["rules", "eval", "1", "--context", "{path}"],
    ],
    ids=["validate", "rules-check", "rules-test", "rules-eval"],
)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, command: list[str]) -> None:
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    done = orch(*(part.format(path=fifo) for part in command), timeout=BOUND_S)
    assert done.returncode == 2 and str(fifo) in one_line(done), done.stderr
    assert "not a" in done.stderr, done.stderr


def test_an_endless_device_is_refused_not_read(tmp_path: Path) -> None:
    done = orch("validate", "/dev/zero", timeout=BOUND_S)
    assert done.returncode == 2 and "/dev/zero" in done.stderr, done.stderr


# ---- a damaged SQLite file ----------------------------------------------------------------


def damage_tables(db: Path, tables: tuple[str, ...]) -> None:
    """Overwrite the data pages of `tables` (the schema page stays readable)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0"))
    conn.close()
    data = bytearray(db.read_bytes())
    for table in tables:
        start = (roots[table] - 1) * page_size
        for offset in range(start + 8, start + page_size, 5):
            data[offset] = 0xA5
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("command", [["status", "r"], ["resume", "r"], ["status"]])
def test_a_damaged_database_is_named_and_never_called_intact(
    tmp_path: Path, command: list[str]
) -> None:
    plan = write_plan(tmp_path, {"version": 1, "name": "d", "tasks": [shell_task("a", "pass")]})
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    ran = orch("run", str(plan), "--run-id", "r", "--db", url, "--quiet", timeout=BOUND_S)
    assert ran.returncode == 0, ran.stderr
    damage_tables(db, ("runs", "tasks", "events", "transitions"))
    done = orch(*command, "--db", url, timeout=BOUND_S)
    text = one_line(done)
    assert done.returncode == 2, done.stderr
    assert str(db) in text.replace(" ", "") or str(db) in text, done.stderr
    assert "damaged" in text and "Nothing stored was lost" not in text, done.stderr


# ---- API cursors beyond 64 bits -----------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    plan = load_plan(
        write_plan(tmp_path, {"version": 1, "name": "c", "tasks": [shell_task("a", "pass")]})
    )
    with Store.open(sqlite_url) as store:
        Orchestrator.start(plan, store, run_id="r", engine=build_engine(plan)).run_until_stopped()
        app = create_app(ServerConfig(db_url=sqlite_url, token=TOKEN), store=store)
        with TestClient(app, follow_redirects=False) as test_client:
            yield test_client


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/runs/r/events?after=" + "9" * 20, 422),
        ("/api/v1/runs/r/transitions?after=" + str(2**64), 422),
        ("/api/v1/runs/r/events/stream?after=" + "9" * 20 + ":1", 400),
        ("/api/v1/runs/r/events/stream?after=1:" + "9" * 5000, 400),
    ],
    ids=["events", "transitions", "stream-event-id", "stream-huge-move-id"],
)
def test_cursors_beyond_64_bits_are_refused_clearly(
    client: TestClient, path: str, status: int
) -> None:
    response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status, response.text
    assert "after" in response.text or "cursor" in response.text, response.text


def test_the_largest_cursor_still_works(client: TestClient) -> None:
    response = client.get(
        f"/api/v1/runs/r/events?after={2**63 - 1}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200 and response.json()["events"] == [], response.text
