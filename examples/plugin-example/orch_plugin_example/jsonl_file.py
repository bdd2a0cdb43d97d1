"""Notifier `jsonl_file`: appends notifications as JSON lines to $ORCH_EXAMPLE_NOTIFY_FILE."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from orchestration.extension import Notification, Notifier

NAME = "jsonl_file"
ENV_FILE = "ORCH_EXAMPLE_NOTIFY_FILE"

_write_lock = threading.Lock()  # notifiers run on threads of their own: one line at a time


def notification_line(notification: Notification, now: datetime) -> str:
    """One notification as a JSON object on one line (values that are not JSON become text)."""
    record = {
        "at": now.isoformat(),
        "kind": notification.kind,
        "run_id": notification.run_id,
        "task_id": notification.task_id,
        "severity": notification.severity,
        "title": notification.title,
        "message": notification.message,
        "data": dict(notification.data),
    }
    return json.dumps(record, default=str, sort_keys=True) + "\n"


def jsonl_notifier(path: Path) -> Notifier:
    """A notifier appending to `path`; the file and its folder are created when missing."""

    def notify(notification: Notification) -> None:
        line = notification_line(notification, datetime.now(UTC))
        with _write_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)

    return Notifier(NAME, notify)


def notifiers_from_env(env: Mapping[str, str]) -> list[Notifier]:
    """The notifier when the variable names a file; none (the plugin stays quiet) otherwise."""
    target = env.get(ENV_FILE, "").strip()
    return [jsonl_notifier(Path(target).expanduser())] if target else []
