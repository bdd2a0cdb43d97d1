"""DecisionEngine: ordered rules and a weighted score choose what follows an attempt, and why."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestration.core.context import freeze
from orchestration.core.errors import RuleError
from orchestration.core.models import EXPLANATION_KEY
from orchestration.rules.rule_files import DecisionRule
from orchestration.rules.scoring import SCORE_NAMES, ScoreCard, band, weighted_score

logger = logging.getLogger(__name__)

DECISIONS = ("proceed", "retry", "clarify", "escalate", "checkpoint", "fail")
MAX_SHOWN_VALUE_CHARS = 80  # one figure in the explanation text


@dataclass(frozen=True, slots=True)
class Alternative:
    """An action that was not chosen, and why."""

    action: str
    why_not: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a decision came out as it did: readable text plus the data behind it."""

    text: str
    rule: str
    when: str | None  # the matching rule's condition; None: it always matches
    file: str
    not_matched: tuple[str, ...] = ()  # earlier rules whose condition did not hold
    errors: tuple[str, ...] = ()  # earlier rules skipped because their expression failed
    score: ScoreCard | None = None
    alternatives: tuple[Alternative, ...] = ()
    overridden: str | None = None  # what the rules chose before a plugin overrode it

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "rule": self.rule,
            "when": self.when,
            "file": self.file,
            "not_matched": list(self.not_matched),
            "errors": list(self.errors),
            "score": self.score.as_dict() if self.score is not None else None,
            "alternatives": [{"action": a.action, "why_not": a.why_not} for a in self.alternatives],
            "overridden": self.overridden,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an attempt, and why: the rule that matched and the figures it saw."""

    action: str
    rule: str
    reason: str
    figures: Mapping[str, Any] = field(default_factory=dict)
    explanation: Explanation | None = None

    def stored_figures(self) -> dict[str, Any]:
        """The figures the rule saw plus the explanation under "explanation", for the store."""
        stored = dict(self.figures)
        if self.explanation is not None:
            stored[EXPLANATION_KEY] = self.explanation.as_dict()
        return stored


# ---- the engine ------------------------------------------------------------------------------


def _frozen(context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The context frozen once for all rules; left as is when it cannot be (each rule reports)."""
    try:
        return freeze(context)
    except (TypeError, ValueError, RecursionError):
        return context


def _condition(rule: DecisionRule) -> str:
    return rule.when.source if rule.when is not None else "always"


def _decides(rule: DecisionRule) -> tuple[str, ...]:
    """The actions a rule can give: its own, or those of its score's bands."""
    if rule.decide != "score" or rule.scoring is None:
        return (rule.decide,)
    return ("proceed", "retry", rule.scoring.otherwise)


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > MAX_SHOWN_VALUE_CHARS:
        text = text[: MAX_SHOWN_VALUE_CHARS - 3] + "..."
    return text


@dataclass
class _Trace:
    """The rules looked at while deciding, in order."""

    not_matched: list[DecisionRule] = field(default_factory=list)
    errors: list[tuple[DecisionRule, str]] = field(default_factory=list)

    def notes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (
            tuple(f"{r.name} ({r.decide}): {_condition(r)}" for r in self.not_matched),
            tuple(f"{r.name}: {message}" for r, message in self.errors),
        )

    def key(self) -> tuple[Any, ...]:
        # Rules by identity: the engine holds them for its lifetime, and a rule's scoring policy
        # (a mapping proxy) is not hashable.
        return (
            tuple(id(r) for r in self.not_matched),
            tuple((id(r), message) for r, message in self.errors),
        )


@dataclass(frozen=True, slots=True)
class _Told:
    """The parts of an explanation that follow from the rules looked at, not from the figures."""

    alternatives: tuple[Alternative, ...]
    not_matched: tuple[str, ...]
    errors: tuple[str, ...]
    tail: tuple[str, ...]  # the explanation's last lines: rules passed over, alternatives


MAX_TOLD_ENTRIES = 1024  # remembered explanation parts per engine


