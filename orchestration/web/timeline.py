"""A Gantt chart of a run's attempts as inline SVG, read from the stored transitions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

from orchestration.core.models import TaskRecord, TransitionRecord

MAX_TIMELINE_ROWS = 300
LABEL_WIDTH = 190  # px for the task names
CHART_WIDTH = 760  # px for the time axis
ROW_HEIGHT = 22
AXIS_HEIGHT = 26
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
TARGET_TICKS = 8


@dataclass(frozen=True, slots=True)
class Interval:
    task_id: str
    kind: str  # attempt | waiting (blocked, waiting for a human)
    attempt: int
    start: datetime
    end: datetime
    outcome: str  # the state it ended in; "running" / "blocked" while still open


def intervals(moves: Sequence[TransitionRecord], end: datetime) -> list[Interval]:
    """Running spans (one per attempt) and blocked spans; open ones last until `end`."""
    found: list[Interval] = []
    open_spans: dict[tuple[str, str], tuple[datetime, int]] = {}
    attempts: dict[str, int] = {}
    for move in moves:
        for kind, state in (("attempt", "running"), ("waiting", "blocked")):
            key = (move.task_id, kind)
            if move.source == state and key in open_spans:
                start, attempt = open_spans.pop(key)
                found.append(Interval(move.task_id, kind, attempt, start, move.at, move.dest))
            if move.dest == state:
                if kind == "attempt":
                    attempts[move.task_id] = attempts.get(move.task_id, 0) + 1
                open_spans[key] = (move.at, attempts.get(move.task_id, 0))
    for (task_id, kind), (start, attempt) in open_spans.items():
        still = "running" if kind == "attempt" else "blocked"
        found.append(Interval(task_id, kind, attempt, start, max(start, end), still))
    return found


def _tick_step(span: float) -> float:
    for step in TICK_STEPS:
        if span / step <= TARGET_TICKS:
            return step
    return TICK_STEPS[-1] * max(1, round(span / TICK_STEPS[-1] / TARGET_TICKS))


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def render_timeline(
    tasks: Sequence[TaskRecord], moves: Sequence[TransitionRecord], start: datetime, end: datetime
) -> Markup | None:
    """The SVG, or None when nothing has run yet."""
    spans = intervals(moves, end)
    if not spans:
        return None
    order = {t.task_id: i for i, t in enumerate(tasks)}
    first_start: dict[str, datetime] = {}
    for span in spans:
        first_start[span.task_id] = min(first_start.get(span.task_id, span.start), span.start)
    rows = sorted(first_start, key=lambda t: (first_start[t], order.get(t, 0)))
    rows = rows[:MAX_TIMELINE_ROWS]
    row_of = {task_id: i for i, task_id in enumerate(rows)}
    origin = min(start, *(s.start for s in spans))
    total = max((max(s.end for s in spans) - origin).total_seconds(), 0.001)
    scale = CHART_WIDTH / total
    width = LABEL_WIDTH + CHART_WIDTH + 20
    height = AXIS_HEIGHT + len(rows) * ROW_HEIGHT + 6
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="timeline of attempts">'
    ]
    step = _tick_step(total)
    tick = 0.0
    while tick <= total + 1e-9:
        x = LABEL_WIDTH + tick * scale
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" y2="{height}"/>'
            f'<text class="tick-label" x="{x:.1f}" y="{AXIS_HEIGHT - 10}">{_duration(tick)}</text>'
        )
        tick += step
    for task_id, row in row_of.items():
        y = AXIS_HEIGHT + row * ROW_HEIGHT
        parts.append(f'<text class="row-label" x="4" y="{y + 15}">{escape(task_id[:28])}</text>')
    for span in spans:
        if span.task_id not in row_of:
            continue
        y = AXIS_HEIGHT + row_of[span.task_id] * ROW_HEIGHT
        x = LABEL_WIDTH + (span.start - origin).total_seconds() * scale
        bar = max((span.end - span.start).total_seconds() * scale, 2.0)
        seconds = (span.end - span.start).total_seconds()
        if span.kind == "attempt":
            tip = f"{span.task_id} attempt {span.attempt}: {_duration(seconds)}, {span.outcome}"
            css, top, tall = f"bar outcome-{escape(span.outcome)}", y + 3, ROW_HEIGHT - 6
        else:
            tip = f"{span.task_id} waited {_duration(seconds)} for a human ({span.outcome})"
            css, top, tall = "bar waiting", y + 8, ROW_HEIGHT - 16
        parts.append(
            f'<rect class="{css}" x="{x:.1f}" y="{top}" width="{bar:.1f}" height="{tall}" '
            f'rx="2"><title>{escape(tip)}</title></rect>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
