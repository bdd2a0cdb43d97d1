"""Growth: tasks that join a running run (branches, an action's `spawn`), checked and released."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import TaskRecord
from orchestration.engine.spawning import SpawnError, prepare_tasks, requested_growth
from orchestration.engine.timer_wheel import DEADLINE

if TYPE_CHECKING:
    from orchestration.engine.loop import Orchestrator


class Growth:
    """Adds the tasks a finished task asks for, or that were added from outside, to the run."""

    def __init__(self, loop: Orchestrator) -> None:
        self.loop = loop

    def grow(
        self, task: TaskRecord, succeeded: bool, context: Mapping[str, Any], now: datetime
    ) -> None:
        """Add the tasks a finished task's branches, or its action's `spawn` result, ask for."""
        for growth in requested_growth(task, succeeded, context, self.loop.expressions.branch_when):
            if growth.refused is not None:
                self.refuse(task, growth.refused, now)
            else:
                self.spawn(task, growth.specs, growth.source, now)

    def spawn(
        self, parent: TaskRecord | None, specs: list[Any], source: str, now: datetime
    ) -> None:
        try:
            records = prepare_tasks(
                specs,
                self.loop.tasks,
                self.loop.run.id,
                source,
                self.loop.engine.plugins.action_kinds,
            )
        except SpawnError as error:
            self.refuse(parent, str(error), now)
            return
        self.adopt(records, stored=False)
        data = {"source": source, "tasks": [r.task_id for r in records]}
        parent_id = parent.task_id if parent is not None else None
        self.loop.state.event("tasks_added", parent_id, data, now)
        self.loop.observer.message(f"{source} added {', '.join(r.task_id for r in records)}")

    def adopt(self, records: list[TaskRecord], *, stored: bool = True) -> None:
        """Make tasks that joined the run known to the scheduler, and release what may run.

        `stored`: added by another process (`orch task add`); else this engine stores them."""
        self.loop.state.add_tasks(records, store_them=not stored)
        for record in records:
            self.loop.scheduler.add(record)
        self.loop.scheduler.link_dependents()
        finals = {
            t.task_id: (t.state, t.outcome)
            for t in self.loop.tasks.values()
            if t.state in FINAL_STATES
        }
        for record in records:
            self.loop.scheduler.count_finished_dependencies(record.task_id, finals)
            if record.spec.deadline is not None:
                self.loop.wheel.schedule(record.spec.deadline, DEADLINE, record.task_id)
        for record in records:
            if record.state == TaskState.PENDING:
                self.loop.evaluate_pending(record.task_id)

    def refuse(self, parent: TaskRecord | None, reason: str, now: datetime) -> None:
        self.loop.observer.message(f"warning: new tasks refused: {reason}")
        parent_id = parent.task_id if parent is not None else None
        self.loop.state.event("tasks_refused", parent_id, {"reason": reason}, now)
