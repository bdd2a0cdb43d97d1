"""One screen for the reviewer of a breakpoint: the step, its changes, checks, decision, options."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from orchestration.hints import resume_command
from orchestration.models import BreakpointRecord
from orchestration.store import Store

OUTPUT_LINES = 15


def _checks_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("validator", "stage", "result", "score", "message"):
        table.add_column(column)
    for check in checks:
        verdict = "[green]pass[/]" if check.get("passed") else "[red]fail[/]"
        message = str(check.get("message", "")).splitlines()
        table.add_row(
            escape(str(check.get("name"))),
            str(check.get("stage")),
            verdict,
            f"{check.get('score', 0):.2f}",
            escape(message[0][:100] if message else ""),
        )
    return table


def _options(bp: BreakpointRecord) -> str:
    approve = "run the task now" if bp.at == "before" else "accept the result as it is"
    if bp.context.get("merge_worktree"):
        approve = "merge it; where files conflict, the task's worktree wins"
    return (
        f"  orch breakpoints resolve {bp.id} --approve   {approve}\n"
        f"  orch breakpoints resolve {bp.id} --retry     run the task again (with its feedback)\n"
        f"  orch breakpoints resolve {bp.id} --skip      mark it done without running it\n"
        f"  orch breakpoints resolve {bp.id} --reject    cancel the task\n"
        f"  add --note '...' to say why; then: {resume_command(bp.run_id)}"
    )


def _merge_parts(context: dict[str, Any]) -> list[Any]:
    """A merge conflict: each conflicting file with what each side did to it."""
    parts: list[Any] = [
        f"[bold]Merge into {escape(str(context.get('integration_branch')))}[/]: the task's "
        f"work is in {escape(str(context.get('merge_worktree')))}"
    ]
    if context.get("merge_check"):
        parts.append(f"validators on the merged result: {escape(str(context['merge_check']))}")
    for conflict in context.get("merge_conflicts") or []:
        sides = Table(show_header=True, box=None, pad_edge=False, title=conflict.get("path"))
        sides.add_column("merged meanwhile")
        sides.add_column("this task")
        sides.add_row(
            escape(str(conflict.get("integration_diff", ""))),
            escape(str(conflict.get("task_diff", ""))),
        )
        parts.append(sides)
    return parts


def render_breakpoint(console: Console, store: Store, bp: BreakpointRecord) -> None:
    context = bp.context
    task = store.task(bp.run_id, bp.task_id)
    header = (
        f"[bold]breakpoint {bp.id}[/] · run {escape(bp.run_id)} · "
        f"task [cyan]{escape(bp.task_id)}[/]"
        f" ({escape(task.spec.title)})\nrule [yellow]{escape(bp.rule)}[/] {bp.at} the step · "
        f"severity {bp.severity} · {bp.state}"
        + (f" ({bp.resolution} by {bp.resolved_by}: {escape(bp.note)})" if bp.resolution else "")
        + f"\n[bold]{escape(bp.message)}[/]"
    )
    parts: list[Any] = [header]
    if bp.at == "after":
        files = context.get("changed_files") or []
        parts.append(
            f"\n[bold]What the step did[/] (attempt {context.get('attempt')}, exit code "
            f"{context.get('exit_code')}, {context.get('duration_seconds')}s): "
            f"{len(files)} files changed, {context.get('lines_changed')} lines"
        )
        if context.get("diff_stat"):
            parts.append(escape(str(context["diff_stat"])))
        elif files:
            parts.append(escape("\n".join(f"  {f}" for f in files[:30])))
        if context.get("merge_worktree"):
            parts.extend(_merge_parts(context))
        tail = str(context.get("output_tail") or "").strip().splitlines()[-OUTPUT_LINES:]
        if tail:
            parts.append("[bold]Output (last lines)[/]\n" + escape("\n".join(tail)))
        attempt = context.get("attempt")
        quality = [q for q in store.quality(bp.run_id, bp.task_id) if q.attempt == attempt]
        if quality:
            q = quality[-1]
            gate = "[green]passed[/]" if q.gate_passed else "[red]failed[/]"
            parts.append(f"[bold]Validators[/] score {q.score:.2f}, gate {gate}")
            parts.append(_checks_table(q.checks))
        decisions = [d for d in store.decisions(bp.run_id, bp.task_id) if d.attempt == attempt]
        for d in decisions:
            parts.append(
                f"[bold]Decision[/] {d.action} (rule {escape(d.rule)}): {escape(d.reason)}"
            )
    else:
        parts.append(
            f"\nThe step has not run yet: attempt {context.get('attempt')}, risk "
            f"{context.get('risk')}, confidence {context.get('confidence')}, tags "
            f"{', '.join(context.get('tags') or [])}"
        )
    if bp.state == "open":
        parts.append("[bold]Options[/]\n" + escape(_options(bp)))
    console.print(Panel(Group(*parts), title="review", expand=False))
