"""Alerts through the notifier plugins (breaker opened, dead letter, anomaly), each notifier's
minimum severity, and dead-letter retention (archive to JSONL, then purge) by a fixed clock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from orchestration import hookimpl
from orchestration.core.errors import OrchestrationError
from orchestration.core.models import EventRecord
from orchestration.engine.alerts import ALERT_EVENT, AlertWatch, EngineAlerts, raise_alert
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.extension import Notification, Notifier
from orchestration.pluginhost.hooks import Plugins, load_plugins
from orchestration.pluginhost.severity import minimums_from_env, variable_for
from orchestration.store import Batch, Store
from tests.helpers import orch, shell_task, write_plan


class Listeners:
    """Two notifiers, `pager` and `chat`, that keep what they are sent."""

    def __init__(self) -> None:
        self.heard: dict[str, list[Notification]] = {"pager": [], "chat": []}

    @hookimpl
    def register_notifiers(self) -> list[Notifier]:
        return [Notifier(name, self.heard[name].append) for name in self.heard]


def plugins_with(listeners: Listeners) -> Plugins:
    plugins = load_plugins(entry_points=False, extra=[listeners])
    plugins.muted.add("console")
    return plugins


def test_each_notifier_gets_only_what_reaches_its_minimum_severity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCH_NOTIFY_MIN_SEVERITY", "medium")
    monkeypatch.setenv(variable_for("pager"), "high")
    listeners = Listeners()
    plugins = plugins_with(listeners)
    assert plugins.min_severity == {"console": "medium", "pager": "high", "chat": "medium"}
    for severity in ("low", "medium", "high", "critical"):
        raise_alert(plugins, "anomaly", severity, f"a {severity} one", {"run": "r"})
    assert plugins.drain_notifications(30)
    assert [n.severity for n in listeners.heard["pager"]] == ["high", "critical"]
    assert [n.severity for n in listeners.heard["chat"]] == ["medium", "high", "critical"]
    sent = listeners.heard["chat"][0]
    assert (sent.kind, sent.run_id, sent.data["alert"]) == ("anomaly", "r", "anomaly")


def test_bad_severities_and_kinds_are_refused_by_name() -> None:
    with pytest.raises(OrchestrationError, match="ORCH_NOTIFY_MIN_SEVERITY_CHAT='loud'"):
        minimums_from_env({variable_for("chat"): "loud"}, ["chat"])
    plugins = load_plugins(entry_points=False)
    with pytest.raises(OrchestrationError, match="unknown alert kind 'oops'"):
        raise_alert(plugins, "oops", "high", "x", {})
    with pytest.raises(OrchestrationError, match="unknown severity 'huge'"):
        raise_alert(plugins, "anomaly", "huge", "x", {})


def failing_plan(directory: Path, **retention: float) -> Path:
    return write_plan(
        directory,
        {
            "version": 1,
            "name": "failing",
            "breakers": {"min_calls": 2, "failure_rate": 0.5, "keys_from": ["task"]},
            "retention": retention,
            "defaults": {"when_exhausted": "fail"},
            "tasks": [
                shell_task(name, "raise SystemExit(3)", retry={"max_attempts": 1}, breaker="svc")
                for name in ("one", "two")
            ],
        },
    )


def run_failing(directory: Path, url: str, listeners: Listeners, run_id: str = "f1") -> None:
    loaded = load_plan(failing_plan(directory))
    with Store.open(url) as store:
        engine = build_engine(loaded, plugins_with(listeners))
        orchestrator = Orchestrator.start(loaded, store, run_id=run_id, engine=engine)
        assert orchestrator.run_until_stopped().state == "failed"


def test_an_engine_alerts_once_for_each_dead_letter_and_the_breaker_it_opened(
    sqlite_url: str, tmp_path: Path
) -> None:
    listeners = Listeners()
    run_failing(tmp_path, sqlite_url, listeners)
    with Store.open(sqlite_url) as store:
        letters = store.dead_letters("f1")
        breaker = store.breaker("svc")
        stored = [e.data for e in store.events("f1", kinds=[ALERT_EVENT])]
    assert breaker is not None and breaker.state == "open"
    heard = listeners.heard["chat"]
    kinds = sorted(n.kind for n in heard if n.kind != "run_finished")
    assert kinds == ["breaker_opened", "dead_letter", "dead_letter"]
    dead = sorted(n.task_id for n in heard if n.kind == "dead_letter")
    assert dead == sorted(d.task_id for d in letters) == ["one", "two"]
    opened = next(n for n in heard if n.kind == "breaker_opened")
    assert opened.data["key"] == "svc" and opened.severity == "high"
    assert sorted(e["kind"] for e in stored) == kinds  # each alert is in the event log too


def test_anomalies_stored_as_events_are_alerted(sqlite_url: str, tmp_path: Path) -> None:
    listeners = Listeners()
    run_failing(tmp_path, sqlite_url, Listeners())
    with Store.open(sqlite_url) as store:
        watch = AlertWatch(store, "f1")
        at = store.get_run("f1").updated_at
        events = [
            EventRecord("f1", "resource_guard", None, {"reason": "memory 95%"}, at),
            EventRecord("f1", "step", "one", {}, at),
            EventRecord("f1", "merge_failed", "two", {"note": "conflict"}, at),
            EventRecord(
                "f1",
                "anomaly_detected",
                "one",
                {"kind": "failure_streak", "message": "a fails"},
                at,
            ),
        ]
        store.commit("f1", Batch(events=events))
        found = watch.look()
        assert watch.look() == []  # each once
    assert [(a.kind, a.severity, a.message) for a in found] == [
        ("anomaly", "medium", "resource_guard: memory 95%"),
        ("anomaly", "high", "merge_failed: conflict"),
        ("anomaly", "high", "anomaly_detected: a fails"),
    ]
    assert listeners.heard["chat"] == []


def test_dead_letters_past_the_retention_are_archived_then_purged(
    sqlite_url: str, tmp_path: Path
) -> None:
    run_failing(tmp_path, sqlite_url, Listeners())
    archive = tmp_path / "archive"
    with Store.open(sqlite_url) as store:
        letters = store.dead_letters()
        failed_at = max(d.failed_at for d in letters)
        plugins = load_plugins(entry_points=False)
        alerts = EngineAlerts(store, "f1", plugins, dead_letter_days=30, archive_dir=archive)
        alerts.poll(failed_at + timedelta(days=29))
        assert len(store.dead_letters()) == 2 and not archive.exists()
        alerts._next_archive = None  # the hourly check is due again
        alerts.poll(failed_at + timedelta(days=30, seconds=1))
        assert store.dead_letters() == []
    (path,) = archive.glob("dead-letters-*.jsonl")
    archived = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((a["id"], a["task"], a["state"]) for a in archived) == sorted(
        (d.id, d.task_id, d.state) for d in letters
    )
    assert all(a["attempts"] for a in archived)  # the whole story, not just the summary


def test_dlq_archive_command(sqlite_url: str, tmp_path: Path) -> None:
    run_failing(tmp_path, sqlite_url, Listeners())
    kept = orch(
        "dlq", "archive", "--older-than", "1d", "--to", str(tmp_path / "a"), "--db", sqlite_url
    )
    assert kept.returncode == 0, kept.stderr
    assert "archived 0 dead letter(s)" in kept.stdout
    done = orch(
        "dlq", "archive", "--older-than", "0s", "--to", str(tmp_path / "a"), "--db", sqlite_url
    )
    assert done.returncode == 0, done.stderr
    assert "archived 2 dead letter(s)" in done.stdout
    with Store.open(sqlite_url) as store:
        assert store.dead_letters() == []
    (path,) = (tmp_path / "a").glob("dead-letters-*.jsonl")
    assert len(path.read_text().splitlines()) == 2


def test_a_schedule_that_failed_to_start_a_run_is_alerted() -> None:
    from datetime import UTC, datetime

    from orchestration.core.trigger_records import FiringRecord
    from orchestration.triggers.launches import _report_start_failure

    listeners = Listeners()
    at = datetime(2026, 1, 5, 2, tzinfo=UTC)
    firing = FiringRecord(
        key="cron:nightly:2026-01-05T02:00:00+00:00",
        schedule="nightly",
        kind="cron",
        due_at=at,
        outcome="failed_to_start",
        fired_at=at,
        updated_at=at,
        run_id="nightly-1",
    )
    _report_start_failure(firing, "plan has no tasks", plugins_with(listeners))
    [sent] = listeners.heard["pager"]
    assert (sent.kind, sent.severity, sent.run_id) == ("schedule_failed", "high", "nightly-1")
    assert sent.data["schedule"] == "nightly" and "plan has no tasks" in sent.message
