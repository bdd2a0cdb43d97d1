"""Breakpoint analytics: how often each type fired, how it was resolved, how long humans took."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestration.core.models import BreakpointRecord
from orchestration.engine.review import EXPIRED_ACTOR

AUTOMATIC = ("auto", "notify")  # resolved by the engine the moment they fired


@dataclass
class RuleStats:
    """The figures of one breakpoint type (rule)."""

    rule: str
    triggered: int = 0
    open: int = 0
    resolved_by_human: int = 0
    auto_resolved: int = 0  # auto and notify rules, and pauses whose default applied on expiry
    expired: int = 0
    resolutions: dict[str, int] = field(default_factory=dict)
    seconds_to_resolution: list[float] = field(default_factory=list)  # humans only

    def as_dict(self) -> dict[str, Any]:
        times = self.seconds_to_resolution
        return {
            "rule": self.rule,
            "triggered": self.triggered,
            "open": self.open,
            "resolved": self.resolved_by_human,
            "auto_resolved": self.auto_resolved,
            "expired": self.expired,
            "resolutions": dict(sorted(self.resolutions.items())),
            "mean_seconds_to_resolution": round(statistics.fmean(times), 3) if times else None,
            "median_seconds_to_resolution": round(statistics.median(times), 3) if times else None,
        }


def breakpoint_stats(breakpoints: Iterable[BreakpointRecord]) -> list[RuleStats]:
    """Figures per rule, most triggered first; the totals come from `total_stats`."""
    by_rule: dict[str, RuleStats] = {}
    for bp in breakpoints:
        stats = by_rule.setdefault(bp.rule, RuleStats(bp.rule))
        _count(stats, bp)
    return sorted(by_rule.values(), key=lambda s: (-s.triggered, s.rule))


def total_stats(per_rule: Iterable[RuleStats]) -> RuleStats:
    total = RuleStats("(all)")
    for stats in per_rule:
        total.triggered += stats.triggered
        total.open += stats.open
        total.resolved_by_human += stats.resolved_by_human
        total.auto_resolved += stats.auto_resolved
        total.expired += stats.expired
        for name, count in stats.resolutions.items():
            total.resolutions[name] = total.resolutions.get(name, 0) + count
        total.seconds_to_resolution.extend(stats.seconds_to_resolution)
    return total


def _count(stats: RuleStats, bp: BreakpointRecord) -> None:
    stats.triggered += 1
    if bp.state == "open":
        stats.open += 1
        return
    resolution = bp.resolution or "unknown"
    stats.resolutions[resolution] = stats.resolutions.get(resolution, 0) + 1
    if resolution in AUTOMATIC:
        stats.auto_resolved += 1
    elif bp.resolved_by == EXPIRED_ACTOR:
        stats.expired += 1
        stats.auto_resolved += 1
    else:
        stats.resolved_by_human += 1
        if bp.resolved_at is not None:
            stats.seconds_to_resolution.append((bp.resolved_at - bp.created_at).total_seconds())
