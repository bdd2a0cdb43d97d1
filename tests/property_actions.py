"""Tiny python actions for the property tests (`kind: python`, `call: tests.property_actions:ok`)."""

from __future__ import annotations

from pathlib import Path


def ok() -> dict[str, object]:
    """An attempt that succeeds."""
    return {"ok": True}


def fail() -> None:
    """An attempt that fails (every time it runs)."""
    raise RuntimeError("synthetic failure for a property test")


def flaky(marker: str) -> dict[str, object]:
    """Fails the first time (leaving `marker` behind), succeeds on every later attempt."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("synthetic first-attempt failure for a property test")
    return {"ok": True}


def record(log: str, name: str) -> dict[str, object]:
    """Appends `name` to the file `log`: the order in which attempts ran."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(name + "\n")
    return {"ok": True}


def interrupt_once(marker: str) -> dict[str, object]:
    """Raises KeyboardInterrupt the first time (as Ctrl-C would), succeeds later."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise KeyboardInterrupt
    return {"ok": True}


def exit_now() -> None:
    """Calls sys.exit, which must count as the action's failure, not end the engine."""
    raise SystemExit(4)


def sleep(seconds: float) -> dict[str, object]:
    """Sleeps, then succeeds: an attempt that may outlive its timeout."""
    import time

    time.sleep(seconds)
    return {"slept": seconds}
