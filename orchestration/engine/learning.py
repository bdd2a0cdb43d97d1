"""Learning from outcomes: per action kind and tag, how often attempts pass; calibrated confidence.

The statistics are Beta posteriors over "this attempt passed its quality gate", kept per action
kind and per (action kind, tag). They are rebuilt from the store (every run of the same plan) when
a run starts and updated in memory after each attempt, so nothing new is stored.

success_rate(kind, tags)
    p_kind = (a + s_kind) / (a + b + n_kind)                  the kind's posterior mean
    r_tag  = (s_tag + m * p_kind) / (n_tag + m)               each tag, shrunk toward p_kind
    rate   = sum(n_tag * r_tag) / sum(n_tag)  over the task's tags with outcomes, else p_kind
  With prior Beta(a, b) (1, 1 by default) and m = TAG_PRIOR_STRENGTH (5): a tag with a few
  outcomes barely moves the rate away from its kind's; one with many speaks for itself.

calibrated_confidence(reported, kind, tags)
    bias       = mean reported confidence - rate              (both combined over tags as above)
    w          = n_kind / (n_kind + k)                        k = CALIBRATION_STRENGTH (10)
    calibrated = clamp(reported - w * bias, 0, 1)
  An agent that says 0.9 but passes half the time is marked down; a well-calibrated one (its
  mean confidence close to its success rate) keeps its own figure; with no history nothing moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestration.core.models import EventRecord, QualityRecord, TaskRecord

logger = logging.getLogger(__name__)

PRIOR_ALPHA = 1.0  # Beta(1, 1): no opinion before the first outcome
PRIOR_BETA = 1.0
TAG_PRIOR_STRENGTH = 5.0  # pseudo-outcomes of the kind's rate behind each tag's rate
CALIBRATION_STRENGTH = 10.0  # outcomes needed before history weighs as much as the report


@dataclass(slots=True)
class Tally:
    """Outcomes of one cell (a kind, or a kind and tag): passed, failed, confidence reported."""

    successes: int = 0
    failures: int = 0
    confidence_sum: float = 0.0

    @property
    def count(self) -> int:
        return self.successes + self.failures

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.count if self.count else None


@dataclass(frozen=True, slots=True)
class Learned:
    """What the history says about one task's attempts, as rule-context figures."""

    success_rate: float
    attempts: int
    calibrated_confidence: float

    def context(self) -> dict[str, Any]:
        return {
            "historical_success_rate": round(self.success_rate, 4),
            "historical_attempts": self.attempts,
            "calibrated_confidence": round(self.calibrated_confidence, 4),
        }


