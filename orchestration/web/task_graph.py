"""The run's task graph as inline SVG: layers by dependency depth, nodes coloured by state."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from orchestration.core.models import TaskRecord
from orchestration.web.paths import url_segment

MAX_GRAPH_TASKS = 400  # beyond this the graph is left out; the task table remains
NODE_WIDTH = 180
NODE_HEIGHT = 40
LAYER_GAP = 240  # px between the left edges of two layers
ROW_GAP = 52  # px between the tops of two nodes in a layer
MARGIN = 12
LABEL_CHARS = 24


def depths(tasks: Sequence[TaskRecord]) -> dict[str, int]:
    """Each task's depth: 0 without dependencies in the run, else 1 + its deepest dependency."""
    ids = {t.task_id for t in tasks}
    deps = {t.task_id: [d for d in t.depends_on if d in ids] for t in tasks}
    depth: dict[str, int] = {}
    for task in tasks:
        stack = [task.task_id]
        while stack:
            current = stack[-1]
            if current in depth:
                stack.pop()
                continue
            missing = [d for d in deps[current] if d not in depth and d not in stack]
            if missing:
                stack.extend(missing)
                continue
            known = [depth[d] for d in deps[current] if d in depth]  # a cycle's edge is dropped
            depth[current] = 1 + max(known) if known else 0
            stack.pop()
    return depth


def layout(tasks: Sequence[TaskRecord]) -> dict[str, tuple[int, int]]:
    """(layer, row) per task; a layer's rows follow the mean row of their dependencies."""
    depth = depths(tasks)
    layers: dict[int, list[TaskRecord]] = {}
    for task in tasks:  # tasks come in plan order, which breaks ties
        layers.setdefault(depth[task.task_id], []).append(task)
    place: dict[str, tuple[int, int]] = {}
    for layer in sorted(layers):
        members = layers[layer]
        if layer > 0:

            def centre(task: TaskRecord) -> float:
                rows = [place[d][1] for d in task.depends_on if d in place]
                return sum(rows) / len(rows) if rows else 0.0

            members = sorted(members, key=centre)  # stable: plan order among equals
        for row, task in enumerate(members):
            place[task.task_id] = (layer, row)
    return place


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def render_graph(run_id: str, tasks: Sequence[TaskRecord]) -> Markup | None:
    """The SVG, or None when the run has too many tasks to draw legibly."""
    if not tasks or len(tasks) > MAX_GRAPH_TASKS:
        return None
    place = layout(tasks)
    layers = 1 + max(layer for layer, _ in place.values())
    rows = 1 + max(row for _, row in place.values())
    width = MARGIN * 2 + (layers - 1) * LAYER_GAP + NODE_WIDTH
    height = MARGIN * 2 + (rows - 1) * ROW_GAP + NODE_HEIGHT

    def corner(task_id: str) -> tuple[int, int]:
        layer, row = place[task_id]
        return MARGIN + layer * LAYER_GAP, MARGIN + row * ROW_GAP

    parts = [
        f'<svg class="task-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="task graph of run {escape(run_id)}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path class="arrowhead" '
        'd="M0,0 L10,5 L0,10 z"/></marker></defs>'
    ]
    for task in tasks:
        x2, y2 = corner(task.task_id)
        for dep in task.depends_on:
            if dep not in place:
                continue
            x1, y1 = corner(dep)
            start_x, start_y = x1 + NODE_WIDTH, y1 + NODE_HEIGHT // 2
            end_y = y2 + NODE_HEIGHT // 2
            bend = (x2 - start_x) // 2
            parts.append(
                f'<path class="edge" d="M{start_x},{start_y} C{start_x + bend},{start_y} '
                f'{x2 - bend},{end_y} {x2},{end_y}" marker-end="url(#arrow)"/>'
            )
    for task in tasks:
        x, y = corner(task.task_id)
        tid = escape(task.task_id)
        href = escape(f"/runs/{url_segment(run_id)}/tasks/{url_segment(task.task_id)}")
        tries = "attempt" if task.attempts == 1 else "attempts"
        detail = f"{task.state} · {task.attempts} {tries}"
        tip = f"{task.task_id}: {task.spec.title}\n{detail}" if task.spec.title else detail
        parts.append(
            f'<a href="{href}"><g class="node state-{escape(task.state)}" data-task="{tid}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 17}">{escape(_label(task.task_id))}</text>'
            f'<text class="sub" x="{x + 10}" y="{y + 32}">{escape(detail)}</text></g></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
