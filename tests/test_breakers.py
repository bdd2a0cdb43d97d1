"""Circuit breakers: the state machine as pure functions, key derivation, the stored state shared
by several engines on SQLite and PostgreSQL, and `orch breakers`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.core.errors import NotFoundError
from orchestration.core.models import BreakerSettings, PlanSpec, TaskSpec
from orchestration.resilience.breakers import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreakers,
    admit,
    attempt_ok,
    breaker_key,
    record_outcome,
    release_probe,
    reset_breakers,
)
from orchestration.store import Batch, Store

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
POLICY = BreakerSettings(window_seconds=60, min_calls=4, failure_rate=0.5, recovery_seconds=30)
LAUNCH = "from orchestration.cli.root import main; main()"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(outcomes: list[bool], start: float = 0.0, policy: BreakerSettings = POLICY) -> Any:
    record = None
    for i, ok in enumerate(outcomes):
        record = record_outcome(record, "k", policy, ok, at(start + i))
    return record


# ---- the state machine -----------------------------------------------------------------------------


def test_it_opens_on_the_failure_rate_only_after_the_minimum_of_calls() -> None:
    assert feed([False, False, False]).state == CLOSED  # 3 calls: below min_calls
    assert feed([True, False, True, True]).state == CLOSED  # 25% < 50%
    opened = feed([True, False, True, False])
    assert opened.state == OPEN and opened.opened_at == at(3)
    assert "2 of the last 4 attempts failed within 60s" in opened.reason


def test_old_outcomes_leave_the_sliding_window() -> None:
    record = feed([False, False, False], start=0)
    record = record_outcome(record, "k", POLICY, False, at(100))  # the three are 97s+ old
    assert record.state == CLOSED and len(record.window) == 1


def test_open_holds_work_until_recovery_then_lets_one_probe_through() -> None:
    opened = feed([False] * 4)
    changed, answer = admit(opened, "k", POLICY, at(10))
    assert changed is None and not answer.allowed and answer.state == OPEN
    assert answer.retry_at == at(3 + 30) and "circuit 'k' is open" in answer.reason
    probing, answer = admit(opened, "k", POLICY, at(40))
    assert answer.allowed and answer.probe and probing is not None and probing.state == HALF_OPEN
    _, second = admit(probing, "k", POLICY, at(41))  # the probe's slot is taken
    assert not second.allowed and second.state == HALF_OPEN and second.retry_at == at(46)


def test_a_successful_probe_closes_a_failed_one_reopens() -> None:
    probing, _ = admit(feed([False] * 4), "k", POLICY, at(40))
    closed = record_outcome(probing, "k", POLICY, True, at(42), probe=True)
    assert closed.state == CLOSED and closed.window == [] and "1 successful probe" in closed.reason
    reopened = record_outcome(probing, "k", POLICY, False, at(42), probe=True)
    assert reopened.state == OPEN and reopened.opened_at == at(42)
    # a late outcome of an attempt started before the breaker opened changes nothing
    late = record_outcome(probing, "k", POLICY, True, at(42), probe=False)
    assert late.state == HALF_OPEN


def test_several_probes_must_all_succeed() -> None:
    policy = POLICY.model_copy(update={"half_open_probes": 2})
    record, first = admit(feed([False] * 4, policy=policy), "k", policy, at(40))
    record, second = admit(record, "k", policy, at(40))
    assert first.allowed and second.allowed
    _, third = admit(record, "k", policy, at(40))
    assert not third.allowed
    record = record_outcome(record, "k", policy, True, at(41), probe=True)
    assert record.state == HALF_OPEN
    assert record_outcome(record, "k", policy, True, at(42), probe=True).state == CLOSED


def test_a_stopped_probe_frees_its_slot() -> None:
    probing, _ = admit(feed([False] * 4), "k", POLICY, at(40))
    assert not admit(probing, "k", POLICY, at(41))[1].allowed
    freed = release_probe(probing)
    assert freed is not None and freed.state == HALF_OPEN and freed.probes == []
    assert admit(freed, "k", POLICY, at(41))[1].probe
    assert release_probe(freed) is None and release_probe(None) is None


def test_a_probe_whose_engine_died_expires() -> None:
    policy = POLICY.model_copy(update={"probe_lease_seconds": 100})
    probing, _ = admit(feed([False] * 4, policy=policy), "k", policy, at(40))
    assert not admit(probing, "k", policy, at(139))[1].allowed
    changed, answer = admit(probing, "k", policy, at(141))
    assert answer.allowed and changed is not None and changed.probes == [at(141).timestamp()]


def test_attempt_ok_counts_the_action_not_the_validators() -> None:
    assert attempt_ok(0, False) is True
    assert attempt_ok(1, False) is False and attempt_ok(0, True) is False
    assert attempt_ok(None, False) is False  # could not start
    assert attempt_ok(1, False, interrupted=True) is None


def test_breaker_keys() -> None:
    def task(**extra: Any) -> TaskSpec:
        return TaskSpec.model_validate({"id": "t", **extra})

    shell = {"action": {"kind": "shell", "run": ["/usr/bin/curl", "x"]}}
    agent = {"action": {"kind": "agent", "prompt": "p", "command": ["/opt/claude", "-p"]}}
    python = {"action": {"kind": "python", "call": "pkg.mod:fn"}}
    default = BreakerSettings()
    assert breaker_key(task(**shell, breaker="github"), default) == "github"
    assert breaker_key(task(**shell, pool="net"), default) is None  # pools are opt-in
    assert breaker_key(task(**shell), default) is None
    assert breaker_key(task(**agent), default) == "agent:claude"
    no_command = {"action": {"kind": "agent", "prompt": "p"}}
    assert breaker_key(task(**no_command), default, ("my-agent", "{prompt}")) == "agent:my-agent"
    every = BreakerSettings(keys_from=["task", "pool", "agent", "command"])
    assert breaker_key(task(**shell, pool="net"), every) == "pool:net"
    assert breaker_key(task(**shell), every) == "shell:curl"
    assert breaker_key(task(**python), every) == "python:pkg.mod"
    assert breaker_key(task(**agent, breaker="x"), BreakerSettings(enabled=False)) is None


def test_plans_validate_without_breakers_and_reject_bad_settings() -> None:
    minimal = {
        "version": 1,
        "name": "p",
        "tasks": [{"id": "a", "action": {"kind": "shell", "run": ["true"]}}],
    }
    plan = PlanSpec.model_validate(minimal)
    assert (
        plan.breakers.enabled and plan.breakers.min_calls == 5 and plan.retention.keep_days is None
    )
    with pytest.raises(ValueError, match="failure_rate"):
        PlanSpec.model_validate({**minimal, "breakers": {"failure_rate": 1.5}})
    with pytest.raises(ValueError, match="keys_from"):
        PlanSpec.model_validate({**minimal, "breakers": {"keys_from": ["host"]}})


# ---- stored, shared by engines -------------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


def test_state_is_stored_and_shared_across_store_handles(store: Store, db_url: str) -> None:
    breakers = CircuitBreakers(store, POLICY)
    assert breakers.allow("api", at(0)).allowed
    assert store.breaker("api") is None  # a closed breaker costs a read, no write
    for i in range(4):
        breakers.record("api", False, at(i))
    with Store.open(db_url) as other:  # another engine, another process
        elsewhere = CircuitBreakers(other, POLICY)
        answer = elsewhere.allow("api", at(10))
        assert not answer.allowed and answer.retry_at == at(33)
        assert elsewhere.allow("api", at(40)).probe
        assert not breakers.allow("api", at(41)).allowed  # the one probe slot is taken
        elsewhere.record("api", True, at(45), probe=True)
    stored = store.breaker("api")
    assert stored is not None and stored.state == CLOSED and stored.version == 6
    assert breakers.allow("api", at(46)).allowed
    assert breakers.allow(None, at(0)).allowed  # no key: nothing guards the task


def test_outcomes_recorded_in_the_engines_own_commit(store: Store) -> None:
    breakers = CircuitBreakers(store, POLICY)
    updates = [breakers.update("b", False, at(i)) for i in range(3)]
    store.commit_store_wide(breaker_updates=updates)
    stored = store.breaker("b")
    assert stored is not None and stored.state == CLOSED and len(stored.window) == 3
    from orchestration.core.models import RunRecord

    store.create_run(RunRecord("r", "p", "/p", "/w", "running", T0, T0), [])
    store.commit("r", Batch(breaker_updates=[breakers.update("b", False, at(4))]))
    stored = store.breaker("b")
    assert stored is not None and stored.state == OPEN


def test_concurrent_probes_let_exactly_one_through(store: Store, db_url: str) -> None:
    breakers = CircuitBreakers(store, POLICY)
    for i in range(4):
        breakers.record("race", False, at(i))
    answers: list[bool] = []
    barrier = threading.Barrier(4)

    def contend() -> None:
        with Store.open(db_url) as own:
            barrier.wait(30)
            answers.append(CircuitBreakers(own, POLICY).allow("race", at(40)).allowed)

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [False, False, False, True]


def test_reset_closes_and_is_recorded(store: Store) -> None:
    breakers = CircuitBreakers(store, POLICY)
    for i in range(4):
        breakers.record("x", False, at(i))
        breakers.record("y", False, at(i))
    assert reset_breakers(store, ["x"], actor="ann", reason="fixed the token") == ["x"]
    x, y = store.breaker("x"), store.breaker("y")
    assert x is not None and y is not None and (x.state, y.state) == (CLOSED, OPEN)
    assert x.window == [] and "reset by ann: fixed the token" in x.reason
    with pytest.raises(NotFoundError, match="no circuit breaker 'z'; known breakers: x, y"):
        reset_breakers(store, ["z"], actor="ann")
    assert reset_breakers(store, None, actor="bob") == ["x", "y"]
    done = store.interventions(store_wide=True)
    assert [(i.action, i.actor, i.params["key"], i.run_id) for i in done] == [
        ("breaker_reset", "ann", "x", None),
        ("breaker_reset", "bob", "x", None),
        ("breaker_reset", "bob", "y", None),
    ]


def test_cli_breakers(sqlite_url: str) -> None:
    def orch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", LAUNCH, *args, "--db", sqlite_url],
            capture_output=True,
            text=True,
            timeout=120,
            env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )

    with Store.open(sqlite_url) as store:
        for i in range(5):
            CircuitBreakers(store, BreakerSettings()).record("agent:claude", False, at(i))
    listed = orch("breakers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)["breakers"]
    assert (item["key"], item["state"], item["calls"], item["failures"]) == (
        "agent:claude",
        "open",
        5,
        5,
    )
    assert item["last_reset"] is None
    both = orch("breakers", "reset", "agent:claude", "--all")
    assert both.returncode == 2 and "not both" in both.stderr
    unknown = orch("breakers", "reset", "nope")
    assert unknown.returncode == 2 and "no circuit breaker 'nope'" in unknown.stderr
    done = orch("breakers", "reset", "agent:claude", "--reason", "quota raised", "--actor", "ann")
    assert done.returncode == 0 and "reset 1 breaker(s): agent:claude" in done.stdout
    text = orch("breakers", "list").stdout
    assert "agent:claude: closed" in text and "reset by ann: quota raised" in text
