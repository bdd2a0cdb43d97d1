"""Loads plugins (entry-point group `orchestration`) and calls their hooks one at a time, safely."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from orchestration.core import kept_threads
from orchestration.core.models import ACTION_KIND_MAX_LENGTH, ACTION_KIND_PATTERN, ACTION_KINDS
from orchestration.extension import (
    NOTIFY_TIMEOUT_SECONDS,
    ActionKind,
    Notification,
    Notifier,
    Validator,
)
from orchestration.pluginhost import hookspecs
from orchestration.pluginhost.outbox import MAX_WAITING, Outbox
from orchestration.pluginhost.severity import minimums_from_env, reaches

logger = logging.getLogger(__name__)

PROJECT = "orchestration"
# Used only when the package's own entry points are not visible (a source tree never installed).
DEFAULT_PLUGINS = (
    "orchestration.plugins.python_syntax",
    "orchestration.plugins.command",
    "orchestration.plugins.console",
    "orchestration.plugins.webhook",
    "orchestration.plugins.pytest_tests",
    "orchestration.plugins.ruff_lint",
    "orchestration.plugins.diff_size",
    "orchestration.plugins.requirements",
)
# Each call of plugin code from the loop has a timeout; a call that overruns is left behind on
# its thread and the loop goes on. A plugin's hook that overruns SKIP_AFTER_TIMEOUTS times in a
# row is not called again by this engine (noted), so a hanging plugin costs the loop at most
# SKIP_AFTER_TIMEOUTS timeouts, not one per call.
# NOTIFY_TIMEOUT_SECONDS (a notifier's) is part of the extension API: a notifier plans by it.
EVENT_TIMEOUT_SECONDS = 2.0  # an event hook (on_transition, on_decision, ...)
OVERRIDE_TIMEOUT_SECONDS = 2.0  # override_decision; past it the rules' decision stands
SKIP_AFTER_TIMEOUTS = 2
MAX_NOTES = 1_000  # notes waiting to be stored; older ones are dropped (they were logged)


@dataclass
class Plugins:
    """The loaded plugins and what they registered."""

    manager: pluggy.PluginManager
    actions: dict[str, ActionKind] = field(default_factory=dict)
    validators: dict[str, Validator] = field(default_factory=dict)
    notifiers: list[Notifier] = field(default_factory=list)
    rule_functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    muted: set[str] = field(default_factory=set)  # notifiers not called (the CLI shows it itself)
    guard: PluginGuard = field(default_factory=lambda: PluginGuard())
    outbox: Outbox | None = None  # made on the first notify_later
    # Each notifier's minimum severity (ORCH_NOTIFY_MIN_SEVERITY[_NAME]); none: it gets all.
    min_severity: dict[str, str] = field(default_factory=dict)

    @property
    def action_kinds(self) -> tuple[str, ...]:
        """Every kind a task may name: the built-in ones, then the plugins' by name."""
        return (*ACTION_KINDS, *sorted(self.actions))

    def sources(self) -> list[tuple[str, str]]:
        """(plugin name, where it came from) for `orch plugins`."""
        dists = {id(p): d for p, d in self.manager.list_plugin_distinfo()}
        rows = []
        for name, plugin in self.manager.list_name_plugin():
            dist = dists.get(id(plugin))
            origin = (
                f"{dist.project_name} {dist.version}" if dist else getattr(plugin, "__file__", "")
            )
            rows.append((name, str(origin)))
        return rows

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Call each implementation of an event hook on its own, with a timeout; failures are
        logged, not raised. With no implementation this costs nothing."""
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            arguments = {k: kwargs[k] for k in impl.argnames}
            self.guard.call(
                f"{impl.plugin_name}.{hook}",
                functools.partial(impl.function, **arguments),
                EVENT_TIMEOUT_SECONDS,
            )

    def override_decision(self, context: Any, decision: str, reason: str) -> Any:
        """pluggy's firstresult call of `override_decision`, guarded: its value, or None.

        The call runs on a thread with OVERRIDE_TIMEOUT_SECONDS; an implementation that raises
        or overruns ends the call with no answer, and the rules' decision stands.
        """
        caller = self.manager.hook.override_decision
        implementations = caller.get_hookimpls()
        if not implementations:  # the common case costs no thread
            return None
        plugins = ",".join(impl.plugin_name for impl in reversed(implementations))
        return self.guard.call(
            f"{plugins}.override_decision",
            functools.partial(caller, context=context, decision=decision, reason=reason),
            OVERRIDE_TIMEOUT_SECONDS,
            consequence="no answer from it; the rules' decision stands",
        )

    def notify(self, notification: Notification) -> None:
        """Send to every notifier, each in its own thread with a timeout."""
        for notifier in self.notifiers:
            if notifier.name in self.muted:
                continue
            if not reaches(notification.severity, self.min_severity.get(notifier.name)):
                continue
            self.guard.call(
                notifier.name,
                functools.partial(notifier.notify, notification),
                NOTIFY_TIMEOUT_SECONDS,
            )

    def notify_later(self, notification: Notification) -> None:
        """Queue a notification for the background sender: the caller never waits for it."""
        if self.outbox is None:
            self.outbox = Outbox(self.notify, self._dropped)
        self.outbox.put(notification)

    def drain_notifications(self, timeout: float | None = None) -> bool:
        """Wait for the queued notifications to be sent; True when all were.

        The default wait is one notifier timeout and a second: the call under way ends by then
        (and its overrun is noted), and a hanging notifier does not hold the run's end longer.
        """
        if timeout is None:
            timeout = NOTIFY_TIMEOUT_SECONDS + 1.0
        return self.outbox is None or self.outbox.drain(timeout)

    def _dropped(self, notification: Notification) -> None:
        text = f"notification {notification.kind!r} dropped: {MAX_WAITING} already wait to be sent"
        self.guard.note("notification_dropped", "notifiers", text)

    def take_notes(self) -> list[dict[str, Any]]:
        """What the guard noted since the last call (timeouts, skips), for the run's events."""
        return self.guard.take_notes()