@dataclass
class OutcomeStats:
    """Beta(alpha, beta) success statistics per action kind and per (kind, tag)."""

    alpha: float = PRIOR_ALPHA
    beta: float = PRIOR_BETA
    tag_prior_strength: float = TAG_PRIOR_STRENGTH
    calibration_strength: float = CALIBRATION_STRENGTH
    kinds: dict[str, Tally] = field(default_factory=dict)
    tags: dict[tuple[str, str], Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError("the Beta prior needs alpha > 0 and beta > 0")
        if self.tag_prior_strength < 0 or self.calibration_strength <= 0:
            raise ValueError("prior strengths must be positive")

    def update(
        self, kind: str, tags: Iterable[str], success: bool, confidence: float | None = None
    ) -> None:
        """Count one attempt's outcome and reported confidence for its kind and each tag."""
        cells = [self.kinds.setdefault(kind, Tally())]
        cells += [self.tags.setdefault((kind, tag), Tally()) for tag in dict.fromkeys(tags)]
        reported = _unit(confidence)
        for cell in cells:
            if success:
                cell.successes += 1
            else:
                cell.failures += 1
            # No report counts as a neutral 1.0, the engine's own default confidence.
            cell.confidence_sum += 1.0 if reported is None else reported

    def attempts(self, kind: str) -> int:
        """The outcomes seen for this action kind: the evidence behind its rates."""
        tally = self.kinds.get(kind)
        return tally.count if tally else 0

    def kind_rate(self, kind: str) -> float:
        """The kind's posterior mean: (alpha + successes) / (alpha + beta + outcomes)."""
        tally = self.kinds.get(kind, Tally())
        return (self.alpha + tally.successes) / (self.alpha + self.beta + tally.count)

    def success_rate(self, kind: str, tags: Iterable[str] = ()) -> float:
        """The chance an attempt of this kind with these tags passes its gate (module doc)."""
        prior = self.kind_rate(kind)
        return self._combine(kind, tags, prior, lambda t: t.successes)

    def mean_confidence(self, kind: str, tags: Iterable[str] = ()) -> float | None:
        """The confidence reported on average for this kind (tags shrunk toward it); None: none."""
        tally = self.kinds.get(kind)
        prior = tally.mean_confidence if tally else None
        if prior is None:
            return None
        return self._combine(kind, tags, prior, lambda t: t.confidence_sum)

    def calibrated_confidence(self, reported: float, kind: str, tags: Iterable[str] = ()) -> float:
        """`reported` minus the agent's historical over-confidence, weighted by evidence."""
        tags = tuple(tags)
        value = _unit(reported)
        if value is None:
            value = 1.0
        mean = self.mean_confidence(kind, tags)
        count = self.attempts(kind)
        if mean is None or count == 0:
            return value
        bias = mean - self.success_rate(kind, tags)
        weight = count / (count + self.calibration_strength)
        return min(1.0, max(0.0, value - weight * bias))

    def learned(self, kind: str, tags: Iterable[str], reported: float) -> Learned:
        """The three rule-context figures for one task's attempt."""
        tags = tuple(tags)
        return Learned(
            self.success_rate(kind, tags),
            self.attempts(kind),
            self.calibrated_confidence(reported, kind, tags),
        )

    def _combine(self, kind: str, tags: Iterable[str], prior: float, total: _Total) -> float:
        weighted = 0.0
        outcomes = 0
        for tag in dict.fromkeys(tags):
            tally = self.tags.get((kind, tag))
            if tally is None or tally.count == 0:
                continue
            shrunk = (total(tally) + self.tag_prior_strength * prior) / (
                tally.count + self.tag_prior_strength
            )
            weighted += tally.count * shrunk
            outcomes += tally.count
        return weighted / outcomes if outcomes else prior


class _Total(Protocol):
    def __call__(self, tally: Tally, /) -> float: ...


def _unit(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return min(1.0, max(0.0, float(value)))


# ---- from the store ----------------------------------------------------------------------------


class _Readable(Protocol):
    """The store methods this module reads (a Store, or a test double)."""

    def run_ids_of_plan(self, plan_name: str) -> list[str]: ...

    def tasks(self, run_id: str) -> list[TaskRecord]: ...

    def quality(self, run_id: str, task_id: str | None = None) -> list[QualityRecord]: ...

    def events(self, run_id: str, after_id: int = 0) -> list[EventRecord]: ...


def outcome_stats_from_store(
    store: _Readable,
    plan_name: str,
    *,
    exclude_runs: Iterable[str] = (),
    alpha: float = PRIOR_ALPHA,
    beta: float = PRIOR_BETA,
) -> OutcomeStats:
    """Statistics over every stored attempt of every run of `plan_name`, oldest run first.

    An attempt is one quality result (its gate passed or not); its action kind and tags come
    from the task's stored spec, the confidence from the attempt's `step` event (the planner's
    confidence when there is none). Dry-run attempts (nothing ran) are left out. The prior is
    Beta(alpha, beta).
    """
    stats = OutcomeStats(alpha, beta)
    skipped = set(exclude_runs)
    for run_id in store.run_ids_of_plan(plan_name):
        if run_id in skipped:
            continue
        for kind, tags, passed, confidence in _attempts(store, run_id):
            stats.update(kind, tags, passed, confidence)
    return stats


def _attempts(
    store: _Readable, run_id: str
) -> Iterable[tuple[str, tuple[str, ...], bool, float | None]]:
    specs = {task.task_id: task.spec for task in store.tasks(run_id)}
    steps: dict[tuple[str, int], Mapping[str, Any]] = {}
    for event in store.events(run_id):
        if event.kind == "step" and event.task_id is not None:
            attempt = event.data.get("attempt")
            if isinstance(attempt, int):
                steps[(event.task_id, attempt)] = event.data
    for record in store.quality(run_id):
        spec = specs.get(record.task_id)
        if spec is None:
            continue
        step = steps.get((record.task_id, record.attempt), {})
        result = step.get("result")
        if isinstance(result, Mapping) and result.get("dry_run") is True:
            continue
        confidence = step.get("confidence", spec.confidence)
        yield spec.action.kind, tuple(spec.tags), record.gate_passed, _unit(confidence)
