"""Alerts: a breaker opening, a dead letter, an anomaly, a schedule that failed to start.

Sent through the notifier plugins (`register_notifiers`) like breakpoint notifications, in the
background, each notifier only what reaches its minimum severity (severity.py).
`raise_alert` is the one way in; an engine's `EngineAlerts` watches the store for what it should
raise and applies the dead-letter retention.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orchestration.core.errors import OrchestrationError
from orchestration.core.models import EventRecord
from orchestration.extension import Notification
from orchestration.pluginhost.hooks import Plugins
from orchestration.pluginhost.severity import SEVERITIES
from orchestration.resilience.breakers import OPEN
from orchestration.store import Store

logger = logging.getLogger(__name__)

ALERT_KINDS = ("breaker_opened", "dead_letter", "anomaly", "schedule_failed")
ALERT_EVENT = "alert"  # the event stored with each alert an engine raises (in the event log)
POLL_SECONDS = 2.0  # how often an engine looks for what to alert about
ARCHIVE_EVERY_SECONDS = 3600.0  # how often an engine applies the dead-letter retention
# Stored events that are anomalies, and how severe each is.
ANOMALY_EVENTS: Mapping[str, str] = {
    "deadline_missed": "medium",
    "resource_guard": "medium",
    "merge_failed": "high",
    "checkpoint_failed": "high",
    "plugin_skipped": "high",
    "notification_dropped": "medium",
    "anomaly_detected": "high",  # the fleet's detectors (fleet_health.ANOMALY): docs/agents.md
}
TITLES = {
    "breaker_opened": "circuit breaker opened",
    "dead_letter": "task failed for good (dead letter)",
    "anomaly": "anomaly",
    "schedule_failed": "schedule failed to start",
}


def raise_alert(
    plugins: Plugins, kind: str, severity: str, message: str, data: Mapping[str, Any]
) -> Notification:
    """Send an alert to every notifier whose minimum severity it reaches; never waits.

    `kind`: one of ALERT_KINDS; `data`: plain JSON data, `run` and `task` naming what it is
    about when it is about one. The notification's kind is the alert's kind.
    """
    if kind not in ALERT_KINDS:
        raise OrchestrationError(f"unknown alert kind '{kind}'; one of {', '.join(ALERT_KINDS)}")
    if severity not in SEVERITIES:
        raise OrchestrationError(f"unknown severity '{severity}'; one of {', '.join(SEVERITIES)}")
    notification = Notification(
        kind=kind,
        run_id=str(data.get("run") or ""),
        title=f"[{severity}] {TITLES[kind]}",
        message=message,
        severity=severity,
        task_id=data.get("task") if isinstance(data.get("task"), str) else None,
        data={"alert": kind, **dict(data)},
    )
    plugins.notify_later(notification)
    return notification


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: str
    message: str
    data: dict[str, Any]


class AlertWatch:
    """What is new in the store since the last look: breakers opened, dead letters, anomalies.

    Starts from what is stored when made, so an engine alerts about what happens while it runs.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.letters_after = max((d.id for d in store.dead_letters(run_id)), default=0)
        self.opened = {b.key: b.opened_at for b in store.breakers() if b.state == OPEN}
        self.events_after = store.last_event_id(run_id)

    def look(self) -> list[Alert]:
        return [*self._breakers(), *self._dead_letters(), *self._anomalies()]

    def _breakers(self) -> list[Alert]:
        found = []
        for breaker in self.store.breakers():
            if breaker.state != OPEN:
                self.opened.pop(breaker.key, None)
                continue
            if self.opened.get(breaker.key) == breaker.opened_at:
                continue
            self.opened[breaker.key] = breaker.opened_at
            message = f"circuit breaker {breaker.key} opened: {breaker.reason}"
            data = {"run": self.run_id, "key": breaker.key, "reason": breaker.reason}
            found.append(Alert("breaker_opened", "high", message, data))
        return found

    def _dead_letters(self) -> list[Alert]:
        found = []
        for letter in self.store.dead_letters(self.run_id):
            if letter.id <= self.letters_after:
                continue
            self.letters_after = letter.id
            message = (
                f"task {letter.task_id} failed for good ({letter.error_kind}): {letter.reason}"
            )
            data = {"run": letter.run_id, "task": letter.task_id, "dead_letter": letter.id}
            found.append(
                Alert("dead_letter", "high", message, {**data, "error_kind": letter.error_kind})
            )
        return found

    def _anomalies(self) -> list[Alert]:
        found = []
        for event in self.store.events(self.run_id, self.events_after, kinds=ANOMALY_EVENTS):
            self.events_after = event.id
            data_ = event.data
            detail = data_.get("note") or data_.get("reason") or data_.get("message") or event.kind
            data = {"run": self.run_id, "task": event.task_id, "event": event.kind}
            found.append(
                Alert("anomaly", ANOMALY_EVENTS[event.kind], f"{event.kind}: {detail}", data)
            )
        return found


class EngineAlerts:
    """An engine's alerts and dead-letter retention, looked at every POLL_SECONDS.

    `poll` returns the `alert` events to store with the run (the event log shows them as
    notifications). `dead_letter_days`: letters older than that are archived to
    `archive_dir` and purged, checked every ARCHIVE_EVERY_SECONDS of the engine's clock.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        plugins: Plugins,
        *,
        dead_letter_days: float | None = None,
        archive_dir: Path | None = None,
    ) -> None:
        self.watch = AlertWatch(store, run_id)
        self.plugins = plugins
        self.dead_letter_days = dead_letter_days
        self.archive_dir = archive_dir
        self._next_archive: datetime | None = None

    def poll(self, now: datetime) -> list[EventRecord]:
        """Raise what is new to alert about (the loop calls it every POLL_SECONDS on its timer
        wheel, and once more as the run ends); the alerts' events, for the run's batch."""
        events = []
        try:
            self._apply_retention(now)
            alerts = self.watch.look()
        except OrchestrationError as error:  # alerts must never stop a run
            logger.warning("alerts not checked: %s", error)
            return []
        for alert in alerts:
            raise_alert(self.plugins, alert.kind, alert.severity, alert.message, alert.data)
            data = {"kind": alert.kind, "severity": alert.severity, "message": alert.message}
            task = alert.data.get("task")
            events.append(
                EventRecord(self.watch.run_id, ALERT_EVENT, task, {**data, "data": alert.data}, now)
            )
        return events

    def _apply_retention(self, now: datetime) -> None:
        from orchestration.engine.dead_letter_archive import DAY_SECONDS, archive_dead_letters

        if self.dead_letter_days is None or self.archive_dir is None:
            return
        if self._next_archive is not None and now < self._next_archive:
            return
        self._next_archive = now + timedelta(seconds=ARCHIVE_EVERY_SECONDS)
        gone, path = archive_dead_letters(
            self.watch.store, self.archive_dir, self.dead_letter_days * DAY_SECONDS, now
        )
        if gone:
            logger.info("archived %d dead letter(s) to %s and purged them", len(gone), path)
            self.watch.letters_after = max(self.watch.letters_after, *(d.id for d in gone))
