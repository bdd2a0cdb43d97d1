"""BreakpointManager: which breakpoint rules fire before or after a step, highest priority first."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestration.rules.rule_files import BreakpointRule, RuleSet, evaluate_breakpoints

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BreakpointHit:
    rule: BreakpointRule
    message: str


@dataclass(frozen=True, slots=True)
class BreakpointCheck:
    """The outcome of one check: the rules that fired and the rules that failed to evaluate."""

    hits: tuple[BreakpointHit, ...] = ()
    errors: tuple[str, ...] = ()

    def first(self, action: str) -> BreakpointHit | None:
        return next((h for h in self.hits if h.rule.action == action), None)

    def of_action(self, action: str) -> list[BreakpointHit]:
        return [h for h in self.hits if h.rule.action == action]


class BreakpointManager:
    def __init__(self, rules: RuleSet, disabled: frozenset[str] = frozenset()) -> None:
        self.rules = rules
        self.disabled = disabled

    def check(self, at: str, context: Mapping[str, Any]) -> BreakpointCheck:
        hits, errors = [], []
        for rule, error in evaluate_breakpoints(self.rules, at, context):
            if rule.name in self.disabled:
                continue
            if error is not None:
                errors.append(f"breakpoint rule '{rule.name}' could not be evaluated: {error}")
                continue
            hits.append(BreakpointHit(rule, rule.message_for(context)))
        return BreakpointCheck(tuple(hits), tuple(errors))
