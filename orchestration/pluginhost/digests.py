"""Notification digests: a rule with `digest: 10m` sends one summary per window, not one per hit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestration.extension import Notification

MAX_DIGEST_LINES = 50  # lines listed in one digest; the count covers the rest


@dataclass
class _Pending:
    due: datetime
    items: list[Notification] = field(default_factory=list)


class DigestBuffer:
    """Holds notifications per rule until the rule's window has passed since the first one."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return sum(len(p.items) for p in self._pending.values())

    def add(
        self, rule: str, notification: Notification, window_seconds: float, now: datetime
    ) -> None:
        pending = self._pending.get(rule)
        if pending is None:
            pending = self._pending[rule] = _Pending(now + timedelta(seconds=window_seconds))
        pending.items.append(notification)

    def due(self, now: datetime, *, everything: bool = False) -> list[Notification]:
        """The digests whose window has passed (all of them with `everything`), as notifications."""
        ready = [rule for rule, p in self._pending.items() if everything or p.due <= now]
        return [summarise(rule, self._pending.pop(rule).items) for rule in ready]

    def next_due(self) -> datetime | None:
        return min((p.due for p in self._pending.values()), default=None)


def summarise(rule: str, items: list[Notification]) -> Notification:
    """One notification that lists `items` (all raised by `rule`)."""
    first = items[0]
    severity = max(items, key=lambda n: _SEVERITY.get(n.severity, 0)).severity
    lines = [f"- {n.task_id or '-'}: {n.message}" for n in items[:MAX_DIGEST_LINES]]
    if len(items) > MAX_DIGEST_LINES:
        lines.append(f"- ... and {len(items) - MAX_DIGEST_LINES} more")
    return Notification(
        "digest",
        first.run_id,
        f"{rule}: {len(items)} breakpoint(s)",
        "\n".join(lines),
        severity,
        None,
        {
            "rule": rule,
            "count": len(items),
            "items": [{"task_id": n.task_id, "kind": n.kind, "message": n.message} for n in items],
        },
    )


_SEVERITY = {"low": 0, "medium": 1, "high": 2, "critical": 3}