class PluginGuard:
    """Calls plugin code with a timeout, counts overruns, and skips a hook that keeps overrunning.

    Shared by every thread that calls plugins through one Plugins object; its notes wait in a
    thread-safe deque until the loop stores them as events.
    """

    def __init__(self) -> None:
        self.overruns: dict[str, int] = {}  # consecutive timeouts by plugin hook
        self.skipped: set[str] = set()
        self.notes: deque[dict[str, Any]] = deque(maxlen=MAX_NOTES)

    def call(
        self, name: str, function: Callable[[], Any], timeout: float, consequence: str = ""
    ) -> Any:
        """The call's value, or None when it raised, overran, or the hook is skipped."""
        if name in self.skipped:
            return None
        ran = kept_threads.KEPT_THREADS.call(function, name=f"plugin {name}", timeout=timeout)
        if ran.timed_out:
            self._overran(name, timeout, consequence)
            return None
        self.overruns.pop(name, None)
        if ran.error is not None:
            logger.error("plugin %s failed", name, exc_info=ran.error)
            return None
        return ran.value

    def _overran(self, name: str, timeout: float, consequence: str) -> None:
        count = self.overruns.get(name, 0) + 1
        self.overruns[name] = count
        then = f"; {consequence}" if consequence else ""
        self.note("plugin_timeout", name, f"{name} did not return within {timeout:g} s{then}")
        if count >= SKIP_AFTER_TIMEOUTS:
            self.skipped.add(name)
            self.note(
                "plugin_skipped",
                name,
                f"{name} overran {count} times in a row; not called again by this engine",
            )

    def note(self, kind: str, name: str, text: str) -> None:
        logger.warning("%s", text)
        self.notes.append({"kind": kind, "plugin": name, "note": text})

    def take_notes(self) -> list[dict[str, Any]]:
        taken = []
        while self.notes:
            try:
                taken.append(self.notes.popleft())
            except IndexError:  # another thread took the last one
                break
        return taken


def _own_entry_points_visible() -> bool:
    try:
        eps = metadata.entry_points(group=PROJECT)
    except Exception:
        return False
    return any(ep.value.startswith("orchestration.plugins.") for ep in eps)


def _register_module(manager: pluggy.PluginManager, module_name: str) -> None:
    if manager.has_plugin(module_name):
        return
    manager.register(importlib.import_module(module_name), name=module_name)


