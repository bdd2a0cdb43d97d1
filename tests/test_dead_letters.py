"""The dead letter queue on real SQLite files and PostgreSQL: capture once per failure with the
whole story, resubmit in the run or a new run, purge, stats; a real engine run; the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.core.errors import NotFoundError, OrchestrationError
from orchestration.core.lifecycle import Move
from orchestration.core.models import (
    DecisionRecord,
    EventRecord,
    QualityRecord,
    RunRecord,
    TaskRecord,
    TaskSpec,
)
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.engine.review import resolve_breakpoint
from orchestration.pluginhost.hooks import load_plugins
from orchestration.resilience.dead_letters import (
    capture_dead_letter,
    purge,
    resubmit,
    stats,
)
from orchestration.store import Batch, Store
from tests.helpers import PY, capture_missing, shell_task, write_plan

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
RUN = "run-1"
LAUNCH = "from orchestration.cli.root import main; main()"


def orch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def spec(task_id: str, *deps: str) -> TaskSpec:
    return TaskSpec.model_validate(
        {"id": task_id, "action": {"kind": "shell", "run": ["make", "x"]}, "depends_on": list(deps)}
    )


def make_run(store: Store, run_id: str = RUN, finished: datetime | None = None) -> None:
    tasks = [
        TaskRecord(run_id, "a", "running", spec("a"), attempts=2, last_error_kind="transient"),
        TaskRecord(run_id, "b", "cancelled", spec("b", "a"), outcome="upstream_failed"),
        TaskRecord(run_id, "c", "completed", spec("c"), outcome="succeeded"),
    ]
    plan = {
        "spec": {
            "version": 1,
            "name": "demo",
            "tasks": [t.spec.model_dump(mode="json") for t in tasks],
        },
        "path": "/p/plan.yaml",
        "workdir": "/p",
        "rule_files": [],
    }
    run = RunRecord(run_id, "demo", "/p/plan.yaml", "/p", "failed", T0, T0, finished or T0, plan)
    store.create_run(run, tasks)


def fail_a(store: Store, run_id: str = RUN) -> None:
    """Two recorded attempts of `a`, then its move into `failed`, as the engine stores them."""
    steps = [
        EventRecord(
            run_id,
            "step",
            "a",
            {
                "attempt": n,
                "exit_code": 2,
                "error_kind": "transient",
                "output_tail": f"boom {n}\n" + "x" * 5000,
                "duration_seconds": 1.5,
                "changed_files": ["f.py"],
                "quality_score": 0.1,
                "gate_passed": False,
            },
            T0,
        )
        for n in (1, 2)
    ]
    quality = [
        QualityRecord(
            run_id, "a", n, 0.1, False, {"syntax": 0.2}, [{"name": "pytest", "passed": False}], T0
        )
        for n in (1, 2)
    ]
    decisions = [
        DecisionRecord(run_id, "a", n, "retry", "retry_failed_attempt", "gate failed", {}, T0)
        for n in (1, 2)
    ]
    store.commit(run_id, Batch(events=steps, quality=quality, decisions=decisions))
    store.commit(
        run_id,
        Batch(
            moves=[Move("a", "running", "failed", "fail", "out of attempts: gate failed", "engine")]
        ),
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


def test_capture_keeps_the_whole_story_once_per_failure(store: Store) -> None:
    make_run(store)
    assert capture_dead_letter(store, RUN, "a") is None  # not failed yet
    fail_a(store)
    letter = capture_dead_letter(store, RUN, "a")
    assert letter is not None and letter.id > 0
    assert (letter.run_id, letter.task_id, letter.state) == (RUN, "a", "open")
    assert letter.error_kind == "transient" and letter.reason == "out of attempts: gate failed"
    assert letter.spec["action"]["run"] == ["make", "x"]
    assert [a["attempt"] for a in letter.attempts] == [1, 2]
    first = letter.attempts[0]
    assert (
        first["exit_code"] == 2
        and first["output_tail"].startswith("x")
        and len(first["output_tail"]) == 4000
    )
    assert first["changed_files"] == ["f.py"] and first["gate_passed"] is False
    assert [q["attempt"] for q in letter.quality] == [1, 2]
    assert letter.quality[0]["checks"] == [{"name": "pytest", "passed": False}]
    assert [d["decision"] for d in letter.decisions] == ["retry", "retry"]
    transition = store.transitions(RUN, "a")[-1]
    assert letter.transition_id == transition.id and letter.failed_at == transition.at
    # capturing again (another process, a resumed engine) stores nothing new
    assert capture_dead_letter(store, RUN, "a") == letter
    assert capture_missing(store, RUN) == [letter]
    assert len(store.dead_letters()) == 1
    # a duplicate insert of the same failure is ignored by the store itself
    store.commit(RUN, Batch(dead_letters=[letter]))
    assert len(store.dead_letters(RUN)) == 1


def test_resubmit_in_the_run_requeues_and_revives_dependents(store: Store) -> None:
    make_run(store)
    fail_a(store)
    letter = capture_dead_letter(store, RUN, "a")
    assert letter is not None
    done = resubmit(store, letter.id, actor="ann", sets={"action.run": ["make", "y"]}, note="fixed")
    assert done.new_run_id is None and done.intervention is not None
    assert (
        done.intervention.state == "applied"
        and done.intervention.params["dead_letter"] == letter.id
    )
    assert (done.dead_letter.state, done.dead_letter.resolved_by) == ("resubmitted", "ann")
    tasks = {t.task_id: t for t in store.tasks(RUN)}
    assert (tasks["a"].state, tasks["b"].state, tasks["c"].state) == (
        "ready",
        "pending",
        "completed",
    )
    assert tasks["a"].spec.action.run == ["make", "y"]  # type: ignore[union-attr]
    assert store.get_run(RUN).state == "paused"
    with pytest.raises(OrchestrationError, match=f"dead letter {letter.id} is already resubmitted"):
        resubmit(store, letter.id, actor="ann")


def test_resubmit_of_a_task_that_moved_on_needs_a_new_run(store: Store) -> None:
    make_run(store)
    fail_a(store)
    letter = capture_dead_letter(store, RUN, "a")
    assert letter is not None
    store.commit(RUN, Batch(moves=[Move("a", "failed", "completed", "skip", "", "bob")]))
    with pytest.raises(OrchestrationError, match=r"task 'a' of dead letter .* is completed now"):
        resubmit(store, letter.id, actor="ann")
    done = resubmit(store, letter.id, actor="ann", new_run=True, sets={"timeout_seconds": 9})
    assert done.new_run_id is not None and done.dead_letter.params["new_run"] == done.new_run_id
    new = store.get_run(done.new_run_id)
    assert new.state == "paused" and new.plan_json["path"] == "/p/plan.yaml"
    (only,) = store.tasks(new.id)
    assert (only.task_id, only.state, only.attempts) == ("a", "pending", 0)
    assert only.spec.timeout_seconds == 9 and only.spec.depends_on == []
    assert [t["id"] for t in new.plan_json["spec"]["tasks"]] == ["a"]
    (record,) = store.interventions(RUN)
    assert record.action == "resubmit" and record.params["new_run"] == new.id
    with pytest.raises(NotFoundError, match="dead letter 999 not found"):
        resubmit(store, 999, actor="ann")


def test_purge_and_stats(store: Store) -> None:
    make_run(store)
    fail_a(store)
    make_run(store, "run-2")
    fail_a(store, "run-2")
    first, second = capture_missing(store, RUN) + capture_missing(store, "run-2")
    resubmit(store, first.id, actor="ann", new_run=True)
    figures = stats(store.dead_letters())
    assert figures["total"] == 2 and figures["by_state"] == {
        "open": 1,
        "resubmitted": 1,
        "closed": 0,
    }
    assert figures["by_error_kind"] == [{"name": "transient", "count": 2}]
    assert {e["name"] for e in figures["by_run"]} == {RUN, "run-2"}
    # open ones stay unless asked; the age counts from the failure
    later = first.failed_at + timedelta(days=40)
    assert purge(store, older_than_seconds=30 * 86_400, now=first.failed_at) == []
    assert [
        d.id for d in purge(store, older_than_seconds=30 * 86_400, now=later, dry_run=True)
    ] == [first.id]
    assert len(store.dead_letters()) == 2
    assert [d.id for d in purge(store, older_than_seconds=30 * 86_400, now=later)] == [first.id]
    assert [d.id for d in purge(store, include_open=True)] == [second.id]
    assert store.dead_letters() == []


# ---- a real engine: a task fails for good, is resubmitted with a fix, and its dependent runs ----


def test_a_failed_task_resubmitted_with_a_fix_completes_the_run(tmp_path: Path) -> None:
    plan_path = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "dlq",
            "defaults": {"retry": {"max_attempts": 1}, "validators": []},
            "tasks": [
                shell_task("a", "raise SystemExit(3)"),
                shell_task("b", "pass", depends_on=["a"]),
            ],
        },
    )
    plan = load_plan(plan_path)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        engine = build_engine(plan, load_plugins(entry_points=False))
        first = Orchestrator.start(plan, store, run_id="r", engine=engine).run_until_stopped()
        assert first.state == "paused"  # the default rules ask a human about the failure
        (bp,) = store.breakpoints("r", state="open")
        resolve_breakpoint(store, bp.id, "reject", actor="ann", reject_as="fail")
        failed = Orchestrator.resume(store, "r", engine=engine, force=True).run_until_stopped()
        assert failed.state == "failed"
        assert store.task("r", "b").outcome == "upstream_failed"
        (letter,) = capture_missing(store, "r")
        assert letter.attempts[0]["exit_code"] == 3
        resubmit(store, letter.id, actor="ann", sets={"action.run": [PY, "-c", "pass"]})
        done = Orchestrator.resume(store, "r", engine=engine, force=True).run_until_stopped()
        assert done.state == "completed"
        a, b = store.task("r", "a"), store.task("r", "b")
        assert (a.state, a.outcome, a.attempts, b.state) == (
            "completed",
            "succeeded",
            2,
            "completed",
        )
        history = [m.trigger for m in store.transitions("r", "a")]
        assert history[-3:] == ["requeue", "start", "succeed"] and "fail" in history


# ---- the command line --------------------------------------------------------------------------


def test_cli_dlq(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store:
        make_run(store)
        fail_a(store)
        letter = capture_dead_letter(store, RUN, "a")
    assert letter is not None
    listed = orch("dlq", "list", "--json", "--db", sqlite_url)
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)["dead_letters"]
    assert (item["id"], item["task"], item["state"], item["attempts_count"]) == (
        letter.id,
        "a",
        "open",
        2,
    )
    shown = orch("dlq", "show", str(letter.id), "--db", sqlite_url)
    assert "boom 2" not in shown.stdout  # the tail keeps the end of the output
    assert "attempt 2: exit 2, transient" in shown.stdout and "orch dlq resubmit" in shown.stdout
    full = json.loads(orch("dlq", "show", str(letter.id), "--json", "--db", sqlite_url).stdout)
    assert full["dead_letter"]["decisions"][0]["rule"] == "retry_failed_attempt"
    missing = orch("dlq", "show", "77", "--db", sqlite_url)
    assert missing.returncode == 2 and "dead letter 77 not found" in missing.stderr
    bad = orch("dlq", "resubmit", str(letter.id), "--set", "depends_on=[]", "--db", sqlite_url)
    assert bad.returncode == 2 and "depends_on cannot change" in bad.stderr
    again = orch(
        "dlq",
        "resubmit",
        str(letter.id),
        "--set",
        "timeout_seconds=5",
        "-r",
        "try",
        "--db",
        sqlite_url,
    )
    assert again.returncode == 0, again.stderr
    assert "a retried" in again.stdout and f"orch resume {RUN}" in again.stdout
    figures = json.loads(orch("dlq", "stats", "--json", "--db", sqlite_url).stdout)["stats"]
    assert figures["by_state"]["resubmitted"] == 1
    purged = orch("dlq", "purge", "--older-than", "1s", "--db", sqlite_url)
    assert purged.returncode == 0 and "deleted 1 dead letter(s)" in purged.stdout
    bad_age = orch("dlq", "purge", "--older-than", "soon", "--db", sqlite_url)
    assert bad_age.returncode == 2 and "--older-than: expected a duration" in bad_age.stderr
