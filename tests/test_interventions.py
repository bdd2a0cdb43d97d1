"""Interventions on real SQLite files and PostgreSQL: each action's moves, records and errors,
the request path of a run an engine works on, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestration.core.errors import NotFoundError, OrchestrationError, TaskStateError
from orchestration.core.models import (
    BreakpointRecord,
    DeadLetterRecord,
    RunRecord,
    TaskRecord,
    TaskSpec,
)
from orchestration.resilience.interventions import (
    apply_requested,
    human_pause,
    intervene,
    pause_run,
    stop_concluded,
    wait_until_applied,
)
from orchestration.store import Batch, Store
from tests.helpers import is_legal_path

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
RUN = "run-1"
LAUNCH = "from orchestration.cli.root import main; main()"


def orch(*args: str) -> subprocess.CompletedProcess[str]:
    """The `orch` CLI with these commands mounted (whether or not cli.py mounts them yet)."""
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def spec(task_id: str, *deps: str, **extra: Any) -> TaskSpec:
    action = {"kind": "shell", "run": ["true"]}
    return TaskSpec.model_validate(
        {"id": task_id, "action": action, "depends_on": list(deps), **extra}
    )


def task(
    task_id: str,
    state: str,
    *deps: str,
    outcome: str | None = None,
    attempts: int = 0,
    **extra: Any,
) -> TaskRecord:
    return TaskRecord(
        RUN, task_id, state, spec(task_id, *deps, **extra), attempts=attempts, outcome=outcome
    )


def make_run(
    store: Store,
    tasks: list[TaskRecord],
    *,
    live: bool = False,
    state: str = "paused",
    retry: dict[str, Any] | None = None,
) -> RunRecord:
    at = datetime.now(UTC) if live else T0
    plan_spec: dict[str, Any] = {
        "version": 1,
        "name": "demo",
        "tasks": [t.spec.model_dump(mode="json") for t in tasks],
    }
    if retry is not None:
        plan_spec["defaults"] = {"retry": retry}
    plan = {"spec": plan_spec, "path": "/p/plan.yaml", "workdir": "/p", "rule_files": []}
    run = RunRecord(
        RUN, "demo", "/p/plan.yaml", "/p", "running" if live else state, T0, at, None, plan
    )
    if state in ("completed", "failed", "cancelled"):
        run.finished_at = T0
    store.create_run(run, tasks)
    return run


def states(store: Store) -> dict[str, tuple[str, str | None]]:
    return {t.task_id: (t.state, t.outcome) for t in store.tasks(RUN)}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


# ---- each action on a run no engine works on: applied at once, in one transaction --------------


def test_pause_and_resume_a_task_are_recorded_with_who_and_why(store: Store) -> None:
    make_run(store, [task("a", "ready"), task("b", "pending", "a")])
    record = intervene(store, RUN, "pause", task_id="a", actor="ann", reason="look first")
    assert record.state == "applied" and record.id > 0
    assert states(store)["a"] == ("blocked", None)
    move = store.transitions(RUN, "a")[-1]
    assert (move.source, move.dest, move.trigger, move.actor) == (
        "ready",
        "blocked",
        "block",
        "ann",
    )
    assert "look first" in move.reason
    intervene(store, RUN, "resume", task_id="a", actor="bob")
    assert states(store)["a"] == ("ready", None)
    done = store.interventions(RUN)
    assert [(i.action, i.actor, i.task_id, i.state) for i in done] == [
        ("pause", "ann", "a", "applied"),
        ("resume", "bob", "a", "applied"),
    ]
    assert done[0].reason == "look first"
    events = [e for e in store.events(RUN) if e.kind == "intervention"]
    assert [e.data["action"] for e in events] == ["pause", "resume"]


def test_pausing_a_retrying_task_holds_it(store: Store) -> None:
    make_run(store, [task("a", "retrying")])
    intervene(store, RUN, "pause", task_id="a", actor="ann")
    assert states(store)["a"][0] == "blocked"


def test_illegal_changes_raise_before_anything_is_stored(store: Store) -> None:
    make_run(
        store,
        [task("a", "completed", outcome="succeeded"), task("b", "blocked"), task("c", "ready")],
    )
    with pytest.raises(
        TaskStateError,
        match=r"cannot 'block' task 'a' in state 'completed'; legal triggers: rerun, reset",
    ):
        intervene(store, RUN, "pause", task_id="a", actor="ann")
    with pytest.raises(OrchestrationError, match="task 'b' is already blocked"):
        intervene(store, RUN, "pause", task_id="b", actor="ann")
    with pytest.raises(OrchestrationError, match="task 'c' is ready, not paused"):
        intervene(store, RUN, "resume", task_id="c", actor="ann")
    with pytest.raises(OrchestrationError, match="cannot retry task 'c' in state 'ready'"):
        intervene(store, RUN, "retry", task_id="c", actor="ann")
    with pytest.raises(OrchestrationError, match="task 'c' is ready; rerun runs a finished task"):
        intervene(store, RUN, "rerun", task_id="c", actor="ann")
    with pytest.raises(OrchestrationError, match="a skip needs a reason"):
        intervene(store, RUN, "skip", task_id="c", actor="ann")
    with pytest.raises(NotFoundError, match="task 'zz' not found in run 'run-1'"):
        intervene(store, RUN, "cancel", task_id="zz", actor="ann")
    with pytest.raises(NotFoundError, match="run 'nope' not found"):
        intervene(store, "nope", "cancel", task_id="a", actor="ann")
    assert store.interventions(RUN) == []
    assert states(store) == {
        "a": ("completed", "succeeded"),
        "b": ("blocked", None),
        "c": ("ready", None),
    }


def test_a_task_at_a_breakpoint_is_answered_there_or_its_breakpoint_is_resolved(
    store: Store,
) -> None:
    make_run(store, [task("a", "blocked"), task("b", "blocked")])
    bp = BreakpointRecord(0, RUN, "a", "risky", "before", "high", "pause", "check", "open", T0)
    other = BreakpointRecord(0, RUN, "b", "risky", "before", "high", "pause", "check", "open", T0)
    ids = store.commit(RUN, Batch(breakpoints=[bp, other]))
    with pytest.raises(
        OrchestrationError,
        match=rf"waits at breakpoint {ids[0]} \(risky\).*orch breakpoints resolve {ids[0]}",
    ):
        intervene(store, RUN, "resume", task_id="a", actor="ann")
    intervene(store, RUN, "skip", task_id="a", actor="ann", reason="not needed")
    intervene(store, RUN, "cancel", task_id="b", actor="ann")
    resolved = {bp.task_id: bp for bp in store.breakpoints(RUN)}
    assert (resolved["a"].state, resolved["a"].resolution, resolved["a"].resolved_by) == (
        "resolved",
        "skip",
        "ann",
    )
    assert (resolved["b"].state, resolved["b"].resolution) == ("resolved", "reject")
    assert states(store) == {"a": ("completed", "skipped"), "b": ("cancelled", "cancelled")}


def test_retry_of_a_failed_task_revives_the_dependents_it_cancelled(store: Store) -> None:
    make_run(
        store,
        [
            task("a", "failed", attempts=3),
            task("b", "cancelled", "a", outcome="upstream_failed"),
            task("c", "cancelled", "b", outcome="upstream_failed"),
            task("d", "cancelled", outcome="cancelled"),  # a human cancelled it: stays
            task("e", "completed", "a", outcome="succeeded", trigger="one_failed"),
        ],
        state="failed",
        retry={"max_attempts": 3, "backoff": "fixed", "base_seconds": 7},
    )
    letter = DeadLetterRecord(
        0, RUN, "a", 1, T0, "transient", "out of attempts", {}, [], [], [], []
    )
    store.commit(RUN, Batch(dead_letters=[letter]))
    intervene(store, RUN, "retry", task_id="a", actor="ann", sets={"timeout_seconds": 600})
    assert states(store) == {
        "a": ("ready", None),
        "b": ("pending", None),
        "c": ("pending", None),
        "d": ("cancelled", "cancelled"),
        "e": ("completed", "succeeded"),
    }
    a = store.task(RUN, "a")
    assert a.attempts == 3  # the count goes on: earlier attempts stay in the history
    assert a.spec.timeout_seconds == 600
    # a fresh budget, keeping the plan's policy otherwise
    assert a.spec.retry is not None and a.spec.retry.max_attempts == 6
    assert (a.spec.retry.backoff, a.spec.retry.base_seconds) == ("fixed", 7)
    assert store.get_run(RUN).state == "paused"  # work again: resumable, and prune keeps it
    assert store.get_run(RUN).finished_at is None
    (captured,) = store.dead_letters(RUN)
    assert (captured.state, captured.resolved_by) == ("resubmitted", "ann")
    assert captured.params["sets"] == {"timeout_seconds": 600}
    triggers = [(m.task_id, m.trigger) for m in store.transitions(RUN)]
    assert triggers == [("a", "requeue"), ("b", "revive"), ("c", "revive")]


def test_an_explicit_retry_budget_is_kept(store: Store) -> None:
    make_run(store, [task("a", "failed", attempts=3)])
    intervene(store, RUN, "retry", task_id="a", actor="ann", sets={"retry.max_attempts": 4})
    retry = store.task(RUN, "a").spec.retry
    assert retry is not None and retry.max_attempts == 4


def test_a_bad_set_is_a_clear_error(store: Store) -> None:
    make_run(store, [task("a", "failed")])
    with pytest.raises(OrchestrationError, match="a task's id cannot change"):
        intervene(store, RUN, "retry", task_id="a", actor="ann", sets={"id": "x"})
    with pytest.raises(OrchestrationError, match="field timeout_seconds"):
        intervene(store, RUN, "retry", task_id="a", actor="ann", sets={"timeout_seconds": -1})
    assert states(store)["a"] == ("failed", None)


def test_retry_of_blocked_and_retrying_tasks(store: Store) -> None:
    make_run(store, [task("a", "blocked"), task("b", "retrying")])
    store.commit(RUN, Batch(task_updates=[("b", {"next_attempt_at": T0})]))
    intervene(store, RUN, "retry", task_id="a", actor="ann", sets={"action.run": ["echo", "hi"]})
    intervene(store, RUN, "retry", task_id="b", actor="ann")
    assert states(store) == {"a": ("ready", None), "b": ("ready", None)}
    assert store.task(RUN, "a").spec.action.run == ["echo", "hi"]  # type: ignore[union-attr]
    assert store.task(RUN, "b").next_attempt_at is None


def test_rerun_with_downstream_keeps_history_and_resets_dependents(store: Store) -> None:
    make_run(
        store,
        [
            task("a", "completed", outcome="succeeded", attempts=1),
            task("b", "completed", "a", outcome="succeeded", attempts=2),
            task("c", "failed", "b", attempts=1),
            task("d", "pending", "c"),
            task("x", "completed", outcome="succeeded"),
        ],
        state="completed",
    )
    intervene(store, RUN, "rerun", task_id="a", actor="ann", downstream=True, reason="new input")
    assert states(store) == {
        "a": ("ready", None),
        "b": ("pending", None),
        "c": ("pending", None),
        "d": ("pending", None),
        "x": ("completed", "succeeded"),
    }
    assert store.task(RUN, "b").attempts == 2
    assert [(m.task_id, m.trigger) for m in store.transitions(RUN)] == [
        ("a", "rerun"),
        ("b", "reset"),
        ("c", "reset"),
    ]
    for task_id in ("a", "b", "c"):
        history = [(m.source, m.dest, m.trigger) for m in store.transitions(RUN, task_id)]
        assert all(trigger in ("rerun", "reset") for _, _, trigger in history)
    (record,) = store.interventions(RUN)
    assert record.params == {"sets": {}, "downstream": True}
    assert "2 downstream task(s) wait for it: b, c" in record.note


def test_rerun_without_downstream_leaves_dependents_that_ran(store: Store) -> None:
    make_run(
        store,
        [
            task("a", "completed", outcome="succeeded"),
            task("b", "completed", "a", outcome="succeeded"),
        ],
    )
    intervene(store, RUN, "rerun", task_id="a", actor="ann")
    assert states(store) == {"a": ("ready", None), "b": ("completed", "succeeded")}


def test_rerun_downstream_refuses_while_a_dependent_is_busy(store: Store) -> None:
    make_run(store, [task("a", "completed", outcome="succeeded"), task("b", "blocked", "a")])
    with pytest.raises(
        OrchestrationError, match=r"b \(blocked\) must finish or be cancelled first"
    ):
        intervene(store, RUN, "rerun", task_id="a", actor="ann", downstream=True)


def test_skip_of_a_failed_task_lets_its_dependents_go_on(store: Store) -> None:
    make_run(store, [task("a", "failed"), task("b", "cancelled", "a", outcome="upstream_failed")])
    intervene(store, RUN, "skip", task_id="a", actor="ann", reason="done by hand")
    assert states(store) == {"a": ("completed", "skipped"), "b": ("pending", None)}


# ---- whole runs --------------------------------------------------------------------------------


def test_run_pause_is_a_setting_the_engine_reads_and_holds_until_resumed(store: Store) -> None:
    make_run(store, [task("a", "ready")])
    assert human_pause(store, RUN) is None
    intervene(store, RUN, "pause", actor="ann", reason="lunch")
    holding = human_pause(store, RUN)
    assert holding is not None and (holding.kind, holding.name, holding.value, holding.actor) == (
        "run",
        "paused",
        True,
        "ann",
    )
    with pytest.raises(OrchestrationError, match="already paused"):
        pause_run(store, RUN, actor="bob")
    intervene(store, RUN, "resume", actor="bob")
    assert human_pause(store, RUN) is None
    with pytest.raises(OrchestrationError, match="not paused by a human"):
        pause_run(store, RUN, actor="bob", paused=False)
    assert [i.action for i in store.interventions(RUN)] == ["pause", "resume"]
    assert states(store)["a"] == ("ready", None)  # no task moved


def test_a_finished_run_cannot_be_paused(store: Store) -> None:
    make_run(store, [task("a", "completed", outcome="succeeded")], state="completed")
    with pytest.raises(OrchestrationError, match="run 'run-1' is completed"):
        intervene(store, RUN, "pause", actor="ann")


def test_run_cancel_retry_and_skip(store: Store) -> None:
    make_run(
        store, [task("a", "failed"), task("b", "failed"), task("c", "pending", "a")], state="failed"
    )
    intervene(store, RUN, "retry", actor="ann", sets={"timeout_seconds": 60})
    assert {t: s for t, (s, _) in states(store).items()} == {
        "a": "ready",
        "b": "ready",
        "c": "pending",
    }
    assert all(t.spec.timeout_seconds == 60 for t in store.tasks(RUN) if t.task_id != "c")
    intervene(store, RUN, "skip", actor="ann", reason="enough")
    assert {s for s, _ in states(store).values()} == {"completed"}
    with pytest.raises(OrchestrationError, match="no task left to skip"):
        intervene(store, RUN, "skip", actor="ann", reason="again")
    with pytest.raises(OrchestrationError, match="no failed task to retry"):
        intervene(store, RUN, "retry", actor="ann")


def test_run_cancel_without_an_engine_ends_the_run(store: Store) -> None:
    make_run(
        store,
        [task("a", "running"), task("b", "ready"), task("c", "completed", outcome="succeeded")],
    )
    intervene(store, RUN, "cancel", actor="ann", reason="wrong plan")
    assert states(store) == {
        "a": ("cancelled", "cancelled"),
        "b": ("cancelled", "cancelled"),
        "c": ("completed", "succeeded"),
    }
    run = store.get_run(RUN)
    assert run.state == "cancelled" and run.finished_at is not None
    with pytest.raises(OrchestrationError, match="already cancelled"):
        intervene(store, RUN, "cancel", actor="ann")


def test_every_stored_history_stays_a_legal_walk(store: Store) -> None:
    make_run(store, [task("a", "pending")])
    moves = [
        ("release", "pending", "ready"),
        ("start", "ready", "running"),
        ("fail", "running", "failed"),
    ]
    from orchestration.core.lifecycle import Move

    for trigger, source, dest in moves:
        store.commit(RUN, Batch(moves=[Move("a", source, dest, trigger, "", "engine")]))
    intervene(store, RUN, "retry", task_id="a", actor="ann")
    intervene(store, RUN, "pause", task_id="a", actor="ann")
    intervene(store, RUN, "resume", task_id="a", actor="ann")
    history = [(m.source, m.dest, m.trigger) for m in store.transitions(RUN, "a")]
    assert is_legal_path(history)


# ---- a run an engine works on: requests the engine applies itself ------------------------------


def test_a_live_run_gets_a_request_which_apply_requested_carries_out(store: Store) -> None:
    make_run(
        store,
        [
            task("a", "ready"),
            task("b", "failed"),
            task("c", "cancelled", "b", outcome="upstream_failed"),
        ],
        live=True,
    )
    request = intervene(store, RUN, "pause", task_id="a", actor="ann", reason="wait")
    assert request.state == "requested"
    assert states(store)["a"] == ("ready", None)  # the engine owns its tasks: nothing moved yet
    retry = intervene(store, RUN, "retry", task_id="b", actor="ann")
    applied = apply_requested(store, RUN)
    assert [i.id for i in applied.applied] == [request.id, retry.id]
    assert applied.changed == ["a", "b", "c"] and applied.reopened == ["b", "c"]
    assert applied.stops == [] and not applied.run_cancelled
    assert states(store) == {"a": ("blocked", None), "b": ("ready", None), "c": ("pending", None)}
    stored = store.intervention(request.id)
    assert (stored.state, stored.applied_at is not None) == ("applied", True)
    assert apply_requested(store, RUN).applied == []  # each request applies once


def test_a_request_that_no_longer_fits_is_refused(store: Store) -> None:
    make_run(store, [task("a", "ready")], live=True)
    request = intervene(store, RUN, "pause", task_id="a", actor="ann")
    from orchestration.core.lifecycle import Move

    store.commit(RUN, Batch(moves=[Move("a", "ready", "running", "start", "", "engine")]))
    store.commit(RUN, Batch(moves=[Move("a", "running", "completed", "succeed", "", "engine")]))
    applied = apply_requested(store, RUN)
    assert [i.id for i in applied.refused] == [request.id]
    refused = store.intervention(request.id)
    assert (
        refused.state == "refused"
        and "cannot 'block' task 'a' in state 'completed'" in refused.note
    )
    assert [e.kind for e in store.events(RUN)][-1] == "intervention_refused"


def test_pausing_a_running_task_stops_its_attempt_first(store: Store) -> None:
    make_run(store, [task("a", "running"), task("b", "running"), task("c", "ready")], live=True)
    pause = intervene(store, RUN, "pause", task_id="a", actor="ann", reason="hold on")
    applied = apply_requested(store, RUN, running=frozenset({"a", "b"}))
    (stop,) = applied.stops
    assert (stop.task_id, stop.trigger, stop.actor, stop.intervention_id) == (
        "a",
        "block",
        "ann",
        pause.id,
    )
    assert store.intervention(pause.id).state == "requested"  # until the engine moved the task
    # the engine stops the attempt, then moves the task and marks the intervention applied
    from orchestration.core.lifecycle import Move

    update = stop_concluded(stop, T0)
    assert update is not None
    store.commit(
        RUN,
        Batch(
            moves=[Move("a", "running", "blocked", "block", stop.reason, stop.actor)],
            intervention_updates=[update],
        ),
    )
    assert store.intervention(pause.id).state == "applied"
    assert apply_requested(store, RUN, running=frozenset({"b"})).stops == []


def test_cancelling_a_live_run_cancels_what_waits_and_stops_what_runs(store: Store) -> None:
    make_run(
        store, [task("a", "running"), task("b", "ready"), task("c", "pending", "a")], live=True
    )
    request = intervene(store, RUN, "cancel", actor="ann", reason="stop it all")
    first = apply_requested(store, RUN, running=frozenset({"a"}))
    assert [s.task_id for s in first.stops] == ["a"] and first.run_cancelled
    assert states(store) == {
        "a": ("running", None),
        "b": ("cancelled", "cancelled"),
        "c": ("cancelled", "cancelled"),
    }
    assert store.intervention(request.id).state == "requested"
    from orchestration.core.lifecycle import Move

    store.commit(RUN, Batch(moves=[Move("a", "running", "cancelled", "cancel", "", "ann")]))
    second = apply_requested(store, RUN)
    assert [i.id for i in second.applied] == [request.id] and second.run_cancelled


def test_a_request_left_by_an_engine_that_stopped_is_applied_by_the_waiting_command(
    store: Store,
) -> None:
    make_run(store, [task("a", "ready")], live=True)
    request = intervene(store, RUN, "pause", task_id="a", actor="ann")
    store.commit(RUN, Batch(run_state="paused"))  # the engine finished meanwhile
    done = wait_until_applied(store, request, timeout_seconds=5)
    assert done.state == "applied"
    assert states(store)["a"] == ("blocked", None)


# ---- the command line ---------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[tuple[str, Store]]:
    opened = Store.open(sqlite_url)
    try:
        yield sqlite_url, opened
    finally:
        opened.close()


def test_cli_task_interventions_and_report(sqlite_store: tuple[str, Store]) -> None:
    url, store = sqlite_store
    make_run(
        store,
        [
            task("a", "ready"),
            task("b", "failed", attempts=1),
            task("c", "completed", "a", outcome="succeeded"),
        ],
    )
    paused = orch(
        "task", "pause", RUN, "a", "--reason", "check the config", "--actor", "ann", "--db", url
    )
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == "intervention 1: a paused\n"
    again = orch("task", "pause", RUN, "a", "--db", url)
    assert again.returncode == 2 and "task 'a' is already blocked" in again.stderr
    retried = orch("task", "retry", RUN, "b", "--set", "timeout_seconds=30", "--db", url)
    assert retried.returncode == 0, retried.stderr
    assert f"continue with: orch resume {RUN}" in retried.stdout
    illegal = orch("task", "skip", RUN, "c", "--reason", "x", "--db", url)
    assert (
        illegal.returncode == 1 and "cannot 'skip' task 'c' in state 'completed'" in illegal.stderr
    )
    unknown = orch("task", "cancel", RUN, "zz", "--db", url)
    assert unknown.returncode == 2 and "task 'zz' not found in run 'run-1'" in unknown.stderr
    rerun = orch("task", "rerun", RUN, "c", "--db", url)
    assert rerun.returncode == 0, rerun.stderr
    listed = orch("report", RUN, "--interventions", "--json", "--db", url)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["interventions"]
    assert [(e["action"], e["task"], e["actor"], e["state"]) for e in entries] == [
        ("pause", "a", "ann", "applied"),
        ("retry", "b", entries[1]["actor"], "applied"),
        ("rerun", "c", entries[2]["actor"], "applied"),
    ]
    assert entries[0]["reason"] == "check the config"
    assert entries[1]["params"]["sets"] == {"timeout_seconds": 30}
    text = orch("report", RUN, "--interventions", "--db", url).stdout
    assert "pause task a by ann (applied): check the config" in text
    whole = json.loads(orch("report", RUN, "--json", "--db", url).stdout)
    assert whole["counts"] == {"blocked": 1, "ready": 2} and len(whole["interventions"]) == 3


def test_cli_inspect_and_run_history(sqlite_store: tuple[str, Store]) -> None:
    url, store = sqlite_store
    make_run(store, [task("a", "ready", pool="gpu"), task("b", "pending", "a")])
    intervene(store, RUN, "pause", task_id="a", actor="ann", reason="why not")
    inspected = orch("task", "inspect", RUN, "a", "--json", "--db", url)
    assert inspected.returncode == 0, inspected.stderr
    data = json.loads(inspected.stdout)
    assert data["task"]["state"] == "blocked" and data["task"]["dependents"] == ["b"]
    assert [i["action"] for i in data["interventions"]] == ["pause"]
    assert data["transitions"][-1]["trigger"] == "block"
    assert data["breaker"] == {"key": None, "state": None}  # shell tasks by pool: opt-in
    history = json.loads(orch("runs", "history", RUN, "--json", "--db", url).stdout)["history"]
    assert [e["event"] for e in history] == ["intervention", "transition"]
    assert orch("task", "inspect", RUN, "nope", "--db", url).returncode == 2


def test_cli_run_pause_resume_cancel(sqlite_store: tuple[str, Store]) -> None:
    url, store = sqlite_store
    make_run(store, [task("a", "ready")])
    assert orch("runs", "pause", RUN, "-r", "lunch", "--db", url).returncode == 0
    twice = orch("runs", "pause", RUN, "--db", url)
    assert twice.returncode == 2 and "already paused" in twice.stderr
    report = json.loads(orch("report", RUN, "--json", "--db", url).stdout)
    assert report["paused_by"]["reason"] == "lunch"
    assert orch("runs", "resume", RUN, "--db", url).returncode == 0
    cancelled = orch("runs", "cancel", RUN, "--db", url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert store.get_run(RUN).state == "cancelled"
    assert "Usage" in orch("runs", "--help").stdout
