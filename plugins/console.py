"""Notifier `console`: prints breakpoints and run results to standard error."""

from __future__ import annotations

import sys

from orchestration import hookimpl
from orchestration.extension import Notification, Notifier, strip_control


def print_notification(notification: Notification) -> None:
    where = f" [{notification.task_id}]" if notification.task_id else ""
    line = f"[{notification.kind}] {notification.title}{where}: {notification.message}"
    print(strip_control(line), file=sys.stderr)  # titles and messages carry agents' text


@hookimpl
def register_notifiers() -> list[Notifier]:
    return [Notifier("console", print_notification)]
