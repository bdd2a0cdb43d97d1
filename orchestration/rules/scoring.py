"""The weighted multi-criteria score of a `decide: score` rule, and the action its band gives."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestration.rules.rule_files import ScoringPolicy

logger = logging.getLogger(__name__)

# What a `decide: score` rule reads: the criteria, the gate, and whether a retry is possible.
SCORE_NAMES = (
    "quality_score",
    "confidence",
    "calibrated_confidence",
    "historical_success_rate",
    "historical_attempts",
    "gate_passed",
    "attempt",
    "max_attempts",
    "error_kind",
)


@dataclass(frozen=True, slots=True)
class ScorePart:
    """One criterion of a weighted score: the context name read, its value and its weight."""

    criterion: str
    source: str
    value: float
    weight: float  # normalised over the criteria that had evidence

    @property
    def contribution(self) -> float:
        return self.value * self.weight


@dataclass(frozen=True, slots=True)
class ScoreCard:
    """A weighted score with its parts and the thresholds it was held against."""

    score: float
    parts: tuple[ScorePart, ...]
    left_out: tuple[str, ...]  # criteria with a weight but no evidence, and why
    proceed: float
    retry: float
    otherwise: str

    def formula(self) -> str:
        """`0.72 = quality 0.90 x 0.62 + confidence 0.50 x 0.38`, for people."""
        parts = " + ".join(f"{p.criterion} {p.value:.2f} x {p.weight:.2f}" for p in self.parts)
        return f"{self.score:.2f} = {parts}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "parts": [
                {
                    "criterion": p.criterion,
                    "source": p.source,
                    "value": round(p.value, 4),
                    "weight": round(p.weight, 4),
                    "contribution": round(p.contribution, 4),
                }
                for p in self.parts
            ],
            "left_out": list(self.left_out),
            "thresholds": {"proceed": self.proceed, "retry": self.retry},
            "otherwise": self.otherwise,
        }


def weighted_score(policy: ScoringPolicy, context: Mapping[str, Any]) -> ScoreCard:
    """The weighted sum of the criteria that have evidence, their weights renormalised.

    quality reads quality_score; confidence reads calibrated_confidence once there is history
    (historical_attempts > 0), else confidence; history reads historical_success_rate and is left
    out without history. With no criterion left, quality alone decides.
    """
    evidence = _number(context.get("historical_attempts")) or 0
    sources = {
        "quality": "quality_score",
        "confidence": "calibrated_confidence" if evidence > 0 else "confidence",
        "history": "historical_success_rate",
    }
    used: list[tuple[str, str, float, float]] = []
    left_out: list[str] = []
    for criterion, weight in policy.weights.items():
        if weight <= 0:
            continue
        source = sources[criterion]
        if criterion == "history" and evidence <= 0:
            left_out.append("history: no earlier attempts of this kind")
            continue
        value = _unit(context.get(source))
        if value is None:
            left_out.append(f"{criterion}: {source} is not a number")
            continue
        used.append((criterion, source, value, weight))
    if not used:
        used = [("quality", "quality_score", _unit(context.get("quality_score")) or 0.0, 1.0)]
    total = sum(weight for *_, weight in used)
    parts = tuple(ScorePart(c, s, v, w / total) for c, s, v, w in used)
    score = round(sum(p.contribution for p in parts), 4)
    return ScoreCard(score, parts, tuple(left_out), policy.proceed, policy.retry, policy.otherwise)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def _unit(value: Any) -> float | None:
    number = _number(value)
    return None if number is None else min(1.0, max(0.0, number))


@dataclass(frozen=True, slots=True)
class Band:
    """The action a score's band gives, the reason, and why the other bands did not apply."""

    action: str
    reason: str
    why_not: Mapping[str, str]


def band(card: ScoreCard, context: Mapping[str, Any]) -> Band:
    """The action the score's band gives, with a failed gate and the retry budget respected."""
    s, proceed, retry, otherwise = card.score, card.proceed, card.retry, card.otherwise
    gate = bool(context.get("gate_passed"))
    attempt = _number(context.get("attempt")) or 0
    max_attempts = _number(context.get("max_attempts")) or 0
    if context.get("error_kind") == "permanent":
        no_retry: str | None = "the error is permanent"
    elif attempt >= max_attempts:
        no_retry = f"no attempt left ({attempt:g} of {max_attempts:g})"
    else:
        no_retry = None
    below_proceed = s < proceed
    not_proceed = (
        f"the score {s:.2f} is below the proceed threshold {proceed:.2f}"
        if below_proceed
        else "the quality gate failed, and the score never waves a failed gate through"
    )
    if not below_proceed and gate:
        reached = f"the score {s:.2f} reached the proceed threshold {proceed:.2f}"
        return Band(
            "proceed",
            f"weighted score {s:.2f} reached the proceed threshold {proceed:.2f} and the gate "
            "passed",
            {"retry": reached, otherwise: reached},
        )
    short_of = (
        f"is below the proceed threshold {proceed:.2f}"
        if below_proceed
        else f"reached the proceed threshold {proceed:.2f} but the gate failed"
    )
    if s >= retry and no_retry is None:
        return Band(
            "retry",
            f"weighted score {s:.2f} {short_of}; attempts remain",
            {
                "proceed": not_proceed,
                otherwise: f"the score {s:.2f} is at or above the retry threshold {retry:.2f} "
                "and a retry is possible",
            },
        )
    if s < retry:
        not_retry = f"the score {s:.2f} is below the retry threshold {retry:.2f}"
        reason = f"weighted score {s:.2f} is below the retry threshold {retry:.2f}"
    else:
        not_retry = str(no_retry)
        reason = f"weighted score {s:.2f} {short_of}, and {no_retry}"
    return Band(otherwise, reason, {"proceed": not_proceed, "retry": not_retry})
