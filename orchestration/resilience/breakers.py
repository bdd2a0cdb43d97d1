"""Circuit breakers per integration point: a failure rate over a sliding window, stored state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any

from pydantic import ValidationError

from orchestration.core.errors import NotFoundError
from orchestration.core.models import (
    AgentAction,
    BreakerRecord,
    BreakerSettings,
    InterventionRecord,
    PluginAction,
    PythonAction,
    ShellAction,
    TaskSpec,
)
from orchestration.store import BreakerUpdate, Store

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)
MAX_WINDOW = 200  # outcomes kept per breaker; the rate is over the newest ones in the window
PROBE_RETRY_SECONDS = 5.0  # how soon a task held by busy half-open probes asks again


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether an attempt may start now against a breaker, and if not, until when to wait."""

    allowed: bool
    state: str
    reason: str = ""
    retry_at: datetime | None = None
    probe: bool = False  # let through as a half-open probe: report its outcome with probe=True


ALLOWED = Admission(True, CLOSED)


def breaker_key(
    spec: TaskSpec, settings: BreakerSettings, agent_command: tuple[str, ...] | None = None
) -> str | None:
    """The breaker a task's attempts count against, or None (no breaker guards it).

    The first of `settings.keys_from` that applies: `task` (the task's own `breaker:`), `pool`
    (`pool:<name>`), `agent` (`agent:<program>` of its command, else of the plan's default agent
    command), `command` (`shell:<program>`, `python:<module>` or `action:<plugin kind>`).
    """
    if not settings.enabled:
        return None
    action = spec.action
    for source in settings.keys_from:
        if source == "task" and spec.breaker:
            return spec.breaker
        if source == "pool" and spec.pool:
            return f"pool:{spec.pool}"
        if source == "agent" and isinstance(action, AgentAction) and action.agent:
            return f"agent:{action.agent}"
        if source == "agent" and isinstance(action, AgentAction):
            command = action.command or agent_command
            return f"agent:{_program(command[0])}" if command else "agent"
        if source == "command" and isinstance(action, ShellAction):
            return f"shell:{_program(action.run[0])}"
        if source == "command" and isinstance(action, PythonAction):
            return f"python:{action.call.split(':', 1)[0]}"
        if source == "command" and isinstance(action, PluginAction):
            return f"action:{action.kind}"
    return None


def stored_settings(plan_json: dict[str, Any]) -> tuple[BreakerSettings, tuple[str, ...] | None]:
    """A stored run's breaker settings and default agent command (its plan as it started)."""
    spec = plan_json.get("spec", {}) if isinstance(plan_json, dict) else {}
    spec = spec if isinstance(spec, dict) else {}
    try:
        settings = BreakerSettings.model_validate(spec.get("breakers") or {})
    except ValidationError:
        settings = BreakerSettings()
    defaults = spec.get("defaults") or {}
    command = defaults.get("agent_command") if isinstance(defaults, dict) else None
    if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
        return settings, tuple(command)
    return settings, None


def _program(argv0: str) -> str:
    # `{python}` is filled with the engine's interpreter only when the command runs.
    if argv0 == "{python}":
        return "python"
    return PurePath(argv0).name or argv0


def attempt_ok(exit_code: int | None, timed_out: bool, interrupted: bool = False) -> bool | None:
    """How an attempt counts for its breaker: the action's own success, not the validators'.

    None: it does not count (the engine or a human stopped it; that says nothing about the
    integration point).
    """
    if interrupted:
        return None
    return exit_code == 0 and not timed_out


# ---- the state machine: pure functions over a stored record ------------------------------------


def admit(
    record: BreakerRecord | None, key: str, settings: BreakerSettings, now: datetime
) -> tuple[BreakerRecord | None, Admission]:
    """May an attempt start now? Returns (the record to store, or None if unchanged; answer)."""
    if record is None or record.state == CLOSED:
        return None, ALLOWED
    if record.state == OPEN:
        due = (record.opened_at or now) + timedelta(seconds=settings.recovery_seconds)
        if now < due:
            reason = f"circuit '{key}' is open ({record.reason}); next probe at {due:%H:%M:%S}Z"
            return None, Admission(False, OPEN, reason, due)
        record = replace(
            record,
            state=HALF_OPEN,
            probes=[],
            probe_successes=0,
            reason=f"recovery time of {settings.recovery_seconds:g}s over; probing",
        )
    # half-open: a limited number of probes at a time; a probe whose engine died expires
    live = [at for at in record.probes if now.timestamp() - at < settings.probe_lease_seconds]
    if len(live) < settings.half_open_probes:
        changed = replace(record, probes=[*live, now.timestamp()])
        return changed, Admission(True, HALF_OPEN, f"probe of circuit '{key}'", probe=True)
    retry_at = now + timedelta(seconds=PROBE_RETRY_SECONDS)
    busy = f"circuit '{key}' is half-open; waiting for {len(live)} probe(s) to report"
    expired = replace(record, probes=live) if live != record.probes else None
    return expired, Admission(False, HALF_OPEN, busy, retry_at)


