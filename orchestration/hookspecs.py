"""Every hook a plugin can implement, grouped by phase; each docstring is the hook's contract."""

# mypy: disable-error-code="empty-body"

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from orchestration.extension import Notifier, Validator

hookspec = pluggy.HookspecMarker("orchestration")

# ---- registration: called once when the plugin manager is built; every plugin's list is kept ----


@hookspec
def register_validators() -> list[Validator]:
    """Return the validators this plugin provides.

    Called once at start-up. Each `Validator` has a unique `name` (what plans list under
    `validators:`), the quality `stage` it scores (syntax, requirements, quality, testing) and a
    `check(ValidationInput) -> CheckResult` callable. The engine calls each check separately, with a
    timeout; a check that raises, hangs or returns something else counts as a failed check.
    """


@hookspec
def register_notifiers() -> list[Notifier]:
    """Return the notifiers this plugin provides.

    Called once at start-up. Each notifier's `notify(Notification)` is called for breakpoints
    raised and resolved and for finished runs; it is called separately from every other notifier,
    with a timeout, and its failure is logged, never raised into the loop.
    """


@hookspec
def register_rule_functions() -> Mapping[str, Callable[..., Any]]:
    """Return extra functions for rule expressions, by name.

    Called once before rule files are compiled, so expressions may call them. A function must be
    pure, fast and bounded: it receives plain values from the rule context.
    """


# ---- decisions: one plugin may override what the rules decided --------------------------------


@hookspec(firstresult=True)
def override_decision(context: Mapping[str, Any], decision: str, reason: str) -> str | None:
    """Return a different decision (proceed, retry, clarify, escalate, checkpoint) or None.

    Called after the decision rules chose `decision` for an attempt, with the rule context. The
    first plugin that returns a value wins; the stored explanation names the override.
    """


# ---- events: called after the engine has committed what they describe -------------------------


@hookspec
def on_transition(run_id: str, task_id: str, source: str, dest: str, trigger: str) -> None:
    """Called after a task's state change is committed. Return value ignored."""


@hookspec
def on_breakpoint_raised(run_id: str, task_id: str, rule: str, message: str) -> None:
    """Called after a breakpoint is stored. Return value ignored."""


@hookspec
def on_breakpoint_resolved(run_id: str, breakpoint_id: int, resolution: str, actor: str) -> None:
    """Called after a human's resolution of a breakpoint is stored. Return value ignored."""


@hookspec
def on_decision(run_id: str, task_id: str, decision: str, reason: str) -> None:
    """Called after a decision for an attempt is stored. Return value ignored."""


@hookspec
def on_run_finished(run_id: str, state: str, counts: Mapping[str, int]) -> None:
    """Called when a run stops: completed, failed, or paused for a human. Return value ignored."""
