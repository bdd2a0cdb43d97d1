"""Anomaly detection over a run's attempts and agents: pure detectors returning values.

Each detector reads a snapshot and the plan's `health.anomalies` thresholds (defaults here):
- failure_pattern: an agent's last `failure_streak` (3) finished attempts all failed;
- coordination: tasks wait for a busy agent (every capable one is full) while another agent
  is idle (no attempt running);
- prediction_drift: over the last `drift_window` (10) assigned attempts, the mean predicted
  success differs from the share that succeeded by more than `drift_threshold` (0.3);
- load_imbalance: with at least `imbalance_min_attempts` (6) attempts over two or more agents,
  Jain's index of attempts per agent is below `imbalance_threshold` (0.6);
- duration_outlier / cost_outlier: an attempt whose modified z-score against the earlier
  attempts of its kind, 0.6745 * (x - median) / MAD, exceeds `outlier_z` (3.5; Iglewicz and
  Hoaglin's cut-off), once `outlier_min_samples` (5) earlier attempts exist. Only values above
  the median count (a fast, cheap attempt is no anomaly). When the MAD is 0 the mean absolute
  deviation times 1.2533 stands in for it (the usual fallback); when that is 0 too, nothing is
  flagged. A duration less than `outlier_min_excess_seconds` (10) above the median is never
  an outlier.
Each anomaly has a `key` (kind and subject): a run reports each key once.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestration.core.agent_specs import AnomalySettings
from orchestration.engine.fleet_health import AttemptFigure, jain_index

MAD_SCALE = 0.6745  # makes the MAD of a normal sample comparable to its standard deviation
MEAN_AD_SCALE = 1.2533  # sqrt(pi / 2): mean absolute deviation to MAD scale, as a fallback


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    subject: str  # the agent, the task, or "run"
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


def failure_pattern(
    agent: str, attempts: Sequence[AttemptFigure], settings: AnomalySettings
) -> Anomaly | None:
    mine = [a for a in attempts if a.agent == agent]
    streak = settings.failure_streak
    last = mine[-streak:]
    if len(last) < streak or any(a.succeeded for a in last):
        return None
    tasks = ", ".join(f"{a.task_id}#{a.attempt}" for a in last)
    return Anomaly(
        "failure_pattern",
        agent,
        f"agent {agent} failed its last {streak} attempts ({tasks})",
        {"agent": agent, "streak": streak, "attempts": len(mine)},
        last[-1].task_id,
    )


def coordination(
    waiting: dict[str, str], running: dict[str, int], busy_note: str = ""
) -> Anomaly | None:
    """`waiting`: task id -> why it waits; `running`: agent -> attempts running now."""
    idle = sorted(name for name, count in running.items() if count == 0)
    if not waiting or not idle:
        return None
    tasks = sorted(waiting)
    shown = ", ".join(tasks[:5]) + (", ..." if len(tasks) > 5 else "")
    return Anomaly(
        "coordination",
        "run",
        f"{len(tasks)} task(s) wait for a busy agent ({shown}: {waiting[tasks[0]]}) while "
        f"{', '.join(idle)} {'is' if len(idle) == 1 else 'are'} idle",
        {"waiting": tasks, "idle": idle},
        tasks[0],
    )


def prediction_drift(
    attempts: Sequence[AttemptFigure], settings: AnomalySettings
) -> Anomaly | None:
    scored = [a for a in attempts if a.predicted is not None][-settings.drift_window :]
    if len(scored) < settings.drift_window:
        return None
    predicted = statistics.fmean(float(a.predicted or 0) for a in scored)
    actual = sum(a.succeeded for a in scored) / len(scored)
    drift = abs(predicted - actual)
    if drift <= settings.drift_threshold:
        return None
    return Anomaly(
        "prediction_drift",
        "run",
        f"predicted success {predicted:.2f} but {actual:.2f} succeeded over the last "
        f"{len(scored)} attempts (drift {drift:.2f} > {settings.drift_threshold:g})",
        {"predicted": round(predicted, 6), "actual": round(actual, 6), "drift": round(drift, 6)},
    )


def load_imbalance(
    attempts: Sequence[AttemptFigure], agents: Sequence[str], settings: AnomalySettings
) -> Anomaly | None:
    loads = {name: sum(1 for a in attempts if a.agent == name) for name in agents}
    if len(agents) < 2 or sum(loads.values()) < settings.imbalance_min_attempts:
        return None
    index = jain_index(list(loads.values()))
    if index >= settings.imbalance_threshold:
        return None
    shown = ", ".join(f"{name} {count}" for name, count in loads.items())
    return Anomaly(
        "load_imbalance",
        "run",
        f"attempts per agent are uneven ({shown}): Jain's index {index:.2f} < "
        f"{settings.imbalance_threshold:g}",
        {"loads": loads, "jain_index": round(index, 6)},
    )


def robust_z(value: float, history: Sequence[float]) -> float | None:
    """The modified z-score of `value` against `history` (None when it has no spread)."""
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    if mad > 0:
        return MAD_SCALE * (value - median) / mad
    mean_ad = statistics.fmean(abs(x - median) for x in history)
    if mean_ad == 0:
        return None
    return (value - median) / (MEAN_AD_SCALE * mean_ad)


def outlier(
    what: str,
    attempt: AttemptFigure,
    earlier: Sequence[AttemptFigure],
    settings: AnomalySettings,
) -> Anomaly | None:
    """`what`: duration or cost. `earlier`: the attempts before it (its kind is picked here)."""
    same = [a for a in earlier if a.kind == attempt.kind]
    if len(same) < settings.outlier_min_samples:
        return None
    value = attempt.duration_seconds if what == "duration" else attempt.cost
    history = [a.duration_seconds if what == "duration" else a.cost for a in same]
    z = robust_z(value, history)
    if z is None or z <= settings.outlier_z:
        return None
    median = statistics.median(history)
    if what == "duration" and value - median < settings.outlier_min_excess_seconds:
        return None
    subject = f"{attempt.task_id}#{attempt.attempt}"
    return Anomaly(
        f"{what}_outlier",
        subject,
        f"{what} of {subject} is {value:g} against a median of {median:g} for '{attempt.kind}' "
        f"(robust z {z:.1f} > {settings.outlier_z:g})",
        {"value": value, "median": median, "z": round(z, 6), "agent": attempt.agent},
        attempt.task_id,
    )


def after_attempt(
    attempts: Sequence[AttemptFigure], agents: Sequence[str], settings: AnomalySettings
) -> list[Anomaly]:
    """What the newest attempt (the last one) reveals, by every detector but coordination."""
    if not attempts:
        return []
    latest, earlier = attempts[-1], attempts[:-1]
    found = [
        outlier("duration", latest, earlier, settings),
        outlier("cost", latest, earlier, settings),
        failure_pattern(latest.agent, attempts, settings) if latest.agent else None,
        prediction_drift(attempts, settings),
        load_imbalance(attempts, agents, settings),
    ]
    return [a for a in found if a is not None]


__all__ = [
    "Anomaly",
    "after_attempt",
    "coordination",
    "failure_pattern",
    "load_imbalance",
    "outlier",
    "prediction_drift",
    "robust_z",
]
