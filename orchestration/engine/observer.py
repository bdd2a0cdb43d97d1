"""Observer: what the loop tells a progress display (tasks started and changed, breakpoints)."""

from __future__ import annotations

from typing import Protocol

from orchestration.core.models import BreakpointRecord, TaskRecord


class Observer(Protocol):
    """Receives what the loop does, for a progress display. Every method is optional to act on."""

    def task_started(self, task: TaskRecord) -> None: ...
    def task_changed(self, task: TaskRecord, state: str, detail: str) -> None: ...
    def breakpoint_raised(self, breakpoint: BreakpointRecord) -> None: ...
    def message(self, text: str) -> None: ...


class SilentObserver:
    def task_started(self, task: TaskRecord) -> None:
        pass

    def task_changed(self, task: TaskRecord, state: str, detail: str) -> None:
        pass

    def breakpoint_raised(self, breakpoint: BreakpointRecord) -> None:
        pass

    def message(self, text: str) -> None:
        pass
