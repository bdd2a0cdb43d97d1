"""OpenTelemetry spans per run, task and attempt, when the `otel` extra is installed (else nothing).

Built from the store when a run ends (its transitions give every attempt's start and end), with
the stored times as the spans' times: the loop makes no tracing calls while it works, and every
engine of a run reports the same spans. The spans go to the tracer provider the process set up
(OTEL_* variables with an SDK's auto-configuration, or the application's own); none: no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from orchestration.core.lifecycle import TaskState
from orchestration.core.models import RunRecord, TransitionRecord
from orchestration.store import Store

logger = logging.getLogger(__name__)

TRACER_NAME = "orchestration"
FINAL_RUN_STATES = frozenset({"completed", "failed", "cancelled"})


def _tracer() -> Any | None:
    try:
        from opentelemetry import trace
    except ImportError:  # the `otel` extra is not installed
        return None
    return trace.get_tracer(TRACER_NAME)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)


def attempt_windows(
    moves: Iterable[TransitionRecord],
) -> list[tuple[int, datetime, datetime, str]]:
    """(attempt number, start, end, where it went) for each stay of one task in `running`."""
    windows: list[tuple[int, datetime, datetime, str]] = []
    started: datetime | None = None
    for move in moves:
        if move.dest == TaskState.RUNNING:
            started = move.at
        elif started is not None and move.source == TaskState.RUNNING:
            windows.append((len(windows) + 1, started, move.at, move.dest))
            started = None
    return windows


def trace_run(store: Store, run_id: str, tracer: Any | None = None) -> int:
    """Emit the spans of a finished run (run, then its tasks, then their attempts); how many.

    `tracer`: an OpenTelemetry tracer (default: the global provider's); without the `otel`
    extra nothing is emitted and 0 is returned.
    """
    tracer = tracer if tracer is not None else _tracer()
    if tracer is None:
        return 0
    from opentelemetry import trace

    run = store.get_run(run_id)
    by_task: dict[str, list[TransitionRecord]] = {}
    for move in store.transitions(run_id):
        by_task.setdefault(move.task_id, []).append(move)
    end = run.finished_at or run.updated_at
    root = tracer.start_span(
        f"run {run.plan_name}", start_time=_ns(run.created_at), attributes=_run_attributes(run)
    )
    count = 1
    context = trace.set_span_in_context(root)
    for task in store.tasks(run_id):
        moves = by_task.get(task.task_id, [])
        if not moves:
            continue
        task_span = tracer.start_span(
            f"task {task.task_id}",
            context=context,
            start_time=_ns(moves[0].at),
            attributes={"orch.run": run_id, "orch.task": task.task_id, "orch.state": task.state},
        )
        count += 1
        inner = trace.set_span_in_context(task_span)
        for number, start, stop, outcome in attempt_windows(moves):
            span = tracer.start_span(
                f"attempt {task.task_id}#{number}",
                context=inner,
                start_time=_ns(start),
                attributes={"orch.task": task.task_id, "orch.attempt": number, "orch.to": outcome},
            )
            span.end(end_time=_ns(stop))
            count += 1
        task_span.end(end_time=_ns(moves[-1].at))
    root.end(end_time=_ns(end))
    return count


def _run_attributes(run: RunRecord) -> dict[str, str]:
    return {"orch.run": run.id, "orch.plan": run.plan_name, "orch.state": run.state}


def trace_finished_run(store: Store, run_id: str, state: str) -> None:
    """The engine's call at a run's end: spans for a run that ended for good; never raises."""
    if state not in FINAL_RUN_STATES:
        return  # a paused run goes on later: its spans come when it ends
    try:
        trace_run(store, run_id)
    except Exception:  # tracing must never fail a run
        logger.exception("spans of run %s not emitted", run_id)
