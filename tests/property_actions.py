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
