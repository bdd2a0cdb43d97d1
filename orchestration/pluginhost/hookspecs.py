"""Every hook a plugin can implement, grouped by phase; each docstring is the hook's contract."""

# mypy: disable-error-code="empty-body"

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from orchestration.extension import ActionKind, Notifier, Validator

hookspec = pluggy.HookspecMarker("orchestration")

# An implementation may take any subset of a hook's arguments, by name (pluggy's rule); the
# engine calls each implementation on its own, so one plugin's failure never stops another's.

# ---- registration: called once when the plugin manager is built; every plugin's list is kept ----


@hookspec
def register_actions() -> list[ActionKind]:
    """Return the action kinds this plugin provides. Not firstresult: every plugin's list is kept.

    Called once when the plugins load, before a plan is read, so a plan's tasks may name the
    kinds as `action: {kind: <name>, args: {...}, timeout_seconds: N}` (an unknown kind is an
    error on its line of the plan). Each `ActionKind` has a `name` (lower case letters, digits,
    `_` or `-`; the built-in `shell`, `agent` and `python` cannot be replaced) and a
    `run(ActionInput) -> ActionResult` callable. The engine calls `run` on a worker thread per
    attempt, with the task's timeout: one that raises is a transient failure whose output is
    the traceback, one that returns anything but an `ActionResult` is a permanent failure, and
    one that overruns is a `timeout` (its `stop` event is set; the engine stops waiting). A
    later plugin's kind replaces an earlier one of the same name. A hook that raises or returns
    something other than a list of `ActionKind` is a plugin problem (`orch plugins` lists it).
    """


@hookspec
def register_validators() -> list[Validator]:
    """Return the validators this plugin provides. Not firstresult: every plugin's list is kept.

    Called once when the plugins load (`hooks.load_plugins`), before any plan runs.
    Each `Validator` has a `name` (what plans list under `validators:`), the quality `stage` it
    scores (syntax, requirements, quality or testing; a plan entry may set another), a
    `check(ValidationInput) -> CheckResult` callable and optionally a `baseline(BaselineInput)`
    callable run once at run start. A later plugin's validator replaces an earlier one of the
    same name. The engine calls each check on its own thread with the entry's `timeout_seconds`
    (default 900 s); a check that raises, hangs or returns anything but a `CheckResult` with a
    score in 0..1 is a failed check whose message says so, and the loop goes on. A hook that
    raises or returns something other than a list of `Validator` is a plugin problem
    (`orch plugins` lists it); the other plugins still load.
    """


@hookspec
def register_notifiers() -> list[Notifier]:
    """Return the notifiers this plugin provides. Not firstresult: every plugin's list is kept.

    Called once when the plugins load. Each notifier's `notify(Notification)` is called, after
    the engine has committed what it tells, for every breakpoint raised (kind
    `breakpoint_raised`, including `notify` and `auto` ones) and for every digest of breakpoints
    grouped by a rule's `digest_seconds` (kind `digest`). Each notifier is called on its own
    thread with a 10 s timeout; one that raises or overruns is logged and left behind, never
    raised into the loop. Return an empty list to stay off (as `webhook` does without its URL).
    """


@hookspec
def register_rule_functions() -> Mapping[str, Callable[..., Any]]:
    """Return extra functions for rule expressions, by name. Not firstresult: all are merged.

    Called once when the plugins load, before rule files are compiled, so the expressions of
    rule files may call them (a later plugin's function replaces an earlier one of the same
    name; a value that is not callable is dropped). A name must be a plain identifier not
    starting with `_`. A function receives frozen plain values from the rule context and must be
    pure, fast and bounded; its result is frozen, and a `TypeError` or `ValueError` it raises is
    that rule's evaluation error, not the loop's.
    """


# ---- decisions: one plugin may override what the rules decided --------------------------------


@hookspec(firstresult=True)
def override_decision(context: Mapping[str, Any], decision: str, reason: str) -> str | None:
    """Return another decision for this attempt, or None to keep the rules' one. Firstresult.

    Called after the decision rules chose `decision` (proceed, retry, clarify, escalate or
    checkpoint) for an attempt, because of `reason`, with the attempt's rule `context` (read
    only). Implementations are asked last-registered first; the first one that returns a value
    other than None wins (pluggy's firstresult). One that raises or does not return within 2 s
    ends the call with no override: it is logged and the rules' decision stands. A value that
    is not one of the five decisions is ignored. An override is stored with rule
    `plugin-override` and a reason naming the decision it replaced.
    """


# ---- events: called after the engine has committed what they describe -------------------------
# Each implementation runs on its own thread with a 5 s timeout; an exception or an overrun is
# logged and the loop goes on. Return values are ignored (not firstresult).


@hookspec
def on_transition(run_id: str, task_id: str, source: str, dest: str, trigger: str) -> None:
    """Called after a task's state change (`source` to `dest` by `trigger`) is committed.

    Not firstresult; the return value is ignored.
    """


@hookspec
def on_breakpoint_raised(run_id: str, task_id: str, rule: str, message: str) -> None:
    """Called after a breakpoint of `rule` is stored for a task, with its rendered `message`.

    Covers `pause` breakpoints and the `notify` and `auto` ones stored as already resolved. Not
    firstresult; the return value is ignored.
    """


@hookspec
def on_breakpoint_resolved(run_id: str, breakpoint_id: int, resolution: str, actor: str) -> None:
    """Called after a resolution of a breakpoint is stored: by `orch breakpoints resolve`, or by
    the engine when an unanswered breakpoint expires and its default applies (`actor` is then
    `engine (expired)`), or by the dashboard (`orch serve`; `actor` is the signed-in name). Not
    firstresult; the return value is ignored.
    """


@hookspec
def on_decision(run_id: str, task_id: str, decision: str, reason: str) -> None:
    """Called after the decision for an attempt (after any override) is recorded.

    Not firstresult; the return value is ignored.
    """


@hookspec
def on_run_finished(run_id: str, state: str, counts: Mapping[str, int]) -> None:
    """Called when the loop stops, after its last changes are committed.

    `state` is completed, failed, paused (waiting for a human), stalled or stopped; `counts`
    maps each task state to its number of tasks (states with none left out). Not firstresult;
    the return value is ignored.
    """
