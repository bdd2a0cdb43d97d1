"""DecisionEngine: ordered rules choose proceed, retry, clarify, escalate or checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestration.context import freeze
from orchestration.errors import RuleError
from orchestration.rules import DecisionRule

logger = logging.getLogger(__name__)

DECISIONS = ("proceed", "retry", "clarify", "escalate", "checkpoint")


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an attempt, and why: the rule that matched and the figures it saw."""

    action: str
    rule: str
    reason: str
    figures: Mapping[str, Any] = field(default_factory=dict)


def _figures(rule: DecisionRule, context: Mapping[str, Any]) -> dict[str, Any]:
    names = sorted(rule.when.names) if rule.when is not None else []
    return {name: context.get(name) for name in names if name in context}


def _frozen(context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The context frozen once for all rules; left as is when it cannot be (each rule reports)."""
    try:
        return freeze(context)
    except (TypeError, ValueError, RecursionError):
        return context


class DecisionEngine:
    """First matching rule wins; a plugin may override the result through `override_decision`."""

    def __init__(
        self,
        rules: Sequence[DecisionRule],
        override: Callable[[Mapping[str, Any], str, str], str | None] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.override = override

    def decide(self, context: Mapping[str, Any]) -> Decision:
        skipped: list[str] = []
        decision = None
        frozen = _frozen(context)
        for rule in self.rules:
            try:
                matched = rule.when is None or bool(rule.when.evaluate(frozen))
            except RuleError as error:
                skipped.append(f"{rule.name}: {error.message}")
                continue
            if matched:
                decision = self._explain(rule, context)
                break
        if decision is None:
            decision = self._fallback(context)
        if skipped:
            decision = Decision(
                decision.action,
                decision.rule,
                f"{decision.reason} (rules skipped after errors: {'; '.join(skipped)})",
                decision.figures,
            )
        return self._apply_override(context, decision)

    def _explain(self, rule: DecisionRule, context: Mapping[str, Any]) -> Decision:
        condition = rule.when.source if rule.when is not None else "always"
        reason = rule.reason or f"rule '{rule.name}' matched: {condition}"
        return Decision(rule.decide, rule.name, reason, _figures(rule, context))

    def _fallback(self, context: Mapping[str, Any]) -> Decision:
        # With no matching rule, err on the side of a human: a failed gate is never waved through.
        if context.get("gate_passed"):
            return Decision("proceed", "default", "no decision rule matched; the gate passed")
        return Decision("escalate", "default", "no decision rule matched and the gate failed")

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
        return Decision(changed, "plugin-override", reason, decision.figures)
