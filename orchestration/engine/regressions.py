"""Attempt against attempt: what got worse since the task's previous attempt."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestration.extension import STAGES

logger = logging.getLogger(__name__)

# A stage counts as worse only when its score fell by more than this (float noise is not news).
SCORE_TOLERANCE = 1e-6


class _ReportLike(Protocol):
    """A QualityReport (in memory) or a QualityRecord (from the store): both carry these."""

    @property
    def score(self) -> float: ...

    @property
    def stage_scores(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class AttemptScores:
    """The figures of one attempt that the comparison reads."""

    score: float
    stage_scores: Mapping[str, float]
    tests_failed: int
    failed_tests: tuple[str, ...]

    @classmethod
    def of(cls, attempt: _ReportLike) -> AttemptScores:
        """From a QualityReport (its checks are CheckResults) or a QualityRecord (dicts)."""
        checks: Sequence[Any] = getattr(attempt, "checks", ())
        tests_failed = 0
        failed: list[str] = []
        for check in checks:
            figures = check.get("figures", {}) if isinstance(check, Mapping) else check.figures
            if not isinstance(figures, Mapping):
                continue
            count = figures.get("tests_failed")
            if isinstance(count, int | float) and not isinstance(count, bool):
                tests_failed += int(count)
            names = figures.get("failed_tests")
            if isinstance(names, list | tuple):
                failed += [str(name) for name in names]
        return cls(
            float(attempt.score),
            {str(k): float(v) for k, v in dict(attempt.stage_scores).items()},
            tests_failed,
            tuple(dict.fromkeys(failed)),
        )


@dataclass(frozen=True, slots=True)
class AttemptComparison:
    """This attempt against the task's previous one; all zero/empty for a first attempt."""

    score_delta: float = 0.0  # this score minus the previous one
    regressed_vs_previous: tuple[str, ...] = ()  # stages whose score fell, in STAGES order
    tests_failed_delta: int = 0  # failing tests now minus failing tests then
    newly_failing_tests: tuple[str, ...] = ()  # listed by validators, failing now but not then
    previous_score: float | None = None

    def context(self) -> dict[str, Any]:
        """The rule-context names this comparison fills in."""
        return {
            "score_delta": self.score_delta,
            "regressed_vs_previous": self.regressed_vs_previous,
            "tests_failed_delta": self.tests_failed_delta,
        }

    def feedback(self) -> str:
        """A note for the next attempt's `{feedback}` when this one made things worse; else ''."""
        if self.previous_score is None:
            return ""
        lines = []
        if self.score_delta < -SCORE_TOLERANCE:
            current = self.previous_score + self.score_delta
            lines.append(
                f"- the score fell from {self.previous_score:.2f} to {current:.2f} "
                "since the previous attempt"
            )
        if self.regressed_vs_previous:
            stages = ", ".join(self.regressed_vs_previous)
            lines.append(f"- worse than the previous attempt in: {stages}")
        if self.newly_failing_tests:
            shown = ", ".join(self.newly_failing_tests[:20])
            lines.append(f"- tests that fail now but did not in the previous attempt: {shown}")
        elif self.tests_failed_delta > 0:
            lines.append(
                f"- {self.tests_failed_delta} more tests fail than in the previous attempt"
            )
        return "\n".join(["Compared with the previous attempt:", *lines]) if lines else ""


def compare_attempts(current: _ReportLike, previous: _ReportLike | None) -> AttemptComparison:
    """Compare an attempt with the task's previous attempt (None: this is the first)."""
    if previous is None:
        return AttemptComparison()
    now, then = AttemptScores.of(current), AttemptScores.of(previous)
    regressed = tuple(
        stage
        for stage in STAGES
        if stage in now.stage_scores
        and stage in then.stage_scores
        and now.stage_scores[stage] < then.stage_scores[stage] - SCORE_TOLERANCE
    )
    earlier = set(then.failed_tests)
    return AttemptComparison(
        score_delta=round(now.score - then.score, 4),
        regressed_vs_previous=regressed,
        tests_failed_delta=now.tests_failed - then.tests_failed,
        newly_failing_tests=tuple(t for t in now.failed_tests if t not in earlier),
        previous_score=then.score,
    )
