"""The policy parts a run consults (rules, plugins, breakpoints, quality, decisions), built once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from orchestration.core.errors import PlanError
from orchestration.core.models import Plan, TaskSpec
from orchestration.engine.breakpoints import BreakpointManager
from orchestration.engine.decisions import DecisionEngine
from orchestration.engine.quality import QualityController
from orchestration.pluginhost.hooks import Plugins, load_plugins
from orchestration.rules.rule_files import BreakpointRule, RuleSet, load_rules


@dataclass(frozen=True)
class Engine:
    """The policy parts the loop consults, built once per run from the plan, rules and plugins.

    Immutable: a change of rules, of the rules switched off or of the baselines makes a new one
    (`with_rules`, `with_disabled`, `with_baselines`), which the loop then holds.
    """

    rules: RuleSet
    plugins: Plugins
    breakpoints: BreakpointManager
    quality: QualityController
    decisions: DecisionEngine

    @cached_property
    def rules_by_name(self) -> dict[str, BreakpointRule]:
        """The breakpoint rules by name (built once per engine)."""
        return {rule.name: rule for rule in self.rules.breakpoints}

    def with_rules(self, rules: RuleSet) -> Engine:
        """The same engine with these breakpoint rules (the rules switched off stay off)."""
        return replace(
            self, rules=rules, breakpoints=BreakpointManager(rules, self.breakpoints.disabled)
        )

    def with_disabled(self, disabled: frozenset[str]) -> Engine:
        """The same engine with exactly these breakpoint rules switched off."""
        return replace(self, breakpoints=BreakpointManager(self.rules, disabled))

    def with_baselines(self, baselines: Any) -> Engine:
        """The same engine comparing validators against these baselines."""
        return replace(self, quality=self.quality.with_baselines(baselines))


def build_engine(plan: Plan, plugins: Plugins | None = None) -> Engine:
    """Load the rules (defaults plus the plan's files) and plugins; check the plan against them."""
    plugins = plugins or load_plugins()
    rules = load_rules(plan.rule_files, functions=plugins.rule_functions)
    quality = QualityController(plugins.validators, rules.quality)
    _check_validators(plan, quality)
    # A plan read without the plugins (a stored run's) may name a kind none provides now.
    check_action_kinds(_with_branch_tasks(plan.spec.tasks), plugins, plan.path)

    def override(context: Any, decision: str, reason: str) -> str | None:
        value = plugins.override_decision(context, decision, reason)
        return value if isinstance(value, str) else None

    return Engine(
        rules, plugins, BreakpointManager(rules), quality, DecisionEngine(rules.decisions, override)
    )


def _check_validators(plan: Plan, quality: QualityController) -> None:
    for task in plan.spec.tasks:
        unknown = quality.unknown(plan.validators(task))
        if unknown:
            known = ", ".join(sorted(quality.validators)) or "none"
            raise PlanError(
                f"unknown validator '{unknown[0]}'; loaded validators: {known}",
                file=plan.path,
                task=task.id,
                field="validators",
            )


def check_action_kinds(tasks: Iterable[TaskSpec], plugins: Plugins, file: str) -> None:
    """Raise PlanError for the first task whose kind of work no loaded plugin provides."""
    known = plugins.action_kinds
    for task in tasks:
        if task.action.kind not in known:
            raise PlanError(
                f"unknown action kind '{task.action.kind}'; loaded kinds: {', '.join(known)}",
                file=file,
                task=task.id,
                field="action.kind",
            )


def _with_branch_tasks(tasks: Iterable[TaskSpec]) -> Iterator[TaskSpec]:
    for task in tasks:
        yield task
        for branch in task.branches:
            yield from _with_branch_tasks(branch.spawn)