def _collect(plugins: Plugins) -> None:
    hook = plugins.manager.hook
    for impl in hook.register_actions.get_hookimpls():
        for kind in _safe_list(impl, plugins.problems):
            problem = action_kind_problem(kind)
            if problem:
                plugins.problems.append(f"{impl.plugin_name}: register_actions {problem}")
                continue
            plugins.actions[kind.name] = kind
    for impl in hook.register_validators.get_hookimpls():
        for validator in _safe_list(impl, plugins.problems):
            if not isinstance(validator, Validator):
                plugins.problems.append(
                    f"{impl.plugin_name}: register_validators returned {validator!r}"
                )
                continue
            plugins.validators[validator.name] = validator
    for impl in hook.register_notifiers.get_hookimpls():
        for notifier in _safe_list(impl, plugins.problems):
            if isinstance(notifier, Notifier):
                plugins.notifiers.append(notifier)
            else:
                plugins.problems.append(
                    f"{impl.plugin_name}: register_notifiers returned {notifier!r}"
                )
    for impl in hook.register_rule_functions.get_hookimpls():
        try:
            functions = impl.function()
        except Exception as error:
            plugins.problems.append(f"{impl.plugin_name}: register_rule_functions raised {error}")
            continue
        if isinstance(functions, Mapping):
            plugins.rule_functions.update({str(k): v for k, v in functions.items() if callable(v)})


def action_kind_problem(kind: Any) -> str | None:
    """Why a registered action kind is refused, or None when it is usable."""
    if not isinstance(kind, ActionKind):
        return f"returned {kind!r}; expected ActionKind"
    if kind.name in ACTION_KINDS:
        return f"cannot replace the built-in action kind '{kind.name}'"
    if (
        not isinstance(kind.name, str)
        or not re.match(ACTION_KIND_PATTERN, kind.name)
        or len(kind.name) > ACTION_KIND_MAX_LENGTH
    ):
        return (
            f"names an action kind {kind.name!r}; expected up to {ACTION_KIND_MAX_LENGTH} lower "
            "case letters, digits, _ or -"
        )
    if not callable(kind.run):
        return f"gave action kind '{kind.name}' a run that is not callable"
    return None


def _safe_list(impl: pluggy.HookImpl, problems: list[str]) -> Iterable[Any]:
    try:
        value = impl.function()
    except Exception as error:
        problems.append(f"{impl.plugin_name}: {impl.function.__name__} raised {error}")
        return []
    if not isinstance(value, list | tuple):
        problems.append(f"{impl.plugin_name}: {impl.function.__name__} returned {value!r}")
        return []
    return value


def _block_broken_entry_points(manager: pluggy.PluginManager, problems: list[str]) -> None:
    """A plugin that cannot be imported is reported and left out; it must not break every
    command (pluggy would raise from load_setuptools_entrypoints)."""
    for entry in metadata.entry_points(group=PROJECT):
        try:
            entry.load()
        except Exception as error:
            problems.append(
                f"{entry.name} ({entry.value}) could not be imported: "
                f"{type(error).__name__}: {error}"
            )
            manager.set_blocked(entry.name)


def load_plugins(*, entry_points: bool = True, extra: Iterable[object] = ()) -> Plugins:
    """Build a fresh plugin manager: installed plugins (unless switched off) plus `extra` objects.

    With `entry_points=False` only the bundled plugins and `extra` load: hermetic, for tests.
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    problems: list[str] = []
    if entry_points:
        _block_broken_entry_points(manager, problems)
        manager.load_setuptools_entrypoints(PROJECT)
    if not entry_points or not _own_entry_points_visible():
        for module_name in DEFAULT_PLUGINS:
            _register_module(manager, module_name)
    for index, plugin in enumerate(extra):
        manager.register(
            plugin, name=f"extra-{index}-{getattr(plugin, '__name__', type(plugin).__name__)}"
        )
    plugins = Plugins(manager, problems=problems)
    _collect(plugins)
    plugins.min_severity = minimums_from_env(os.environ, (n.name for n in plugins.notifiers))
    for problem in plugins.problems:
        logger.warning("plugin problem: %s", problem)
    return plugins