class DecisionEngine:
    """First matching rule wins; a `decide: score` rule lets the weighted score choose; a plugin
    may override the result through `override_decision`."""

    def __init__(
        self,
        rules: Sequence[DecisionRule],
        override: Callable[[Mapping[str, Any], str, str], str | None] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.override = override
        # Steps that look alike (the gate passed, the same rules passed over) are explained by
        # the same alternatives and notes: built once, not for every attempt.
        self._told: dict[tuple[Any, ...], _Told] = {}

    def decide(self, context: Mapping[str, Any]) -> Decision:
        trace = _Trace()
        decision = None
        frozen = _frozen(context)
        for index, rule in enumerate(self.rules):
            try:
                matched = rule.when is None or bool(rule.when.evaluate(frozen))
            except RuleError as error:
                trace.errors.append((rule, error.message))
                continue
            if matched:
                decision = self._matched(rule, index, context, trace)
                break
            trace.not_matched.append(rule)
        if decision is None:
            decision = self._fallback(context, trace)
        if trace.errors:
            skipped = "; ".join(f"{r.name}: {message}" for r, message in trace.errors)
            decision = replace(
                decision, reason=f"{decision.reason} (rules skipped after errors: {skipped})"
            )
        return self._apply_override(context, decision)

    def _matched(
        self, rule: DecisionRule, index: int, context: Mapping[str, Any], trace: _Trace
    ) -> Decision:
        names = set(rule.when.names) if rule.when is not None else set()
        card = None
        why_not: Mapping[str, str] = {}
        if rule.decide == "score" and rule.scoring is not None:
            card = weighted_score(rule.scoring, context)
            banded = band(card, context)
            action, why_not = banded.action, banded.why_not
            reason = f"{rule.reason} ({banded.reason})" if rule.reason else banded.reason
            names |= set(SCORE_NAMES)
        else:
            action = rule.decide
            reason = rule.reason or f"rule '{rule.name}' matched: {_condition(rule)}"
        figures = {name: context.get(name) for name in sorted(names) if name in context}
        told = self._tell(action, rule, index, trace, why_not)
        explanation = Explanation(
            _text(action, rule.name, rule.file, _condition(rule), figures, card, told.tail),
            rule.name,
            rule.when.source if rule.when is not None else None,
            rule.file,
            told.not_matched,
            told.errors,
            card,
            told.alternatives,
        )
        return Decision(action, rule.name, reason, figures, explanation)

    def _tell(
        self,
        chosen: str,
        matched: DecisionRule | None,
        index: int,
        trace: _Trace,
        why_not: Mapping[str, str],
    ) -> _Told:
        """The alternatives and notes of an explanation, remembered by what they depend on."""
        key = (chosen, index, trace.key(), tuple(why_not.items()))
        told = self._told.get(key)
        if told is None:
            alternatives = self._alternatives(chosen, matched, index, trace, why_not)
            not_matched, errors = trace.notes()
            told = _Told(alternatives, not_matched, errors, _tail(trace, alternatives))
            if len(self._told) >= MAX_TOLD_ENTRIES:
                self._told.clear()
            self._told[key] = told
        return told

    def _alternatives(
        self,
        chosen: str,
        matched: DecisionRule | None,
        index: int,
        trace: _Trace,
        why_not: Mapping[str, str],
    ) -> tuple[Alternative, ...]:
        """Each action not chosen, with the first reason that explains it."""
        later = self.rules[index + 1 :] if matched is not None else ()
        alternatives = []
        for action in DECISIONS:
            if action == chosen:
                continue
            reasons = [why_not[action]] if action in why_not else []
            reasons += [
                f"rule '{r.name}' did not match: {_condition(r)}"
                for r in trace.not_matched
                if action in _decides(r)
            ]
            reasons += [
                f"rule '{r.name}' was skipped after an error: {message}"
                for r, message in trace.errors
                if action in _decides(r)
            ]
            if not reasons and matched is not None:
                reasons += [
                    f"rule '{r.name}' comes after the matching rule '{matched.name}'"
                    for r in later
                    if action in _decides(r)
                ][:1]
            if not reasons:
                reasons.append(f"no decision rule gives {action} here")
            alternatives.append(Alternative(action, "; ".join(reasons)))
        return tuple(alternatives)

    def _fallback(self, context: Mapping[str, Any], trace: _Trace) -> Decision:
        # With no matching rule, err on the side of a human: a failed gate is never waved through.
        if context.get("gate_passed"):
            action, reason = "proceed", "no decision rule matched; the gate passed"
        else:
            action, reason = "escalate", "no decision rule matched and the gate failed"
        figures = {"gate_passed": context.get("gate_passed")}
        told = self._tell(action, None, len(self.rules), trace, {})
        text = _text(action, "default", "", reason, figures, None, told.tail)
        explanation = Explanation(
            text, "default", None, "", told.not_matched, told.errors, None, told.alternatives
        )
        return Decision(action, "default", reason, figures, explanation)

    def _apply_override(self, context: Mapping[str, Any], decision: Decision) -> Decision:
        if self.override is None:
            return decision
        changed = self.override(context, decision.action, decision.reason)
        if changed is None or changed == decision.action:
            return decision
        if changed not in DECISIONS:
            logger.warning("plugin override returned unknown decision %r; ignored", changed)
            return decision
        reason = f"a plugin overrode '{decision.action}' ({decision.reason})"
        explanation = decision.explanation
        if explanation is not None:
            overridden = Alternative(
                decision.action, f"a plugin (override_decision) changed it to {changed}"
            )
            kept = tuple(a for a in explanation.alternatives if a.action != changed)
            explanation = replace(
                explanation,
                text=f"{changed}: {reason}.\n{explanation.text}",
                alternatives=(overridden, *kept),
                overridden=decision.action,
            )
        return Decision(changed, "plugin-override", reason, decision.figures, explanation)


def _text(
    action: str,
    rule: str,
    file: str,
    condition: str,
    figures: Mapping[str, Any],
    card: ScoreCard | None,
    tail: Sequence[str],
) -> str:
    """The explanation as a few lines of prose; `tail` from `_tail`."""
    where = f" ({file})" if file else ""
    seen = ", ".join(f"{k}={_shown(v)}" for k, v in figures.items()) or "nothing"
    if rule == "default":
        lines = [f"{action}: {condition}; it saw {seen}."]
    else:
        lines = [f"{action} by rule '{rule}'{where}: `{condition}` held; it saw {seen}."]
    if card is not None:
        band = f"proceed at {card.proceed:.2f} or more, retry at {card.retry:.2f} or more"
        lines.append(f"Weighted score {card.formula()} ({band}, else {card.otherwise}).")
        if card.left_out:
            lines.append(f"Left out of the score: {'; '.join(card.left_out)}.")
    lines += tail
    return "\n".join(lines)


def _tail(trace: _Trace, alternatives: Sequence[Alternative]) -> tuple[str, ...]:
    """The explanation's lines after the figures: rules passed over, then the alternatives."""
    lines = []
    not_matched, errors = trace.notes()
    if not_matched:
        lines.append(f"Earlier rules that did not match: {'; '.join(not_matched)}.")
    if errors:
        lines.append(f"Rules skipped after errors: {'; '.join(errors)}.")
    lines += [f"Not {a.action}: {a.why_not}." for a in alternatives]
    return tuple(lines)


# ---- reading stored explanations back --------------------------------------------------------


def explanation_lines(explanation: Mapping[str, Any] | None) -> list[str]:
    """A stored explanation (Explanation.as_dict) as lines for a terminal; [] for None."""
    if not explanation:
        return []
    lines: list[str] = []
    score = explanation.get("score")
    if isinstance(score, Mapping):
        terms = " + ".join(
            f"{p.get('criterion')} {_fixed(p.get('value'))} x {_fixed(p.get('weight'))}"
            for p in score.get("parts", [])
            if isinstance(p, Mapping)
        )
        bands = score.get("thresholds") or {}
        lines.append(
            f"score {_fixed(score.get('score'))} = {terms} (proceed at "
            f"{_fixed(bands.get('proceed'))}, retry at {_fixed(bands.get('retry'))}, "
            f"else {score.get('otherwise')})"
        )
        lines += [f"left out of the score: {item}" for item in score.get("left_out", [])]
    if explanation.get("overridden"):
        lines.append(f"the rules chose {explanation['overridden']}; a plugin overrode it")
    lines += [f"did not match: {item}" for item in explanation.get("not_matched", [])]
    lines += [f"skipped after an error: {item}" for item in explanation.get("errors", [])]
    lines += [
        f"not {a.get('action')}: {a.get('why_not')}"
        for a in explanation.get("alternatives", [])
        if isinstance(a, Mapping)
    ]
    return lines


def _fixed(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else "?"