def record_outcome(
    record: BreakerRecord | None,
    key: str,
    settings: BreakerSettings,
    ok: bool,
    now: datetime,
    *,
    probe: bool = False,
) -> BreakerRecord:
    """The breaker after one more attempt's outcome (`probe`: it was let through half-open)."""
    if record is None:
        record = BreakerRecord(key, CLOSED)
    stamp = now.timestamp()
    window = [(at, good) for at, good in record.window if stamp - at < settings.window_seconds] + [
        (stamp, ok)
    ]
    window = window[-MAX_WINDOW:]
    if record.state == HALF_OPEN and probe:
        probes = record.probes[1:]  # this probe's slot is free again
        if not ok:
            return replace(
                record,
                state=OPEN,
                opened_at=now,
                window=window,
                probes=[],
                probe_successes=0,
                reason="a half-open probe failed",
            )
        successes = record.probe_successes + 1
        if successes >= settings.half_open_probes:
            return replace(
                record,
                state=CLOSED,
                opened_at=None,
                window=[],
                probes=[],
                probe_successes=0,
                reason=f"closed after {successes} successful probe(s)",
            )
        return replace(record, window=window, probes=probes, probe_successes=successes)
    if record.state != CLOSED:
        return replace(record, window=window)  # a late outcome of an attempt started earlier
    failures = sum(1 for _, good in window if not good)
    if len(window) >= settings.min_calls and failures / len(window) >= settings.failure_rate:
        reason = (
            f"{failures} of the last {len(window)} attempts failed within "
            f"{settings.window_seconds:g}s"
        )
        return replace(record, state=OPEN, opened_at=now, window=window, probes=[], reason=reason)
    return replace(record, window=window)


def release_probe(record: BreakerRecord | None) -> BreakerRecord | None:
    """The breaker with one probe slot freed (a probe stopped before it said anything)."""
    if record is None or record.state != HALF_OPEN or not record.probes:
        return None
    return replace(record, probes=record.probes[1:])


def closed_record(record: BreakerRecord | None, key: str, reason: str) -> BreakerRecord:
    """The breaker reset to closed with an empty window (a human's `orch breakers reset`)."""
    version = record.version if record is not None else 0
    return BreakerRecord(key, CLOSED, reason=reason, version=version)


def _closer(key: str, reason: str) -> Callable[[BreakerRecord | None], BreakerRecord]:
    def change(current: BreakerRecord | None) -> BreakerRecord:
        return closed_record(current, key, reason)

    return change


def failure_rate(record: BreakerRecord, settings: BreakerSettings, now: datetime) -> float | None:
    """The failure rate over the current window (None: no outcome in the window)."""
    stamp = now.timestamp()
    window = [good for at, good in record.window if stamp - at < settings.window_seconds]
    if not window:
        return None
    return sum(1 for good in window if not good) / len(window)


# ---- what the loop uses ------------------------------------------------------------------------


class CircuitBreakers:
    """The breakers of one plan's settings over a store; each call is one short transaction."""

    def __init__(self, store: Store, settings: BreakerSettings) -> None:
        self.store = store
        self.settings = settings

    def key_for(self, spec: TaskSpec, agent_command: tuple[str, ...] | None = None) -> str | None:
        return breaker_key(spec, self.settings, agent_command)

    def allow(self, key: str | None, now: datetime) -> Admission:
        """Whether an attempt against `key` may start now; opening a probe slot is atomic."""
        if key is None or not self.settings.enabled:
            return ALLOWED
        stored = self.store.breaker(key)
        changed, admission = admit(stored, key, self.settings, now)
        if changed is None:
            return admission  # nothing to store: a plain read was enough
        answer: list[Admission] = []

        def change(current: BreakerRecord | None) -> BreakerRecord | None:
            answer.clear()
            new, result = admit(current, key, self.settings, now)
            answer.append(result)
            return new

        self.store.update_breaker(key, change)
        return answer[0]

    def update(self, key: str, ok: bool, now: datetime, *, probe: bool = False) -> BreakerUpdate:
        """The change recording one outcome, for `Batch.breaker_updates` (same commit)."""
        settings = self.settings

        def change(current: BreakerRecord | None) -> BreakerRecord:
            return record_outcome(current, key, settings, ok, now, probe=probe)

        return BreakerUpdate(key, change)

    def release(self, key: str) -> BreakerUpdate:
        """Free the probe slot of an attempt let through half-open that was stopped (its
        outcome says nothing), for `Batch.breaker_updates`."""
        return BreakerUpdate(key, release_probe)

    def record(
        self, key: str | None, ok: bool | None, now: datetime, *, probe: bool = False
    ) -> BreakerRecord | None:
        """Record one outcome in its own transaction; the breaker's new state."""
        if key is None or ok is None or not self.settings.enabled:
            return None
        before = self.store.breaker(key)
        after = self.store.update_breaker(key, self.update(key, ok, now, probe=probe).change)
        if after is not None and (before is None or before.state != after.state):
            logger.info("circuit breaker %s is now %s: %s", key, after.state, after.reason)
        return after


def reset_breakers(
    store: Store,
    keys: list[str] | None,
    *,
    actor: str,
    reason: str = "",
    now: datetime | None = None,
) -> list[str]:
    """Close the named breakers (None: every stored one), recorded as an intervention each."""
    now = now or datetime.now(UTC)
    stored = {b.key for b in store.breakers()}
    targets = sorted(stored) if keys is None else list(dict.fromkeys(keys))
    unknown = [key for key in targets if key not in stored]
    if unknown:
        known = ", ".join(sorted(stored)) or "none yet"
        raise NotFoundError(f"no circuit breaker '{unknown[0]}'; known breakers: {known}")
    why = f"reset by {actor}" + (f": {reason}" if reason else "")
    updates = [BreakerUpdate(key, _closer(key, why)) for key in targets]
    interventions = [
        InterventionRecord(
            None, None, "breaker_reset", actor, reason, {"key": key}, now, applied_at=now
        )
        for key in targets
    ]
    store.commit_store_wide(interventions, updates)
    return targets
