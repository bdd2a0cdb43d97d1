"""A run's budget: what it spent (attempts, wall time, reported cost and tokens) against limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestration.core.models import Budget

LIMITS = ("max_attempts", "max_wall_seconds", "max_cost", "max_tokens")


class BudgetSettingError(ValueError):
    """A `budget.<limit>=value` that names no limit or gives no usable number."""


def budget_limit_value(name: str, value: Any) -> float | None:
    """Check one `budget.<name>=value` setting; None lifts the limit."""
    if name not in LIMITS:
        raise BudgetSettingError(
            f"unknown budget limit {name!r}; expected one of {', '.join(LIMITS)}"
        )
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BudgetSettingError(
            f"budget.{name} must be a number of at least 0 (or null for no limit), got {value!r}"
        )
    return float(value)


def reported_cost(result: Mapping[str, Any]) -> tuple[float, int]:
    """The cost and tokens an action reported in its ORCH_RESULT (0 for anything unusable)."""
    cost = result.get("cost", result.get("cost_usd", 0))
    tokens = result.get("tokens", 0)
    cost = float(cost) if _is_number(cost) and cost >= 0 else 0.0
    tokens = int(tokens) if _is_number(tokens) and tokens >= 0 else 0
    return cost, tokens


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class RunBudget:
    """Limits from the plan, overridden by run settings; spending counted as attempts end."""

    limits: dict[str, float | None]
    attempts: int = 0
    cost: float = 0.0
    tokens: int = 0
    overrides: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def of(cls, budget: Budget) -> RunBudget:
        return cls({name: getattr(budget, name) for name in LIMITS})

    def limit(self, name: str) -> float | None:
        return self.overrides[name] if name in self.overrides else self.limits[name]

    def set_limit(self, name: str, value: Any) -> None:
        self.overrides[name] = budget_limit_value(name, value)

    def spend(self, result: Mapping[str, Any]) -> None:
        cost, tokens = reported_cost(result)
        self.cost += cost
        self.tokens += tokens

    def over(self, elapsed_seconds: float, *, starting: bool = False) -> tuple[str, ...]:
        """The limits that are used up; `starting`: counting an attempt about to start."""
        spent = {
            "max_attempts": self.attempts + (1 if starting else 0),
            "max_wall_seconds": elapsed_seconds,
            "max_cost": self.cost,
            "max_tokens": self.tokens,
        }
        over = []
        for name in LIMITS:
            limit = self.limit(name)
            if limit is None:
                continue
            # Reaching the attempt limit is fine (the last allowed attempt); passing it is not.
            used_up = spent[name] > limit if name == "max_attempts" else spent[name] >= limit
            if used_up:
                over.append(name)
        return tuple(over)
